"""torch.compile: what compiling changes (GA406, opt-in: --compile or compile=True).

The default audit does not compile, so these pass it; with --compile they show GA406."""
import torch
import torch.nn.functional as F

import gradaudit


@gradaudit.activation
def relu6(x):
    """F.relu6: eager keeps relu6(-0.0) = -0.0, Inductor returns +0.0 (warn GA406 at x = -0.0)."""
    return F.relu6(x)


@gradaudit.activation
def clamp_relu(x):
    """ReLU as clamp(min=0): the same -0.0 that Inductor turns into +0.0."""
    return x.clamp(min=0)


@gradaudit.activation
def approximate_when_compiled(x):
    """Exact GELU in eager, the tanh approximation when compiled: a fast path that is not the
    same function (fail GA406: compiled values and gradients are farther from float64)."""
    if torch.compiler.is_compiling():
        return F.gelu(x, approximate="tanh")
    return F.gelu(x)


@gradaudit.activation
def where_relu_compiled(x):
    """ReLU through torch.where: compiled and eager agree, zero signs included."""
    return torch.where(x > 0, x, torch.zeros_like(x))
