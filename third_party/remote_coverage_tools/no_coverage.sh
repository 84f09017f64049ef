#!/bin/sh
echo "bazel coverage is not available offline; measure coverage with the CMake build (gcovr or lcov)" >&2
exit 1
