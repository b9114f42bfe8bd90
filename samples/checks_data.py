"""Targets with no gradient at all (their output does not require grad): a constant or a step
function, whose true gradient is 0 wherever it is differentiable, is right to give none (GA101
info, not fail); a forward that varies (samples/hygiene.py numpy_tanh) keeps its GA101 fail."""
import torch


def constant_zero(x: torch.Tensor) -> torch.Tensor:
    """A layer that switches a path off: zeros_like does not require grad, and needs not."""
    return torch.zeros_like(x)


def heaviside_step(x: torch.Tensor) -> torch.Tensor:
    """A hard step, detached by the comparison: its derivative is 0 away from x = 0."""
    return (x > 0).to(x.dtype)
