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

from typing import Sequence

import torch
from torch.overrides import has_torch_function

try:
    from torch.autograd.graph import _engine_run_backward as _run_backward
except ImportError:  # pragma: no cover - another torch
    _run_backward = None


def _direct(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
            grad_outputs: Sequence[torch.Tensor]) -> bool:
    """Whether the engine may be called directly: plain tensors, no override, and each
    grad_output of its output's shape, dtype and device."""
    tensors = (*outputs, *inputs, *grad_outputs)
    return (_run_backward is not None and len(outputs) == len(grad_outputs) and len(inputs) > 0
            and all(type(t) is torch.Tensor for t in tensors) and not has_torch_function(tensors)
            and all(not out.is_nested and g.shape == out.shape and g.dtype == out.dtype and g.device == out.device
                    for out, g in zip(outputs, grad_outputs)))


def vjps(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], grad_outputs: Sequence[torch.Tensor],
         retain_graph: bool | None = None, create_graph: bool = False) -> tuple[torch.Tensor | None, ...]:
    """``torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph=..., create_graph=...,
    allow_unused=True)``: the gradients of ``outputs`` with respect to ``inputs``, None for an
    unused input. Raises what that call raises."""
    outputs, inputs, grad_outputs = tuple(outputs), tuple(inputs), tuple(grad_outputs)
    if retain_graph is None:
        retain_graph = create_graph
    if _direct(outputs, inputs, grad_outputs):
        return tuple(_run_backward(outputs, grad_outputs, retain_graph, create_graph, inputs, True,
                                   accumulate_grad=False))
    return torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph=retain_graph,
                               create_graph=create_graph, allow_unused=True)


def vjp(out: torch.Tensor, leaf: torch.Tensor, grad_output: torch.Tensor,
        retain_graph: bool | None = None, create_graph: bool = False) -> torch.Tensor | None:
    """:func:`vjps` of one output with respect to one input."""
    (grad,) = vjps((out,), (leaf,), (grad_output,), retain_graph=retain_graph, create_graph=create_graph)
    return grad
