"""Compiler and linker flags shared by libnq's Bazel packages."""

# The warnings and language of CMakeLists.txt.
NQ_COPTS = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wshadow",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
    "-Werror",
]

# Bazel's C toolchain links every program with -lstdc++; libnq and its
# programs are C, so they record only the libraries they use.
NQ_LINKOPTS = ["-Wl,--as-needed"]
