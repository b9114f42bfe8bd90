"""Signed zeros that a step mask or a gate creates, and one that carries a real sign.

A -0.0 is spurious where the function is exactly zero around the point (in every input
element the output depends on): a mask that *steps* to zero, or a gate that is exactly
zero. It is not spurious where the function takes non-zero values arbitrarily close.
"""
import torch
import torch.nn.functional as F

import gradaudit


class HardSigmoid(torch.autograd.Function):
    """Hard sigmoid, clamp(x + 3, 0, 6) / 6, with a mask-multiplying backward.

    For x outside [-3, 3] and a negative grad_output, ``grad_output * mask / 6`` is -0.0
    where the derivative is exactly 0: the gradient steps from 1/6 straight to 0, no
    underflow.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.clamp(x + 3, 0, 6) / 6

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * ((x >= -3) & (x <= 3)) / 6


@gradaudit.activation
def hardshrink_mask(x):
    """Hard shrinkage written as a mask multiply, x * (|x| > 0.5): -0.0 for every x in
    [-0.5, 0), where the output steps from -0.5 straight to 0 (torch's F.hardshrink returns
    +0.0 there)."""
    return x * (x.abs() > 0.5)


@gradaudit.activation
def glu_relu(x):
    """A ReLU-gated linear unit, a * relu(b) over the two halves of the last dimension:
    -0.0 wherever a < 0 and b < 0, where the output is exactly zero around the point."""
    a, b = x.chunk(2, -1)
    return a * F.relu(b)


@gradaudit.activation
def geglu(x):
    """GEGLU, a * gelu(b): correct. Its -0.0 at a = +0.0 with gelu(b) < 0 carries the sign of
    the product (negative for a slightly positive), and the -0.0 where gelu(b) underflows is
    a tiny negative number rounded to zero."""
    a, b = x.chunk(2, -1)
    return a * F.gelu(b)
