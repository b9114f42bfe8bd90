"""How a target with several tensor inputs is called (DESIGN.md, "Targets with several tensor
inputs"): its extra inputs from the signature, their roles, the layout of x that broadcasts
against parameter-like inputs, and *sections*, the one-tensor callables along x (or along
another input) with every other input held at a fixed value.

Every one-input check audits the section along x at the partners' :data:`DEFAULT_FILL`, so a
two-input target gets the whole one-input audit unchanged; what only several inputs can show
(each input's gradient, aliasing, the two-dimensional probe) is read from
:mod:`gradaudit.engine.pairs`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from ..targets.signature import Parameter, parameters_after_first, tensor_parameters
from ..targets.spec import TargetError
from ..targets.types import Target
from .options import InputRole

DEFAULT_FILL = 1.0
"""The value every partner (``like``) and parameter-like (shape) input holds along the main
section: a gate, a bias or a Snake alpha of 1 keeps the target a typical function of x."""
SPREAD_DIM = 2
"""Size of the non-channel dimensions of x's layout beside a parameter-like input ((1, C, 1): x
is laid out as (-1, C, 2))."""


@dataclass(frozen=True)
class Extra:
    """One extra input of the target and its role."""

    name: str
    role: InputRole
    parameter: Parameter

    @property
    def differentiable(self) -> bool:
        """Whether the audit differentiates the target with respect to it."""
        if self.role.kind in ("like", "shape"):
            return True
        value = self.role.value
        return isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad

    @property
    def broadcast(self) -> bool:
        """A parameter-like input: a shape role, or a floating constant tensor that requires grad."""
        if self.role.kind == "shape":
            return True
        value = self.role.value
        return self.differentiable and isinstance(value, torch.Tensor) and value.dim() > 0

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of a parameter-like input."""
        return self.role.shape if self.role.kind == "shape" else tuple(self.role.value.shape)

    def leaf(self, dtype: torch.dtype, device: str | torch.device = "cpu") -> torch.Tensor:
        """A leaf that requires grad for a parameter-like input: the given tensor, or values
        spread over [0.5, 1.5] (a bias, a per-channel slope) in its shape."""
        if self.role.kind != "shape":
            return self.role.value.detach().to(dtype=dtype, device=device).clone().requires_grad_(True)
        count = math.prod(self.role.shape)
        return torch.linspace(0.5, 1.5, count, dtype=dtype, device=device).reshape(self.role.shape).requires_grad_(True)


def _resolve(role: InputRole, parameter: Parameter) -> InputRole:
    """A bare integer: a constant for a parameter annotated as a number, else the shape (n,)."""
    if role.kind != "integer":
        return role
    if parameter.number:
        return InputRole("constant", value=role.value)
    if role.value < 1:
        return InputRole("constant", value=role.value)
    return InputRole("shape", shape=(int(role.value),))


def x_layout(target: str, extras: list[Extra]) -> tuple[int, ...] | None:
    """How x is laid out so that every parameter-like input broadcasts against it: their
    shapes aligned on the right, with -1 (the batch) in the first dimension of size 1 (or in
    front) and :data:`SPREAD_DIM` in the others. None when there is none."""
    shapes = [e.shape for e in extras if e.broadcast]
    if not shapes:
        return None
    rank = max(len(s) for s in shapes)
    combined = [1] * rank
    for extra in (e for e in extras if e.broadcast):
        shape = extra.shape
        for i, size in enumerate(shape, start=rank - len(shape)):
            if size != 1 and combined[i] not in (1, size):
                raise TargetError(
                    f"{target}: the input {extra.name!r} has shape {shape}, which does not broadcast against the "
                    f"other parameter-like inputs (dimension {i - rank} is {combined[i]} there). Give shapes that "
                    f"broadcast against one x, e.g. inputs={{'{extra.name}': {tuple(combined[rank - len(shape):])}}}."
                )
            combined[i] = max(combined[i], size)
    if combined[0] != 1:
        combined = [1] + combined
    layout = [SPREAD_DIM if size == 1 else size for size in combined]
    layout[0] = -1
    return tuple(layout)


