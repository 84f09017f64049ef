#!/usr/bin/env bash
# A first exchange with libnq, from a fresh clone on Debian 12: installs what
# the build needs, builds the nq tool into build/, starts an echo server on a
# free port of 127.0.0.1 and sends it three messages.  Exits 0 only when the
# server printed the three messages, the client printed the three echoes and
# both ended cleanly.  NQ_JOBS limits the build's parallelism; NQ_BUILD_DIR
# builds somewhere other than build/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${NQ_BUILD_DIR:-$root/build}
nq="$build/tools/nq/nq"

step() { printf '\n== %s\n' "$*"; }

step "installing build dependencies"
NQ_SKIP_NETQUEUE=1 NQ_SKIP_WHEEL_ENV=1 "$root/tools/install-deps.sh"

step "building the nq tool into ${build#"$root"/}/"
# A first configure picks a release build without tests; an existing build/
# (perhaps configured for the test suite) keeps its own settings.
configure=(cmake -S "$root" -B "$build")
if [ ! -f "$build/CMakeCache.txt" ]; then
  configure+=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF)
fi
"${configure[@]}" >/dev/null
cmake --build "$build" --target nq_cli --parallel "${NQ_JOBS:-$(nproc)}"

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

show() { # label file
  sed "s/^/$1 | /" "$2"
}

step "starting: nq serve --port 0 --echo --count 3"
# Created here: the background job opens it only once it gets to run.
: >"$work/server.out"
"$nq" serve --port 0 --echo --count 3 >"$work/server.out" 2>"$work/server.err" &
server=$!
port=
for _ in $(seq 100); do
  if read -r word _ p <"$work/server.out" && [ "$word" = listening ]; then
    port=$p
    break
  fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "demo: the server did not start listening" >&2
  show server "$work/server.out" >&2
  show server "$work/server.err" >&2
  exit 1
fi

step "sending: nq send --port $port --expect 3 \"hello from libnq\" \"second message\" third"
client_status=0
"$nq" send --port "$port" --expect 3 "hello from libnq" "second message" third \
  >"$work/client.out" 2>"$work/client.err" || client_status=$?

# The server exits by itself after its third message; give it a bounded
# time.  When the client failed, the messages may never come: the exit trap
# stops the server instead.
server_status=0
if [ "$client_status" -eq 0 ]; then
  for _ in $(seq 150); do
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server" 2>/dev/null; then
    echo "demo: the server did not exit after three messages" >&2
    server_status=1
  else
    wait "$server" || server_status=$?
    server=
  fi
fi

step "what the server printed (<client id> <length> <text>)"
show server "$work/server.out"
show server "$work/server.err"
step "what the client printed (<server id> <length> <text>)"
show client "$work/client.out"
show client "$work/client.err"

echoes=$(wc -l <"$work/client.out")
received=$(($(wc -l <"$work/server.out") - 1))
failure=
if [ "$client_status" -ne 0 ]; then
  failure="nq send exited with status $client_status"
elif [ "$server_status" -ne 0 ]; then
  failure="nq serve exited with status $server_status"
elif [ "$received" -ne 3 ] || [ "$echoes" -ne 3 ]; then
  failure="the server received $received messages and the client $echoes echoes, not 3 each"
fi
if [ -n "$failure" ]; then
  printf '\ndemo: FAILED: %s\n' "$failure" >&2
  exit 1
fi
printf '\n== demo passed: 3 messages sent, received and echoed over 127.0.0.1:%s\n' "$port"
