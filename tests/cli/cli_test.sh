#!/usr/bin/env bash
# Tests of the nq command-line tool: cli_test.sh NQ_BINARY CASE.
# Every case talks to 127.0.0.1 only and lets the kernel pick the port, so
# cases may run in parallel with each other and with anything else.
set -euo pipefail

nq=$1
case_name=$2

server_id=11111111-2222-4333-8444-555555555555
client_id=aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*; do
    [ -f "$f" ] || continue
    echo "--- $(basename "$f")" >&2
    cat "$f" >&2
  done
  exit 1
}

# Starts "nq serve --port 0 ARGS..." in the background and sets $port from
# its "listening" line.
start_server() {
  # Created here: the background job opens it only once it gets to run.
  : >"$work/serve.out"
  "$nq" serve --port 0 "$@" >"$work/serve.out" 2>"$work/serve.err" &
  server_pid=$!
  local line=
  for _ in $(seq 100); do
    line=$(head -n 1 "$work/serve.out")
    [ -n "$line" ] && break
    kill -0 "$server_pid" 2>/dev/null || fail "server exited before listening"
    sleep 0.1
  done
  [[ $line =~ ^listening\ 127\.0\.0\.1\ ([0-9]+)$ ]] || fail "bad listening line: '$line'"
  port=${BASH_REMATCH[1]}
  [ "$port" -gt 0 ] || fail "server listens on port 0"
}

# Starts "nq serve --protocol mqtt --port $bport ARGS..." in the background
# (the broker listens on $bport) and waits for its listening line.
start_mqtt_server() {
  : >"$work/serve.out"
  "$nq" serve --protocol mqtt --port "$bport" "$@" >"$work/serve.out" 2>"$work/serve.err" &
  server_pid=$!
  for _ in $(seq 100); do
    [ -s "$work/serve.out" ] && break
    sleep 0.1
  done
  expect_equal "listening line" "listening 127.0.0.1 $bport" "$(head -n 1 "$work/serve.out")"
}

# Waits (at most 15 s) for the server to exit and checks that it exited 0.
expect_server_exit_ok() {
  for _ in $(seq 150); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$server_pid" 2>/dev/null && fail "server still running"
  local rc=0
  wait "$server_pid" || rc=$?
  server_pid=
  [ "$rc" -eq 0 ] || fail "server exited with $rc"
}

# Runs nq with ARGS, bounded in time; sets $rc, $out (stdout) and $err (stderr).
run_nq() {
  rc=0
  timeout 30 "$nq" "$@" >"$work/run.out" 2>"$work/run.err" || rc=$?
  [ "$rc" -ne 124 ] || fail "nq $* did not finish in 30 s"
  out=$(cat "$work/run.out")
  err=$(cat "$work/run.err")
}

expect_equal() { # what expected actual
  [ "$2" == "$3" ] || fail "$1: expected
$2
got
$3"
}

