"""Whole-probe scans that torch composes from several kernels, done in one pass.

At a million probe points ``torch.isfinite`` (several kernels) costs about as much as a
float32 forward and backward of the target, and ``Tensor.any`` half of that; NumPy's
versions are several times cheaper (``Tensor.any`` over a million booleans: 0.19 ms, NumPy:
0.001 ms; ``torch.nonzero``: 0.32 ms, NumPy: 0.10 ms). The results are identical; only CPU
tensors of NumPy-supported dtypes take the fast route. :func:`flags` first asks two torch
reductions (on torch's threads) whether there can be any non-finite value or -0.0 at all, so
the indices are looked for only where there may be some.
"""
from __future__ import annotations

import math

import numpy as np
import torch

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
    of ``values``, and of its -0.0 elements. For a contiguous CPU tensor two reductions look
    first, and a scan for indices runs only where they may find some (rarely)."""
    none = torch.empty(0, dtype=torch.long)
    maybe_nonfinite, maybe_negative_zero = _may_hold(values)
    return (indices(nonfinite(values)) if maybe_nonfinite else none,
            indices(negative_zero(values)) if maybe_negative_zero else none)


def _may_hold(values: torch.Tensor) -> tuple[bool, bool]:
    """Whether ``values`` may hold a non-finite element, and a -0.0, from two reductions
    that read it once each (a yes can be wrong, a no cannot):

    - its sum is finite only when every element is (a finite sum that overflows says yes);
    - -0.0 is the one value whose bit pattern is the sign bit alone, the smallest integer of
      the pattern's width, so the smallest pattern tells (float64 values are read as pairs of
      32-bit words, whose minimum torch finds several times faster than that of 64-bit ones:
      a low word 0x80000000 or a negative subnormal below 2**-1042 says yes too).
    """
    bits = _BITS.get(values.dtype)
    if values.numel() == 0:
        return False, False
    if bits is None or values.device.type != "cpu" or not values.is_contiguous() or values.requires_grad:
        return True, True
    words = torch.int32 if bits == torch.int64 else bits
    smallest = int(values.view(words).amin())
    return not math.isfinite(float(values.sum())), smallest == torch.iinfo(words).min


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
