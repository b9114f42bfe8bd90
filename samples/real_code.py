"""Activations as public packages write them, each a class of code that gave a wrong verdict:
Hugging Face's clipped GELU (a kink on a probe point past [-10, 10]), Megatron-LM's GeGLU (a
shape-changing target whose gradient is NaN), a learnable PReLU whose x-gradient is right only
at slope 1, and a surrogate spike whose backward forgets the constant's None (as snntorch's
LeakySpikeOperator). Verdicts are in samples/README.md."""
import torch
import torch.nn.functional as F

import gradaudit


class ClippedGELU(torch.nn.Module):
    """transformers' ClippedGELUActivation ("gelu_10"): clip(gelu(x), -10, 10). Its kink at
    x = 10 (where gelu(x) rounds to 10) sits on the probe's tail grid: pass, GA301 info."""

    def __init__(self, min: float = -10, max: float = 10):
        super().__init__()
        self.min, self.max = min, max

    def forward(self, x):
        return torch.clip(F.gelu(x), self.min, self.max)


def _geglu(y):
    y_1, y_2 = torch.chunk(y, 2, -1)
    return (y_1 * 0.5 * (1.0 + torch.tanh(0.79788456 * y_1 * (1 + 0.044715 * y_1 * y_1)))) * y_2


def _geglu_back(g, y):
    y_1, y_2 = torch.chunk(y, 2, -1)
    tanh_out = torch.tanh(0.79788456 * y_1 * (1 + 0.044715 * y_1 * y_1))
    ff = 0.5 * y_1 * ((1 - tanh_out * tanh_out) * (0.79788456 + 0.1070322243 * y_1 * y_1)) + 0.5 * (1 + tanh_out)
    return torch.cat(((g * y_2) * ff, g * (y_1 * 0.5 * (1.0 + tanh_out))), -1)


class GeGLUFunction(torch.autograd.Function):
    """Megatron-LM's GeGLUFunction: the input chunked in two halves. Its backward's y_1 * y_1
    overflows (|y_1| > 1e154 in float64, 1e19 in float32) where tanh' is 0: 0 * inf = NaN,
    where the output is finite. Fail GA202 (the output has half x's size)."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return _geglu(input)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return _geglu_back(grad_output, input)


class _LearnedPReLUWrongX(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return torch.where(x > 0, x, weight * x)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad.clone()  # should be weight * grad where x <= 0: right only at weight 1
        grad_weight = torch.where(x > 0, torch.zeros_like(x), x * grad)
        return grad_x, grad_weight.sum_to_size(weight.shape)


LearnedPReLUWrongX = gradaudit.activation(_LearnedPReLUWrongX, inputs={"weight": (8,)})
"""A per-channel PReLU whose x-gradient ignores the slope: fail GA101 (x's gradient with the
weight away from 1)."""


class _ScaledTanhMissingNone(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return torch.tanh(slope * x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.slope * (1 - torch.tanh(ctx.slope * x) ** 2)  # one gradient for two inputs


ScaledTanhMissingNone = gradaudit.activation(_ScaledTanhMissingNone, inputs={"slope": 2.0})
"""A backward that returns one gradient for (x, slope): every backward raises. Fail GA101."""


class DynamicTanhFloat32(torch.nn.Module):
    """Dynamic tanh (DyT) as written for bf16 training: computes in float32 and casts back, so
    float64 inputs are rounded to float32 inside. Warn GA403 (computed-in-float32) only."""

    def __init__(self, alpha: float = 0.5):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.full((), alpha))
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return (torch.tanh(self.alpha * x.float()) * self.weight + self.bias).to(x.dtype)
