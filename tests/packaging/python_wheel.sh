#!/usr/bin/env bash
# The wheel as a Python user gets it: tools/build-wheel.sh builds the sdist
# and a manylinux wheel; a fresh virtualenv outside the tree installs the
# wheel offline, and net-queue's README example (server and client in two
# processes, only the import changed) runs on it with LD_LIBRARY_PATH
# empty and nothing of the tree on sys.path.  libnq must come from the
# wheel: the test fails when the extension would load any other.
#
# Usage: python_wheel.sh SOURCE_DIR BUILD_DIR WORK_DIR VERSION
#   BUILD_DIR  a libnq build tree (tools/build-wheel.sh installs from it)
#   WORK_DIR   scratch space, wiped first
#   VERSION    libnq's version, which the distribution's must equal
# The example uses net-queue's default address, 127.0.0.1:51966, so it runs
# in a private network namespace (unshare --net) where that port is free.
set -euo pipefail

[ $# -eq 4 ] || { echo "usage: $0 SOURCE_DIR BUILD_DIR WORK_DIR VERSION" >&2; exit 2; }
source_dir=$1
build_dir=$2
work=$3
version=$4

fail() { printf 'python_wheel: FAIL: %s\n' "$*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

rm -rf "$work"
mkdir -p "$work"

step "tools/build-wheel.sh"
wheel=$(NQ_BUILD_DIR=$build_dir "$source_dir/tools/build-wheel.sh" "$work/dist" | tail -n 1)
echo "$wheel"
case $(basename "$wheel") in
    "libnq-$version-"*-manylinux_*_x86_64.whl) ;;
    *) fail "$wheel is not a manylinux wheel of version $version (nq/_version.py)" ;;
esac
python3 - "$wheel" "$work/dist"/libnq-*.tar.gz <<'PY' || fail "the wheel or the sdist lacks a file"
import sys, tarfile, zipfile
wheel, sdist = sys.argv[1:]
names = zipfile.ZipFile(wheel).namelist()
for want in ("nq/py.typed", "nq/_nqraw.", "libnq.libs/libnq-", "libnq.libs/libpaho-mqtt3as-",
             "libnq.libs/libgrpc-", ".dist-info/LICENSE"):
    if not any(want in name for name in names):
        sys.exit(f"{wheel} has no {want}*")
sdist_names = tarfile.open(sdist).getnames()
for want in ("/nq.i", "/LICENSE", "/README.md", "/setup.py", "/nq/py.typed"):
    if not any(name.endswith(want) for name in sdist_names):
        sys.exit(f"{sdist} has no {want}")
print("wheel and sdist hold what they must")
PY

# Everything from here on runs in a directory outside the tree.
outside=$(mktemp -d)
trap 'rm -rf "$outside"' EXIT
cd "$outside"
env -u PYTHONPATH /usr/bin/python3 -m venv env || python3 -m venv env

step "pip install --no-index $(basename "$wheel")"
env -u PYTHONPATH env/bin/python -m pip install --quiet --no-index --no-deps "$wheel"

clean_env=(env -u PYTHONPATH -u PYTHONHOME -u NQ_BUILD_DIR -u NQ_SOURCE_DIR LD_LIBRARY_PATH=)

step "where the installed extension finds libnq"
"${clean_env[@]}" env/bin/python -I - "$source_dir" <<'PY' || fail "the installed package is not self-contained"
import importlib.metadata, pathlib, sys
source = pathlib.Path(sys.argv[1]).resolve()
import nq
package = pathlib.Path(nq.__file__).resolve().parent
if source in package.parents:
    sys.exit(f"nq came from the tree: {package}")
maps = pathlib.Path("/proc/self/maps").read_text().splitlines()
paths = {line.split()[-1] for line in maps if len(line.split()) >= 6}
libnq = {path for path in paths if pathlib.Path(path).name.startswith(("libnq.so", "libnq-"))}
site = package.parent
if not libnq or any(not path.startswith(str(site)) for path in libnq):
    sys.exit(f"libnq was loaded from {sorted(libnq)}, not from the wheel under {site}")
if nq.__version__ != importlib.metadata.version("libnq"):
    sys.exit(f"nq.__version__ {nq.__version__} is not the distribution's "
             f"{importlib.metadata.version('libnq')}")
print("nq", nq.__version__, "on libnq", nq.libnq_version, "loaded from", *sorted(libnq))
PY

step "net-queue's README example: server.py and client.py"
examples=$source_dir/bindings/python/examples
for name in server.py client.py; do
    grep -q '^import nq$' "$examples/$name" || fail "$name does not import nq"
    ! grep -q net_queue "$examples/$name" || fail "$name still names net_queue"
    cp "$examples/$name" .
done
# shellcheck disable=SC2016 # expanded by the inner shell
script='
set -u
ip link set lo up || exit 90
timeout -k 5 60 "$PY" -I server.py & server=$!
# Wait until the server listens on 51966 (0xCAFE), without connecting to it.
for _ in $(seq 400); do
    grep -q ":CAFE 00000000:0000 0A" /proc/net/tcp && break
    sleep 0.05
done
timeout -k 5 60 "$PY" -I client.py; client=$?
wait "$server"; server=$?
echo "client=$client server=$server"
[ "$client" = 0 ] && [ "$server" = 0 ]
'
out=$("${clean_env[@]}" PY="$outside/env/bin/python" timeout -k 5 150 unshare --net bash -c "$script" 2>&1) ||
    fail "the example failed: $out"
printf '%s\n' "$out"
echo "python_wheel: OK"
