"""Builds the nq package's extension: SWIG turns ../nq.i into nqraw.py and a
C++ wrapper, compiled against libnq.

Where libnq is found:
  NQ_INCLUDE_DIR     directory holding nq/nq.h (default: this tree's
                     abi/include, else the compiler's default paths)
  NQ_BUILD_DIR       directory holding libnq.so (default: this tree's build/
                     when it has one, else the linker's default paths); the
                     extension records it as its run path
  NQ_SWIG_INTERFACE  the interface file (default: ../nq.i)
  SWIG               the swig program (default: swig on PATH)
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _existing(path):
    return str(path) if path.exists() else None


INCLUDE_DIR = os.environ.get("NQ_INCLUDE_DIR") or _existing(REPO / "abi" / "include")
LIBRARY_DIR = os.environ.get("NQ_BUILD_DIR") or (
    str(REPO / "build") if (REPO / "build" / "libnq.so").exists() else None)
INTERFACE = os.environ.get("NQ_SWIG_INTERFACE") or str(HERE.parent / "nq.i")


class BuildSwigExtension(build_ext):
    """Runs SWIG first; its Python module lands next to the extension."""

    def build_extension(self, ext):
        swig = os.environ.get("SWIG") or shutil.which("swig") or shutil.which("swig4.0")
        if swig is None:
            raise RuntimeError("swig (4.x) is needed to build nq")
        if not Path(INTERFACE).exists():
            raise RuntimeError(f"SWIG interface {INTERFACE} not found (set NQ_SWIG_INTERFACE)")
        package_dir = Path(self.get_ext_fullpath(ext.name)).parent
        package_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(self.build_temp)
        temp.mkdir(parents=True, exist_ok=True)
        wrapper = temp / "nqraw_wrap.cxx"
        command = [swig, "-c++", "-python", "-threads", "-outdir", str(package_dir),
                   "-o", str(wrapper)]
        if INCLUDE_DIR:
            command.append(f"-I{INCLUDE_DIR}")
        subprocess.run(command + [INTERFACE], check=True)
        ext.sources = [str(wrapper)]
        super().build_extension(ext)


setup(
    ext_modules=[Extension(
        "nq._nqraw",
        sources=[],
        language="c++",
        include_dirs=[INCLUDE_DIR] if INCLUDE_DIR else [],
        library_dirs=[LIBRARY_DIR] if LIBRARY_DIR else [],
        runtime_library_dirs=[LIBRARY_DIR] if LIBRARY_DIR else [],
        libraries=["nq"],
        extra_compile_args=["-std=c++11", "-fno-strict-aliasing", "-Wno-unused-parameter"],
    )],
    cmdclass={"build_ext": BuildSwigExtension},
)
