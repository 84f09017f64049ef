#!/usr/bin/env bash
# Fails when libnq.so.1 breaks the ABI recorded in a baseline, or grows it
# in a way a later check could not protect.
#
#   1. abidiff compares the baseline (an abidw file, abi/libnq-*.abi) with
#      the library, seeing only the types of the public headers.  Exit bit 8
#      (a change abidiff knows is incompatible, such as a removed symbol)
#      fails.  Bit 4 (some change) passes only when the change is additions:
#      abidiff gives bit 4 alone to changed function signatures and public
#      types too, so any removed or changed function or variable fails.
#   2. Every symbol the baseline lacks must be bound to a version node the
#      baseline lacks too: a released node (NQ_1.0) is frozen, additions go
#      into a new one (NQ_1.1) declared in abi/libnq.map.
#
# Usage: abi_check.sh HEADERS_DIR LIBNQ_SO BASELINE...
#   HEADERS_DIR  the public headers (abi/include/nq)
#   LIBNQ_SO     libnq.so.1, built with -g
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: $0 HEADERS_DIR LIBNQ_SO BASELINE..." >&2; exit 2; }
headers=$1
lib=$2
shift 2

# The library's defined, versioned dynamic symbols as name@@NODE (default
# version) or name@NODE, without the ABS symbols that name the nodes.
lib_symbols() {
    readelf --dyn-syms -W "$1" |
        awk '$1 ~ /^[0-9]+:$/ && NF >= 8 && $7 != "UND" && $7 != "ABS" && $5 != "LOCAL" { print $8 }' |
        sort -u
}

# The baseline's defined symbols in the same form.
baseline_symbols() {
    perl -ne '
        next unless /<elf-symbol\b/ && /is-defined=.yes./;
        my ($name) = /\bname=.([^\x27"]+)/;
        my ($node) = /\sversion=.([^\x27"]+)/;
        my $sep = /is-default-version=.yes./ ? "@@" : "@";
        print defined $node ? "$name$sep$node\n" : "$name\n";' "$1" | sort -u
}

# Without debug information abidiff sees symbols only, and would pass a
# changed function or type.
readelf -S -W "$lib" | grep -q '\.debug_info' ||
    { echo "abi_check: $lib has no debug information; build it with -g and unstripped" >&2; exit 1; }

failed=0
for baseline in "$@"; do
    name=$(basename "$baseline")
    printf '== %s against %s\n' "$lib" "$name"
    [ -r "$baseline" ] || { echo "abi_check: cannot read $baseline" >&2; exit 1; }

    rc=0
    report=$(abidiff --headers-dir1 "$headers" --headers-dir2 "$headers" \
        "$baseline" "$lib" 2>&1) || rc=$?
    printf '%s\n' "$report" | sed '/^$/d; s/^/  /'
    if [ $((rc & 3)) -ne 0 ]; then
        echo "abi_check: FAIL: abidiff could not compare (exit $rc)" >&2
        failed=1
        continue
    elif [ $((rc & 8)) -ne 0 ]; then
        echo "abi_check: FAIL: incompatible change against $name (abidiff exit $rc)" >&2
        failed=1
        continue
    fi
    # The summary lines: "Functions changes summary: 0 Removed, 1 Changed
    # (30 filtered out), 0 Added functions", and the same for variables and
    # for symbols without debug information.
    altered=$(printf '%s\n' "$report" | perl -ne '
        next unless /changes summary:/;
        $n += $1 while /(\d+) (?:Removed|Changed)\b/g;
        END { print $n + 0 }')
    if [ "$altered" -ne 0 ] || printf '%s\n' "$report" | grep -q 'SONAME changed'; then
        echo "abi_check: FAIL: functions, variables or types of $name were removed or changed" \
            "(abidiff exit $rc)" >&2
        failed=1
        continue
    fi

    base=$(baseline_symbols "$baseline")
    [ -n "$base" ] || { echo "abi_check: $baseline records no symbols" >&2; exit 1; }
    frozen=$(printf '%s\n' "$base" | sed -n 's/.*@//p' | sort -u)
    added=$(comm -13 <(printf '%s\n' "$base") <(lib_symbols "$lib"))
    misplaced=""
    while read -r sym; do
        [ -n "$sym" ] || continue
        node=${sym##*@}
        if [ "$node" = "$sym" ] || printf '%s\n' "$frozen" | grep -qxF "$node"; then
            misplaced+="$sym"$'\n'
        fi
    done <<<"$added"
    if [ -n "$misplaced" ]; then
        echo "abi_check: FAIL: symbols added to a node $name already has; declare them in a" \
            "new version node (NQ_1.1 { global: ...; } NQ_1.0;) in abi/libnq.map:" >&2
        printf '%s' "$misplaced" | sed 's/^/    /' >&2
        failed=1
        continue
    fi
    if [ -n "$added" ]; then
        printf 'abi_check: compatible additions:\n%s\n' "$(printf '%s\n' "$added" | sed 's/^/    /')"
    fi
    echo "abi_check: PASS against $name (abidiff exit $rc)"
done
exit "$failed"
