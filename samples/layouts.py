"""Layouts and shapes (GA404): targets whose verdict depends on how GA404 compares layouts."""
import torch

import gradaudit


@gradaudit.activation
def first_ten(x):
    """Returns the first ten elements: every other input element is silently dropped. Nothing
    is wrong with any layout, but most checks cannot judge elements that are not returned, so
    the audit says so (GA404 info) instead of a silent pass."""
    return x[:10]


@gradaudit.activation
def sigmoid_gate(x):
    """A GLU written by hand, ``a * sigmoid(b)`` over the two halves of the last dimension, with
    a fallback for non-contiguous inputs through the identity sigmoid(b) = (1 + tanh(b / 2)) / 2
    (as a fused kernel's fallback path might). The two paths agree up to float32 rounding, but
    in the gradient that rounding (1e-7 near sigmoid = 1) is multiplied by the other half,
    which can be large. Against float64, both layouts are equally right (pass)."""
    a, b = x.chunk(2, dim=-1)
    gate = torch.sigmoid(b) if x.is_contiguous() else 0.5 + 0.5 * torch.tanh(0.5 * b)
    return a * gate


class DitheredGradReLU(torch.autograd.Function):
    """A ReLU whose backward dithers the gradient by a random relative 1e-4 (as stochastic
    rounding of gradients does): a random backward (GA402 warn), within GA101's tolerance.
    Other layouts draw the noise in another order, which is no layout defect: GA404 must not
    compare random results."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        noise = 1 + 1e-4 * (2 * torch.rand_like(grad_output) - 1)
        return torch.where(x > 0, grad_output * noise, torch.zeros_like(grad_output))
