#!/usr/bin/env bash
# Installs the Debian packages built by packaging/build-debs.sh on this
# machine, uses them as an outside project would, and removes them again.
#
#   1. The packages hold what they should (libnq-dev a manual page for
#      every function of nq.h, nq-tools nq(1)), and their Depends name the
#      package of every library their binaries need (dpkg-shlibdeps's work),
#      nq-tools needing libnq1.
#   2. dpkg -i libnq1, libnq-dev and nq-tools; `man nq`, `man libnq` and
#      `man 3 nq_open` find and show their pages.
#   3. echo_client (tests/debian/consumer) is built twice, with
#      `pkg-config --cflags --libs nq` and with CMake's find_package(nq),
#      neither told where libnq is; both link /usr/lib/<triplet>/libnq.so.1.
#   4. `nq serve --echo` from nq-tools, on a free port, echoes what both
#      clients send.
#   5. dpkg --purge removes the three packages, leaving no file (and no
#      manual page) behind.
#
# The machine is left as it was: the test refuses to start when any of the
# packages, or another libnq visible to pkg-config or the dynamic linker, is
# already there, and removes the packages on every exit.
#
# Usage: install_and_consume.sh DEB_DIR SOURCE_DIR WORK_DIR
#   DEB_DIR     the packages (libnq1_VERSION-REVISION_ARCH.deb, libnq-dev_...,
#               nq-tools_...), VERSION being CMakeLists.txt's
#   SOURCE_DIR  the libnq source tree      WORK_DIR  scratch space, wiped first
# Runs dpkg as root, through sudo when not root.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 DEB_DIR SOURCE_DIR WORK_DIR" >&2; exit 2; }
debs=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$3
packages=(libnq1 libnq-dev nq-tools)
run_timeout=60

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

