"""Activations with the defects gradaudit exists to find. Each says what is wrong."""
import torch

import gradaudit


class HardswishWrongAbove3(torch.autograd.Function):
    """Hardswish whose backward uses the middle branch's slope for x > 3 as well.

    The derivative is 1 for x > 3; this backward returns x/3 + 1/2 there. gradcheck on randn
    inputs almost never samples x > 3.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.clamp(x + 3, 0, 6) / 6

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        slope = torch.where(x < -3, torch.zeros_like(x), x / 3 + 0.5)
        return grad_output * slope


class SoftplusThresholdBug(torch.autograd.Function):
    """Softplus with torch's linear regime above 20, whose backward forgets that regime:
    the derivative there is 1 (sigmoid(x) would be fine), this returns 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x > 20, x, torch.log1p(torch.exp(x.clamp(max=20))))

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        slope = torch.where(x > 20, torch.zeros_like(x), torch.sigmoid(x))
        return grad_output * slope


@gradaudit.activation
def abs_softplus(x):
    """The textbook stable softplus, max(x, 0) + log1p(exp(-|x|)). The function is smooth at 0,
    but autograd differentiates the pieces: clamp passes 1 and abs passes 0 at x == 0, so the
    gradient there is 1 instead of 0.5. Random inputs never hit exactly 0."""
    return x.clamp(min=0) + torch.log1p(torch.exp(-x.abs()))


@gradaudit.activation
def where_sqrt(x):
    """The torch.where trap: the unused sqrt branch has a NaN gradient for x <= 0."""
    return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))


@gradaudit.activation
def neg_relu(x):
    """-relu(-x): a min(x, 0) that returns -0.0 for every positive input."""
    return -torch.relu(-x)


class MaskGradReLU(torch.autograd.Function):
    """A ReLU whose backward multiplies by a mask: -0.0 gradients for negative grad_output."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0).to(g.dtype)


@gradaudit.activation
def naive_softplus(x):
    """log(1 + exp(x)): exp overflows for x > 88 in float32 (and x > 11 in float16)."""
    return torch.log(1 + torch.exp(x))


class ReLUTwoAtZero(torch.autograd.Function):
    """A ReLU whose backward returns 2 at exactly x == 0 (outside [0, 1])."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        slope = (x > 0).to(g.dtype) + 2 * (x == 0).to(g.dtype)
        return torch.where(slope == 0, torch.zeros_like(g), g * slope)


class AbsDivide(torch.autograd.Function):
    """abs with backward g * x / |x|: NaN at x == 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.abs()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x / x.abs()


class HeavisideSTE(torch.autograd.Function):
    """Heaviside step forward, identity backward: an undeclared straight-through estimator."""

    @staticmethod
    def forward(ctx, x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g.clone()
