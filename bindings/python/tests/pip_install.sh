#!/usr/bin/env bash
# pip_install.sh PYTHON SOURCE BUILD VENV: pip builds and installs the nq
# package from a copy of SOURCE (bindings/python) into a fresh virtualenv,
# offline, against the libnq of BUILD installed into a scratch prefix and
# found through pkg-config, as a libnq-dev would be; then the installed
# package runs a round trip from a directory outside the tree.
# NQ_CMAKE in the environment names the cmake to use (default: cmake on PATH).
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
cp "$src/../../LICENSE" "$work/LICENSE"
rm -rf "$work/bindings/python/build" "$work/bindings/python"/*.egg-info

for component in nq_runtime nq_development; do
    "${NQ_CMAKE:-cmake}" --install "$build" --prefix "$work/prefix" --component "$component" >/dev/null
done
pc_dir=$(dirname "$(find "$work/prefix" -name nq.pc | head -n 1)")
libdir=$(PKG_CONFIG_PATH=$pc_dir pkg-config --variable=libdir nq)

"$py" -m venv --system-site-packages "$venv/env"
PKG_CONFIG_PATH=$pc_dir \
    "$venv/env/bin/python" -m pip install --quiet --no-build-isolation --no-index --no-deps \
    "$work/bindings/python"

# The extension records no directory: libnq is found as the system's would be.
if readelf -d "$venv"/env/lib/python3*/site-packages/nq/_nqraw*.so | grep -Eq 'R(UN)?PATH'; then
    echo "pip_install: the extension records a library path" >&2
    exit 1
fi

cd "$work"
LD_LIBRARY_PATH=$libdir "$venv/env/bin/python" - <<'PY'
import nq
opts = lambda port: nq.CommunicatorOptions(netloc=nq.NetworkLocation("127.0.0.1", port))
with nq.new(nq.Protocol.TCP, nq.Purpose.SERVER, opts(0)) as server:
    with nq.new(nq.Protocol.TCP, nq.Purpose.CLIENT, opts(server.local_port)) as client:
        client.put({"installed": True}).result(10)
        message = server.get(timeout=10)
        assert message.data == {"installed": True} and message.peer == client.id
print("pip-installed nq", nq.__version__, "on libnq", nq.libnq_version, "from", nq.__file__)
PY
