"""Targets with several tensor inputs (issue 20): (x, gate), (x, bias), (x, alpha), constants.

Verdicts are in samples/README.md; roles of inputs other than ``like`` are declared with
``@gradaudit.activation(inputs=...)`` where the target lives, as a user would.
"""
import torch
import torch.nn.functional as F

import gradaudit


def swiglu(x, gate):
    """SwiGLU written plainly: x * silu(gate). Pass."""
    return x * F.silu(gate)


class SwiGLUWrongGate(torch.autograd.Function):
    """SwiGLU whose gate gradient forgets the product rule's second term: fail GA101 on gate."""

    @staticmethod
    def forward(ctx, x, gate):
        ctx.save_for_backward(x, gate)
        return x * F.silu(gate)

    @staticmethod
    def backward(ctx, grad):
        x, gate = ctx.saved_tensors
        s = torch.sigmoid(gate)
        return grad * gate * s, grad * x * s  # d/dgate silu = s * (1 + gate * (1 - s)), not s


def _gelu_derivative(z):
    """d/dz of the exact GELU, z * Phi(z): Phi(z) + z * phi(z)."""
    return 0.5 * (1 + torch.erf(z / 2 ** 0.5)) + z * torch.exp(-0.5 * z * z) / (2 * torch.pi) ** 0.5


class _BiasGELUFull(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias):
        ctx.save_for_backward(x, bias)
        return F.gelu(x + bias)

    @staticmethod
    def backward(ctx, grad):
        x, bias = ctx.saved_tensors
        d = grad * _gelu_derivative(x + bias)
        return d, d  # the bias gradient left full-size: autograd reduces it silently


BiasGELUFull = gradaudit.activation(_BiasGELUFull, inputs={"bias": (8,)})
"""Fused bias-GELU returning the unreduced bias gradient: warn GA106."""


class _BiasGELUSum0(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias):
        ctx.save_for_backward(x, bias)
        return F.gelu(x + bias)

    @staticmethod
    def backward(ctx, grad):
        x, bias = ctx.saved_tensors
        d = grad * _gelu_derivative(x + bias)
        return d, d.sum(0).view(bias.shape)  # assumes 2-D x: breaks on (B, T, C)


BiasGELUSum0 = gradaudit.activation(_BiasGELUSum0, inputs={"bias": (8,)})
"""Bias gradient reduced with .sum(0), written for 2-D input: fail GA404 on (B, T, C)."""


@gradaudit.activation(inputs={"alpha": (1, 8, 1)})
def snake(x, alpha):
    """Snake with a per-channel alpha (x of shape (B, C, L)): pass."""
    return x + torch.sin(alpha * x) ** 2 / alpha


class _SnakeWrongAlpha(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x, alpha)
        return x + torch.sin(alpha * x) ** 2 / alpha

    @staticmethod
    def backward(ctx, grad):
        x, alpha = ctx.saved_tensors
        s2 = 2 * torch.sin(alpha * x) * torch.cos(alpha * x)
        dx = 1 + s2
        dalpha = x * s2 / alpha  # forgets -sin(alpha x)^2 / alpha^2
        return grad * dx, (grad * dalpha).sum(dim=(0, 2), keepdim=True)


SnakeWrongAlpha = gradaudit.activation(_SnakeWrongAlpha, inputs={"alpha": (1, 8, 1)})
"""Snake whose alpha gradient drops a term: fail."""


class SavedInputsReused(torch.autograd.Function):
    """A backward that writes its gradients into its saved inputs to reuse their memory: fail GA401."""

    @staticmethod
    def forward(ctx, x, gate):
        ctx.save_for_backward(x, gate)
        return x * torch.sigmoid(gate)

    @staticmethod
    def backward(ctx, grad):
        x, gate = ctx.saved_tensors
        s = torch.sigmoid(gate)
        dgate = grad * x * s * (1 - s)
        dx = x.copy_(grad * s)  # the saved x overwritten with its gradient
        return dx, dgate


