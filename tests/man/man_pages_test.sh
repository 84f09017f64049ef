#!/usr/bin/env bash
# Checks the manual pages of a build tree as man(1) and lintian read them.
#
#   1. man3/ holds libnq.3 and a page for every function nq.h declares
#      NQ_API, and nothing else; man1/ holds nq.1 when the tool is built.
#   2. Each page formats without a warning (`man --warnings`, the check
#      lintian runs), lexgrog finds its NAME line ("name - what it is",
#      the whatis entry), and mandoc's lint has nothing to say about it
#      (when mandoc is installed).
#
# Usage: man_pages_test.sh MAN_DIR HEADER
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 MAN_DIR HEADER" >&2; exit 2; }
man_dir=$1
header=$2
export LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80

fail() { printf 'man_pages_test: FAIL: %s\n' "$*" >&2; exit 1; }

want=$( (echo libnq; sed -n 's/^NQ_API [^(]*\b\(nq_[a-z0-9_]*\)(.*/\1/p' "$header") | sort)
[ "$(echo "$want" | wc -l)" -gt 1 ] || fail "found no NQ_API function in $header"
have=$(cd "$man_dir/man3" && ls | sed 's/\.3$//' | sort)
[ "$want" = "$have" ] || fail "man3/ should hold exactly libnq.3 and a page per function:
$(diff <(echo "$want") <(echo "$have") || true)"

pages=("$man_dir"/man3/*.3)
[ ! -f "$man_dir/man1/nq.1" ] || pages+=("$man_dir/man1/nq.1")
for page in "${pages[@]}"; do
    warnings=$(man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null) ||
        fail "man cannot format $page: $warnings"
    [ -z "$warnings" ] || fail "man warns about $page: $warnings"
    whatis=$(lexgrog "$page") || fail "lexgrog finds no NAME line in $page"
    name=$(basename "$page" | sed 's/\.[0-9]$//')
    case $whatis in
        *": \"$name - "?*) ;;
        *) fail "$page's whatis entry is not '$name - ...': $whatis" ;;
    esac
    if command -v mandoc >/dev/null; then
        lint=$(mandoc -T lint -W warning "$page" 2>&1) || true
        [ -z "$lint" ] || fail "mandoc -T lint: $lint"
    fi
done
echo "man_pages_test: ${#pages[@]} pages format cleanly and have whatis entries"
