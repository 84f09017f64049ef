"""Builds the nq package's extension: SWIG turns nq.i into nqraw.py and a
C++ wrapper, compiled and linked against libnq.

libnq is found through pkg-config (`pkg-config --cflags --libs nq`): with
libnq-dev installed there is nothing to set; for a libnq installed under
another prefix (`cmake --install build --prefix DIR`), put
DIR/lib/pkgconfig on PKG_CONFIG_PATH.  No directory is recorded in the
extension: at run time the dynamic linker finds libnq.so.1 as for any other
program (a wheel from tools/build-wheel.sh carries its own copy).

Environment:
  PKG_CONFIG         the pkg-config program (default: pkg-config on PATH)
  NQ_SWIG_INTERFACE  the interface file (default: nq.i beside this file)
  SWIG               the swig program (default: swig on PATH)
"""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
INTERFACE = os.environ.get("NQ_SWIG_INTERFACE") or str(HERE / "nq.i")


def pkg_config(*args):
    """The words pkg-config prints for nq, or a RuntimeError saying what to install."""
    program = os.environ.get("PKG_CONFIG") or "pkg-config"
    try:
        done = subprocess.run([program, *args, "nq"], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError(f"{program} not found: install pkg-config to build nq") from None
    except subprocess.CalledProcessError as failure:
        raise RuntimeError(
            "pkg-config cannot find libnq (nq.pc): install libnq-dev, or put the "
            "lib/pkgconfig directory of an installed libnq on PKG_CONFIG_PATH\n"
            + failure.stderr) from None
    return shlex.split(done.stdout)


def without_prefix(words, prefix):
    return [word[len(prefix):] for word in words if word.startswith(prefix)]


class BuildSwigExtension(build_ext):
    """Finds libnq, runs SWIG, then compiles; SWIG's Python module lands next
    to the extension."""

    def build_extension(self, ext):
        swig = os.environ.get("SWIG") or shutil.which("swig") or shutil.which("swig4.0")
        if swig is None:
            raise RuntimeError("swig (4.x) is needed to build nq")
        if not Path(INTERFACE).exists():
            raise RuntimeError(f"SWIG interface {INTERFACE} not found (set NQ_SWIG_INTERFACE)")
        include_dirs = without_prefix(pkg_config("--cflags-only-I"), "-I")
        # pkg-config leaves out system directories (/usr/include), where
        # the compiler looks by itself but SWIG does not.
        header_dir = pkg_config("--variable=includedir")
        if header_dir and header_dir[0] not in include_dirs:
            include_dirs.append(header_dir[0])
        ext.include_dirs += include_dirs
        ext.extra_compile_args += pkg_config("--cflags-only-other")
        ext.library_dirs += without_prefix(pkg_config("--libs-only-L"), "-L")
        ext.libraries += without_prefix(pkg_config("--libs-only-l"), "-l")
        ext.extra_link_args += pkg_config("--libs-only-other")

        package_dir = Path(self.get_ext_fullpath(ext.name)).parent
        package_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(self.build_temp)
        temp.mkdir(parents=True, exist_ok=True)
        wrapper = temp / "nqraw_wrap.cxx"
        command = [swig, "-c++", "-python", "-threads", "-outdir", str(package_dir),
                   "-o", str(wrapper)]
        command += [f"-I{directory}" for directory in include_dirs]
        subprocess.run(command + [INTERFACE], check=True)
        ext.sources = [str(wrapper)]
        super().build_extension(ext)


setup(
    ext_modules=[Extension(
        "nq._nqraw",
        sources=[],
        language="c++",
        extra_compile_args=["-std=c++11", "-fno-strict-aliasing", "-Wno-unused-parameter"],
    )],
    cmdclass={"build_ext": BuildSwigExtension},
)
