#!/usr/bin/env bash
# The Go module as a Go user gets it: libnq installed (cmake --install into
# a scratch prefix, found through PKG_CONFIG_PATH as libnq-dev would be), a
# module of its own outside the tree that requires
# github.com/libnq/libnq/bindings/go/nq (by a replace directive, since
# nothing is published), built with plain `go build`, offline, with no swig
# on PATH; it then runs the package's example, a round trip over TCP.
#
# Usage: go_module.sh SOURCE_DIR BUILD_DIR WORK_DIR GO
#   BUILD_DIR  a libnq build tree     WORK_DIR  scratch space, wiped first
#   GO         the go program
# NQ_CMAKE in the environment names the cmake to use (default: cmake on PATH).
set -euo pipefail

[ $# -eq 4 ] || { echo "usage: $0 SOURCE_DIR BUILD_DIR WORK_DIR GO" >&2; exit 2; }
source_dir=$1
build_dir=$2
work=$3
go=$4

fail() { printf 'go_module: FAIL: %s\n' "$*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

rm -rf "$work"
mkdir -p "$work"

step "cmake --install (runtime and development files)"
prefix=$work/prefix
for component in nq_runtime nq_development; do
    "${NQ_CMAKE:-cmake}" --install "$build_dir" --prefix "$prefix" --component "$component" >/dev/null
done
pc=$(find "$prefix" -name nq.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "no nq.pc under $prefix"
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir nq)

# A PATH with every program of this machine but swig.
bin=$work/bin
mkdir -p "$bin"
for program in /usr/bin/* "$(dirname "$go")"/*; do
    case ${program##*/} in swig*) continue ;; esac
    ln -sf "$program" "$bin/"
done
export PATH=$bin
! command -v swig >/dev/null || fail "swig is still on PATH"

outside=$(mktemp -d)
trap 'rm -rf "$outside"' EXIT
cd "$outside"
cat >go.mod <<EOF
module example.com/echo

go 1.21

require github.com/libnq/libnq/bindings/go/nq v0.0.0

replace github.com/libnq/libnq/bindings/go/nq => $source_dir/bindings/go/nq
EOF
# The program is the package's own example (example_test.go, the README's),
# turned into a main package.
sed -e 's/^package nq_test$/package main/' -e 's/^func Example() {$/func main() {/' \
    "$source_dir/bindings/go/nq/example_test.go" >main.go
grep -q '^func main() {$' main.go || fail "example_test.go has no func Example()"

step "go build, without swig (a fresh build cache)"
GOFLAGS=-mod=mod GOPROXY=off GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=1 \
    GOCACHE=$work/gocache GOPATH=$work/gopath \
    "$go" build -o "$work/echo" . || fail "go build failed"

step "run"
out=$(LD_LIBRARY_PATH=$libdir timeout -k 5 60 "$work/echo" 2>&1) || fail "the echo failed: $out"
printf '%s\n' "$out"
expected=$(sed -n 's|^\t// \(.* got .*\)$|\1|p' main.go)
[ "$out" = "$expected" ] || fail "expected: $expected"
echo "go_module: OK"
