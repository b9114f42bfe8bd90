"""GA102: the double backward against central differences of the backward.

The gradgradcheck equivalent at smooth float64 points. For elementwise targets it is
vectorised: the double backward of the vector-Jacobian product (grad_outputs that require
grad, as gradgradcheck uses) is f''(x) at every probe point, and central differences of the
first derivative give it numerically. A double backward that raises is explicit (info); one
that silently returns something else, typically zero because the backward detached its
saved tensors, is warn.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch
from torch.autograd.gradcheck import GradcheckError

from ..engine.calling import describe_exception
from ..engine.messages import describe_intervals, example_index, intervals, number
from ..engine.numerics import UNIT_SCALE, gradcheck_tolerances, numerical_derivative, smooth_points
from ..engine.small_inputs import clause, small_matrix
from ..engine.vjp import vjp, vjps
from ..model.report import Finding
from . import Check
from .forward_ad import at_base
from .gradient import compare

if TYPE_CHECKING:
    from ..engine.context import AuditContext

RTOL, ATOL = 1e-2, 1e-4
"""Looser than GA101's: the numerical value differentiates the backward, which carries its own
rounding; the defects this check exists for (a zero or a missing term) are far larger."""

FIX_WRONG = (
    "Write the backward with differentiable torch operations on the saved tensors (no "
    ".detach(), .data, torch.no_grad() or NumPy), so that autograd can differentiate it; if "
    "second derivatives are not meant to be supported, decorate backward with "
    "@torch.autograd.function.once_differentiable so that they raise instead."
)
FIX_UNSUPPORTED = (
    "Needed only for gradient penalties, Hessian-vector products and meta-learning: write the "
    "backward with differentiable torch operations (and drop @once_differentiable), or wrap a "
    "formula whose pieces autograd can differentiate twice."
)
FIX_UNSUPPORTED_CUSTOM_OP = (
    "Needed only for gradient penalties, Hessian-vector products and meta-learning: write "
    "register_autograd's backward with differentiable torch operations, or with other custom ops "
    "that have register_autograd themselves."
)


class DoubleBackwardError(Exception):
    """The double backward raised; the message describes the exception."""


def double_backward(ctx: "AuditContext", x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(d/dx of the vjp with ones, connected)`` at ``x`` (float64, elementwise targets).

    ``connected`` is False when the first gradient has no graph back to ``x`` at all; the
    second derivative autograd then gives is zero. Raises :class:`DoubleBackwardError`.
    """
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = ctx.call(leaf.clone())
        grad_output = torch.ones_like(out, requires_grad=True)
        try:
            grad = vjp(out, leaf, grad_output, create_graph=True)
            if grad is None or not grad.requires_grad:
                return torch.zeros_like(leaf), False
            second, by_grad_output = vjps((grad,), (leaf, grad_output), (torch.ones_like(grad),), retain_graph=True)
            if second is None and by_grad_output is None:
                # a graph that reaches neither: @once_differentiable's error node hangs on a
                # detached copy of the gradient; running it raises its explicit error
                torch.autograd.backward(grad, torch.ones_like(grad))
        except Exception as exc:
            raise DoubleBackwardError(describe_exception(exc)) from exc
    if second is None:
        return torch.zeros_like(leaf), False
    return second.detach(), True


def run_second_order(ctx: "AuditContext") -> Iterator[Finding]:
    ev = ctx.evaluate(torch.float64)
    if ev.grad is None or ev.y is None or ev.y.dtype != torch.float64:
        return  # no first derivative (GA101 says why), or not computed in float64 (GA403)
    location = ctx.target.source("backward")
    if not ctx.elementwise:
        yield from _gradgradcheck(ctx, location)
        return
    # a wrong or detached double backward is systematic: the base probe finds it at a fixed cost
    x, first = at_base(ctx, ev.x, ev.grad)
    try:
        second, connected = double_backward(ctx, x)
    except DoubleBackwardError as exc:
        yield _unsupported(ctx, str(exc), location)
        return
    numeric = numerical_derivative(ctx, x, first, evaluate=ctx.grads64)
    # a non-finite second derivative at extreme inputs is an overflow (x * x in gelu), not a
    # wrong formula
    smooth = smooth_points(ctx, x, numeric) & torch.isfinite(first) & torch.isfinite(second)
    first_order = ctx.memo("gradient.compare", lambda: compare(ctx))
    if first_order is not None:  # where the backward disagrees with the forward, GA101 reports it
        if first_order["smooth"] is not None:
            smooth_first, wrong_first = at_base(ctx, first_order["smooth"], first_order["wrong"])
            smooth &= smooth_first & ~wrong_first
        unresolved = first_order["unresolved"]
        if unresolved.numel():  # where float64 cannot resolve the derivative, nor can it the second
            smooth &= ~torch.isin(x, first_order["x"][unresolved])
            smooth &= numeric["h"] <= UNIT_SCALE  # nor, around them, steps longer than a period
    central = numeric["central"]
    error = (second - central).abs()
    tolerance = ATOL + RTOL * central.abs() + 16 * numeric["rounding"] + 0.01 * (numeric["forward"] - numeric["backward"]).abs()
    wrong = smooth & ~(error <= tolerance)
    count, total = int(wrong.sum()), int(smooth.sum())
    if count == 0:
        return
    i = example_index(x, wrong)
    detached = not connected or bool((second[smooth] == 0).all())
    yield SECOND_ORDER.finding(
        "detached" if detached else "wrong", "warn", count=count, total=total,
        where=describe_intervals(x[smooth], wrong[smooth]), x=number(float(x[i])),
        second=number(float(second[i])), numerical=number(float(central[i])),
        dtype="float64", location=location,
        examples=[{"input": float(x[i]), "second_derivative": float(second[i]), "numerical": float(central[i])}],
        details={"intervals": intervals(x[smooth], wrong[smooth]), "points_checked": total,
                 "points_wrong": count, "detached": detached})


