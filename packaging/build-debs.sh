#!/usr/bin/env bash
# Builds the Debian packages libnq1, libnq-dev and nq-tools (and their
# debug symbols, *-dbgsym) from this tree: a copy of the tree, with
# packaging/debian as its debian/ folder, goes through dpkg-buildpackage.
# The package version is the project version of CMakeLists.txt.
#
# Usage: packaging/build-debs.sh OUT_DIR
#   OUT_DIR receives the .deb files and the build log; it is wiped first.
# The copy is made in a temporary folder (under $TMPDIR), not in the tree,
# where Bazel would find its BUILD files.
# Needs dpkg-dev and debhelper (tools/install-deps.sh installs them).
# Environment: NQ_TEST_JOBS parallel jobs (default 2).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
out=$1
jobs=${NQ_TEST_JOBS:-2}

version=$(sed -n 's/^project(libnq VERSION \([0-9][0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
[ -n "$version" ] || { echo "build-debs.sh: no project version in CMakeLists.txt" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
src=$scratch/libnq-$version

# The tree without build trees, Bazel's output links or version control.
mkdir -p "$src"
tar -C "$root" --exclude-vcs --exclude='./build*' --exclude='./bazel-*' -cf - . |
    tar -C "$src" -xf -
rm -rf "$src/debian"
cp -r "$root/packaging/debian" "$src/debian"
chmod +x "$src/debian/rules"

# The changelog carries the version; its date is the last commit's, so a
# rebuild of the same commit gives the same packages.
date=$(git -C "$root" log -1 --format=%cD 2>/dev/null || date -R)
maintainer=$(sed -n 's/^Maintainer: //p' "$src/debian/control")
cat >"$src/debian/changelog" <<CHANGES
libnq ($version) unstable; urgency=medium

  * Built from the libnq source tree.

 -- $maintainer  $date
CHANGES

echo "build-debs.sh: building libnq $version packages in $out (log: build.log)"
if ! (cd "$src" && dpkg-buildpackage -b -uc -us -j"$jobs") >"$out/build.log" 2>&1; then
    tail -n 60 "$out/build.log" >&2
    echo "build-debs.sh: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
    exit 1
fi
grep -E 'dpkg-gensymbols|dh_missing' "$out/build.log" || true
mv "$scratch"/*.deb "$scratch"/*.buildinfo "$scratch"/*.changes "$out"/
for deb in "$out"/*.deb; do
    printf '  %s\n' "$(basename "$deb")"
done