expect_one_error_line() { # status_wanted
  [ "$rc" -eq "$1" ] || fail "exit status $rc, expected $1"
  [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "stderr is not one line: $err"
  [[ $err == nq:\ * ]] || fail "stderr does not start with 'nq: ': $err"
}

test_echo_round_trip() {
  start_server --id "$server_id" --echo --count 3
  run_nq send --port "$port" --id "$client_id" --expect 3 hello "two words" $'tab\tback\\slash'
  [ "$rc" -eq 0 ] || fail "send exited with $rc: $err"
  expect_equal "send output" "$server_id 5 hello
$server_id 9 two words
$server_id 14 tab\\x09back\\\\slash" "$out"
  expect_equal "send stderr" "" "$err"
  expect_server_exit_ok
  expect_equal "serve output" "listening 127.0.0.1 $port
$client_id 5 hello
$client_id 9 two words
$client_id 14 tab\\x09back\\\\slash" "$(cat "$work/serve.out")"
  expect_equal "serve stderr" "" "$(cat "$work/serve.err")"
}

test_empty_message() {
  start_server --id "$server_id" --echo --count 2
  run_nq send --port "$port" --id "$client_id" --expect 2 "" after-empty
  [ "$rc" -eq 0 ] || fail "send exited with $rc: $err"
  expect_equal "send output" "$server_id 0 
$server_id 11 after-empty" "$out"
  expect_server_exit_ok
  expect_equal "serve output" "listening 127.0.0.1 $port
$client_id 0 
$client_id 11 after-empty" "$(cat "$work/serve.out")"
}

test_signal_stops_server() {
  start_server
  kill -TERM "$server_pid"
  expect_server_exit_ok
  expect_equal "serve stderr" "" "$(cat "$work/serve.err")"
}

test_bad_arguments() {
  local bad=(
    ""
    "frobnicate"
    "serve --port 70000"
    "serve --port abc"
    "serve --bogus"
    "serve --protocol udp"
    "serve --key only.pem"
    "serve --count 0"
    "serve stray-message"
    "send"
    "send --port"
    "send --port 0 x"
    "send --id not-a-uuid x"
    "send --expect -1 x"
    "send --timeout soon x"
    "send --echo x"
    "version extra"
  )
  for args in "${bad[@]}"; do
    # Word splitting is wanted: each entry is a command line.
    # shellcheck disable=SC2086
    run_nq $args
    [ "$rc" -eq 2 ] || fail "nq $args: exit status $rc, expected 2 (stderr: $err)"
    expect_one_error_line 2
  done
}

test_help_and_version() {
  run_nq --help
  [ "$rc" -eq 0 ] || fail "--help exited with $rc"
  [[ $out == usage:* ]] || fail "--help does not print usage: $out"
  run_nq help
  [ "$rc" -eq 0 ] || fail "help exited with $rc"
  run_nq version
  [ "$rc" -eq 0 ] || fail "version exited with $rc"
  [[ $out =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "version printed '$out'"
}

test_closed_port() {
  # A port that was just ours and is now closed: nothing else listens there
  # unless the kernel hands it out again within these few milliseconds.
  start_server
  local closed_port=$port
  kill -TERM "$server_pid"
  expect_server_exit_ok
  run_nq send --port "$closed_port" --timeout 5000 --expect 1 hello
  expect_one_error_line 1
}

test_self_connect_refused() {
  # With nothing listening on port P and P the only ephemeral port, TCP's
  # simultaneous open joins the client's socket to itself: the client must
  # say that nothing listens there, not talk to itself.  A network namespace
  # of its own (root) keeps the port range change away from the machine.
  [ "$(id -u)" -eq 0 ] || fail "needs root for a network namespace"
  local p=40123
  rc=0
  timeout 30 unshare --net bash -c \
    "ip link set lo up && echo '$p $p' >/proc/sys/net/ipv4/ip_local_port_range && exec \"\$0\" send --port $p --timeout 3000 --expect 1 hello" \
    "$nq" >"$work/run.out" 2>"$work/run.err" || rc=$?
  [ "$rc" -ne 124 ] || fail "the client did not finish in 30 s"
  out=$(cat "$work/run.out")
  err=$(cat "$work/run.err")
  expect_equal "send output" "" "$out"
  expect_one_error_line 1
}

# A server that requires client certificates: a client with one from the
# trusted authority is served, one without is refused with a clear error.
test_tls_client_certificates() {
  local d=$work/tls
  mkdir "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$d/ca.key" -out "$d/ca.pem" -subj /CN=cli-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  for who in server client; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$d/$who.key" -out "$d/$who.csr" -subj "/CN=$who" \
      -addext subjectAltName=IP:127.0.0.1 2>/dev/null
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -copy_extensions copyall -days 2 -out "$d/$who.pem" 2>/dev/null
  done
  start_server --id "$server_id" --echo --count 1 --key "$d/server.key" \
    --cert "$d/server.pem" --ca "$d/ca.pem" --require-client-cert
  run_nq send --port "$port" --ca "$d/ca.pem" --timeout 5000 hello
  expect_one_error_line 1
  [[ $err == *credentials* ]] || fail "the refusal does not say so: $err"
  run_nq send --port "$port" --id "$client_id" --key "$d/client.key" --cert "$d/client.pem" \
    --ca "$d/ca.pem" --expect 1 hello
  [ "$rc" -eq 0 ] || fail "send with a client certificate exited with $rc: $err"
  expect_equal "reply" "$server_id 5 hello" "$out"
  expect_server_exit_ok
  run_nq serve --port 0 --require-client-cert
  [ "$rc" -eq 2 ] || fail "--require-client-cert without --ca was accepted"
}

test_grpc_echo_round_trip() {
  start_server --protocol grpc --id "$server_id" --echo --count 2
  run_nq send --protocol grpc --port "$port" --id "$client_id" --expect 2 hello "over grpc"
  [ "$rc" -eq 0 ] || fail "send exited with $rc"
  expect_equal "replies" "$server_id 5 hello
$server_id 9 over grpc" "$out"
  expect_server_exit_ok
  expect_equal "server lines" "listening 127.0.0.1 $port
$client_id 5 hello
$client_id 9 over grpc" "$(cat "$work/serve.out")"
}

test_mqtt_echo_round_trip() {
  broker="$work/broker"
  bport=$("$(dirname "$0")/../mqtt-broker.sh" start "$broker")
  # The broker's pid file lives under $work: stop it before cleanup removes it.
  trap '"$(dirname "$0")/../mqtt-broker.sh" stop "$broker"; cleanup' EXIT
  start_mqtt_server --id "$server_id" --echo --count 2
  run_nq send --protocol mqtt --port "$bport" --id "$client_id" --expect 2 hello "over mqtt"
  [ "$rc" -eq 0 ] || fail "send exited with $rc"
  expect_equal "replies" "$server_id 5 hello
$server_id 9 over mqtt" "$out"
  expect_server_exit_ok
  expect_equal "server lines" "listening 127.0.0.1 $bport
$client_id 5 hello
$client_id 9 over mqtt" "$(cat "$work/serve.out")"
  run_nq send --protocol mqtt --port "$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" hello
  expect_one_error_line 1
}

# A broker that wants logins: the server's and the client's pass, a wrong
# password is refused with an error that says so.
test_mqtt_login() {
  broker="$work/broker"
  # The broker reads its password file as its own user, after it starts.
  auth=$(mktemp -d)
  chmod 755 "$auth"
  mosquitto_passwd -c -b "$auth/passwords" server server-secret
  mosquitto_passwd -b "$auth/passwords" client client-secret
  chmod 644 "$auth/passwords"
  printf 'server-secret\n' >"$work/server.pw"
  printf 'client-secret\n' >"$work/client.pw"
  printf 'wrong\n' >"$work/wrong.pw"
  printf 'allow_anonymous false\npassword_file %s\n' "$auth/passwords" >"$work/auth.conf"
  trap '"$(dirname "$0")/../mqtt-broker.sh" stop "$broker"; rm -rf "$auth"; cleanup' EXIT
  bport=$("$(dirname "$0")/../mqtt-broker.sh" start "$broker" "$work/auth.conf")
  start_mqtt_server --id "$server_id" --echo --count 1 --user server \
    --password-file "$work/server.pw"
  run_nq send --protocol mqtt --port "$bport" --user client --password-file "$work/wrong.pw" \
    --timeout 5000 hello
  expect_one_error_line 1
  [[ $err == *credentials* ]] || fail "the refusal does not say so: $err"
  run_nq send --protocol mqtt --port "$bport" --id "$client_id" --user client \
    --password-file "$work/client.pw" --expect 1 hello
  [ "$rc" -eq 0 ] || fail "send with the right login exited with $rc: $err"
  expect_equal "reply" "$server_id 5 hello" "$out"
  expect_server_exit_ok
  run_nq send --protocol mqtt --port "$bport" --password-file "$work/client.pw" hello
  [ "$rc" -eq 2 ] || fail "--password-file without --user was accepted"
}

# A client that hangs (SIGSTOP: its connection stays open, no DISCONNECT,
# no FIN) is replaced at once by a new process with the same id, which is
# served: the broker has not noticed the old connection's end, so the old
# will comes late or never; the new connection's announcement ends the
# server's old session before the new INI.
test_mqtt_hung_client_replaced_with_its_id() {
  broker="$work/broker"
  trap '"$(dirname "$0")/../mqtt-broker.sh" stop "$broker"; cleanup' EXIT
  bport=$("$(dirname "$0")/../mqtt-broker.sh" start "$broker")
  start_mqtt_server --id "$server_id" --echo
  # The first client gets its echo, then waits for a second that never
  # comes, and is killed.
  "$nq" send --protocol mqtt --port "$bport" --id "$client_id" --expect 2 --timeout -1 first \
    >"$work/first.out" 2>"$work/first.err" &
  local first=$!
  for _ in $(seq 100); do
    [ -s "$work/first.out" ] && break
    sleep 0.1
  done
  kill -STOP "$first"
  expect_equal "first reply" "$server_id 5 first" "$(cat "$work/first.out")"
  for round in 1 2 3; do
    run_nq send --protocol mqtt --port "$bport" --id "$client_id" --expect 1 --timeout 5000 "again$round"
    [ "$rc" -eq 0 ] || { kill -KILL "$first"; fail "the client back with its id (round $round) exited with $rc: $err"; }
    expect_equal "reply" "$server_id 6 again$round" "$out"
  done
  kill -KILL "$first"
  wait "$first" 2>/dev/null || true
  kill -TERM "$server_pid"
  expect_server_exit_ok
}

"test_$case_name"
echo "PASS: $case_name"
