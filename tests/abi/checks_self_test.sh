#!/usr/bin/env bash
# Shows that the two ABI tests catch what they are for.  libnq.a is
# relinked into libnq.so.1 variants with edited version scripts, and each
# variant must pass or fail abi_check.sh and versioned_client_test.sh as
# stated:
#
#   variant                                abi_check  versioned client
#   relinked unchanged                     pass       runs
#   nq_put left out of the version script  fail       fails to load
#   nq_put moved to a new node             fail       fails to load
#   a new symbol added to a released node  fail       runs
#   a new symbol added in a new node       pass       runs
#
# and a library rebuilt from a copy of the tree whose nq_chunk has an
# unsigned int len instead of a size_t must fail abi_check.sh.
#
# Usage: checks_self_test.sh LIBNQ_A NQ_PC BASELINE SOURCE_DIR WORK_DIR
#   LIBNQ_A     libnq.a built with -g (tools/abi/build-lib.sh builds one)
#   NQ_PC       the nq.pc of the same build, for the libraries to link
#   BASELINE    the ABI baseline (abi/libnq-1.0.abi)
#   SOURCE_DIR  the libnq source tree   WORK_DIR  scratch space, wiped first
# CC in the environment names the compiler (default cc).
set -euo pipefail

[ $# -eq 5 ] || { echo "usage: $0 LIBNQ_A NQ_PC BASELINE SOURCE_DIR WORK_DIR" >&2; exit 2; }
archive=$1
pc=$2
baseline=$3
src=$4
work=$5
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
map=$src/abi/libnq.map
new_node=NQ_SELFTEST

fail() { printf 'checks_self_test: FAIL: %s\n' "$*" >&2; exit 1; }

grep -q '^[[:space:]]*nq_put;' "$map" || fail "$map does not list nq_put on a line of its own"
# What libnq.a's users link besides it, from the same build's nq.pc.
libs="$(sed -n 's/^Libs.private: *//p' "$pc") $(pkg-config --libs openssl)"

rm -rf "$work"
mkdir -p "$work"
cat >"$work/added.c" <<'SRC'
int nq_selftest_added(void);
__attribute__((visibility("default"))) int nq_selftest_added(void)
{
    return 1;
}
SRC
"$cc" -g -fPIC -c "$work/added.c" -o "$work/added.o"

# variant NAME MAP_EDIT [EXTRA_OBJECT]: links $work/NAME/libnq.so.1 with the
# version script edited by the perl expression MAP_EDIT.
variant() {
    local name=$1 edit=$2 extra=${3:-}
    mkdir -p "$work/$name"
    perl -0pe "$edit" "$map" >"$work/$name/libnq.map"
    # shellcheck disable=SC2086  # $libs is a list of linker flags
    "$cc" -shared -o "$work/$name/libnq.so.1" -Wl,-soname,libnq.so.1 \
        -Wl,--version-script="$work/$name/libnq.map" \
        -Wl,--whole-archive "$archive" -Wl,--no-whole-archive $extra $libs ||
        fail "linking the variant $name failed"
}

# expect NAME CHECK_WANT CLIENT_WANT: runs both tests on variant NAME and
# compares their outcome (pass or fail) with what is wanted.
expect() {
    local name=$1 check_want=$2 client_want=$3 got
    printf '\n== variant %s: abi_check should %s, the 1.0 client should %s\n' \
        "$name" "$check_want" "$client_want"
    got=pass
    bash "$here/abi_check.sh" "$src/abi/include/nq" "$work/$name/libnq.so.1" "$baseline" \
        >"$work/$name/check.log" 2>&1 || got=fail
    sed 's/^/  | /' "$work/$name/check.log"
    [ "$got" = "$check_want" ] || fail "abi_check.sh should $check_want on variant $name, it did $got"
    got=pass
    bash "$here/versioned_client_test.sh" "$work/$name/libnq.so.1" "$baseline" \
        "$src/abi/include" "$work/$name/client" >"$work/$name/client.log" 2>&1 || got=fail
    sed 's/^/  | /' "$work/$name/client.log"
    [ "$got" = "$client_want" ] ||
        fail "versioned_client_test.sh should $client_want on variant $name, it did $got"
}

# The edits are perl code, hence in single quotes.
# shellcheck disable=SC2016
{
    variant unchanged ''
    variant put_hidden 's/^[ \t]*nq_put;[ \t]*\n//m'
    variant put_moved 's/^[ \t]*nq_put;[ \t]*\n//m; $_ .= "'$new_node' {\n  global:\n    nq_put;\n};\n"'
    variant added_to_released_node 's/^([ \t]*)nq_put;/$1nq_put;\n$1nq_selftest_added;/m' "$work/added.o"
    variant added_in_new_node '$_ .= "'$new_node' {\n  global:\n    nq_selftest_added;\n};\n"' "$work/added.o"
}

# The public type change needs a real build: the tree is copied without its
# build trees, nq.h edited and libnq.so.1 built from the copy.
type_changed() {
    local copy=$work/type_changed/src got=pass
    printf '\n== variant type_changed: abi_check should fail\n'
    mkdir -p "$copy"
    tar -C "$src" --exclude-vcs --exclude='./build*' --exclude='./bazel-*' -cf - . | tar -C "$copy" -xf -
    perl -0pi -e 's/(typedef struct nq_chunk \{\s*const void \*data;\s*)size_t len;/$1unsigned int len;/
        or die "nq_chunk is not { const void *data; size_t len; }\n"' "$copy/abi/include/nq/nq.h" ||
        fail "cannot narrow nq_chunk.len in the copy of nq.h"
    bash "$copy/tools/abi/build-lib.sh" "$work/type_changed/build" >"$work/type_changed/build.log" 2>&1 ||
        { tail -n 30 "$work/type_changed/build.log" >&2; fail "building the variant type_changed failed"; }
    bash "$here/abi_check.sh" "$src/abi/include/nq" "$work/type_changed/build/libnq.so.1" "$baseline" \
        >"$work/type_changed/check.log" 2>&1 || got=fail
    sed 's/^/  | /' "$work/type_changed/check.log"
    [ "$got" = fail ] || fail "abi_check.sh should fail on variant type_changed, it did $got"
}

expect unchanged pass pass
expect put_hidden fail fail
expect put_moved fail fail
expect added_to_released_node fail pass
expect added_in_new_node pass pass
type_changed

echo
echo "checks_self_test: PASS: both ABI tests tell each variant apart as stated"
