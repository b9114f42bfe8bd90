"""Calling the target: its callables per dtype and device, the layout retry for targets
that reject 1-D input, the checks every output must pass, and float64 point evaluators."""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..targets.spec import TargetError
from ..targets.types import Target
from .binding import Binding
from .options import InputRole, dtype_name
from .vjp import vjp


class CallError(Exception):
    """Calling the target failed; the message names the dtype and the exception."""


def describe_exception(exc: BaseException) -> str:
    """``Type: first line`` of ``exc``; for an error raised inside TorchScript, whose first line
    only says so, the error line its traceback ends with (and the line of the script it came from)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if first.startswith("The following operation failed in the TorchScript interpreter") and len(text) > 1:
        sites = [line.strip() for line in text if line.strip().startswith("File ")]
        site = f" ({sites[-1].removeprefix('File ')})" if sites else ""
        return f"{text[-1].strip()}{site}"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def check_output(out: torch.Tensor, x: torch.Tensor) -> None:
    """Raise :class:`CallError` for an output no check can judge: not floating (integer,
    bool, complex), or empty for a non-empty input."""
    if out.is_floating_point() and (out.numel() > 0 or x.numel() == 0):
        return  # the usual case, at every call of the target: no words built
    given = f"for a {dtype_name(x.dtype)} tensor of shape {tuple(x.shape)}"
    if out.is_complex():
        raise CallError(
            f"it returned a tensor of dtype {dtype_name(out.dtype)} {given}. gradaudit audits real-valued "
            f"targets; audit the real and imaginary parts as two targets, e.g. lambda x: f(x).real"
        )
    if not out.is_floating_point():
        raise CallError(
            f"it returned a tensor of dtype {dtype_name(out.dtype)} {given}, which carries no gradient. "
            f"gradaudit audits differentiable targets with floating outputs; return a floating "
            f"tensor (e.g. .to(x.dtype)), or audit the differentiable function it rounds"
        )
    if out.numel() == 0 and x.numel() > 0:
        raise CallError(
            f"it returned an empty tensor of shape {tuple(out.shape)} {given}, so there is "
            f"nothing to audit; return the activation's values, one per input element"
        )


class Caller:
    """Calls one target: cached callables, reseeded RNG, checked outputs."""

    def __init__(self, target: Target, seed: int, inputs: dict[str, InputRole] | None = None) -> None:
        self.target = target
        self.seed = seed
        self._inputs = inputs or {}
        self._binding: Binding | None = None
        self._callables: dict[tuple[torch.dtype, str], Callable[[torch.Tensor], Any]] = {}
        self._raw: dict[tuple[torch.dtype, str], Callable[..., Any]] = {}
        self.layout: tuple[int, ...] | None = None
        """How 1-D probes are reshaped for targets that reject 1-D input (e.g. Softmax2d)."""

    @property
    def binding(self) -> Binding:
        """The target's extra inputs and their roles (read from its signature once; a role that
        names no parameter raises :class:`TargetError`)."""
        if self._binding is None:
            self._binding = Binding(self.target, self._inputs)
        return self._binding

    def raw_callable_for(self, dtype: torch.dtype, device: str = "cpu") -> Callable[..., Any]:
        """The target itself (every input), with any module copied and cast to ``dtype``."""
        key = (dtype, device)
        if key not in self._raw:
            self._raw[key] = self.target.callable_for(dtype, device)
        return self._raw[key]

    def callable_for(self, dtype: torch.dtype, device: str = "cpu") -> Callable[[torch.Tensor], Any]:
        """The target as a one-tensor callable: itself, or for a target with several tensor
        inputs its section along x (:meth:`Binding.section`)."""
        key = (dtype, device)
        if key not in self._callables:
            raw = self.raw_callable_for(dtype, device)
            self._callables[key] = self.binding.section(raw) if self.binding.several else raw
        return self._callables[key]

    def call(self, x: torch.Tensor, *, dtype: torch.dtype | None = None, reseed: bool = True) -> torch.Tensor:
        """Call the target on ``x``; a 1-D ``x`` is reshaped to :attr:`layout` when one was
        needed (a target that rejects 1-D input is retried as (n, 1, 1) and (1, n, 1, 1))."""
        if x.dim() != 1:
            return self._call(x, dtype=dtype, reseed=reseed)
        if self.layout is not None:
            out = self._call(x.reshape(self.layout), dtype=dtype, reseed=reseed)
            return out.reshape(-1) if out.numel() == x.numel() else out
        try:
            return self._call(x, dtype=dtype, reseed=reseed)
        except CallError as first:
            for layout in ((-1, 1, 1), (1, -1, 1, 1)):
                try:
                    out = self._call(x.reshape(layout), dtype=dtype, reseed=reseed)
                except CallError:
                    continue
                self.layout = layout
                return out.reshape(-1) if out.numel() == x.numel() else out
            raise first

    def _call(self, x: torch.Tensor, *, dtype: torch.dtype | None = None, reseed: bool = True) -> torch.Tensor:
        """Call the target (cast to ``dtype``) on ``x`` and check that it returns a tensor.

        The global RNG is reseeded first, so stochastic targets give the same draws for the
        same input shape; the caller's RNG state is restored by :func:`gradaudit.audit`.
        """
        fn = self.callable_for(dtype or x.dtype, x.device.type if x.device.type != "meta" else "cpu")
        if reseed:
            # the CPU generator only: torch.manual_seed also records a CUDA stack trace per call
            torch.default_generator.manual_seed(self.seed)
            if x.device.type == "cuda":
                torch.cuda.manual_seed(self.seed)
        try:
            out = fn(x)
        except TargetError:
            raise
        except Exception as exc:
            raise CallError(
                f"calling it on a {dtype_name(x.dtype)} tensor of shape {tuple(x.shape)} raised "
                f"{describe_exception(exc)}"
            ) from exc
        if not isinstance(out, torch.Tensor):
            raise CallError(
                f"it returned {type(out).__name__}, not a tensor. gradaudit audits callables that "
                f"map one tensor to one tensor; wrap the target, e.g. lambda x: f(x)[0]"
            )
        check_output(out, x)
        return out

    # -- point evaluators, used by numerics, kinks and zero classification ----------------------
    def values64(self, points: torch.Tensor) -> torch.Tensor:
        """The float64 target at arbitrary float64 points (elementwise targets only)."""
        with torch.no_grad():
            return self.call(points.to(torch.float64, copy=True)).detach().to(torch.float64)  # copy: in-place targets

    def grads64(self, points: torch.Tensor, sign: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Vector-Jacobian product with grad_output ``sign`` at ``points`` in ``dtype``."""
        leaf = points.to(dtype).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = self.call(leaf.clone(), dtype=dtype)
            grad = vjp(out, leaf, torch.full_like(out, sign))
        if grad is None:
            return torch.zeros_like(leaf)
        return grad.detach()
