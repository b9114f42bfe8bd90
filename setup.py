"""gradaudit's one optional C extension: GA101's fused screen (the metadata is in setup.cfg).

Where it cannot be built (no C compiler), the install goes on without it and gradaudit does
the same work with PyTorch operations, a few times slower. On Linux it is built with OpenMP,
to share PyTorch's thread pool (see gradaudit/_screen.c); where the compiler cannot do that,
it is built without, single-threaded.
"""
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

OPENMP = ["-fopenmp"] if sys.platform.startswith("linux") else []


class BuildWithOptionalOpenMP(build_ext):
    """Build the screen with OpenMP where the compiler has it, else without."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except (CCompilerError, ExecError, PlatformError):
            if not OPENMP:
                raise
            print(f"gradaudit: building {ext.name} without OpenMP (single-threaded)", file=sys.stderr)
            ext.extra_compile_args = [arg for arg in ext.extra_compile_args if arg not in OPENMP]
            ext.extra_link_args = [arg for arg in ext.extra_link_args if arg not in OPENMP]
            super().build_extension(ext)


setup(
    cmdclass={"build_ext": BuildWithOptionalOpenMP},
    ext_modules=[
        Extension(
            "gradaudit._screen",
            ["gradaudit/_screen.c"],
            optional=True,
            # no a * b + c in one rounding: the same verdicts as the PyTorch version, bit for bit
            extra_compile_args=[] if sys.platform == "win32" else ["-O3", "-ffp-contract=off", *OPENMP],
            extra_link_args=OPENMP,
        )
    ],
)
