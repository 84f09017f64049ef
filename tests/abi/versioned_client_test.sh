#!/usr/bin/env bash
# Proves that symbol versioning keeps old programs running: a program built
# against the released libnq.so.1 runs against the library being built.
#
# The released library is rebuilt from the ABI baseline as a stub with the
# same SONAME, symbols and version nodes (the linker reads nothing else
# from it).  client_1_0.c, plus a table referring to every symbol of the
# release, is linked against that stub, so its references carry the
# release's versions (nq_put@NQ_1.0, ...), exactly as in a program linked
# against the release.  It is then run against LIBNQ_SO with every symbol
# bound at start-up (LD_BIND_NOW): a symbol that was removed or moved to
# another version node stops it from loading.
#
# Usage: versioned_client_test.sh LIBNQ_SO BASELINE INCLUDE_DIR WORK_DIR
#   LIBNQ_SO     the libnq.so.1 to run against
#   BASELINE     the release's ABI (abi/libnq-1.0.abi)
#   INCLUDE_DIR  the public include directory (abi/include)
#   WORK_DIR     scratch space, wiped first
# CC in the environment names the compiler (default cc).
set -euo pipefail

[ $# -eq 4 ] || { echo "usage: $0 LIBNQ_SO BASELINE INCLUDE_DIR WORK_DIR" >&2; exit 2; }
lib=$1
baseline=$2
include=$3
work=$4
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}

fail() { printf 'versioned_client_test: FAIL: %s\n' "$*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work/release"

# "kind name node default" for every defined symbol of the baseline; kind is
# func or object, default yes or no.
perl -ne '
    next unless /<elf-symbol\b/ && /is-defined=.yes./;
    my ($name) = /\bname=.([^\x27"]+)/;
    my ($node) = /\sversion=.([^\x27"]+)/;
    my $kind = /type=.object-type./ ? "object" : "func";
    my $default = /is-default-version=.yes./ ? "yes" : "no";
    print "$kind $name $node $default\n" if defined $node;' "$baseline" >"$work/symbols"
[ -s "$work/symbols" ] || fail "$baseline records no versioned symbols"
nodes=$(cut -d' ' -f3 "$work/symbols" | sort -u -V)

# The stub: every symbol defined with its node.  Non-default versions
# (name@NODE) are bound with .symver to a local definition.
{
    echo "/* Generated from $(basename "$baseline"). */"
    n=0
    while read -r kind name node default; do
        n=$((n + 1))
        def=$name
        [ "$default" = yes ] || def=nqt_old_$n
        if [ "$kind" = object ]; then
            echo "char ${def}[64];"
        else
            echo "void $def(void);"
            echo "void $def(void) {}"
        fi
        [ "$default" = yes ] || echo "__asm__(\".symver $def, $name@$node\");"
    done <"$work/symbols"
} >"$work/release/release.c"
{
    prev=
    for node in $nodes; do
        echo "$node {"
        globals=$(awk -v node="$node" '$3 == node && $4 == "yes" { print "    " $2 ";" }' "$work/symbols")
        [ -z "$globals" ] || printf '  global:\n%s\n' "$globals"
        [ -n "$prev" ] || printf '  local:\n    *;\n'
        echo "}${prev:+ $prev};"
        prev=$node
    done
} >"$work/release/release.map"
"$cc" -shared -fPIC -o "$work/release/libnq.so.1" -Wl,-soname,libnq.so.1 \
    -Wl,--version-script="$work/release/release.map" "$work/release/release.c" ||
    fail "building the release stub failed"
ln -s libnq.so.1 "$work/release/libnq.so"

# A reference to every default-version symbol, as a program using the whole
# release would have.
{
    echo "/* Generated from $(basename "$baseline"). */"
    awk '$4 == "yes" && $1 == "func" { print "extern void " $2 "(void);" }
         $4 == "yes" && $1 == "object" { print "extern char " $2 "[];" }' "$work/symbols"
    echo "void *nqt_release_objects[] = {0,"
    awk '$4 == "yes" && $1 == "object" { print "    " $2 "," }' "$work/symbols"
    echo "};"
    echo "void (*nqt_release_functions[])(void) = {0,"
    awk '$4 == "yes" && $1 == "func" { print "    " $2 "," }' "$work/symbols"
    echo "};"
} >"$work/refs.c"

"$cc" -std=c11 -Wall -Wextra -pedantic -Werror -I"$include" "$here/client_1_0.c" "$work/refs.c" \
    -L"$work/release" -lnq -pthread -o "$work/client_1_0" ||
    fail "building client_1_0 against the release stub failed"

# Its references must name the release's nodes.
want=$(awk '$4 == "yes" { print $2 "@" $3 }' "$work/symbols" | sort)
have=$(readelf --dyn-syms -W "$work/client_1_0" |
    awk '$7 == "UND" && $8 ~ /^nq_/ { print $8 }' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$want") <(printf '%s\n' "$have"))
[ -z "$missing" ] || fail "client_1_0 lacks versioned references:
$missing
it has:
$have"
echo "client_1_0 refers to $(printf '%s\n' "$want" | wc -l) symbols at $(printf '%s\n' "$nodes" | tr '\n' ' ')"

libdir=$(cd "$(dirname "$lib")" && pwd)
[ "$(basename "$lib")" = libnq.so.1 ] || fail "$lib is not named libnq.so.1"
resolved=$(LD_LIBRARY_PATH=$libdir ldd "$work/client_1_0" |
    sed -n 's/^[[:space:]]*libnq\.so\.1 => \([^ ]*\).*/\1/p')
[ "$resolved" = "$libdir/libnq.so.1" ] || fail "client_1_0 would load '$resolved', not $libdir/libnq.so.1"

rc=0
out=$(LD_LIBRARY_PATH=$libdir LD_BIND_NOW=1 timeout 60 "$work/client_1_0" 2>&1) || rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 0 ] || fail "client_1_0 exited with $rc against $lib"
case $out in OK*) ;; *) fail "client_1_0 did not print OK" ;; esac
echo "versioned_client_test: PASS: a program linked against $(basename "$baseline")'s symbols runs on $lib"
