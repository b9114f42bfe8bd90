"""Targets that misbehave in ways that once ended or derailed a whole run (GA901 each).

Like broken.py, `gradaudit check samples/` skips them (discovery collects no plain
functions and no private names); name them explicitly, e.g.
`gradaudit check samples/run_robustness.py:exits_on_small_inputs`.

`exits_on_small_inputs` calls sys.exit() when a check hands it a small tensor: the run
used to end there, silently, with exit code 0. `float32_backward_raises` crashes in its own
backward in float32: the finding names that line instead of blaming gradaudit.
`returns_integers` rounds to an integer tensor, which carries no gradient.
"""
import sys

import torch


def exits_on_small_inputs(x):
    """sys.exit() on fewer than 16 elements (inside the checks that call it on small inputs)."""
    if x.numel() < 16:
        sys.exit(0)
    return torch.tanh(x)


class _Float32BackwardRaises(torch.autograd.Function):
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


def float32_backward_raises(x):
    return _Float32BackwardRaises.apply(x)


def returns_integers(x):
    """An integer step: no gradient flows through it."""
    return torch.round(x).long()
