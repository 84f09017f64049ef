#!/usr/bin/env bash
# Installs the Debian packages built by packaging/build-debs.sh on this
# machine, uses them as an outside project would, and removes them again.
#
#   1. The packages hold what they should (libnq-dev a manual page for
#      every function of nq.h, nq-tools nq(1), the bindings their modules,
#      jar and Go source), and their Depends name the package of every
#      library their binaries need (dpkg-shlibdeps's work), nq-tools and
#      the Python and Java bindings needing libnq1.
#   2. dpkg -i every package; `man nq`, `man libnq` and `man 3 nq_open`
#      find and show their pages.
#   3. echo_client (tests/debian/consumer) is built twice, with
#      `pkg-config --cflags --libs nq` and with CMake's find_package(nq),
#      neither told where libnq is; both link /usr/lib/<triplet>/libnq.so.1.
#   4. `nq serve --echo` from nq-tools, on a free port, echoes what both
#      clients send.
#   5. The bindings, used from a folder outside the source tree as their
#      users would: consumer/echo.py run by /usr/bin/python3 as a server
#      and as its client (python3-libnq); Echo.java built with
#      `javac -cp /usr/share/java/libnq.jar` and run with `java -cp`, no
#      java.library.path given (libnq-java); echo.go built by `go build` in
#      a module that requires the Go binding, replaced by its source under
#      /usr/share/gocode, offline (golang-github-libnq-libnq-dev, Go >= 1.21
#      from PATH or /usr/local/go).
#   6. dpkg --purge removes every package, leaving no file (and no manual
#      page, no compiled Python) behind.
#
# The machine is left as it was: the test refuses to start when any of the
# packages, or another libnq visible to pkg-config or the dynamic linker, is
# already there, and removes the packages on every exit.
#
# Usage: install_and_consume.sh DEB_DIR SOURCE_DIR WORK_DIR
#   DEB_DIR     the packages (libnq1_VERSION-REVISION_ARCH.deb, libnq-dev_...,
#               nq-tools_..., python3-libnq_..., libnq-java_...,
#               golang-github-libnq-libnq-dev_VERSION-REVISION_all.deb),
#               VERSION being CMakeLists.txt's
#   SOURCE_DIR  the libnq source tree      WORK_DIR  scratch space, wiped first
# Runs dpkg as root, through sudo when not root.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 DEB_DIR SOURCE_DIR WORK_DIR" >&2; exit 2; }
debs=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$3
packages=(libnq1 libnq-dev nq-tools python3-libnq libnq-java golang-github-libnq-libnq-dev)
run_timeout=60
# Debian's interpreter, the one python3-libnq is for (not a python3 that
# PATH may name first).
python=/usr/bin/python3
go_path=github.com/libnq/libnq/bindings/go/nq
go_src=/usr/share/gocode/src/$go_path

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
if (cd / && "$python" -I -c 'import nq' 2>/dev/null); then
    fail "$python already imports a module nq ($(cd / && "$python" -I -c 'import nq; print(nq.__file__)')); remove it first"
fi
echo "none of ${packages[*]} installed, no other libnq visible"

