#!/usr/bin/env bash
# Builds libnq's Debian source package and, from it, the packages libnq1,
# libnq-dev and nq-tools, the bindings python3-libnq, libnq-java and
# golang-github-libnq-libnq-dev, and the debug symbols of those with
# binaries (*-dbgsym).  The tree is
# copied, its files packed as the upstream tarball libnq_VERSION.orig.tar.xz,
# packaging/debian added as the copy's debian/ folder, and the whole goes
# through dpkg-buildpackage as a "3.0 (quilt)" source package.
# The upstream version is the project version of CMakeLists.txt; the Debian
# revision is REVISION below, so the packages are VERSION-REVISION.
#
# Usage: packaging/build-debs.sh OUT_DIR
#   OUT_DIR receives the .deb files, the source package (.dsc, orig and
#   debian tarballs), the .changes and .buildinfo files and the build log;
#   it is wiped first.
# The copy is made in a temporary folder (under $TMPDIR), not in the tree,
# where Bazel would find its BUILD files.  In a git work tree the copy holds
# the files git tracks or would track (so .gitignore keeps build trees and
# caches out), as they are now.
# Needs dpkg-dev, debhelper, python3 and the Build-Depends of
# packaging/debian/control (tools/install-deps.sh installs them).
# Environment: NQ_TEST_JOBS parallel jobs (default 2).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
out=$1
jobs=${NQ_TEST_JOBS:-2}

version=$(sed -n 's/^project(libnq VERSION \([0-9][0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
[ -n "$version" ] || { echo "build-debs.sh: no project version in CMakeLists.txt" >&2; exit 1; }
# The Debian revision: raise it for a change of the packaging alone, start
# again at 1 with a new upstream version.
revision=1

rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
src=$scratch/libnq-$version

# The upstream tree: under git, tracked files and untracked ones that are
# not ignored; otherwise everything but build trees, Bazel's output links,
# caches and version control.  Never a debian/ folder of its own.
list_files() {
    local f
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$root" ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do
                case $f in bazel-* | debian/*) continue ;; esac
                if [ -e "$root/$f" ] || [ -L "$root/$f" ]; then
                    printf '%s\0' "$f"
                fi
            done
    else
        (cd "$root" && find . \( -path './build*' -o -path './bazel-*' -o -path ./debian \
            -o -name .git -o -name __pycache__ \) -prune -o \( -type f -o -type l \) -print0)
    fi
}

# Dates come from the last commit, so a rebuild of the same commit gives the
# same tarball and packages.
epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)
date=$(date -R -u -d "@$epoch")

mkdir -p "$src"
list_files | tar -C "$root" --null -T - -cf - | tar -C "$src" -xf -
tar -C "$scratch" --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    -cf - "libnq-$version" | xz -6 >"$scratch/libnq_$version.orig.tar.xz"

cp -r "$root/packaging/debian" "$src/debian"
chmod +x "$src/debian/rules"
maintainer=$(sed -n 's/^Maintainer: //p' "$src/debian/control")
cat >"$src/debian/changelog" <<CHANGES
libnq ($version-$revision) unstable; urgency=medium

  * Packages of libnq $version, built from the libnq source tree.

 -- $maintainer  $date
CHANGES

echo "build-debs.sh: building libnq $version-$revision packages in $out (log: build.log)"
if ! (cd "$src" && SOURCE_DATE_EPOCH=$epoch dpkg-buildpackage -uc -us -j"$jobs") >"$out/build.log" 2>&1; then
    tail -n 60 "$out/build.log" >&2
    echo "build-debs.sh: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
    exit 1
fi
grep -E 'dpkg-gensymbols|dh_missing' "$out/build.log" || true
mv "$scratch"/*.deb "$scratch"/*.dsc "$scratch"/*.tar.xz "$scratch"/*.buildinfo \
    "$scratch"/*.changes "$out"/
for f in "$out"/*.dsc "$out"/*.tar.xz "$out"/*.deb; do
    printf '  %s\n' "$(basename "$f")"
done