def _unsupported(ctx: "AuditContext", error: str, location: dict | None) -> Finding:
    advice = FIX_UNSUPPORTED_CUSTOM_OP if ctx.target.kind == "custom op" else FIX_UNSUPPORTED
    return SECOND_ORDER.finding("unsupported", "info", audit=ctx, reason=clause(error), advice=advice, dtype="float64",
                                location=location)


def _gradgradcheck(ctx: "AuditContext", location: dict | None) -> Iterator[Finding]:
    """Non-elementwise targets: torch.autograd.gradgradcheck on a seeded 4x6 input (or one of the
    target's layout)."""
    x = small_matrix(ctx).requires_grad_(True)
    try:
        torch.autograd.gradgradcheck(lambda t: ctx.call(t), (x,), **gradcheck_tolerances(ctx), fast_mode=True)
    except GradcheckError as exc:
        first = str(exc).strip().splitlines()[0]
        yield SECOND_ORDER.finding("gradgradcheck", "warn", audit=ctx, reason=clause(first),
                                   shape="x".join(map(str, x.shape)), dtype="float64", location=location)
    except Exception as exc:
        yield _unsupported(ctx, describe_exception(exc), location)


_WRONG = ("the double backward disagrees with central differences of the backward at {count} of {total} "
          "smooth float64 points ({where}); e.g. at x = {x} it gives {second} where the backward's slope is "
          "{numerical}. {fix}")

SECOND_ORDER = Check(
    code="GA102",
    slug="second-order",
    status="warn / info",
    summary="double backward silently wrong (warn); explicitly unsupported, i.e. raises (info)",
    explanation=(
        "The equivalent of torch.autograd.gradgradcheck at smooth points: the backward is run "
        "with create_graph=True and differentiated again, and compared with central differences "
        "of the backward itself (elementwise targets: every smooth float64 probe point in O(n); "
        "others: gradgradcheck on a small input). A backward that detaches its saved tensors "
        "gives a zero second derivative without any error: warn. A double backward that raises "
        "(@once_differentiable, or 'derivative for aten::hardsigmoid_backward is not "
        "implemented') is explicit: info."
    ),
    fixes={"custom op": "Write register_autograd's backward with differentiable torch operations (or other custom "
                        "ops that have register_autograd) on what setup_context saved, with no .detach(), .data, "
                        "torch.no_grad() or NumPy, so that double backward works; if second derivatives are not "
                        "meant to be supported, make that backward raise when torch.is_grad_enabled()."},
    fix=FIX_WRONG,
    example="backward computes with x.detach(): d/dx of the gradient is silently 0",
    run=run_second_order,
    location_role="backward",
    messages={
        "wrong": _WRONG,
        "detached": _WRONG.replace(" {fix}", " The double backward is zero everywhere: the backward is "
                                   "not differentiable as written (it detaches what it computes with), "
                                   "so create_graph=True users silently get 0. {fix}"),
        "unsupported": "double backward is not supported: differentiating the backward raises {reason}. "
                       "That is explicit, so nobody gets wrong second derivatives. {advice}",
        "gradgradcheck": "the target is not elementwise, so torch.autograd.gradgradcheck ran on a seeded "
                         "{shape} float64 input, and the double backward is wrong: {reason}. {fix}",
    },
)

CHECKS = [SECOND_ORDER]
