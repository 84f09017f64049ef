#!/usr/bin/env bash
# Installs a libnq build tree into a scratch prefix and uses it from outside,
# as another project would: through find_package(nq) (shared and static
# library) and through pkg-config (shared, and static with --static).
#
# Usage: install_consumer.sh SOURCE_DIR BUILD_DIR WORK_DIR C_COMPILER GENERATOR VERSION
#   SOURCE_DIR  the libnq source tree        BUILD_DIR  its build tree
#   WORK_DIR    scratch space, wiped first   VERSION    the project version
# NQ_CMAKE in the environment names the cmake to use (default: cmake on PATH).
set -euo pipefail

[ $# -eq 6 ] || { echo "usage: $0 SOURCE_DIR BUILD_DIR WORK_DIR C_COMPILER GENERATOR VERSION" >&2; exit 2; }
source_dir=$1
build_dir=$2
work=$3
cc=$4
generator=$5
version=$6

consumer_src=$source_dir/tests/packaging/consumer
prefix=$work/prefix
run_timeout=60
cmake=${NQ_CMAKE:-cmake}

fail() { printf 'install_consumer: FAIL: %s\n' "$*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

# Runs a consumer binary and checks that it printed OK.
run_consumer() {
    local out
    out=$(timeout "$run_timeout" "$@" 2>&1) || fail "$* failed (exit $?): $out"
    printf '%s\n' "$out"
    case $out in OK*) ;; *) fail "$* did not print OK: $out" ;; esac
}

# Fails unless the binary's NEEDED entries do (want=yes) or do not (want=no)
# include libnq.so.1.
check_needs_libnq() {
    local bin=$1 want=$2 needed
    needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    case " $needed " in
        *" libnq.so.1 "*) [ "$want" = yes ] || fail "$bin links libnq.so.1 dynamically: $needed" ;;
        *) [ "$want" = no ] || fail "$bin does not need libnq.so.1: $needed" ;;
    esac
    echo "$bin needs: $needed"
}

rm -rf "$work"
mkdir -p "$work"

step "cmake --install $build_dir --prefix $prefix"
"$cmake" --install "$build_dir" --prefix "$prefix" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; fail "cmake --install failed"; }
sed 's/^/  /' "$work/install.log"

step "installed layout"
header=$prefix/include/nq/nq.h
[ -f "$header" ] || fail "$header is missing"
cmp -s "$header" "$source_dir/abi/include/nq/nq.h" || fail "$header differs from abi/include/nq/nq.h"
pc_file=$(find "$prefix" -path '*/pkgconfig/nq.pc' | head -n 1)
[ -n "$pc_file" ] || fail "no pkgconfig/nq.pc under $prefix"
libdir=$(dirname "$(dirname "$pc_file")")
[ -f "$libdir/libnq.so.$version" ] && [ ! -L "$libdir/libnq.so.$version" ] ||
    fail "$libdir/libnq.so.$version is missing or not a regular file"
[ "$(readlink "$libdir/libnq.so.1")" = "libnq.so.$version" ] ||
    fail "$libdir/libnq.so.1 is not a symlink to libnq.so.$version"
[ "$(readlink "$libdir/libnq.so")" = "libnq.so.1" ] ||
    fail "$libdir/libnq.so is not a symlink to libnq.so.1"
[ -f "$libdir/libnq.a" ] || fail "$libdir/libnq.a is missing"
for f in nqConfig.cmake nqConfigVersion.cmake nqTargets.cmake nqStaticTargets.cmake; do
    [ -f "$libdir/cmake/nq/$f" ] || fail "$libdir/cmake/nq/$f is missing"