class ViewGradOutput(torch.autograd.Function):
    """A backward that calls .view on grad_output: fail GA404 on an expanded grad_output."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        flat = grad.view(-1)
        return (flat * (1 - torch.tanh(x.reshape(-1)) ** 2)).view(x.shape)


class SurrogateSpike(torch.autograd.Function):
    """A surrogate-gradient spike with a constant slope: audited with --input slope=25."""

    @staticmethod
    def forward(ctx, x, slope: float):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.slope * x)
        return grad * ctx.slope * s * (1 - s), None


gradaudit.activation(SurrogateSpike, surrogate=True, inputs={"slope": 25})


@torch.library.custom_op("gradaudit_samples::mul_sigmoid", mutates_args=())
def mul_sigmoid(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """A two-operand custom op, x * sigmoid(gate), with its autograd and fake registered: pass."""
    return x * torch.sigmoid(gate)


@mul_sigmoid.register_fake
def _(x, gate):
    return torch.empty_like(x)


def _mul_sigmoid_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _mul_sigmoid_backward(ctx, grad):
    x, gate = ctx.saved_tensors
    s = torch.sigmoid(gate)
    return grad * s, grad * x * s * (1 - s)


mul_sigmoid.register_autograd(_mul_sigmoid_backward, setup_context=_mul_sigmoid_setup)
gradaudit.activation(mul_sigmoid)


class GatedModule(torch.nn.Module):
    """A module whose forward is forward(x, gate): x * sigmoid(gate). Pass."""

    def forward(self, x, gate):
        return x * torch.sigmoid(gate)


def gated_mask(x, gate):
    """x * (gate > 0): exactly zero wherever gate <= 0, so its -0.0 (x < 0) is spurious: warn GA203."""
    return x * (gate > 0).to(x.dtype)


def gelu_gated(x, gate):
    """x * gelu(gate): its -0.0 at x = +0.0 carries the product's sign: pass."""
    return x * F.gelu(gate)


def relu_gate(x, gate):
    """x * relu(gate): a kink in the gate at 0 (for x != 0), found along gate; its -0.0 where
    x < 0 and gate < 0 is exactly zero around (spurious): warn GA203."""
    return x * torch.relu(gate)


class _BiasGELUSumFirstDim(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias):
        ctx.save_for_backward(x, bias)
        return F.gelu(x + bias)

    @staticmethod
    def backward(ctx, grad):
        x, bias = ctx.saved_tensors
        d = grad * _gelu_derivative(x + bias)
        return d, d.sum(dim=0)  # (C,) on (B, C); (T, C) on (B, T, C), which autograd reduces silently


BiasGELUSumFirstDim = gradaudit.activation(_BiasGELUSumFirstDim, inputs={"bias": (8,)})
"""Bias gradient ``.sum(dim=0)`` (as flash-attn's bias_gelu_back): right on (B, C), a (T, C) gradient
on (B, T, C) that autograd reduces by accident: warn GA106."""


@gradaudit.activation(inputs={"bias": (8,)})
def flat_view_bias_relu(x, bias):
    """Bias-ReLU through ``x.view(-1, C)``: crashes on a non-contiguous x: fail GA404."""
    return torch.relu(x.view(-1, bias.shape[-1]) + bias).view(x.shape)


@torch.jit.script
def _scripted_snake(x, alpha):
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


scripted_snake = gradaudit.activation(_scripted_snake, inputs={"alpha": (1, 8, 1)})
"""Snake compiled with torch.jit.script (descript-audio-codec style): its parameters come from the
scripted Python function. Pass."""


class _BiasSiLUStoreFlag(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, store_half):
        ctx.save_for_backward(x.half() if store_half else x, bias)
        ctx.dtype, ctx.store_half = x.dtype, store_half
        return F.silu(x + bias)

    @staticmethod
    def backward(ctx, grad):
        x, bias = ctx.saved_tensors
        z = x.to(ctx.dtype) + bias
        s = torch.sigmoid(z)
        d = grad * s * (1 + z * (1 - s))
        return d, d.sum_to_size(bias.shape), None


BiasSiLUStoreFlag = gradaudit.activation(_BiasSiLUStoreFlag, inputs={"bias": (8,), "store_half": False})
"""Bias-SiLU with a required flag (as Megatron's fp8_input_store): the flag is a constant. Pass."""
