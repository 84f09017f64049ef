#!/usr/bin/env bash
# Runs the net-queue interop tests for one transport:
#   run_interop.sh NQ_PEER tcp|tls WORKDIR [pytest arguments...]
# The Python that runs them (>= 3.13, with net-queue 1.1.1 and pytest) comes
# from tools/netqueue-env.sh, which builds it on first use.  When it cannot,
# the run fails: interop is part of the suite, never silently skipped.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -ge 3 ] || { echo "usage: $0 NQ_PEER tcp|tls WORKDIR [pytest args]" >&2; exit 2; }
nq_peer=$1
transport=$2
work=$3
shift 3

if ! python=$("$root/tools/netqueue-env.sh"); then
    echo "FAIL: tools/netqueue-env.sh could not provide a Python with net-queue 1.1.1" >&2
    exit 1
fi

# A private directory per run, so concurrent runs never share one.
mkdir -p "$work"
basetemp=$(mktemp -d "$work/run.XXXXXX")
trap 'rm -rf "$basetemp"' EXIT
export NQ_PEER="$nq_peer" NQ_INTEROP_TRANSPORTS="$transport" PYTHONDONTWRITEBYTECODE=1
"$python" -m pytest -c /dev/null --rootdir "$here" -p no:cacheprovider -q -rfE \
    --basetemp "$basetemp/pytest" "$here/test_interop.py" "$@"
