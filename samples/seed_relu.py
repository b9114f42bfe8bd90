"""The motivating case: two ReLUs that train identically, one of which returns -0.0."""
import torch

import gradaudit


class MyReLU(torch.autograd.Function):
    """ReLU with a hand-written backward: clamp forward, masked clone backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[x < 0] = 0
        return grad_input


@gradaudit.activation
def no_back(x):
    """ReLU by masking: same values and gradients, but -0.0 for every negative input."""
    return x * (x > 0).float()