class Binding:
    """The extra inputs of one target and how to call it with them."""

    def __init__(self, target: Target, roles: Mapping[str, InputRole]) -> None:
        self.target_name = target.name
        self.parameters = parameters_after_first(target.obj)
        known = {p.name: p for p in self.parameters}
        for name in roles:
            if name not in known:
                names = ", ".join(known) or "none"
                raise TargetError(
                    f"{target.name}: inputs names {name!r}, which is not a parameter of it (its parameters after "
                    f"the first are: {names}). Name one of those, e.g. --input {next(iter(known), 'gate')}=like, "
                    f"or drop the {name!r} entry."
                )
        self.extras = [Extra(p.name, _resolve(roles.get(p.name, InputRole("like")), p), p)
                       for p in tensor_parameters(target.obj, frozenset(roles))]
        self.layout = x_layout(target.name, self.extras)

    @property
    def several(self) -> bool:
        return bool(self.extras)

    @property
    def differentiable(self) -> list[Extra]:
        return [e for e in self.extras if e.differentiable]

    @property
    def partners(self) -> list[Extra]:
        """The elementwise partners (role ``like``)."""
        return [e for e in self.extras if e.role.kind == "like"]

    @property
    def broadcast(self) -> list[Extra]:
        return [e for e in self.extras if e.broadcast]

    # -- calling ---------------------------------------------------------------------------------
    def fill(self, extra: Extra, like: torch.Tensor, value: float = DEFAULT_FILL) -> Any:
        """The value ``extra`` takes beside x (``like``) along a section at ``value``."""
        if extra.role.kind == "like":
            return torch.full_like(like, value)
        if extra.role.kind == "shape":
            return torch.full(extra.role.shape, value, dtype=like.dtype, device=like.device)
        constant = extra.role.value
        if isinstance(constant, torch.Tensor):  # differentiated only where a check asks (Extra.leaf)
            return constant.detach().to(like.device)
        return constant

    def example(self, x: torch.Tensor) -> dict[str, Any]:
        """The extra inputs beside ``x`` for a one-off call of the hygiene checks: a partner gets
        x's values in another order, a parameter-like input :meth:`Extra.leaf` (both leaves that
        require grad), a constant its value."""
        values: dict[str, Any] = {}
        for extra in self.extras:
            if extra.role.kind == "like":
                values[extra.name] = x.detach().flip(0).clone().requires_grad_(True)
            elif extra.broadcast:
                values[extra.name] = extra.leaf(x.dtype, x.device)
            else:
                values[extra.name] = self.fill(extra, x)
        return values

    def arguments(self, x: torch.Tensor, values: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments of a call on x with the extra inputs' ``values``
        (by name): required positional parameters by position (a Function's apply takes no
        keywords, so skipped defaults are passed too), the others by keyword."""
        positional: dict[int, Any] = {}
        keywords: dict[str, Any] = {}
        for extra in self.extras:
            if extra.parameter.position is None:
                keywords[extra.name] = values[extra.name]
            else:
                positional[extra.parameter.position] = values[extra.name]
        args: list[Any] = [x]
        if positional:
            defaults = {p.position: p.default for p in self.parameters if p.position is not None}
            args += [positional[i] if i in positional else defaults.get(i) for i in range(max(positional) + 1)]
        return tuple(args), keywords

    def call(self, fn: Callable[..., Any], x: torch.Tensor, values: Mapping[str, Any]) -> Any:
        """``fn`` called on x with the extra inputs' ``values`` (see :meth:`arguments`)."""
        args, keywords = self.arguments(x, values)
        return fn(*args, **keywords)

    def lay_out(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat`` (1-D) padded with zeros and reshaped to :attr:`layout`."""
        if self.layout is None:
            return flat
        block = math.prod(size for size in self.layout if size > 0)
        pad = (-flat.numel()) % block
        if pad:
            flat = torch.cat([flat, flat.new_zeros(pad)])
        return flat.reshape(self.layout)

    def section(self, fn: Callable[..., Any] | None, value: float = DEFAULT_FILL, along: str | None = None,
                fixed: Mapping[str, float] | None = None,
                fn_for: Callable[[torch.Tensor], Callable[..., Any]] | None = None) -> Callable[[torch.Tensor], Any]:
        """The one-tensor callable along x (or along the partner ``along``) with every other
        input at ``value`` or its entry in ``fixed`` (by name, ``"x"`` for x; constants as given).
        With parameter-like inputs x is laid out to broadcast against them and the output is
        given back in the shape of the tensor passed. ``fn_for(t)`` gives the target for the
        tensor ``t`` (a module cast to its dtype) instead of one ``fn``."""
        fixed = dict(fixed or {})

        def along_one(t: torch.Tensor) -> Any:
            laid = self.lay_out(t.reshape(-1)) if self.layout is not None else t
            x = laid if along is None else torch.full_like(laid, fixed.get("x", value))
            values = {e.name: laid if e.name == along else self.fill(e, laid, fixed.get(e.name, value))
                      for e in self.extras}
            out = self.call(fn_for(laid) if fn_for is not None else fn, x, values)
            if self.layout is None or not isinstance(out, torch.Tensor):
                return out
            return out.reshape(-1)[: t.numel()].reshape(t.shape) if out.numel() >= t.numel() else out

        along_one.__wrapped_target__ = fn  # type: ignore[attr-defined]
        return along_one
