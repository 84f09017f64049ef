#!/usr/bin/env bash
# Smoke tests of the bench tools: smoke.sh BENCH_DIR ZMQ_DIR CASE.
# Each case runs a server and a client over 127.0.0.1 at tiny sizes (the
# server binds port 0 and its "listening" line gives the port) and checks
# that every output line parses, so the tools and bench/compare's parsers
# cannot drift apart.  ZMQ_DIR may be "-" when the ZeroMQ programs are not
# built.
set -euo pipefail

bench=$1
zmq=$2
case_name=$3

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
  for f in "$work"/*.out "$work"/*.err; do
    [ -f "$f" ] || continue
    echo "--- $(basename "$f")" >&2
    cat "$f" >&2
  done
  exit 1
}

# Starts "TOOL ARGS..." in the background and sets $port from its
# "listening" line.
start_server() {
  : >"$work/server.out"
  "$@" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  local line=
  for _ in $(seq 100); do
    line=$(head -n 1 "$work/server.out")
    [ -n "$line" ] && break
    kill -0 "$server_pid" 2>/dev/null || fail "server exited before listening"
    sleep 0.1
  done
  [[ $line =~ ^listening\ 127\.0\.0\.1\ ([0-9]+)$ ]] || fail "bad listening line: '$line'"
  port=${BASH_REMATCH[1]}
  [ "$port" -gt 0 ] || fail "server listens on port 0"
}

# Runs the client, bounded in time, and fails unless it exits 0.
run_client() {
  local rc=0
  timeout 15 "$@" >"$work/client.out" 2>"$work/client.err" || rc=$?
  [ "$rc" -ne 124 ] || fail "client did not finish in 15 s: $*"
  [ "$rc" -eq 0 ] || fail "client exited with $rc: $*"
}

# Waits (at most 15 s) for the server and fails unless it exited 0.
wait_server() {
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

# Fails unless FILE has a line matching the extended regular expression.
expect_line() { # file regex
  grep -Eq "$2" "$1" || fail "$(basename "$1") has no line matching: $2"
}

si='[0-9]+(\.[0-9]{1,2})?[KMGTPEZY]?'

# The five iops lines; the Data line must show COUNT messages.
check_iops() { # file count
  expect_line "$1" '^Time:       [0-9]+\.[0-9]s$'
  expect_line "$1" "^Data:       $2 @ ${si}B$"
  expect_line "$1" "^Transfer:   ${si}B @ +${si}bps$"
  expect_line "$1" "^Operations: ${si} @ ${si}IOPS$"
  expect_line "$1" "^Memory:     ${si}B$"
}

check_rss() { expect_line "$1" '^peak RSS: [0-9]+ \[KiB\]$'; }

check_thr() { # file size count
  expect_line "$1" "^message size: $2 \[B\]$"
  expect_line "$1" "^message count: $3$"
  expect_line "$1" '^elapsed: [0-9]+\.[0-9]{6} \[s\]$'
  expect_line "$1" '^throughput: [0-9]+ \[msg/s\]$'
  expect_line "$1" '^throughput: [0-9]+\.[0-9]{3} \[Gbit/s\]$'
  check_rss "$1"
}

check_sender() { # file count
  expect_line "$1" "^sent: $2 \[msg\] in [0-9]+\.[0-9]{6} \[s\] including close$"
  check_rss "$1"
}

check_lat() { # file size count
  expect_line "$1" "^message size: $2 \[B\]$"
  expect_line "$1" "^roundtrip count: $3$"
  local p
  for p in p50 p99 p99.9 max mean; do
    expect_line "$1" "^rtt $p: [0-9]+\.[0-9]{2} \[us\]$"
  done
  expect_line "$1" '^average latency: [0-9]+\.[0-9]{2} \[us\]$'
  check_rss "$1"
}

make_certs() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
}

# iops with 31 messages per side (2^8 .. 2^16 in steps of 2, then 2^16).
iops_pair() { # mode [options for both sides]
  local mode=$1
  shift
  start_server "$bench/iops" tcp server "$mode" --port 0 --max-size 16 --timeout 15 "$@"
  run_client "$bench/iops" tcp client "$mode" --port "$port" --max-size 16 --timeout 15 "$@"
  wait_server
  check_iops "$work/server.out" 31.0
  check_iops "$work/client.out" 31.0
}

thr_pair() { # tool [options for both sides]
  local tool=$1
  shift
  start_server "$tool" local --port 0 --size 100 --count 2000 --timeout 15 "$@"
  run_client "$tool" remote --port "$port" --size 100 --count 2000 --timeout 15 "$@"
  wait_server
  check_thr "$work/server.out" 100 2000
  check_sender "$work/client.out" 2000
}

lat_pair() { # tool [options for both sides]
  local tool=$1
  shift
  start_server "$tool" local --port 0 --size 64 --count 300 --warmup 10 --timeout 15 "$@"
  run_client "$tool" remote --port "$port" --size 64 --count 300 --warmup 10 --timeout 15 "$@"
  wait_server
  check_lat "$work/client.out" 64 300
  check_rss "$work/server.out"
}

need_zmq() {
  [ "$zmq" != "-" ] || fail "the ZeroMQ programs are not built"
}

case $case_name in
  iops_sync) iops_pair sync ;;
  iops_async) iops_pair async ;;
  iops_reps)
    # The README's Sync shape: only the largest size, repeated.
    start_server "$bench/iops" tcp server sync --port 0 --step-size 0 --max-size 12 --reps 50 --timeout 15
    run_client "$bench/iops" tcp client sync --port "$port" --step-size 0 --max-size 12 --reps 50 --timeout 15
    wait_server
    check_iops "$work/client.out" 50.0
    ;;
  iops_two_clients)
    start_server "$bench/iops" tcp server async --port 0 --max-size 14 --clients 2 --timeout 15
    timeout 15 "$bench/iops" tcp client async --port "$port" --max-size 14 --clients 2 \
      --timeout 15 >"$work/other.out" 2>"$work/other.err" &
    other=$!
    run_client "$bench/iops" tcp client async --port "$port" --max-size 14 --clients 2 --timeout 15
    wait "$other" || fail "the second client failed"
    wait_server
    # iops.py counts every client's messages on both sides: 2 x 15.
    check_iops "$work/server.out" 30.0
    check_iops "$work/client.out" 30.0
    ;;
  iops_pickle) iops_pair sync --payload pickle ;;
  iops_small_pieces) iops_pair async --transport-size 4096 ;;
  iops_tls)
    make_certs
    iops_pair async --key "$work/key.pem" --cert "$work/cert.pem"
    ;;
  iops_list)
    "$bench/iops" tcp client sync --max-size 16 --list >"$work/list.out" ||
      fail "iops --list failed"
    [ "$(wc -l <"$work/list.out")" -eq 31 ] || fail "iops --list: expected 31 sizes"
    # random.seed(0); random.shuffle() of iops.py's list puts 2^8 first.
    [ "$(head -n 1 "$work/list.out")" = 256 ] || fail "iops --list: unexpected order"
    ;;
  iops_raw_detects_pickles)
    # A raw receiver against a pickling sender notices the extra bytes.
    start_server "$bench/iops" tcp server sync --port 0 --max-size 12 --timeout 15
    rc=0
    timeout 15 "$bench/iops" tcp client sync --port "$port" --max-size 12 --payload pickle \
      --timeout 15 >"$work/client.out" 2>"$work/client.err" || rc=$?
    wait "$server_pid" && fail "a raw server accepted pickles" || true
    server_pid=
    expect_line "$work/server.err" 'needs --payload pickle'
    ;;
  unsupported_protocol)
    # Clients towards a closed port: a transport that is not built must say
    # so with exit status 4; one that is built fails to connect instead.
    for tool in "iops mqtt client sync" "iops grpc client async" "thr remote --protocol mqtt" \
      "lat remote --protocol grpc"; do
      rc=0
      # shellcheck disable=SC2086
      timeout 10 "$bench"/$tool --port 1 --timeout 5 >"$work/run.out" 2>"$work/run.err" || rc=$?
      if [ "$rc" -eq 4 ]; then
        expect_line "$work/run.err" 'protocol (mqtt|grpc) is not built into this libnq$'
      elif grep -q 'not built' "$work/run.err"; then
        fail "$tool: says not built but exits $rc"
      fi
    done
    ;;
  usage_errors)
    for args in "iops" "iops tcp server sideways" "iops tcp server sync --max-size 99" \
      "thr middle" "thr local --futures maybe" "lat local --count 0"; do
      rc=0
      # shellcheck disable=SC2086
      "$bench"/$args >"$work/run.out" 2>"$work/run.err" || rc=$?
      [ "$rc" -eq 2 ] || fail "$args: exit $rc, expected 2"
    done
    "$bench/iops" --help | grep -q '^usage: iops' || fail "iops --help"
    ;;
  thr_futures_on) thr_pair "$bench/thr" --futures on --window 64 ;;
  thr_futures_off) thr_pair "$bench/thr" --futures off --window 64 ;;
  thr_tls)
    make_certs
    thr_pair "$bench/thr" --key "$work/key.pem" --cert "$work/cert.pem"
    ;;
  lat_max_time)
    # The client stops timing after --max-time and stops the echo server.
    start_server "$bench/lat" local --port 0 --count 100000000 --timeout 15
    run_client "$bench/lat" remote --port "$port" --count 100000000 --max-time 0.5 --timeout 15
    wait_server
    check_lat "$work/client.out" 64 '[1-9][0-9]*'
    ;;
  lat_futures_on) lat_pair "$bench/lat" --futures on ;;
  lat_futures_off) lat_pair "$bench/lat" --futures off ;;
  zmq_thr)
    need_zmq
    thr_pair "$zmq/zmq_thr"
    ;;
  zmq_lat)
    need_zmq
    lat_pair "$zmq/zmq_lat"
    ;;
  profile)
    # bench/profile on the tree these tools are in: a table of the hottest
    # symbols for each process of each pair (libnq futures, copies, ZeroMQ).
    need_zmq
    root=$(cd "$(dirname "$0")/../.." && pwd)
    timeout 120 python3 "$root/bench/profile" thr64 --build-dir "$(dirname "$bench")" \
      --out "$work" --top 5 >"$work/profile.out" 2>"$work/profile.err" ||
      fail "bench/profile failed"
    [ "$(grep -c '^| self % |' "$work/thr64.md")" -eq 6 ] || fail "not six profiles"
    [ "$(grep -c '^| [0-9.]* | ' "$work/thr64.md")" -ge 6 ] || fail "profiles without symbols"
    grep -q '^throughput: [0-9]* \[msg/s\]$' "$work/thr64.md" || fail "no throughput line"
    ;;
  *) fail "unknown case $case_name" ;;
esac
echo "ok $case_name"
