"""gradaudit's one optional C extension: its fused loops, GA101's screen and the scan of an
evaluation for NaN, inf and -0.0 (the metadata is in setup.cfg).

Where it cannot be built (no C compiler), the install goes on without it and gradaudit does
the same work with PyTorch and NumPy operations, a few times slower.
"""
import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gradaudit._fused",
            ["gradaudit/_fused.c"],
            optional=True,
            # no a * b + c in one rounding: the same verdicts as the PyTorch version, bit for bit
            extra_compile_args=[] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"],
            # dlopen and dlsym, to borrow the OpenMP team of the torch in the process (glibc < 2.34)
            libraries=["dl"] if sys.platform.startswith("linux") else [],
        )
    ]
)
