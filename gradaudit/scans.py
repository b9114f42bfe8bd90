"""Whole-probe scans that torch composes from several kernels, done in one pass.

At a million probe points ``torch.isfinite`` (several kernels) costs about as much as a
float32 forward and backward of the target, and ``Tensor.any`` half of that; NumPy's
versions are several times cheaper (``Tensor.any`` over a million booleans: 0.19 ms, NumPy:
0.001 ms; ``torch.nonzero``: 0.32 ms, NumPy: 0.10 ms). The results are identical; only CPU
tensors of NumPy-supported dtypes take the fast route. :func:`flags` counts non-finite
values and -0.0 in one fused pass first (gradaudit/_fused.c, where it is built), so the
indices are looked for only where there are any.
"""
from __future__ import annotations

import numpy as np
import torch

try:  # fused loops over float64 blocks (gradaudit/_fused.c, built by setup.py where a C compiler is)
    from . import _fused
except ImportError:  # pragma: no cover - depends on the install
    _fused = None

_NUMPY_DTYPES = (torch.float64, torch.float32, torch.float16)
_BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
         torch.bfloat16: torch.int16}


def nonfinite(values: torch.Tensor) -> torch.Tensor:
    """Mask of NaN and ±inf elements (``~torch.isfinite``)."""
    if values.device.type == "cpu" and values.dtype in _NUMPY_DTYPES and not values.requires_grad:
        mask = np.isfinite(values.numpy())
        return torch.from_numpy(np.logical_not(mask, out=mask))
    return ~torch.isfinite(values)


def negative_zero(values: torch.Tensor) -> torch.Tensor:
    """Mask of the elements that are -0.0: the one value whose bit pattern is the sign bit
    alone, so a single integer comparison finds them."""
    bits = _BITS.get(values.dtype)
    if bits is None or not values.is_contiguous():
        return (values == 0) & torch.signbit(values)
    return values.view(bits) == torch.iinfo(bits).min


def flags(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(non-finite, negative zeros)``: the sorted flat indices of the NaN and ±inf elements
    of ``values``, and of its -0.0 elements. For a contiguous float64 CPU tensor one fused
    pass counts both first, and a scan for indices runs only where there are any (rarely)."""
    if (_fused is not None and values.dtype == torch.float64 and values.device.type == "cpu"
            and values.is_contiguous() and not values.requires_grad):
        nonfinite_count, negative_zero_count = _fused.scan(values.numpy())
        none = torch.empty(0, dtype=torch.long)
        return (indices(nonfinite(values)) if nonfinite_count else none,
                indices(negative_zero(values)) if negative_zero_count else none)
    return indices(nonfinite(values)), indices(negative_zero(values))


def any_true(mask: torch.Tensor) -> bool:
    """``bool(mask.any())`` for a boolean mask."""
    if _numpy_bool(mask):
        return bool(mask.numpy().any())
    return bool(mask.any())


def indices(mask: torch.Tensor) -> torch.Tensor:
    """The flat indices where ``mask`` holds (``torch.nonzero(mask.reshape(-1)).flatten()``)."""
    if _numpy_bool(mask):
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask.reshape(-1)).flatten()


def count(mask: torch.Tensor) -> int:
    """How many elements of ``mask`` hold (``int(torch.count_nonzero(mask))``)."""
    if _numpy_bool(mask):
        return int(np.count_nonzero(mask.numpy()))
    return int(torch.count_nonzero(mask))


def _numpy_bool(mask: torch.Tensor) -> bool:
    return mask.device.type == "cpu" and mask.dtype == torch.bool and not mask.requires_grad