done
# The manual pages, when the build makes them (NQ_BUILD_MAN): libnq(3) and a
# page per function, and nq(1) with the tool.
if grep -q '^NQ_BUILD_MAN:BOOL=ON$' "$build_dir/CMakeCache.txt"; then
    pages=$(cd "$build_dir/man" && ls man3/*.3)
    if grep -q '^NQ_BUILD_TOOLS:BOOL=ON$' "$build_dir/CMakeCache.txt"; then
        pages="$pages man1/nq.1"
    fi
    for f in $pages; do
        cmp -s "$prefix/share/man/$f" "$build_dir/man/$f" || fail "share/man/$f is not installed"
    done
    echo "the manual pages are under share/man: $(cd "$prefix/share/man" && ls man3 | wc -l) in man3, $(ls "$prefix/share/man/man1" 2>/dev/null | tr '\n' ' ')in man1"
fi
echo "header, libnq.so.$version, libnq.so.1, libnq.so, libnq.a, nq.pc and the CMake package are in place"

cmake_args=(-G "$generator" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)

step "find_package(nq 1.0) for the shared library asks for nothing else"
"$cmake" -S "$consumer_src" -B "$work/consumer-shared" "${cmake_args[@]}" -DNQ_CONSUMER_STATIC=OFF \
    >"$work/configure-shared.log" 2>&1 ||
    { cat "$work/configure-shared.log"; fail "configuring the shared-only consumer failed"; }
if grep -Ei 'protobuf|c-ares|re2|grpc|paho|absl|zlib|openssl' "$work/configure-shared.log"; then
    fail "find_package(nq) looked for the static library's dependencies (above)"
fi
"$cmake" --build "$work/consumer-shared" >"$work/build-shared.log" 2>&1 ||
    { cat "$work/build-shared.log"; fail "building the shared-only consumer failed"; }
run_consumer "$work/consumer-shared/consumer_shared"

step "find_package(nq 1.0 COMPONENTS static) from an out-of-tree project"
"$cmake" -S "$consumer_src" -B "$work/consumer" "${cmake_args[@]}" >"$work/configure.log" 2>&1 ||
    { cat "$work/configure.log"; fail "configuring the consumer failed"; }
grep 'Found nq' "$work/configure.log"
found_dir=$(sed -n 's/^nq_DIR:PATH=//p' "$work/consumer/CMakeCache.txt")
case $found_dir in
    "$prefix"/*) ;;
    *) fail "find_package(nq) found $found_dir, not the package under $prefix" ;;
esac
"$cmake" --build "$work/consumer" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; fail "building the consumer failed"; }
check_needs_libnq "$work/consumer/consumer_shared" yes
resolved=$(ldd "$work/consumer/consumer_shared" | sed -n 's/^[[:space:]]*libnq\.so\.1 => \([^ ]*\).*/\1/p')
case $resolved in
    "$libdir"/*) ;;
    *) fail "consumer_shared loads libnq.so.1 from '$resolved', not from $libdir" ;;
esac
run_consumer "$work/consumer/consumer_shared"
check_needs_libnq "$work/consumer/consumer_static" no
run_consumer "$work/consumer/consumer_static"

step "find_package(nq 2.0) is refused (SameMajorVersion)"
if "$cmake" -S "$consumer_src" -B "$work/consumer-v2" "${cmake_args[@]}" -DNQ_CONSUMER_VERSION=2.0 \
    >"$work/configure-v2.log" 2>&1; then
    fail "find_package(nq 2.0) accepted the installed $version"
fi
grep -q 'requested version "2.0"' "$work/configure-v2.log" ||
    { cat "$work/configure-v2.log"; fail "find_package(nq 2.0) failed for another reason"; }
echo "refused as expected"

step "pkg-config nq"
export PKG_CONFIG_PATH=$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
pc_version=$(pkg-config --modversion nq) || fail "pkg-config cannot read nq.pc"
[ "$pc_version" = "$version" ] || fail "pkg-config says version $pc_version, expected $version"
flags=$(pkg-config --cflags --libs nq)
echo "pkg-config --cflags --libs nq: $flags"
# The public header must compile cleanly in strict C11.
strict=(-std=c11 -Wall -Wextra -pedantic -Werror)
# shellcheck disable=SC2086  # pkg-config output is a list of words
"$cc" "${strict[@]}" "$consumer_src/consumer.c" $flags -o "$work/consumer_pc" ||
    fail "compiling with pkg-config --cflags --libs nq failed"
check_needs_libnq "$work/consumer_pc" yes
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} run_consumer "$work/consumer_pc"

static_libs=$(pkg-config --static --libs nq)
echo "pkg-config --static --libs nq: $static_libs"
case " $static_libs " in *" -pthread "*) ;; *) fail "--static --libs lacks -pthread" ;; esac
case " $static_libs " in *" -lssl "*) ;; *) fail "--static --libs lacks OpenSSL's -lssl" ;; esac
# Put libnq.a where -lnq stands, so only the private dependencies come from
# pkg-config.
static_words=()
for word in $static_libs; do
    if [ "$word" = -lnq ]; then static_words+=("$libdir/libnq.a"); else static_words+=("$word"); fi
done
# shellcheck disable=SC2046
"$cc" "${strict[@]}" $(pkg-config --cflags nq) "$consumer_src/consumer.c" "${static_words[@]}" \
    -o "$work/consumer_pc_static" || fail "linking libnq.a with pkg-config --static --libs nq failed"
check_needs_libnq "$work/consumer_pc_static" no
run_consumer "$work/consumer_pc_static"

echo
echo "install_consumer: PASS"
