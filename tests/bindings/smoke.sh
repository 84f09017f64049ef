#!/usr/bin/env bash
# smoke.sh WORK: a Python server with a Go, a Java and a C client (the nq
# tool) at once, all on 127.0.0.1.  Each client greets the server and must
# get back both its echo and the server's broadcast; every program must exit
# 0.  Tools and paths come from the environment (set by CMakeLists.txt):
#   NQ_PYTHON NQ_PYTHONPATH NQ_GO NQ_JAVA NQ_JAR NQ_JNI_DIR NQ_CLI NQ_LIB_DIR,
# and the go tool's own (GOCACHE, PKG_CONFIG_PATH, CGO_LDFLAGS, ...).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$1
rm -rf "$work"
mkdir -p "$work"

fail() { echo "smoke: FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; cat "$f" >&2; done; exit 1; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done' EXIT

# The Go client is built first, so that its compile time does not count
# against the server's wait.
(cd "$here/goclient" && "$NQ_GO" build -o "$work/goclient" .) >"$work/gobuild.log" 2>&1 ||
    fail "go build"

PYTHONPATH="$NQ_PYTHONPATH" PYTHONDONTWRITEBYTECODE=1 \
    timeout 90 "$NQ_PYTHON" "$here/server.py" 3 >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
port=
for _ in $(seq 200); do
    port=$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$work/server.log")
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || fail "the server exited early"
    sleep 0.05
done
[ -n "$port" ] || fail "the server did not listen"

timeout 60 "$work/goclient" "$port" >"$work/go.log" 2>&1 &
go_pid=$!
timeout 60 "$NQ_JAVA" -Djava.library.path="$NQ_JNI_DIR" -cp "$NQ_JAR" "$here/JavaClient.java" "$port" \
    >"$work/java.log" 2>&1 &
java_pid=$!
timeout 60 "$NQ_CLI" send --port "$port" --expect 2 --timeout 60000 "hello from c" >"$work/c.log" 2>&1 &
c_pid=$!
pids+=("$go_pid" "$java_pid" "$c_pid")

wait "$go_pid" || fail "the Go client failed"
wait "$java_pid" || fail "the Java client failed"
wait "$c_pid" || fail "the C client failed"
wait "$server" || fail "the server failed"
pids=()

for lang in go java; do
    grep -q "^$lang client got \"echo:hello from $lang\"$" "$work/$lang.log" || fail "$lang: no echo"
    grep -q "^$lang client got \"all-here:3\"$" "$work/$lang.log" || fail "$lang: no broadcast"
done
grep -q " echo:hello from c$" "$work/c.log" || fail "c: no echo"
grep -q " all-here:3$" "$work/c.log" || fail "c: no broadcast"
for greeting in "hello from go" "hello from java" "hello from c"; do
    grep -q "server got '$greeting'" "$work/server.log" || fail "server: no '$greeting'"
done
grep -q "^server closed$" "$work/server.log" || fail "server: not closed"
cat "$work"/server.log "$work"/go.log "$work"/java.log "$work"/c.log
echo "smoke: PASS (Python server; Go, Java and C clients)"
