#!/usr/bin/env bash
# The abi stage of tools/test.sh.  Builds libnq.so.1 and libnq.a with debug
# information in build-abi/, then runs:
#
#   tests/abi/abi_check.sh             the library against every baseline in
#                                      abi/ (abidiff, and new symbols only in
#                                      new version nodes)
#   tests/abi/versioned_client_test.sh a program linked against each
#                                      baseline's symbols runs on the library
#   tests/abi/checks_self_test.sh      both tests fail on libraries that break
#                                      the ABI, and pass on a compatible one
#
# Usage: tools/abi-test.sh
# Environment: NQ_TEST_JOBS parallel build jobs (default 2).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/build-abi

lib=$(bash "$root/tools/abi/build-lib.sh" "$dir") || exit 1
shopt -s nullglob
mapfile -t baselines < <(printf '%s\n' "$root"/abi/libnq-*.abi | sort -V)
shopt -u nullglob
if [ ${#baselines[@]} -eq 0 ]; then
    echo "abi-test.sh: no baseline abi/libnq-*.abi; make one with tools/abi/refresh-baseline.sh" >&2
    exit 1
fi

failed=()
run() {
    local name=$1
    shift
    printf '\n=== abi-test.sh: %s\n' "$name"
    "$@" || failed+=("$name")
}

run "abi_check" bash "$root/tests/abi/abi_check.sh" "$root/abi/include/nq" "$lib" "${baselines[@]}"
for baseline in "${baselines[@]}"; do
    name=$(basename "$baseline" .abi)
    run "versioned_client_test $name" bash "$root/tests/abi/versioned_client_test.sh" \
        "$lib" "$baseline" "$root/abi/include" "$dir/versioned-client/$name"
done
run "checks_self_test" bash "$root/tests/abi/checks_self_test.sh" \
    "$dir/libnq.a" "$dir/nq.pc" "${baselines[-1]}" "$root" "$dir/self-test"

echo
if [ ${#failed[@]} -gt 0 ]; then
    printf 'abi-test.sh: FAIL: %s\n' "${failed[@]}"
    exit 1
fi
echo "abi-test.sh: PASS"
