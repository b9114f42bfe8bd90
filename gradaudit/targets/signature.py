"""A target's tensor inputs, read from its signature (DESIGN.md, "Targets with several tensor
inputs"): every required positional parameter after the first is a tensor input, as in
``forward(ctx, x, bias)``, ``f(x, gate)`` and ``forward(self, x, gate)``; parameters with
defaults keep them unless a role is given for them by name."""
from __future__ import annotations

import inspect
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from .types import applied_function, scripted_function

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
NUMBER_ANNOTATIONS = (int, float, complex, numbers.Number, numbers.Real, "int", "float", "Number", "numbers.Number")


@dataclass(frozen=True)
class Parameter:
    """One parameter of the target after its first (x)."""

    name: str
    position: int | None
    """Its index among the positional arguments after x, or None for a keyword-only one."""
    required: bool
    number: bool
    """Whether it is annotated as a number (``slope: float``): a bare integer role is then a constant."""
    default: Any = None
    """Its default value, when it has one."""


def _callable_signature(obj: Any) -> tuple[inspect.Signature | None, int]:
    """The signature to read and how many leading parameters to skip (ctx, self)."""
    obj = applied_function(obj) or obj  # MyFn.apply reads as MyFn
    if isinstance(obj, type) and issubclass(obj, torch.autograd.Function):
        forward = obj.forward
        separate_context = getattr(obj, "setup_context", None) is not getattr(torch.autograd.Function, "setup_context", None)
        return _signature(forward), 0 if separate_context else 1
    if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
        return _signature(obj.forward), 1
    if isinstance(obj, torch.nn.Module):
        return _signature(type(obj).forward), 1
    init = getattr(obj, "_init_fn", None)  # a torch.library CustomOpDef: the function it wraps
    if callable(init):
        return _signature(init), 0
    return _signature(scripted_function(obj) or obj), 0


def _signature(fn: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without one: a one-tensor target
        return None


def _is_number(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty:
        return False
    if isinstance(annotation, str):
        return annotation.strip() in NUMBER_ANNOTATIONS
    return annotation in NUMBER_ANNOTATIONS or (isinstance(annotation, type) and issubclass(annotation, numbers.Number))


def parameters_after_first(obj: Any) -> list[Parameter]:
    """The parameters of the target after x, in order (empty when it has no readable signature
    or takes ``*args``)."""
    signature, skip = _callable_signature(obj)
    if signature is None:
        return []
    params = list(signature.parameters.values())[skip:]
    if not params or params[0].kind not in POSITIONAL:
        return []
    found: list[Parameter] = []
    position = 0
    for param in params[1:]:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        required = param.default is inspect.Parameter.empty
        positional = param.kind in POSITIONAL
        found.append(Parameter(param.name, position if positional else None, required, _is_number(param.annotation),
                               None if required else param.default))
        if positional:
            position += 1
    return found


def tensor_parameters(obj: Any, named: set[str] | frozenset[str] = frozenset()) -> list[Parameter]:
    """The target's extra tensor inputs: required positional parameters after x, and any other
    parameter that ``named`` gives a role."""
    return [p for p in parameters_after_first(obj) if (p.required and p.position is not None) or p.name in named]
