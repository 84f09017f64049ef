#!/usr/bin/env bash
# pip_install.sh PYTHON SOURCE BUILD VENV: pip builds and installs the nq
# package from a copy of SOURCE (bindings/python) into a fresh virtualenv,
# against the libnq in BUILD, offline; then the installed package runs a
# round trip from a directory outside the tree.
set -euo pipefail
py=$1 src=$2 build=$3 venv=$4

rm -rf "$venv"
mkdir -p "$venv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A copy, so that pip's in-tree build leaves the source tree clean.
mkdir -p "$work/bindings"
cp -r "$src" "$work/bindings/python"
cp "$src/../nq.i" "$work/bindings/nq.i"
rm -rf "$work/bindings/python/build" "$work/bindings/python"/*.egg-info

"$py" -m venv --system-site-packages "$venv/env"
NQ_INCLUDE_DIR="$src/../../abi/include" NQ_BUILD_DIR="$build" \
    "$venv/env/bin/python" -m pip install --quiet --no-build-isolation --no-index --no-deps \
    "$work/bindings/python"

cd "$work"
"$venv/env/bin/python" - <<'PY'
import nq
opts = lambda port: nq.CommunicatorOptions(netloc=nq.NetworkLocation("127.0.0.1", port))
with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, opts(0)) as server:
    with nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, opts(server.local_port)) as client:
        client.put({"installed": True}).result(10)
        message = server.get(timeout=10)
        assert message.data == {"installed": True} and message.peer == client.id
print("pip-installed nq", nq.__version__, "from", nq.__file__)
PY
