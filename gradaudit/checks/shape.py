"""GA404: 0-d, empty, non-contiguous, channels-last and batched inputs.

The probe set is one contiguous 1-D tensor; real inputs are not. A small input of each
audited dtype is laid out in every shape below. No layout may crash, forward or backward.
An elementwise target must give, element by element, the values and gradients of the
contiguous 1-D call, in the input's shape (fail); zero signs that differ are info, since
torch's own vectorised and scalar kernels disagree on them. Other targets must give the same
result for a non-contiguous input as for its contiguous copy. Random targets are only run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from ..context import CallError, describe_exception, dtype_name
from ..report import Finding
from ..small_inputs import clause, close, describe_mismatch, forward_is_random, small_input
from . import Check
from .nonfinite import HEADROOM

if TYPE_CHECKING:
    from ..context import AuditContext

TOLERANCE_UNITS = 4
"""Vectorised and scalar CPU kernels of the same function differ by a few eps (gelu's tails):
values are compared within this many eps of the value plus ``|x|``."""
FIX = (
    "Use .reshape instead of .view (or call .contiguous() first), index with [..., i] rather than "
    "assuming a 1-D or row-major layout, create outputs with torch.empty_like(x) or out-of-place "
    "operations, and remember that grad_output can be non-contiguous too."
)


@dataclass(frozen=True)
class Layout:
    """A way of laying out the 1-D small input (120 values) as a real input; ``contiguous``
    layouts have no contiguous copy to compare a non-elementwise target with."""

    name: str
    make: Callable[[torch.Tensor], torch.Tensor]
    contiguous: bool


def _strided(t: torch.Tensor) -> torch.Tensor:
    buffer = torch.zeros(t.numel() * 2, dtype=t.dtype)
    buffer[::2] = t
    return buffer[::2]


LAYOUTS = (
    Layout("0-d", lambda t: t[0].clone(), True),
    Layout("empty (0,)", lambda t: t[:0].clone(), True),
    Layout("empty (3, 0)", lambda t: t[:0].reshape(3, 0).clone(), True),
    Layout("transposed 12x10 (non-contiguous)", lambda t: t.reshape(10, 12).t(), False),
    Layout("strided [::2] (non-contiguous)", _strided, False),
    Layout("channels_last 2x3x4x5", lambda t: t.reshape(2, 3, 4, 5).contiguous(memory_format=torch.channels_last), False),
    Layout("batched 4x5x6", lambda t: t.reshape(4, 5, 6).clone(), True),
)


def _forward_backward(ctx: "AuditContext", make: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor,
                      dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Input, output and gradient (grad_output of ones) with ``values`` laid out by ``make``.

    The input is a non-leaf that requires grad, as a network passes it (so in-place forwards
    behave as they do there); the gradient is taken with respect to the 1-D ``values``.
    """
    leaf = values.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        x = make(leaf * 1.0)
        out = ctx.call(x, dtype=dtype)
        grad = None
        if out.requires_grad:
            (grad,) = torch.autograd.grad(out, leaf, torch.ones_like(out), allow_unused=True)
    return x.detach(), out.detach(), None if grad is None else grad.detach()


def _pull_back(make: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor, laid_out: torch.Tensor) -> torch.Tensor:
    """The gradient ``values`` receives through ``make`` when ``make(values)`` receives ``laid_out``:
    what an elementwise target's gradient must be, given the contiguous 1-D call's."""
    leaf = values.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(make(leaf), leaf, laid_out, allow_unused=True)
    return torch.zeros_like(leaf) if grad is None else grad


def _fails(ctx: "AuditContext", make: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor,
           dtype: torch.dtype) -> bool:
    try:
        _forward_backward(ctx, make, values, dtype)
    except Exception:
        return True
    return False


def _at_edge(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inputs so close to the dtype's max that formulas may overflow on one kernel path and not
    on another (gelu's vectorised float32 kernel at 3e38): GA201's business, not a layout's."""
    return x.to(torch.float64).abs() * HEADROOM >= torch.finfo(dtype).max


def _mismatch(noun: str, actual: torch.Tensor, expected: torch.Tensor, x: torch.Tensor, where: torch.Tensor | None,
              dtype: torch.dtype, computed_in: torch.dtype, against: str) -> tuple[str, str] | None:
    """``(status, words)`` when ``actual`` and ``expected`` disagree: fail for values, info when
    only signs of zeros (or of infinities, as 1/+-0 gives) differ. ``computed_in`` is the
    output's dtype, whose precision the target worked in."""
    eps = max(torch.finfo(dtype).eps, torch.finfo(computed_in).eps if computed_in.is_floating_point else 0.0)
    agree = close(actual, expected, x, eps, TOLERANCE_UNITS) | _at_edge(x, dtype)
    if bool(agree.all()):
        return None
    values_differ = ~agree & (actual.abs() != expected.abs())
    count = int(values_differ.sum())
    if count:
        return ("fail", f"the {noun} differs from {against} at {count} of {agree.numel()} elements, "
                        f"{describe_mismatch(actual, expected, where, ~values_differ)}")
    return ("info", f"the {noun} differs from {against} only in the sign of zero (or of an infinity "
                    f"from 1/+-0) at {int((~agree).sum())} of {agree.numel()} elements, "
                    f"{describe_mismatch(actual, expected, where, agree)}: the vectorised and scalar "
                    f"kernels disagree, so the sign depends on the memory layout")


def _problem(ctx: "AuditContext", layout: Layout, values: torch.Tensor, dtype: torch.dtype,
             reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None,
             compare_values: bool) -> tuple[str, str] | None:
    """``(status, words)`` for what goes wrong with ``layout`` in ``dtype``, or None.

    ``reference`` is the contiguous 1-D call for elementwise targets; otherwise the result
    is compared with the same input made contiguous. Random targets are only run.
    """
    contiguous_copy = lambda t: layout.make(t).contiguous()  # noqa: E731
    try:
        x, out, grad = _forward_backward(ctx, layout.make, values, dtype)
    except Exception as exc:
        if reference is None and _fails(ctx, contiguous_copy, values, dtype):
            return None  # the shape itself is unsupported (glu needs an even last dimension)
        if isinstance(exc, CallError):
            return "fail", f"the forward raises {clause(describe_exception(exc.__cause__ or exc))}"
        return "fail", f"the backward raises {clause(describe_exception(exc))}"
    if not compare_values:
        return None
    if reference is None:
        try:
            _, expected_out, expected_grad = _forward_backward(ctx, contiguous_copy, values, dtype)
        except Exception:
            return None
        scale, where = torch.ones_like(out), None
        against = "the same input made contiguous"
    else:
        expected_out = layout.make(reference[1])
        expected_grad = None
        if reference[2] is not None:
            expected_grad = _pull_back(layout.make, values, layout.make(reference[2]))
        scale, where = x, x
        against = "the contiguous 1-D call"
    if out.shape != expected_out.shape:
        return "fail", f"the output has shape {tuple(out.shape)} instead of {tuple(expected_out.shape)}"
    problems = [_mismatch("output", out, expected_out, scale, where, dtype, out.dtype, against)]
    if expected_grad is not None:
        if grad is None:
            return "fail", "the input receives no gradient"
        problems.append(_mismatch("gradient", grad, expected_grad, values, values, dtype, out.dtype, against))
    found = [p for p in problems if p is not None]
    found.sort(key=lambda p: p[0] != "fail")
    return found[0] if found else None


def run_shape(ctx: "AuditContext") -> Iterator[Finding]:
    elementwise = ctx.elementwise
    compare_values = not forward_is_random(ctx)
    problems: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for dtype in ctx.options.dtypes:
        if ctx.evaluate(dtype).error is not None:
            continue  # the dtype itself fails: GA403
        values = small_input(ctx, dtype)
        reference = None
        if elementwise:
            reference = _forward_backward(ctx, lambda t: t, values, dtype)
        for layout in LAYOUTS:
            if not elementwise and layout.contiguous:
                continue
            problem = _problem(ctx, layout, values, dtype, reference, compare_values)
            if problem is not None:
                status, words = problem
                problems.setdefault((layout.name, status), []).append((dtype_name(dtype), words))
    for (name, status), found in problems.items():
        first_dtype, words = found[0]
        others = [d for d, _ in found[1:]]
        also = f" (also in {', '.join(others)})" if others else ""
        advice = f"Real inputs come in every layout. {FIX}" if status == "fail" else "Shown for information."
        yield Finding(
            "GA404", status, f"on a {name} {first_dtype} input{also}, {words}. {advice}",
            dtype=first_dtype, location=ctx.target.source("forward"),
            details={"layout": name, "dtypes": [d for d, _ in found]})


CHECKS = [
    Check(
        code="GA404",
        slug="shape",
        status="fail / info",
        summary="crashes or differs on 0-d, empty, non-contiguous, channels-last or batched inputs",
        explanation=(
            "A small input of each audited dtype is laid out as a 0-d tensor, empty tensors, a "
            "transposed and a strided (non-contiguous) tensor, a channels_last 4-D tensor and a "
            "batched 3-D tensor, and run forward and backward. Nothing may crash. An elementwise "
            "target must return the input's shape and, element by element, the values (zero signs "
            "included, a few eps of kernel differences allowed) and gradients of the contiguous 1-D "
            "call; other targets must give the same result as on the contiguous copy. Differences only "
            "in the sign of zero, as between torch's vectorised and scalar kernels, are info; random "
            "targets are only run."
        ),
        fix=FIX,
        example="x.view(-1) in forward crashes on a transposed input",
        run=run_shape,
    )
]
