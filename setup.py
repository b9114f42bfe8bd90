"""gradaudit's one optional C extension: GA101's fused screen (the metadata is in setup.cfg).

Where it cannot be built (no C compiler), the install goes on without it and gradaudit does
the same work with PyTorch operations, a few times slower.
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