installed=()
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [ ${#installed[@]} -gt 0 ]; then
        echo "install_and_consume: removing ${installed[*]}"
        $sudo dpkg --purge "${installed[@]}" >/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

fail() { printf 'install_and_consume: FAIL: %s\n' "$*" >&2; exit 1; }

# Shows the part of a CMake log that says what went wrong.
show_log() {
    if grep -q 'CMake Error' "$1"; then
        grep -A 20 -m 1 'CMake Error' "$1" >&2
    else
        tail -n 40 "$1" >&2
    fi
    echo "(whole log: $1)" >&2
}
step() { printf '\n== %s\n' "$*"; }

is_installed() {
    local status
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) || return 1
    [ "${status:1:1}" != "n" ]
}

version=$(sed -n 's/^project(libnq VERSION \([0-9][0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
arch=$(dpkg --print-architecture)
libdir=/usr/lib/$triplet

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)

step "this machine has no libnq yet"
for p in "${packages[@]}"; do
    ! is_installed "$p" || fail "$p is already installed; remove it first (dpkg --purge $p)"
done
if pkg-config --exists nq 2>/dev/null; then
    fail "pkg-config already finds an nq module ($(pkg-config --variable=pcfiledir nq)); remove that libnq first"
fi
if ldconfig -p | grep -q 'libnq\.so\.1 '; then
    fail "the dynamic linker already knows a libnq.so.1: $(ldconfig -p | grep 'libnq\.so\.1 ')"
fi
echo "none of ${packages[*]} installed, no other libnq visible"

step "package contents and dependencies"
declare -A deb
mkdir -p "$work/contents"
shopt -s nullglob
for p in "${packages[@]}"; do
    found=("$debs/${p}_${version}"-*"_$arch.deb")
    [ ${#found[@]} -eq 1 ] ||
        fail "expected one $debs/${p}_${version}-REVISION_$arch.deb, found ${#found[@]} (run packaging/build-debs.sh)"
    deb[$p]=${found[0]}
    dpkg-deb -x "${deb[$p]}" "$work/contents/$p"
done
shopt -u nullglob
# The Debian version: the upstream version and a revision.
deb_version=$(dpkg-deb -f "${deb[libnq1]}" Version)
[[ $deb_version == "$version"-[0-9]* ]] || fail "libnq1's version $deb_version is not $version-REVISION"
echo "packages of libnq $deb_version"

# has_files PACKAGE PATH...: fails unless the package holds every PATH.
has_files() {
    local p=$1 f
    shift
    for f in "$@"; do
        [ -e "$work/contents/$p$f" ] || [ -L "$work/contents/$p$f" ] || fail "$p lacks $f"
    done
}
has_files libnq1 "$libdir/libnq.so.$version" "$libdir/libnq.so.1"
has_files libnq-dev /usr/include/nq/nq.h "$libdir/libnq.so" "$libdir/libnq.a" \
    "$libdir/pkgconfig/nq.pc" "$libdir/cmake/nq/nqConfig.cmake" \
    "$libdir/cmake/nq/nqConfigVersion.cmake" "$libdir/cmake/nq/nqTargets.cmake"
has_files nq-tools /usr/bin/nq /usr/share/man/man1/nq.1.gz
# libnq(3), and a page for every function the header declares.
functions=$(sed -n 's/^NQ_API [^(]*\b\(nq_[a-z0-9_]*\)(.*/\1/p' "$src/abi/include/nq/nq.h")
[ -n "$functions" ] || fail "found no NQ_API function in nq.h"
for f in libnq $functions; do
    has_files libnq-dev "/usr/share/man/man3/$f.3.gz"
done
echo "libnq-dev has libnq(3) and $(echo "$functions" | wc -w) function pages; nq-tools has nq(1)"
[ ! -e "$work/contents/libnq1/usr/include" ] || fail "libnq1 holds headers"
[ "$(readlink "$work/contents/libnq-dev$libdir/libnq.so")" = libnq.so.1 ] ||
    fail "libnq-dev's libnq.so does not point to libnq.so.1"
cmp -s "$work/contents/libnq-dev/usr/include/nq/nq.h" "$src/abi/include/nq/nq.h" ||
    fail "libnq-dev's nq.h differs from abi/include/nq/nq.h"
if readelf -d "$work/contents/nq-tools/usr/bin/nq" | grep -Eq '\((RUN)?PATH\)'; then
    fail "/usr/bin/nq carries a run path"
fi

# depends_on PACKAGE DEP...: fails unless PACKAGE's Depends names every DEP.
depends_on() {
    local p=$1 depends dep
    shift
    depends=$(dpkg-deb -f "${deb[$p]}" Depends)
    for dep in "$@"; do
        case ", $depends," in
            *", $dep "* | *", $dep,"*) ;;
            *) fail "$p does not depend on $dep: Depends: $depends" ;;
        esac
    done
    printf '%s Depends: %s\n' "$p" "$depends"
}

# The package owning a file.  With /lib a link to /usr/lib, dpkg may know
# the file by either path.
owner_of() {
    local real candidate
    real=$(readlink -f "$1")
    for candidate in "$1" "$real" "${real#/usr}"; do
        if dpkg -S "$candidate" >"$work/owner" 2>/dev/null; then
            sed 's/:.*//' "$work/owner" | head -n 1
            return
        fi
    done
    fail "no package owns $1"
}

# same_file A B: A and B are the same file once links are followed.
same_file() {
    [ -n "$1" ] && [ -n "$2" ] && [ "$(readlink -f "$1")" = "$(readlink -f "$2")" ]
}

# The packages owning the libraries a binary needs (all but libnq itself,
# which comes from these packages), found where the dynamic linker finds
# them.
needed_packages() {
    local needed resolved lib path owners=()
    needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    resolved=$(ldd "$1")
    for lib in $needed; do
        [ "$lib" != libnq.so.1 ] || continue
        # "lib => /path (addr)", or "/path (addr)" for the dynamic linker.
        path=$(printf '%s\n' "$resolved" | awk -v lib="$lib" '
            $1 == lib && $2 == "=>" { print $3 }
            $2 != "=>" && substr($1, length($1) - length(lib)) == "/" lib { print $1 }')
        if [ -z "$path" ] || [ "$path" = "not" ]; then
            fail "$1 needs $lib, which this machine lacks"
        fi
        owners+=("$(owner_of "$path")")
    done
    printf '%s\n' "${owners[@]}" | sort -u
}
# shellcheck disable=SC2046  # one word per package
depends_on libnq1 $(needed_packages "$work/contents/libnq1$libdir/libnq.so.$version")
# shellcheck disable=SC2046
depends_on nq-tools libnq1 $(needed_packages "$work/contents/nq-tools/usr/bin/nq")
depends_on libnq-dev libnq1 libssl-dev libpaho-mqtt-dev libgrpc-dev
# nq-tools needs the libnq1 that brought the newest version node it uses,
# as libnq1's symbols file says ((symver)NQ_1.x 1.x.0).
newest_node=$(objdump -T "$work/contents/nq-tools/usr/bin/nq" | grep -o 'NQ_1\.[0-9]*' | sort -uV | tail -n 1)
[ -n "$newest_node" ] || fail "nq uses no versioned libnq symbol"
min_version=$(dpkg-deb -I "${deb[libnq1]}" symbols | awk -v node="$newest_node" '$1 == node "@" node || $1 == "(symver)" node { print $2 }')
[ -n "$min_version" ] || fail "libnq1's symbols file has no line for $newest_node"
case $(dpkg-deb -f "${deb[nq-tools]}" Depends) in
    *"libnq1 (>= $min_version)"*) ;;
    *) fail "nq-tools should need libnq1 (>= $min_version) for $newest_node, from libnq1's symbols file" ;;
