#!/usr/bin/env bash
# The bazel stage of tools/test.sh: `bazel test //...`, which builds every
# target (libnq.so.1, the nq tool, the tests) and runs every test, with
# Debian's Bazel 4 (bazel-bootstrap) and no downloads; then the same without
# the MQTT and gRPC transports (--define nq_mqtt=off --define nq_grpc=off),
# whose tests are skipped as incompatible while the TCP ones check that
# nq_open refuses the left-out protocols.
#
# As root, Bazel runs in a network namespace of its own that has only the
# loopback interface, so the stage proves the build needs no network (the
# tests use 127.0.0.1 only).  Otherwise, or where namespaces are not
# allowed, it runs with the machine's network.  The Bazel server is shut
# down at the end either way.
#
# Environment:
#   NQ_BAZEL_OUTPUT_ROOT  Bazel's --output_user_root (default
#                         ~/.cache/bazel-nq); a new one is a cold build
#   NQ_TEST_JOBS          build and test jobs (default 2)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
output_root=${NQ_BAZEL_OUTPUT_ROOT:-$HOME/.cache/bazel-nq}
jobs=${NQ_TEST_JOBS:-2}

fail() { printf 'bazel-test.sh: %s\n' "$*" >&2; exit 1; }

if [ "${1:-}" = --offline ]; then
    ip link set lo up || fail "cannot bring up the loopback interface in the new namespace"
    echo "bazel-test.sh: running in a network namespace with only the loopback interface"
elif [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null && unshare --net true 2>/dev/null; then
    exec unshare --net -- bash "$0" --offline
else
    echo "bazel-test.sh: cannot make a network namespace here; running with the machine's network"
fi

command -v bazel >/dev/null || fail "bazel not found (tools/install-deps.sh installs bazel-bootstrap)"
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null ||
    fail "mosquitto not found; the MQTT tests start their own broker"
command -v openssl >/dev/null || fail "openssl not found; the TLS tests make certificates with it"

# Idle servers stop by themselves should the shutdown below never run.
startup=(--output_user_root="$output_root" --max_idle_secs=300)
shutdown() { bazel "${startup[@]}" shutdown >/dev/null 2>&1 || true; }
trap shutdown EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

cd "$root"
bazel "${startup[@]}" test --jobs="$jobs" --local_test_jobs="$jobs" //...
lean=(--define nq_mqtt=off --define nq_grpc=off)
bazel "${startup[@]}" test --jobs="$jobs" --local_test_jobs="$jobs" "${lean[@]}" //...
