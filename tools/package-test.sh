#!/usr/bin/env bash
# The packages stage of tools/test.sh: builds the Debian source package and
# packages into build-deb/ (packaging/build-debs.sh), has lintian check them
# (tests/debian/lintian_check.sh: no error or warning), then installs them,
# reads their manual pages, builds and runs consumers against them and
# removes them again (tests/debian/install_and_consume.sh).  Needs root or
# sudo for dpkg.
#
# Usage: tools/package-test.sh
# Environment: NQ_TEST_JOBS parallel build jobs (default 2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build-deb

bash "$root/packaging/build-debs.sh" "$out"
bash "$root/tests/debian/lintian_check.sh" "$out"
bash "$root/tests/debian/install_and_consume.sh" "$out" "$root" "$out/consume"