step "package contents and dependencies"
declare -A deb
mkdir -p "$work/contents"
shopt -s nullglob
for p in "${packages[@]}"; do
    found=("$debs/${p}_${version}"-*"_$arch.deb" "$debs/${p}_${version}"-*_all.deb)
    [ ${#found[@]} -eq 1 ] ||
        fail "expected one $debs/${p}_${version}-REVISION_{$arch,all}.deb, found ${#found[@]} (run packaging/build-debs.sh)"
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

# The bindings: the Python package with its extension for Debian's python3,
# the jar and its JNI library (outside the jar), the Go module's source.
py_dir=/usr/lib/python3/dist-packages/nq
py_ext=$py_dir/_nqraw$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
has_files python3-libnq "$py_dir/__init__.py" "$py_dir/nqraw.py" "$py_dir/py.typed" "$py_ext"
jni=$libdir/jni/libnqjni.so
has_files libnq-java /usr/share/java/libnq.jar "/usr/share/java/libnq-$version.jar" "$jni"
[ "$(readlink "$work/contents/libnq-java/usr/share/java/libnq.jar")" = "libnq-$version.jar" ] ||
    fail "libnq-java's libnq.jar does not point to libnq-$version.jar"
jar tf "$work/contents/libnq-java/usr/share/java/libnq-$version.jar" >"$work/jar.list" ||
    fail "jar cannot list libnq-$version.jar"
grep -q '^org/libnq/Communicator\.class$' "$work/jar.list" || fail "libnq.jar lacks org.libnq.Communicator"
! grep -q 'libnqjni' "$work/jar.list" || fail "libnq.jar carries a JNI library; it should load $jni"
has_files golang-github-libnq-libnq-dev "$go_src/go.mod" "$go_src/nq.go" \
    "$go_src/internal/nqraw/nqraw.go" "$go_src/internal/nqraw/nqraw_wrap.cxx"
grep -qx "module $go_path" "$work/contents/golang-github-libnq-libnq-dev$go_src/go.mod" ||
    fail "the packaged go.mod does not declare module $go_path"
echo "python3-libnq has $py_dir; libnq-java has libnq.jar and $jni; the Go source is in $go_src"

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

# owner_of FILE: sets owner to the package owning FILE.  With /lib a link
# to /usr/lib, dpkg may know the file by either path.  Like every helper
# that can fail, it is not run in a $(...) subshell, whose exit would not
# stop the test.
owner_of() {
    local real candidate
    real=$(readlink -f "$1")
    for candidate in "$1" "$real" "${real#/usr}"; do
        if dpkg -S "$candidate" >"$work/owner" 2>/dev/null; then
            owner=$(sed 's/:.*//' "$work/owner" | head -n 1)
            return
        fi
    done
    fail "no package owns $1"
}

# same_file A B: A and B are the same file once links are followed.
same_file() {
    [ -n "$1" ] && [ -n "$2" ] && [ "$(readlink -f "$1")" = "$(readlink -f "$2")" ]
}

# needed_packages BINARY: sets needed to the packages owning the libraries
# BINARY needs (all but libnq itself, which comes from these packages),
# found where the dynamic linker finds them.
needed_packages() {
    local libs resolved lib path
    needed=()
    libs=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    resolved=$(ldd "$1")
    for lib in $libs; do
        [ "$lib" != libnq.so.1 ] || continue
        # "lib => /path (addr)", or "/path (addr)" for the dynamic linker.
        path=$(printf '%s\n' "$resolved" | awk -v lib="$lib" '
            $1 == lib && $2 == "=>" { print $3 }
            $2 != "=>" && substr($1, length($1) - length(lib)) == "/" lib { print $1 }')
        if [ -z "$path" ] || [ "$path" = "not" ]; then
            fail "$1 needs $lib, which this machine lacks"
        fi
        owner_of "$path"
        case " ${needed[*]} " in *" $owner "*) ;; *) needed+=("$owner") ;; esac
    done
}
needed_packages "$work/contents/libnq1$libdir/libnq.so.$version"
depends_on libnq1 "${needed[@]}"
needed_packages "$work/contents/nq-tools/usr/bin/nq"
depends_on nq-tools libnq1 "${needed[@]}"
depends_on libnq-dev libnq1 libssl-dev libpaho-mqtt-dev libgrpc-dev
needed_packages "$work/contents/python3-libnq$py_ext"
depends_on python3-libnq python3 libnq1 "${needed[@]}"
needed_packages "$work/contents/libnq-java$jni"
depends_on libnq-java libnq1 "${needed[@]}"
depends_on golang-github-libnq-libnq-dev libnq-dev pkg-config
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
debs_to_install=()
for p in "${packages[@]}"; do
    debs_to_install+=("${deb[$p]}")
done
$sudo dpkg -i "${debs_to_install[@]}" >"$work/dpkg-install.log" 2>&1 ||
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
# wait_listening NAME OUT ERR: waits until the server server_pid (NAME)
# prints "listening 127.0.0.1 PORT" into OUT and sets port; fails when it
# exits or takes more than 30 s.
wait_listening() {
    local name=$1 out=$2 err=$3 line=""
    for _ in $(seq 300); do
        line=$(grep -m 1 '^listening ' "$out" || true)
        [ -n "$line" ] && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$out" "$err" >&2; fail "$name exited"; }
        sleep 0.1
    done
    [[ $line =~ ^listening\ 127\.0\.0\.1\ ([0-9]+)$ ]] ||
        { cat "$out" "$err" >&2; fail "$name printed no 'listening 127.0.0.1 PORT' line"; }
    port=${BASH_REMATCH[1]}
    echo "$name listens on port $port"
}

: >"$work/serve.out"
/usr/bin/nq serve --port 0 --echo >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
wait_listening "nq serve" "$work/serve.out" "$work/serve.err"
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

# The bindings run in a folder of their own, outside the source tree, with
# nothing in the environment pointing at libnq.
outside=$work/outside
mkdir -p "$outside"
cd "$outside"
run_env=(env -u PYTHONPATH -u PYTHONHOME -u CLASSPATH -u JAVA_TOOL_OPTIONS -u _JAVA_OPTIONS
    -u PKG_CONFIG_PATH -u CGO_CFLAGS -u CGO_LDFLAGS LD_LIBRARY_PATH=)

step "python3-libnq: echo.py server and client ($python -I)"
"$python" -I -c 'import nq; print(nq.__version__, nq.libnq_version, nq.__file__)' \
    >"$work/py-import.out" 2>&1 || { cat "$work/py-import.out" >&2; fail "$python cannot import nq"; }
read -r py_version py_libnq py_file <"$work/py-import.out"
[ "$py_file" = "$py_dir/__init__.py" ] || fail "nq was imported from $py_file, not $py_dir"
[ "$py_version" = "$version" ] || fail "nq.__version__ is $py_version, expected $version"
[ "$py_libnq" = "$version" ] || fail "nq.libnq_version is $py_libnq, expected $version"
echo "import nq: nq $py_version on libnq $py_libnq, from $py_file"
uses_system_libnq "$py_ext"
cp "$src/tests/debian/consumer/echo.py" "$outside/"
"${run_env[@]}" "$python" -I echo.py server \
    >"$work/py-server.out" 2>"$work/py-server.err" &
server_pid=$!
wait_listening "echo.py server" "$work/py-server.out" "$work/py-server.err"
out=$("${run_env[@]}" timeout "$run_timeout" "$python" -I echo.py client "$port" "hello from Python" 2>&1) ||
    fail "echo.py client failed: $out"
printf '%s\n' "$out" | sed 's/^/  client: /'
rc=0
wait "$server_pid" || rc=$?
server_pid=""
sed 's/^/  server: /' "$work/py-server.out"
[ "$rc" -eq 0 ] || { cat "$work/py-server.err" >&2; fail "echo.py server exited with $rc"; }
case $out in *"reply hello from Python"*) ;; *) fail "echo.py client got no echo" ;; esac
grep -qx "nq $version from $py_dir/__init__.py" "$work/py-server.out" ||
    fail "echo.py server did not run on $py_dir"

