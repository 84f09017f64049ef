#!/usr/bin/env bash
# Checks the ABI surface of the shared library against its two sources of
# truth: the version script and the public header.
#
#   - the SONAME is libnq.so.1;
#   - every defined dynamic symbol starts with nq_ and carries, as its
#     default version, the node of abi/libnq.map that lists it;
#   - the defined dynamic symbols, the global: entries of abi/libnq.map and
#     the NQ_API functions of nq.h are exactly the same set.
#
# Usage: abi_symbols.sh LIBNQ_SO MAP HEADER
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 LIBNQ_SO MAP HEADER" >&2; exit 2; }
lib=$1
map=$2
header=$3
soname_want=libnq.so.1

problems=0
problem() {
    printf 'abi_symbols: FAIL: %s\n' "$1" >&2
    [ $# -lt 2 ] || printf '%s\n' "$2" | sed 's/^/    /' >&2
    problems=$((problems + 1))
}

for f in "$lib" "$map" "$header"; do
    [ -r "$f" ] || { echo "abi_symbols: cannot read $f" >&2; exit 1; }
done

# "symbol node" for every global: entry of the version script.
map_entries=$(perl -0777 -ne '
    s{/\*.*?\*/}{}gs;
    while (/([A-Za-z0-9_.]+)\s*\{([^{}]*)\}\s*[A-Za-z0-9_.]*\s*;/g) {
        my ($node, $body, $scope) = ($1, $2, "global");
        for my $tok (split /;/, $body) {
            $scope = $1 while $tok =~ s/^\s*(global|local)\s*:\s*//;
            $tok =~ s/^\s+|\s+$//g;
            print "$tok $node\n" if $tok ne "" && $scope eq "global";
        }
    }' "$map" | sort)
[ -n "$map_entries" ] || { echo "abi_symbols: found no global: entries in $map" >&2; exit 1; }
map_syms=$(printf '%s\n' "$map_entries" | cut -d' ' -f1 | sort -u)
wild=$(printf '%s\n' "$map_syms" | grep '[][*?]' || true)
[ -z "$wild" ] || problem "$map uses wildcards in global: (list each symbol)" "$wild"
dup=$(printf '%s\n' "$map_entries" | cut -d' ' -f1 | sort | uniq -d)
[ -z "$dup" ] || problem "$map lists symbols in more than one node" "$dup"

# Names of the functions the header declares with NQ_API, with comments and
# preprocessor lines (and their continuations) removed first.
header_syms=$(perl -0777 -ne '
    s{/\*.*?\*/}{ }gs;
    s{//[^\n]*}{}g;
    s{^[ \t]*#(?:[^\n]*\\\n)*[^\n]*}{}gm;
    while (/\bNQ_API\b([^;{}()]*)\(/g) {
        print "$1\n" if $1 =~ /([A-Za-z_]\w*)\s*$/;
    }' "$header" | sed -E 's/.*[^A-Za-z0-9_]//' | sort -u)
[ -n "$header_syms" ] || { echo "abi_symbols: found no NQ_API declarations in $header" >&2; exit 1; }

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "$soname_want" ] || problem "SONAME is '${soname}', expected $soname_want"

# "name version" for every defined, non-local dynamic symbol; version is
# "-" when unversioned and prefixed with "!" when not the default version.
# The linker's ABS symbols that name the version nodes themselves are left
# out.
nodes=$(printf '%s\n' "$map_entries" | cut -d' ' -f2 | sort -u | tr '\n' ' ')
dynsyms=$(readelf --dyn-syms -W "$lib" | awk -v nodes="$nodes" '
    BEGIN { n = split(nodes, list, " "); for (i = 1; i <= n; i++) node[list[i]] = 1 }
    $1 ~ /^[0-9]+:$/ && NF >= 8 && $7 != "UND" && $5 != "LOCAL" {
        if ($7 == "ABS" && ($8 in node)) next
        name = $8; ver = "-"
        if ((i = index(name, "@@")) > 0) {
            ver = substr(name, i + 2); name = substr(name, 1, i - 1)
        } else if ((i = index(name, "@")) > 0) {
            ver = "!" substr(name, i + 1); name = substr(name, 1, i - 1)
        }
        print name, ver
    }' | sort)
[ -n "$dynsyms" ] || problem "$lib defines no dynamic symbols"
lib_syms=$(printf '%s\n' "$dynsyms" | cut -d' ' -f1 | sort -u)

foreign=$(printf '%s\n' "$lib_syms" | grep -v '^nq_' || true)
[ -z "$foreign" ] || problem "$lib exports symbols without the nq_ prefix" "$foreign"

wrong_version=$(join -a 1 -e '-' -o '0,1.2,2.2' <(printf '%s\n' "$dynsyms") \
    <(printf '%s\n' "$map_entries") | awk '$3 != "-" && $2 != $3 {
        printf "%s is bound to %s, expected %s as its default version\n", $1,
            ($2 == "-" ? "no version" : ($2 ~ /^!/ ? substr($2, 2) " (not default)" : $2)), $3 }')
[ -z "$wrong_version" ] || problem "symbols with the wrong version" "$wrong_version"

compare() {
    local what_a=$1 a=$2 what_b=$3 b=$4 only
    only=$(comm -23 <(printf '%s\n' "$a") <(printf '%s\n' "$b"))
    [ -z "$only" ] || problem "in $what_a but not in $what_b" "$only"
}
compare "the library's exports" "$lib_syms" "$map" "$map_syms"
compare "$map" "$map_syms" "the library's exports" "$lib_syms"
compare "$header (NQ_API)" "$header_syms" "$map" "$map_syms"
compare "$map" "$map_syms" "$header (NQ_API)" "$header_syms"

if [ "$problems" -gt 0 ]; then
    echo "abi_symbols: $problems problem(s) in $lib" >&2
    exit 1
fi
count=$(printf '%s\n' "$lib_syms" | wc -l)
bound=$(printf '%s\n' "$dynsyms" | cut -d' ' -f2 | sort -u | tr '\n' ' ')
echo "abi_symbols: PASS: SONAME $soname, $count nq_ symbols at ${bound% }, matching $map and $header"