esac
case $(dpkg-deb -f "${deb[libnq-dev]}" Depends) in
    *"libnq1 (= $deb_version)"*) ;;
    *) fail "libnq-dev should need exactly libnq1 (= $deb_version)" ;;
esac

step "dpkg -i ${packages[*]}"
installed=("${packages[@]}")
$sudo dpkg -i "${deb[libnq1]}" "${deb[libnq-dev]}" "${deb[nq-tools]}" >"$work/dpkg-install.log" 2>&1 ||
    { cat "$work/dpkg-install.log" >&2; fail "dpkg -i failed"; }
sed 's/^/  /' "$work/dpkg-install.log"
same_file "$(ldconfig -p | awk '$1 == "libnq.so.1" { print $NF; exit }')" "$libdir/libnq.so.1" ||
    fail "ldconfig does not list $libdir/libnq.so.1"
tool_version=$(/usr/bin/nq version) || fail "nq version failed"
[ "$tool_version" = "$version" ] || fail "nq version printed '$tool_version', expected $version"
echo "nq version: $tool_version"

# uses_system_libnq BINARY: fails unless BINARY loads $libdir/libnq.so.1.
uses_system_libnq() {
    local resolved
    resolved=$(ldd "$1" | sed -n 's/^[[:space:]]*libnq\.so\.1 => \([^ ]*\).*/\1/p')
    same_file "$resolved" "$libdir/libnq.so.1" || fail "$1 loads libnq.so.1 from '$resolved'"
    if readelf -d "$1" | grep -Eq '\((RUN)?PATH\)'; then
        fail "$1 carries a run path"
    fi
    echo "$1 loads $resolved"
}
uses_system_libnq /usr/bin/nq

step "manual pages"
# man_page SECTION NAME PATH TEXT: `man -w` finds NAME at PATH, and `man`
# shows TEXT (from its NAME line) on it.
man_page() {
    local section=$1 name=$2 want=$3 text=$4 found shown
    found=$(man -w ${section:+"$section"} "$name" 2>&1) || fail "man -w $section $name: $found"
    [ "$found" = "$want" ] || fail "man -w $section $name found $found, not $want"
    shown=$(MANWIDTH=80 man -P cat ${section:+"$section"} "$name" 2>/dev/null | col -b) ||
        fail "man $section $name cannot show $found"
    case $shown in
        *"$text"*) ;;
        *) fail "man $section $name does not say \"$text\": $(printf '%s\n' "$shown" | head -n 5)" ;;
    esac
    echo "man $section${section:+ }$name: $found"
}
man_page "" nq /usr/share/man/man1/nq.1.gz "nq - network queues from the command line"
man_page "" libnq /usr/share/man/man3/libnq.3.gz "libnq - network queues"
man_page 3 nq_open /usr/share/man/man3/nq_open.3.gz "nq_open - opens a communicator"

step "echo_client with pkg-config --cflags --libs nq"
pc_version=$(pkg-config --modversion nq) || fail "pkg-config cannot find nq"
[ "$pc_version" = "$version" ] || fail "pkg-config says nq $pc_version, expected $version"
[ "$(pkg-config --variable=pcfiledir nq)" = "$libdir/pkgconfig" ] ||
    fail "pkg-config uses the nq.pc in $(pkg-config --variable=pcfiledir nq)"
