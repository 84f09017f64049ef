#!/usr/bin/env bash
# Runs the net-queue interop tests for one transport:
#   run_interop.sh NQ_PEER tcp|tls|mqtt|grpc WORKDIR [pytest arguments...]
# The Python that runs them (>= 3.13, with net-queue 1.1.1 and pytest) comes
# from tools/netqueue-env.sh, which builds it on first use.  For mqtt a
# private mosquitto is started for the run (tests/mqtt-broker.sh) and stopped
# whatever happens.  When either cannot be had, the run fails: interop is
# part of the suite, never silently skipped.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -ge 3 ] || { echo "usage: $0 NQ_PEER tcp|tls|mqtt|grpc WORKDIR [pytest args]" >&2; exit 2; }
nq_peer=$1
transport=$2
work=$3
shift 3
case $transport in
tcp | tls | mqtt | grpc) ;;
*) echo "usage: $0 NQ_PEER tcp|tls|mqtt|grpc WORKDIR [pytest args]" >&2; exit 2 ;;
esac

if ! python=$("$root/tools/netqueue-env.sh"); then
    echo "FAIL: tools/netqueue-env.sh could not provide a Python with net-queue 1.1.1" >&2
    exit 1
fi

# A private directory per run, so concurrent runs never share one.
mkdir -p "$work"
basetemp=$(mktemp -d "$work/run.XXXXXX")
broker_dir="$basetemp/broker"
cleanup() {
    if [ -d "$broker_dir" ]; then
        "$root/tests/mqtt-broker.sh" stop "$broker_dir" || true
    fi
    rm -rf "$basetemp"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

if [ "$transport" = mqtt ]; then
    if ! broker_port=$("$root/tests/mqtt-broker.sh" start "$broker_dir"); then
        echo "FAIL: tests/mqtt-broker.sh could not start mosquitto" >&2
        exit 1
    fi
    export NQ_MQTT_PORT="$broker_port"
    # CTest ends a test that overruns its TIMEOUT with SIGKILL, which skips
    # the EXIT trap.  A watcher outside this shell's process tree (so that
    # kill spares it) stops the broker once the shell is gone, unless the
    # trap already did: it checks that the process is still this broker.
    broker_pid=$(cat "$broker_dir/pid")
    shell_pid=$$
    (
        (
            while kill -0 "$shell_pid" 2>/dev/null; do sleep 1; done
            if grep -qF "$broker_dir" "/proc/$broker_pid/cmdline" 2>/dev/null; then
                kill "$broker_pid" 2>/dev/null || true
                rm -rf "$basetemp"
            fi
        ) </dev/null >/dev/null 2>&1 &
    )
fi

export NQ_PEER="$nq_peer" NQ_INTEROP_TRANSPORTS="$transport" PYTHONDONTWRITEBYTECODE=1
status=0
"$python" -m pytest -c /dev/null --rootdir "$here" -p no:cacheprovider -q -rfE \
    --basetemp "$basetemp/pytest" "$here/test_interop.py" "$@" || status=$?
if [ "$status" -ne 0 ] && [ -f "$broker_dir/broker.log" ]; then
    # QoS 0 gives no second chance: a message the broker drops breaks a stream.
    echo "--- messages the broker dropped:" >&2
    grep -i "dropped" "$broker_dir/broker.log" >&2 || echo "(none)" >&2
    echo "--- the broker's log (last 60 lines):" >&2
    tail -n 60 "$broker_dir/broker.log" >&2
fi
exit "$status"
