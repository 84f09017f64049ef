#!/usr/bin/env bash
# The lean stage of tools/test.sh: libnq built with -DNQ_WITH_MQTT=OFF
# -DNQ_WITH_GRPC=OFF on a machine without paho.mqtt.c's and grpc's
# development files, then its tests (the C tests over TCP, the CLI, the
# interop with net-queue over TCP and TLS, the install-and-consume test).
# The fault trials are left to the main stage: they run the same TCP and
# TLS code there, and are most of what this stage would otherwise spend.
#
# The machine's files stay as they are: the stage runs in a mount namespace
# of its own in which an overlay on /usr whites out every file of the
# packages libpaho-mqtt-dev and libgrpc-dev (headers, CMake packages, the
# libraries' link names), so the build cannot use them even by accident.
# It also checks that libnq.so.1 needs neither library and that the tests
# see NQ_ENOTSUP for MQTT and gRPC.  Needs root (namespaces and mounts).
#
# Usage: tools/lean-test.sh            (tree: build-lean/)
# Environment: NQ_TEST_JOBS parallel build and test jobs (default 2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/build-lean
jobs=${NQ_TEST_JOBS:-2}
hidden_packages=(libpaho-mqtt-dev libgrpc-dev)

fail() { printf 'lean-test.sh: FAIL: %s\n' "$*" >&2; exit 1; }

if [ "${1:-}" != --inside ]; then
    [ "$(id -u)" -eq 0 ] || fail "needs root to hide the development files in a mount namespace"
    exec unshare --mount --propagation private -- bash "$0" --inside
fi

# ---- inside the namespace: hide the development files ------------------------

scratch=$(mktemp -d)
mount -t tmpfs lean-overlay "$scratch" || fail "cannot mount a tmpfs"
mkdir -p "$scratch/upper" "$scratch/work"
count=0
while IFS= read -r path; do
    # dpkg may name a file through /lib, which is /usr/lib on Debian 12.
    real=$(readlink -f "$(dirname "$path")")/$(basename "$path")
    case $real in /usr/*) ;; *) continue ;; esac
    if [ -L "$real" ] || [ -f "$real" ]; then
        rel=${real#/usr/}
        mkdir -p "$scratch/upper/$(dirname "$rel")"
        mknod "$scratch/upper/$rel" c 0 0 # an overlay whiteout
        count=$((count + 1))
    fi
done < <(dpkg -L "${hidden_packages[@]}")
[ "$count" -gt 0 ] || fail "found no files of ${hidden_packages[*]} to hide (are they installed?)"
mount -t overlay lean-usr -o "lowerdir=/usr,upperdir=$scratch/upper,workdir=$scratch/work" /usr ||
    fail "cannot mount the overlay on /usr"
for gone in /usr/include/MQTTAsync.h /usr/include/grpc/grpc.h \
            /usr/lib/x86_64-linux-gnu/cmake/grpc/gRPCConfig.cmake; do
    [ ! -e "$gone" ] || fail "$gone is still visible"
done
echo "lean-test.sh: $count files of ${hidden_packages[*]} hidden"

# ---- build and test ----------------------------------------------------------------

gen=()
[ -f "$dir/CMakeCache.txt" ] || gen=(-G Ninja)
CC=gcc cmake -S "$root" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DNQ_WITH_MQTT=OFF -DNQ_WITH_GRPC=OFF -DNQ_BUILD_BINDINGS=OFF -DNQ_BUILD_BENCH=OFF \
    -DNQ_SANITIZE=
cmake --build "$dir" -j "$jobs"

needed=$(readelf -d "$dir/libnq.so.1" | awk '/NEEDED/ {print $NF}')
if printf '%s\n' "$needed" | grep -Eq 'paho|grpc|gpr'; then
    fail "libnq.so.1 still needs: $(printf '%s ' $needed)"
fi
echo "lean-test.sh: libnq.so.1 needs only: $(printf '%s ' $needed)"
if (cd "$dir" && ctest -N | grep -Eq 'mqtt|grpc'); then
    fail "tests of a transport that is not built are registered"
fi

cd "$dir"
ctest --output-on-failure --no-tests=error -j "$jobs" -LE trials
