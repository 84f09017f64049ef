#!/usr/bin/env bash
# Regenerates the ABI baseline, abi/libnq-MAJOR.MINOR.abi for the project
# version in CMakeLists.txt, from a build of libnq.so.1 with debug
# information.  The baseline is what tests/abi/abi_check.sh compares every
# later build with, so refresh it only when the ABI it records is the one to
# keep: at a release, or after adding symbols under a new version node in
# abi/libnq.map.  Review the diff of the .abi file before committing it.
#
# Usage: tools/abi/refresh-baseline.sh [LIBNQ_SO]
#   LIBNQ_SO  a libnq.so.1 built with -g; without it, one is built in
#             build-abi/ by tools/abi/build-lib.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -le 1 ] || { echo "usage: $0 [LIBNQ_SO]" >&2; exit 2; }
if [ $# -eq 1 ]; then
    lib=$1
else
    lib=$(bash "$root/tools/abi/build-lib.sh" "$root/build-abi")
fi

version=$(sed -n 's/^project(libnq VERSION \([0-9]*\.[0-9]*\)\.[0-9]*.*/\1/p' "$root/CMakeLists.txt")
[ -n "$version" ] || { echo "refresh-baseline.sh: no project version in CMakeLists.txt" >&2; exit 1; }
out=$root/abi/libnq-$version.abi

# Types private to the library are dropped.  Locations stay, as file names
# without their folders: abidiff tells public types from private ones by the
# file that declares them, and the baseline must not name this machine's
# paths.
abidw --headers-dir "$root/abi/include/nq" --drop-private-types --drop-undefined-syms \
    --no-corpus-path --no-comp-dir-path --short-locs --out-file "$out.tmp" "$lib"
mv "$out.tmp" "$out"

printf 'refresh-baseline.sh: wrote %s from %s\n' "${out#"$root"/}" "$lib"
sed -n "s/.*<elf-symbol name='[^']*' version='\([^']*\)'.*is-defined='yes'.*/\1/p" "$out" |
    sort | uniq -c | while read -r count node; do
        printf '  %s: %s symbols\n' "$node" "$count"
    done
