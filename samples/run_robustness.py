"""Targets that misbehave in ways that once stopped or derailed a whole run (GA901 each).

`exits_on_small_inputs` calls sys.exit() when a check hands it a small tensor: the run
used to end there, silently, with exit code 0. `Float32BackwardRaises` crashes in its own
backward in float32: the finding names that line instead of blaming gradaudit.
`returns_integers` rounds to an integer tensor, which carries no gradient. `reversed_domain`
declares domain=(5, 1): a GA901 naming the option, and the other targets are still audited.
"""
import sys

import torch

import gradaudit


@gradaudit.activation
def exits_on_small_inputs(x):
    """sys.exit() on fewer than 16 elements (inside the shape and in-place checks)."""
    if x.numel() < 16:
        sys.exit(0)
    return torch.tanh(x)


class Float32BackwardRaises(torch.autograd.Function):
    """ReLU whose backward only works in float64."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if x.dtype != torch.float64:
            raise NotImplementedError("only float64 is supported")
        return torch.where(x > 0, grad, torch.zeros_like(grad))


@gradaudit.activation
def returns_integers(x):
    """An integer step: no gradient flows through it."""
    return torch.round(x).long()


@gradaudit.activation(domain=(5, 1))
def reversed_domain(x):
    """A correct tanh with an invalid declared domain (lo > hi)."""
    return torch.tanh(x)
