#!/usr/bin/env bash
# Prints the path of a Python interpreter that can import net-queue and
# pytest, building the virtualenv that holds them on first use.
#
# Usage: tools/netqueue-env.sh [VERSION]   (default 1.1.1; the
# generations tests also use 2.6.4)
#
# net-queue is the reference peer of the interop tests.  It requires
# Python >= 3.13, which Debian 12 does not ship, so the interpreter comes from
# (first match wins):
#   $NQ_PYTHON313, ~/.pyenv/versions/3.13*/bin/python3 (newest),
#   python3.13 on PATH, or `pyenv install` when pyenv is available.
# The virtualenv lives in ${NQ_NETQUEUE_VENV:-~/.cache/libnq/netqueue-venv} for
# 1.1.1, ~/.cache/libnq/netqueue-VERSION-venv for another version.
# Parallel callers serialise on a lock file next to it, and a venv is only
# used once its ready-stamp exists, so an interrupted build is redone.
#
# Standard output carries exactly one line, the interpreter path; progress
# and errors go to standard error.
set -euo pipefail

netqueue_version=${1:-1.1.1}
[[ $netqueue_version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
    echo "netqueue-env: error: '$netqueue_version' is not a version (like 2.6.4)" >&2
    exit 2
}
pytest_spec='pytest>=8,<9'
if [ "$netqueue_version" = 1.1.1 ]; then
    venv=${NQ_NETQUEUE_VENV:-$HOME/.cache/libnq/netqueue-venv}
else
    venv=$HOME/.cache/libnq/netqueue-$netqueue_version-venv
fi
stamp="$venv/.libnq-ready"
stamp_text="net-queue==$netqueue_version $pytest_spec"

log() { printf 'netqueue-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# True when the interpreter runs and is at least 3.13.
python_ok() {
    [ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 13) else 1)' \
        >/dev/null 2>&1
}

venv_ok() {
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ] && python_ok "$venv/bin/python" &&
        "$venv/bin/python" - "$netqueue_version" >/dev/null 2>&1 <<'EOF'
import sys
from importlib.metadata import version
import net_queue.tcp.client, net_queue.tcp.server, net_queue.mqtt.client, pytest
sys.exit(0 if version("net-queue") == sys.argv[1] else 1)
EOF
}

find_python() {
    local candidate
    if [ -n "${NQ_PYTHON313:-}" ]; then
        python_ok "$NQ_PYTHON313" || die "NQ_PYTHON313=$NQ_PYTHON313 is not a Python >= 3.13"
        printf '%s\n' "$NQ_PYTHON313"
        return
    fi
    for candidate in $(ls -d "$HOME"/.pyenv/versions/3.13*/bin/python3 2>/dev/null | sort -rV); do
        if python_ok "$candidate"; then printf '%s\n' "$candidate"; return; fi
    done
    candidate=$(command -v python3.13 || true)
    if python_ok "$candidate"; then printf '%s\n' "$candidate"; return; fi
    if command -v pyenv >/dev/null 2>&1; then
        log "no Python 3.13 found; installing the newest 3.13 with pyenv (takes minutes)"
        local latest
        latest=$(pyenv install --list | sed -n 's/^ *\(3\.13\.[0-9][0-9]*\)$/\1/p' | sort -V | tail -n 1)
        [ -n "$latest" ] || die "pyenv knows no 3.13 release; update pyenv or set NQ_PYTHON313"
        pyenv install -s "$latest" >&2 || die "pyenv install $latest failed"
        candidate="$(pyenv root)/versions/$latest/bin/python3"
        if python_ok "$candidate"; then printf '%s\n' "$candidate"; return; fi
    fi
    die "net-queue needs Python >= 3.13 and none was found (Debian 12 ships 3.11): \
install one with pyenv (pyenv install 3.13) or point NQ_PYTHON313 at its python3"
}

if venv_ok; then
    printf '%s\n' "$venv/bin/python"
    exit 0
fi

command -v flock >/dev/null 2>&1 || die "flock (util-linux) is required"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock -w 900 9 || die "timed out waiting for $venv.lock"

# Another caller may have finished the venv while this one waited.
if ! venv_ok; then
    base=$(find_python)
    log "building $venv with $base ($("$base" --version 2>&1))"
    rm -rf "$venv"
    "$base" -m venv "$venv" >&2 || die "$base -m venv failed"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
        "net-queue==$netqueue_version" "$pytest_spec" >&2 ||
        die "pip could not install net-queue==$netqueue_version and pytest into $venv"
    printf '%s' "$stamp_text" >"$stamp"
    venv_ok || die "$venv was built but cannot import net-queue $netqueue_version and pytest"
    log "ready"
fi

printf '%s\n' "$venv/bin/python"
