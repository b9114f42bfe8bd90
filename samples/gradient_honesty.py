"""Gradients judged against the float64 forward's own slopes (issue 18, items 1 and 7)."""
import torch

import gradaudit


class SqrtReluInfBackward(torch.autograd.Function):
    """sqrt(relu(x)) whose backward divides by the output: 0.5 / 0 = inf for every x < 0,
    where the function is flat and its derivative exactly 0."""

    @staticmethod
    def forward(ctx, x):
        y = torch.where(x > 0, torch.sqrt(x.clamp(min=0)), torch.zeros_like(x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * 0.5 / y


@gradaudit.activation(domain=(-5, -0.1))
def sqrt_relu_inf_backward_on_negatives(x):
    """The same backward where the function is flat only: the derivative is 0, the backward inf."""
    return SqrtReluInfBackward.apply(x)


@gradaudit.activation
def snake(x):
    """Snake with a = 1, x + sin(x)**2: periodic, so at |x| >= 1e6 a relative finite-difference
    step is longer than the period (the derivative 1 + sin(2x) is right everywhere)."""
    return x + torch.sin(x) ** 2


@gradaudit.activation
def reciprocal(x):
    """1/x: a real pole at 0, where the output and the gradient are infinite (information)."""
    return 1 / x


@gradaudit.activation(domain=(0, 10))
def log_on_nonnegatives(x):
    """log at 0, inside the declared domain: -inf output, inf gradient, a pole (information)."""
    return torch.log(x)


class NegativeZeroInfBackward(torch.autograd.Function):
    """The identity, whose backward special-cases zero with a limit formula that sees the sign
    of zero: 1 - exp(-1/x) is -inf at x = -0.0 alone; +0.0 and both neighbours give 1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * torch.where(x == 0, 1 - torch.exp(-1 / x), torch.ones_like(x))