if [ "$(pkg-config --variable=includedir nq)" != /usr/include ] ||
    [ "$(pkg-config --variable=libdir nq)" != "$libdir" ]; then
    fail "nq.pc should name /usr/include and $libdir: $(cat "$libdir/pkgconfig/nq.pc")"
fi
flags=$(pkg-config --cflags --libs nq)
echo "pkg-config --cflags --libs nq: $flags"
# shellcheck disable=SC2086  # pkg-config output is a list of words
cc -std=c11 -Wall -Wextra -pedantic -Werror "$src/tests/debian/consumer/echo_client.c" $flags \
    -o "$work/echo_client_pc" || fail "building with pkg-config failed"
uses_system_libnq "$work/echo_client_pc"

step "echo_client with find_package(nq)"
cmake -S "$src/tests/debian/consumer" -B "$work/cmake" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON >"$work/cmake-configure.log" 2>&1 ||
    { show_log "$work/cmake-configure.log"; fail "configuring the CMake consumer failed"; }
grep 'Found nq' "$work/cmake-configure.log"
nq_dir=$(sed -n 's/^nq_DIR:PATH=//p' "$work/cmake/CMakeCache.txt")
[ "$nq_dir" = "$libdir/cmake/nq" ] || fail "find_package(nq) found '$nq_dir', not $libdir/cmake/nq"
cmake --build "$work/cmake" >"$work/cmake-build.log" 2>&1 ||
    { show_log "$work/cmake-build.log"; fail "building the CMake consumer failed"; }
uses_system_libnq "$work/cmake/echo_client"

step "both clients against nq serve --echo"
: >"$work/serve.out"
/usr/bin/nq serve --port 0 --echo >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
line=""
for _ in $(seq 100); do
    line=$(head -n 1 "$work/serve.out")
    [ -n "$line" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.err" >&2; fail "nq serve exited"; }
    sleep 0.1
done
[[ $line =~ ^listening\ 127\.0\.0\.1\ ([0-9]+)$ ]] || fail "nq serve printed '$line'"
port=${BASH_REMATCH[1]}
echo "nq serve listens on port $port"
for client in "$work/echo_client_pc" "$work/cmake/echo_client"; do
    out=$(timeout "$run_timeout" "$client" 127.0.0.1 "$port" "hello from $(basename "$client")" \
        "second message") || fail "$client failed: $out"
    printf '%s: %s\n' "$(basename "$client")" "$out"
    case $out in OK*) ;; *) fail "$client did not print OK" ;; esac
done
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[ "$rc" -eq 0 ] || { cat "$work/serve.err" >&2; fail "nq serve exited with $rc on SIGTERM"; }
received=$(tail -n +2 "$work/serve.out" | wc -l)
[ "$received" -eq 4 ] || { cat "$work/serve.out" >&2; fail "nq serve printed $received messages, expected 4"; }
sed 's/^/  serve: /' "$work/serve.out"

step "dpkg --purge ${packages[*]}"
$sudo dpkg --purge nq-tools libnq-dev libnq1 >"$work/dpkg-purge.log" 2>&1 ||
    { cat "$work/dpkg-purge.log" >&2; fail "dpkg --purge failed"; }
installed=()
for p in "${packages[@]}"; do
    ! is_installed "$p" || fail "$p is still installed"
done
for f in /usr/include/nq "$libdir/libnq.so.1" "$libdir/libnq.so" "$libdir/libnq.a" \
    "$libdir/pkgconfig/nq.pc" "$libdir/cmake/nq" /usr/bin/nq /usr/share/man/man1/nq.1.gz \
    /usr/share/man/man3/libnq.3.gz /usr/share/man/man3/nq_open.3.gz /usr/share/doc/libnq-dev; do
    if [ -e "$f" ] || [ -L "$f" ]; then
        fail "$f is left after purging"
    fi
done
! man -w nq >/dev/null 2>&1 || fail "man still finds a page nq: $(man -w nq 2>&1)"
! ldconfig -p | grep -q 'libnq\.so\.1 ' || fail "ldconfig still lists libnq.so.1"
echo "removed; no file left behind"

echo
echo "install_and_consume: PASS"
