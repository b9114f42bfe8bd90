"""Vector-Jacobian products without ``torch.autograd.grad``'s first-use import.

``torch.autograd.grad`` with a tensor grad_output checks its shape through
``torch.fx.experimental.symbolic_shapes``, whose first import (sympy and torch's meta
registrations) costs about 0.25 s: more than a default audit. The engine's grad_outputs are
made by ``empty_like``/``full_like`` of the output, so that check cannot fail; :func:`vjp`
runs the autograd engine directly (``torch.autograd.graph._engine_run_backward``, the call
``autograd.grad`` itself ends in) and falls back to ``torch.autograd.grad`` wherever it
might differ: tensor subclasses or torch-function modes, another shape, dtype or device,
or a torch without that function.
"""
from __future__ import annotations

import torch
from torch.overrides import has_torch_function

try:
    from torch.autograd.graph import _engine_run_backward as _run_backward
except ImportError:  # pragma: no cover - another torch
    _run_backward = None


def _direct(out: torch.Tensor, leaf: torch.Tensor, grad_output: torch.Tensor) -> bool:
    """Whether the engine may be called directly: plain tensors, no override, matching output."""
    return (_run_backward is not None and type(out) is torch.Tensor and type(leaf) is torch.Tensor
            and type(grad_output) is torch.Tensor and not out.is_nested
            and not has_torch_function((out, leaf, grad_output))
            and grad_output.shape == out.shape and grad_output.dtype == out.dtype
            and grad_output.device == out.device)


def vjp(out: torch.Tensor, leaf: torch.Tensor, grad_output: torch.Tensor,
        retain_graph: bool = False) -> torch.Tensor | None:
    """``torch.autograd.grad(out, leaf, grad_output, retain_graph=..., allow_unused=True)[0]``:
    the gradient of ``out`` with respect to ``leaf`` for ``grad_output``, None where ``leaf``
    is unused. Raises what that call raises."""
    if _direct(out, leaf, grad_output):
        (grad,) = _run_backward((out,), (grad_output,), retain_graph, False, (leaf,), True,
                                accumulate_grad=False)
        return grad
    (grad,) = torch.autograd.grad(out, leaf, grad_output, retain_graph=retain_graph, allow_unused=True)
    return grad
