#!/usr/bin/env bash
# Builds libnq.so.1 and libnq.a alone, with debug information (which abidw
# and abidiff read), in a CMake build tree of its own, and prints the path
# of libnq.so.1 (libnq.a is next to it).
#
# Usage: tools/abi/build-lib.sh BUILD_DIR
# Environment: NQ_TEST_JOBS parallel jobs (default 2); CC the compiler for a
# new tree (default gcc).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$1
jobs=${NQ_TEST_JOBS:-2}

# The generator and compiler are chosen only when the tree is new.
gen=()
[ -f "$dir/CMakeCache.txt" ] || gen=(-G Ninja)
mkdir -p "$dir"
CC=${CC:-gcc} cmake -S "$root" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DNQ_SANITIZE= -DNQ_BUILD_TOOLS=OFF -DNQ_BUILD_BENCH=OFF -DNQ_BUILD_BINDINGS=OFF \
    -DBUILD_TESTING=OFF >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log" >&2; echo "build-lib.sh: configuring $dir failed" >&2; exit 1; }
cmake --build "$dir" -j "$jobs" --target nq nq_static >&2
lib=$(cd "$dir" && pwd)/libnq.so.1
[ -e "$lib" ] || { echo "build-lib.sh: the build made no $lib" >&2; exit 1; }
printf '%s\n' "$lib"
