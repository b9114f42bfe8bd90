"""Leave the caller's torch state as it was found, and audit in a known one."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

_SMALLEST_SUBNORMAL = 5e-324
_ONE = 1.0
"""Module globals, so that the product below is computed at run time, not folded."""


def flush_denormal_enabled() -> bool:
    """Whether this thread flushes subnormals to zero (``torch.set_flush_denormal(True)``;
    torch has no getter): a float64 subnormal times one is then zero."""
    return _SMALLEST_SUBNORMAL * _ONE == 0.0


@contextlib.contextmanager
def preserved_torch_state() -> Iterator[None]:
    """Save and restore RNG (CPU and initialised CUDA), default dtype, grad mode, anomaly
    mode, deterministic-algorithm flags, thread count and flush-to-zero around the block.

    Inside it, subnormals are not flushed (the probes hold them, and the judgement of
    underflow needs them) and inference mode is off (an audit differentiates; tensors it
    caches must be usable after the caller leaves inference mode)."""
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    default_dtype = torch.get_default_dtype()
    grad_enabled = torch.is_grad_enabled()
    anomaly = torch.is_anomaly_enabled()
    anomaly_nan = torch.is_anomaly_check_nan_enabled()
    deterministic = torch.are_deterministic_algorithms_enabled()
    deterministic_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    flush_denormal = flush_denormal_enabled()
    if flush_denormal:
        torch.set_flush_denormal(False)
    try:
        with torch.inference_mode(False):
            yield
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        torch.set_default_dtype(default_dtype)
        torch.set_grad_enabled(grad_enabled)
        torch.autograd.set_detect_anomaly(anomaly, check_nan=anomaly_nan)
        if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) != (
            deterministic, deterministic_warn_only
        ):  # only when changed: the call imports torch._inductor (a second on first use)
            torch.use_deterministic_algorithms(deterministic, warn_only=deterministic_warn_only)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if flush_denormal_enabled() != flush_denormal:  # the target may have changed it too
            torch.set_flush_denormal(flush_denormal)
