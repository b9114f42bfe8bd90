"""Piecewise activations and their kinks."""
import torch


class HardswishClosedRange(torch.autograd.Function):
    """Hardswish whose backward uses closed ranges: -0.5 at -3 and 1.5 at 3.

    Both lie between the one-sided derivatives, so this is a legitimate convention; torch's
    own hardswish returns 0 at -3 and 1 at 3.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.clamp(x + 3, 0, 6) / 6

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        middle = x / 3 + 0.5
        slope = torch.where(x < -3, torch.zeros_like(x), torch.where(x > 3, torch.ones_like(x), middle))
        return g * slope
