"""Autograd hygiene defects: each target here has one, and its docstring says which."""
import torch

import gradaudit
from torch.autograd.function import once_differentiable


class GradOutputMaskReLU(torch.autograd.Function):
    """A ReLU whose backward zeroes grad_output in place (grad_output[x < 0] = 0) and returns
    it: the caller's grad_output tensor is overwritten (GA401)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        grad_output[x < 0] = 0
        return grad_output


@gradaudit.activation
def relu_inplace(x):
    """A ReLU that calls relu_ on its input: the caller's tensor is overwritten (GA401)."""
    return x.relu_()


class StashedDerivativeSiLU(torch.autograd.Function):
    """SiLU that keeps its derivative on ctx and multiplies it by grad_output in place: a second
    backward over the same graph returns derivative * g * g (not reentrant, GA402)."""

    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.derivative = s * (1 + x * (1 - s))
        return x * s

    @staticmethod
    def backward(ctx, grad_output):
        return ctx.derivative.mul_(grad_output)


class DetachedSiLU(torch.autograd.Function):
    """SiLU whose backward computes with x.detach(): first derivatives are right, but the double
    backward is silently zero instead of silu'' (GA102)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        x = x.detach()
        s = torch.sigmoid(x)
        return grad_output * s * (1 + x * (1 - s))


class OnceDifferentiableSiLU(torch.autograd.Function):
    """SiLU marked @once_differentiable: double backward raises, which is explicit (GA102 info)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_output * s * (1 + x * (1 - s))


@gradaudit.activation
def float32_silu(x):
    """SiLU written for float32: it casts with .float() and never casts back, so float64 and
    float16 inputs give float32 outputs (GA403)."""
    return torch.nn.functional.silu(x.float())


@gradaudit.activation
def exp_silu(x):
    """SiLU as x / (1 + exp(-x)): exp(-x) overflows for x < -11 in float16 (x < -88 in bfloat16),
    so the gradient is inf / inf = NaN where float32 is fine (GA403)."""
    return x / (1 + torch.exp(-x))


class WrongJvpSiLU(torch.autograd.Function):
    """SiLU with setup_context and a jvp that forgets the x * s * (1 - s) term: forward-mode AD
    disagrees with backward (GA103)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_output * s * (1 + x * (1 - s))

    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return tangent * torch.sigmoid(x)


class ModernReLU(torch.autograd.Function):
    """A correct ReLU in the torch.func style (setup_context, jvp, generate_vmap_rule):
    usable under jvp, vmap and torch.func.grad."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x.clamp(min=0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return torch.where(x > 0, grad_output, torch.zeros_like(grad_output))

    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return torch.where(x > 0, tangent, torch.zeros_like(tangent))


class SetupContextNoVmap(ModernReLU):
    """ModernReLU without a vmap rule: torch.func.grad works, torch.func.vmap does not (GA104)."""

    generate_vmap_rule = False


class FlatViewReLU(torch.autograd.Function):
    """A ReLU that flattens with .view(-1): crashes on transposed and channels_last inputs (GA404)."""

    @staticmethod
    def forward(ctx, x):
        flat = x.view(-1)
        ctx.save_for_backward(flat)
        return flat.clamp(min=0).view(x.shape)

    @staticmethod
    def backward(ctx, grad_output):
        (flat,) = ctx.saved_tensors
        grad = torch.where(flat > 0, grad_output.reshape(-1), torch.zeros_like(flat))
        return grad.view(grad_output.shape)


class _LearnableLeakyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return torch.where(x > 0, x, weight * x)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        grad_x = torch.where(x > 0, grad_output, weight * grad_output)
        grad_weight = (grad_output * x).sum()  # forgets the x <= 0 mask
        return grad_x, grad_weight


class WrongWeightGradPReLU(torch.nn.Module):
    """A PReLU module whose custom backward sums grad_output * x over every input for the
    weight's gradient, forgetting that only x <= 0 uses the weight (GA105)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(0.25))

    def forward(self, x):
        return _LearnableLeakyFunction.apply(x, self.weight)


@gradaudit.activation
def autocast_index_put(x):
    """A ReLU through a 1x1 matmul and a masked write into zeros_like(x). Under torch.autocast
    the matmul returns bfloat16 and the write into the float32 output raises (index_put needs
    equal dtypes): it fails under autocast only (GA403)."""
    h = (x.unsqueeze(-1) @ torch.ones(1, 1, dtype=x.dtype)).squeeze(-1)
    out = torch.zeros_like(x)
    mask = x > 0
    out[mask] = h[mask]
    return out


@gradaudit.activation
def numpy_tanh(x):
    """tanh through NumPy, which has no bfloat16: the call raises in bfloat16 (GA403), and no
    gradient flows back through NumPy (GA101)."""
    import numpy as np

    return torch.from_numpy(np.tanh(x.detach().numpy())).to(x.dtype)


class DetachedSoftmax(torch.autograd.Function):
    """Softmax over the last dimension whose backward uses the detached output: not elementwise,
    so GA102 runs gradgradcheck, which sees the wrong second derivative (GA102)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.softmax(x, dim=-1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        y = y.detach()
        return y * (grad_output - (grad_output * y).sum(dim=-1, keepdim=True))