step "libnq-java: javac -cp /usr/share/java/libnq.jar Echo.java, then java -cp"
uses_system_libnq "$jni"
cp "$src/tests/debian/consumer/Echo.java" "$outside/"
"${run_env[@]}" javac -Xlint:all -Werror -cp /usr/share/java/libnq.jar -d "$outside/classes" Echo.java ||
    fail "javac Echo.java against /usr/share/java/libnq.jar failed"
# The JVM's library log says where the JNI library came from: the jar has
# none, so it is found on java.library.path, in the system's JNI directory.
out=$("${run_env[@]}" timeout "$run_timeout" java -Xlog:library=info:file="$work/java-library.log" \
    -cp "/usr/share/java/libnq.jar:$outside/classes" Echo "hello from Java" 2>&1) ||
    fail "java Echo failed: $out"
printf '  %s\n' "$out"
[ "$out" = "echo hello from Java" ] || fail "java Echo got no echo"
grep -q "Loaded library .*$jni" "$work/java-library.log" ||
    { grep -i nqjni "$work/java-library.log" >&2; fail "java did not load $jni"; }
echo "the JVM loaded $jni"

step "golang-github-libnq-libnq-dev: go build in a module outside the tree"
go=$(command -v go || true)
if [ -z "$go" ] && [ -x /usr/local/go/bin/go ]; then
    go=/usr/local/go/bin/go
fi
[ -n "$go" ] || fail "no go on PATH or in /usr/local/go/bin (Go >= 1.21 is needed)"
"$go" version
# Offline, the module found only through its replace directive; the build
# cache is the user's own.
go_env=(GOFLAGS=-mod=mod GOPROXY=off GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=1
    GOPATH="$work/gopath")
mkdir -p "$outside/go"
cp "$src/tests/debian/consumer/echo.go" "$outside/go/main.go"
printf '%s\n' "module example.com/echo" "" "go 1.21" "" "require $go_path v0.0.0" "" \
    "replace $go_path => $go_src" >"$outside/go/go.mod"
(cd "$outside/go" && "${run_env[@]}" "${go_env[@]}" "$go" build -o echo .) ||
    fail "go build against $go_src failed"
uses_system_libnq "$outside/go/echo"
out=$("${run_env[@]}" timeout "$run_timeout" "$outside/go/echo" "hello from Go" 2>&1) ||
    fail "the Go echo failed: $out"
printf '  %s\n' "$out"
[ "$out" = "echo hello from Go" ] || fail "the Go echo got no echo"
cd "$work"

step "dpkg --purge ${packages[*]}"
$sudo dpkg --purge "${packages[@]}" >"$work/dpkg-purge.log" 2>&1 ||
    { cat "$work/dpkg-purge.log" >&2; fail "dpkg --purge failed"; }
installed=()
for p in "${packages[@]}"; do
    ! is_installed "$p" || fail "$p is still installed"
done
for f in /usr/include/nq "$libdir/libnq.so.1" "$libdir/libnq.so" "$libdir/libnq.a" \
    "$libdir/pkgconfig/nq.pc" "$libdir/cmake/nq" /usr/bin/nq /usr/share/man/man1/nq.1.gz \
    /usr/share/man/man3/libnq.3.gz /usr/share/man/man3/nq_open.3.gz /usr/share/doc/libnq-dev \
    "$py_dir" "/usr/lib/python3/dist-packages/libnq-$version.egg-info" /usr/share/java/libnq.jar \
    "/usr/share/java/libnq-$version.jar" "$jni" /usr/share/gocode/src/github.com/libnq; do
    if [ -e "$f" ] || [ -L "$f" ]; then
        fail "$f is left after purging"
    fi
done
! man -w nq >/dev/null 2>&1 || fail "man still finds a page nq: $(man -w nq 2>&1)"
! ldconfig -p | grep -q 'libnq\.so\.1 ' || fail "ldconfig still lists libnq.so.1"
! (cd / && "$python" -I -c 'import nq' 2>/dev/null) || fail "$python still imports nq"
echo "removed; no file left behind"

echo
echo "install_and_consume: PASS"
