#!/usr/bin/env bash
# The packages stage of tools/test.sh: builds the Debian packages into
# build-deb/ (packaging/build-debs.sh), then installs them, builds and runs
# consumers against them and removes them again
# (tests/debian/install_and_consume.sh).  Needs root or sudo for dpkg.
#
# Usage: tools/package-test.sh
# Environment: NQ_TEST_JOBS parallel build jobs (default 2).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build-deb

bash "$root/packaging/build-debs.sh" "$out"
bash "$root/tests/debian/install_and_consume.sh" "$out" "$root" "$out/consume"
