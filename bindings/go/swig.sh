#!/bin/sh
# Generates the Go module's SWIG layer from the one interface, bindings/nq.i:
# nq/internal/nqraw/nqraw.go and nqraw_wrap.cxx.  Both are committed, so
# that the module builds with plain `go build` where SWIG is absent; the
# test go_swig_current fails when they differ from what this script makes.
#
# Usage: bindings/go/swig.sh [OUTDIR]   (default: nq/internal/nqraw beside
# this script)
# SWIG in the environment names the swig program (default: swig on PATH).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/nq/internal/nqraw}
mkdir -p "$out"
# Run from the interface's folder with relative paths, so that no path of
# this checkout ends up in the generated files.
cd "$root/bindings"
"${SWIG:-swig}" -go -cgo -c++ -intgosize 64 -module nqraw -I../abi/include \
    -outdir "$out" -o "$out/nqraw_wrap.cxx" nq.i

# SWIG's helper that copies a returned C string converts a uintptr to an
# unsafe.Pointer, which `go vet` rejects; this one copies the same bytes
# from the string itself.
perl -0pi -e 's/func swigCopyString\(s string\) string \{\n.*?\n\}\n/func swigCopyString(s string) string {\n  r := string([]byte(s))\n  Swig_free(uintptr(unsafe.Pointer(unsafe.StringData(s))))\n  return r\n}\n/s' "$out/nqraw.go"
grep -q 'r := string(\[\]byte(s))' "$out/nqraw.go" || {
    echo "swig.sh: SWIG's swigCopyString was not found to replace" >&2
    exit 1
}
