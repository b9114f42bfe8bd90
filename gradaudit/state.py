"""Leave the caller's torch state as it was found."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def preserved_torch_state() -> Iterator[None]:
    """Save and restore RNG (CPU and initialised CUDA), default dtype, grad mode, anomaly
    mode, deterministic-algorithm flags and thread count around the block."""
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    default_dtype = torch.get_default_dtype()
    grad_enabled = torch.is_grad_enabled()
    anomaly = torch.is_anomaly_enabled()
    anomaly_nan = torch.is_anomaly_check_nan_enabled()
    deterministic = torch.are_deterministic_algorithms_enabled()
    deterministic_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    try:
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
