"""Device placement: a tensor created without device= and the fixed version."""
import torch

import gradaudit


@gradaudit.activation
def hard_coded_zeros(x):
    """ReLU whose zeros are created on the CPU: raises on a GPU (or on meta)."""
    return torch.where(x > 0, x, torch.zeros(x.shape))


@gradaudit.activation
def zeros_like_relu(x):
    """The same ReLU with zeros on the input's device."""
    return torch.where(x > 0, x, torch.zeros_like(x))


@gradaudit.activation
def scalar_constant(x):
    """A 0-dim CPU constant mixes legally with tensors on any device."""
    return x * torch.tensor(0.5)


class HardCodedMaskBackward(torch.autograd.Function):
    """Identity whose backward builds its mask on the CPU: only the backward mixes devices."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        ones = torch.ones(x.shape, dtype=g.dtype)
        return g * ones


SHIFT = torch.tensor([0.5])
"""A module-level constant: one element, but not 0-dim, so it does not mix with other devices."""


@gradaudit.activation
def global_shift(x):
    """Softplus shifted by a CPU tensor made at import time: nothing is created inside the call."""
    return torch.nn.functional.softplus(x) - SHIFT
