"""Activations that gradaudit passes."""
import torch
import torch.nn.functional as F

import gradaudit


class SiLUFunction(torch.autograd.Function):
    """SiLU with a hand-written, correct backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_output * s * (1 + x * (1 - s))


@gradaudit.activation
def where_relu(x):
    """ReLU that selects real zeros: no -0.0."""
    return torch.where(x > 0, x, torch.zeros_like(x))


@gradaudit.activation
def stable_softplus(x):
    """Softplus that never overflows: log(exp(0) + exp(x)) through logaddexp."""
    return torch.logaddexp(x, torch.zeros_like(x))


@gradaudit.activation
def safe_sqrt_relu(x):
    """sqrt(relu(x)) with the torch.where trap avoided: the sqrt branch only sees safe inputs."""
    positive = x > 0
    safe = torch.where(positive, x, torch.ones_like(x))
    return torch.where(positive, torch.sqrt(safe), torch.zeros_like(x))


class Swish(torch.nn.Module):
    """An nn.Module with a learnable beta, constructed with no arguments."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = torch.nn.Parameter(torch.tensor(beta))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


@gradaudit.activation
def leaky(x):
    return F.leaky_relu(x, 0.1)
