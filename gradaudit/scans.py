"""Whole-probe scans that torch composes from several kernels, done in one pass.

At a million probe points ``torch.isfinite`` (several kernels) costs about as much as a
float32 forward and backward of the target, and ``Tensor.any`` half of that; NumPy's
versions are several times cheaper. The results are identical; only CPU tensors of
NumPy-supported dtypes take the fast route.
"""
from __future__ import annotations

import numpy as np
import torch

_NUMPY_DTYPES = (torch.float64, torch.float32, torch.float16)


def nonfinite(values: torch.Tensor) -> torch.Tensor:
    """Mask of NaN and ±inf elements (``~torch.isfinite``)."""
    if values.device.type == "cpu" and values.dtype in _NUMPY_DTYPES and not values.requires_grad:
        mask = np.isfinite(values.numpy())
        return torch.from_numpy(np.logical_not(mask, out=mask))
    return ~torch.isfinite(values)


def any_true(mask: torch.Tensor) -> bool:
    """``bool(mask.any())`` for a boolean mask."""
    if mask.device.type == "cpu" and mask.dtype == torch.bool and not mask.requires_grad:
        return bool(mask.numpy().any())
    return bool(mask.any())
