#!/usr/bin/env bash
# Runs lintian on what packaging/build-debs.sh built: the .changes file, so
# the source package and every .deb, pedantic and with informational tags.
# Prints what lintian says and fails on any error or warning, and on an
# override that no longer matches anything: a tag that must stay has an
# override in packaging/debian saying why, and only while it is needed.
#
# Usage: lintian_check.sh DEB_DIR
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DEB_DIR" >&2; exit 2; }
fail() { printf 'lintian_check: FAIL: %s\n' "$*" >&2; exit 1; }

command -v lintian >/dev/null || fail "lintian is missing (tools/install-deps.sh installs it)"
shopt -s nullglob
changes=("$1"/*.changes)
[ ${#changes[@]} -eq 1 ] || fail "expected one .changes file in $1, found ${#changes[@]}"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "lintian --pedantic --display-info $(basename "${changes[0]}")"
lintian --pedantic --display-info --fail-on none "${changes[0]}" >"$log" 2>&1 ||
    { cat "$log" >&2; fail "lintian did not run through"; }
# As root lintian says that it would rather not be; CI runs as root.
grep -v '^running with root privileges is not recommended!$' "$log" >"$log.tags" || true
mv "$log.tags" "$log"
sed 's/^/  /' "$log"
if grep -Eq '^[EW]: ' "$log"; then
    fail "lintian reports errors or warnings (above)"
fi
if grep -Eq 'unused-override|mismatched-override' "$log"; then
    fail "an override in packaging/debian matches nothing any more (above); remove it"
fi
echo "lintian_check: no error, no warning ($(wc -l <"$log") other lines)"
