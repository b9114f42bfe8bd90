"""GA101: the backward against the forward's own slopes in float64 at smooth points: a screen
with the probe's neighbours first, central differences where it cannot vouch."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from torch.autograd.gradcheck import GradcheckError

from ..engine import scans
from ..engine.blocks import EVALUATION_BLOCK, Unblockable
from ..engine.calling import CallError
from ..engine.messages import describe_intervals, example_index, intervals, number
from ..engine.numerics import (
    ATOL, RTOL, _array, gradcheck_tolerances, numerical_derivative, shorter_steps, smooth_points, within_reach
)
from ..engine.screen import scratch_buffers, screen, screen_block, spacing_of_block
from ..engine.sections import elementwise_partners
from ..model.report import Finding
from . import Check, inputs_gradient, inputs_layouts
from .several import INPUT_MESSAGES

if TYPE_CHECKING:
    from ..engine.context import AuditContext
    from ..engine.evaluation import Evaluation

CONSTANT_SHARE = 0.97
"""Above this share of locally constant smooth points, the forward is piecewise constant and
a non-zero backward is a straight-through estimator (GA302), not a wrong formula."""


def compare(ctx: "AuditContext") -> dict[str, torch.Tensor | None] | None:
    """The GA101 comparison over the float64 probe set, or None when it cannot be made.

    The :func:`screen` clears most points of a dense probe at once; the rest (indices
    ``checked_by_difference``) are compared with central differences, which decide whether
    each is smooth and whether it is wrong. ``central`` and ``error`` are given for those
    points only: a screened point is never wrong. When the probe was streamed
    (:func:`_compare_streamed`), which happens only when no point is wrong and no selected
    check reads more, the probe-sized ``smooth``, ``wrong``, ``constant`` and ``analytic``
    are None.
    """
    if ctx.streaming:
        streamed = _compare_streamed(ctx)
        if streamed is not None:
            return streamed
    ev = ctx.evaluate(torch.float64)
    if ev.y is None or ev.grad is None:
        return None
    x, y, analytic = ev.x, ev.y, ev.grad
    smooth = screen(x, y, analytic, functools.partial(ctx.probe_spacing, torch.float64),
                    out=ctx.lease(x.numel(), torch.bool))
    rest = scans.indices(~smooth)
    smooth_rest, wrong_rest, numeric, error = _central_differences(ctx, x[rest], y[rest], analytic[rest])
    wrong = ctx.lease(x.numel(), torch.bool).fill_(False)
    constant = ctx.lease(x.numel(), torch.bool).fill_(False)
    smooth[rest] = smooth_rest
    wrong[rest] = wrong_rest
    constant[rest] = numeric["constant"]
    if bool(wrong_rest.any()):  # for the straight-through test: screened points with a flat forward
        flat = torch.diff(y) == 0
        constant[1:-1] |= smooth[1:-1] & flat[:-1] & flat[1:]
    return {"x": x, "analytic": analytic, "smooth": smooth, "wrong": wrong, "constant": constant,
            "checked_by_difference": rest, "central": numeric["central"], "error": error,
            "unresolved": rest[numeric["unresolved"]]}


def _compare_streamed(ctx: "AuditContext") -> dict[str, torch.Tensor | None] | None:
    """:func:`compare` screening each block of the evaluation as it comes
    (:meth:`~gradaudit.engine.context.AuditContext.evaluation_blocks`), keeping only the values at
    the points left to central differences: nothing probe-sized is stored, and each block is
    screened while it is in cache, into one block-sized buffer. None when the probe cannot be
    streamed, or when some point is wrong: then :func:`compare` evaluates the probe whole,
    for the full report (examples, intervals, the straight-through test)."""
    x = ctx.probe(torch.float64)
    whole_spacing = functools.partial(ctx.probe_spacing, torch.float64)  # cached with the probe
    ctx.kinks  # the kink search first, while its small working set is in cache  # noqa: B018
    verdicts = torch.empty(min(EVALUATION_BLOCK, x.numel()), dtype=torch.bool)
    passed_here = verdicts.numpy()  # the bookkeeping of each block in NumPy: cheaper calls than torch's
    scratch = functools.cache(lambda: scratch_buffers(EVALUATION_BLOCK))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    try:
        for start, y, analytic in ctx.evaluation_blocks(torch.float64):
            if y.dtype != torch.float64 or analytic.dtype != torch.float64:
                return None  # the screen's rounding bound assumes float64 values
            m, stop = y.numel(), start + y.numel()
            if m >= 3:
                screen_block(x[start:stop], y, analytic[1:-1], verdicts[1 : m - 1],
                              functools.partial(spacing_of_block, whole_spacing, start, stop), scratch)
            passed_here[0] = passed_here[m - 1] = False  # no neighbour in this block: central differences decide
            every_inner = m >= 3 and bool(passed_here[1 : m - 1].all())  # the common case, a few µs
            local = np.array([0, m - 1]) if every_inner else np.flatnonzero(~passed_here[:m])
            parts.append((local + start, y.numpy()[local], analytic.numpy()[local]))
    except Unblockable:
        return None
    rest, ys, gs = (torch.from_numpy(np.concatenate(values)) for values in zip(*parts))
    _, wrong_rest, numeric, error = _central_differences(ctx, x[rest], ys, gs)
    if bool(wrong_rest.any()):
        return None
    return {"x": x, "analytic": None, "smooth": None, "wrong": None, "constant": None,
            "checked_by_difference": rest, "central": numeric["central"], "error": error,
            "unresolved": rest[numeric["unresolved"]]}


def _central_differences(ctx: "AuditContext", xs: torch.Tensor, ys: torch.Tensor, gs: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """GA101's test at the points ``xs`` the screen left (values ``ys``, gradients ``gs``):
    which are smooth, which are wrong, the numerical derivatives, and the error.

    A point that disagrees, or that does not look smooth with the step h although no kink,
    jump or domain end is within reach, is differenced again with shorter steps
    (:func:`~gradaudit.engine.numerics.shorter_steps`): where they agree with the backward it is right,
    where they agree on another derivative it is wrong, and where float64 cannot resolve its
    derivative it is neither smooth nor wrong (``numeric["unresolved"]`` marks it)."""
    numeric = numerical_derivative(ctx, xs, ys)
    finite = torch.isfinite(gs) & torch.isfinite(ys)
    smooth = smooth_points(ctx, xs, numeric) & finite
    central, forward, backward = (numeric[key].numpy() for key in ("central", "forward", "backward"))
    with np.errstate(all="ignore"):
        error = np.abs(_array(gs) - central)
        tolerance = (ATOL + RTOL * np.abs(central) + 16 * numeric["rounding"].numpy()
                     + 0.01 * np.abs(forward - backward))
    wrong = smooth & torch.from_numpy(error > tolerance)
    unresolved = torch.zeros_like(wrong)
    suspects = scans.indices(wrong | (~smooth & finite & within_reach(ctx, xs, numeric)))
    if suspects.numel():
        ladder = shorter_steps(ctx, xs[suspects], gs[suspects], numeric["h"][suspects])
        right, skipped = ladder["right"], ladder["unresolved"]
        judged = (ladder["resolved"] | wrong[suspects]) & ~skipped  # a smooth point that disagreed was resolved by h
        unresolved[suspects] = skipped
        wrong[suspects] = judged & ~right
        smooth[suspects] = judged | right
        shorter = ladder["resolved"]  # report the shorter steps' derivative where they decided
        numeric["central"][suspects[shorter]] = ladder["estimate"][shorter]
        error[suspects[shorter].numpy()] = np.abs(_array(gs[suspects[shorter]] - ladder["estimate"][shorter]))
    numeric["unresolved"] = unresolved
    return smooth, wrong, numeric, torch.from_numpy(error)


STRAY_SHARE = 0.02
"""Share of the wrong points that may be non-constant in a staircase: those whose difference step
straddles a stair's edge (a quantizer whose step is not a multiple of the probe's spacing)."""
STAIR_SCALE = 10.0
"""Largest |x| at which the constant share is counted (the dense grid): past it the probe's
points are integers or further apart and the difference step grows with |x|, so unit stairs
look like the identity there (round(x) is x at every integer, and at every float past 2**52)."""


def straight_through(result: dict[str, torch.Tensor]) -> bool:
    """Whether the forward is piecewise constant (where a difference step resolves its stairs)
    and every mismatch there is a non-zero backward at a constant point (past it, the shorter
    steps that land between stairs see the same surrogate)."""
    region = result["x"].abs() <= STAIR_SCALE
    if int((result["smooth"] & region).sum()) < 100:  # a domain away from the dense grid: every point counts
        region = torch.ones_like(region)
    smooth = result["smooth"] & region
    constant = result["constant"] & smooth
    if int(smooth.sum()) == 0:
        return False
    share = float(constant.sum()) / float(smooth.sum())
    wrong = result["wrong"] & region
    stray = int((wrong & ~constant).sum())  # points a step away from a stair's edge, straddling it
    return share >= CONSTANT_SHARE and stray <= STRAY_SHARE * max(int(wrong.sum()), 1)


def run_gradient(ctx: "AuditContext") -> Iterator[Finding]:
    yield from _along_x(ctx)
    yield from inputs_layouts.run_linearity(ctx, GRADIENT)
    if ctx.binding.several and not surrogate_along_x(ctx):
        yield from inputs_gradient.run_input_gradients(ctx, GRADIENT)


def staircase(ctx: "AuditContext") -> dict[str, torch.Tensor] | None:
    """GA101's comparison along x where the forward is piecewise constant and the backward is not
    zero there (a straight-through estimator, GA302's finding); None otherwise."""
    if not ctx.elementwise:
        return None
    result = ctx.memo("gradient.compare", lambda: compare(ctx))
    if result is None or result["wrong"] is None or not scans.any_true(result["wrong"]):
        return None
    return result if straight_through(result) else None


def surrogate_along_x(ctx: "AuditContext") -> bool:
    """Whether x's forward is an undeclared straight-through estimator's (:func:`staircase`). Its
    other inputs' and parameters' gradients (a spike's threshold, a quantizer's step) are then
    surrogates too, not GA101's or GA105's to fail."""
    first = ctx.first_evaluation()
    if ctx.options.surrogate or (first is not None and first.grad_error):
        return False
    return staircase(ctx) is not None


def _along_x(ctx: "AuditContext") -> Iterator[Finding]:
    """GA101 along x (for several inputs: the others held at their section values)."""
    location = ctx.target.source("backward")
    first = ctx.first_evaluation()
    if first is not None and first.grad_error:
        yield from _gradient_error(ctx, first, location)
        return
    if not ctx.elementwise:
        yield from _gradcheck(ctx, location)
        return
    result = ctx.memo("gradient.compare", lambda: compare(ctx))
    if result is None:
        ev = ctx.evaluate(torch.float64)  # cached by now: why there was nothing to compare
        if ev.error:  # the base probe was fine, the rest of the probe is not
            raise CallError(ev.error)
        if ev.grad_error:
            yield from _gradient_error(ctx, ev, location)
        return
    wrong = result["wrong"]
    skipped = result["unresolved"]
    if wrong is None or scans.count(wrong) == 0 or straight_through(result):  # None: streamed, none wrong
        if skipped.numel():
            yield _unresolved(result["x"][skipped], location)
        return
    count = scans.count(wrong)
    total = scans.count(result["smooth"])
    x, rest = result["x"], result["checked_by_difference"]
    central, error = result["central"], result["error"]  # at the points of ``rest``
    wrong_rest = wrong[rest]
    relative = error / (1 + central.abs())
    worst_k = int(torch.argmax(torch.where(wrong_rest, relative, torch.zeros_like(relative))))
    worst = int(rest[worst_k])
    shown = example_index(x, wrong)
    shown_k = int(torch.searchsorted(rest, shown))
    sample = torch.nonzero(wrong_rest).flatten()
    picks = [shown_k, worst_k] + sample[torch.linspace(0, sample.numel() - 1, min(3, sample.numel())).long()].tolist()
    examples = []
    for k in dict.fromkeys(picks):
        i = int(rest[k])
        examples.append({"input": float(x[i]), "gradient": float(result["analytic"][i]),
                         "numerical": float(central[k])})
    yield GRADIENT.finding(
        "wrong", "fail", audit=ctx, dtype="float64", examples=examples,
        count=count, total=total, where=describe_intervals(x[result["smooth"]], wrong[result["smooth"]]),
        x=number(float(x[shown])), gradient=number(float(result["analytic"][shown])),
        numerical=number(float(central[shown_k])), error=float(error[shown_k]),
        relative=float(relative[worst_k]), worst=number(float(x[worst])),
        details={"intervals": intervals(x[result["smooth"]], wrong[result["smooth"]]),
                 "points_checked": total, "points_wrong": count, "points_unresolved": skipped.numel()})


def _gradient_error(ctx: "AuditContext", ev: "Evaluation", location: dict | None) -> Iterator[Finding]:
    """The backward raised: a wrong number of gradients for several inputs is said so (by each
    partner's pairs where there are elementwise partners), anything else is no usable gradient."""
    if "number of gradients" in (ev.grad_error or "") and ctx.binding.several:
        if not elementwise_partners(ctx):
            yield GRADIENT.finding("input-count", "fail", audit=ctx, reason=ev.grad_error, dtype="float64",
                                   location=location)
        return
    yield _no_gradient(ctx, ev, location)


def _unresolved(x: torch.Tensor, location: dict | None) -> Finding:
    """Information: points skipped because float64 cannot resolve the derivative there."""
    magnitude = x.abs()
    shown = float(x[int(magnitude.argmin())])
    return GRADIENT.finding(
        "unresolved", "info", count=x.numel(), smallest=number(float(magnitude.min())),
        largest=number(float(magnitude.max())), x=number(shown),
        dtype="float64", location=location, examples=[{"input": shown}],
        details={"points_unresolved": x.numel()})


def _no_gradient(ctx: "AuditContext", ev: "Evaluation", location: dict | None) -> Finding:
    """GA101 for a backward that gives no gradient: a fail, unless the forward is flat at every
    smooth point (a constant or piecewise constant function), whose true gradient is 0."""
    flat = _flat_at_smooth_points(ctx, ev) if not (ev.grad_error or "").startswith(RAISED) else None
    if flat is not None:
        return GRADIENT.finding("constant", "info", reason=ev.grad_error, count=flat, dtype="float64",
                                location=location, details={"points_checked": flat})
    advice = CUSTOM_OP_BACKWARD if ctx.target.kind == "custom op" else FUNCTION_BACKWARD
    return GRADIENT.finding("no-gradient", "fail", reason=ev.grad_error, advice=advice, dtype="float64",
                            location=location)


FUNCTION_BACKWARD = ("Compute the output with differentiable torch operations, or give the autograd.Function a "
                     "backward that works.")
CUSTOM_OP_BACKWARD = ("Register a backward for the op: op.register_autograd(backward, setup_context=...), with "
                      "a register_fake implementation for torch.compile.")


RAISED = "backward raised"
"""How the engine's ``grad_error`` begins when the backward raised (a defect even where the
forward is constant), as opposed to no gradient flowing back at all."""


def _flat_at_smooth_points(ctx: "AuditContext", ev: "Evaluation") -> int | None:
    """The number of smooth float64 probe points when central differences of the forward are 0
    at every one of them (so no gradient is the right gradient), else None. Points whose probe
    neighbours give the same value are flat already; central differences decide the rest."""
    if not ctx.elementwise or ev.y is None or ev.y.dtype != torch.float64 or ev.x.numel() < 3:
        return None
    x, y = ev.x.reshape(-1), ev.y.reshape(-1)
    same = torch.diff(y) == 0
    flat = torch.zeros(y.numel(), dtype=torch.bool)
    flat[1:-1] = same[:-1] & same[1:]
    rest = scans.indices(~flat)
    numeric = numerical_derivative(ctx, x[rest], y[rest])
    smooth = smooth_points(ctx, x[rest], numeric)
    if bool((numeric["central"][smooth] != 0).any()):
        return None
    return int(flat.sum()) + int(smooth.sum())


def _gradcheck(ctx: "AuditContext", location: dict | None) -> Iterator[Finding]:
    """Non-elementwise targets: torch.autograd.gradcheck on a small seeded input."""
    generator = torch.Generator().manual_seed(ctx.options.seed)
    x = (torch.randn(24, generator=generator, dtype=torch.float64) * 2).requires_grad_(True)
    if ctx.options.domain is not None:
        lo, hi = ctx.options.domain
        x = x.detach().clamp(lo, hi).requires_grad_(True)
    try:
        torch.autograd.gradcheck(lambda t: ctx.call(t), (x,), **gradcheck_tolerances(ctx))
    except GradcheckError as exc:
        yield GRADIENT.finding("gradcheck", "fail", audit=ctx, reason=str(exc).strip().splitlines()[0],
                               dtype="float64", location=location)
    except Exception as exc:  # the target itself failed on this input
        text = str(exc).strip()
        yield GRADIENT.finding("gradcheck-crashed", "fail", dtype="float64", location=location,
                               exception=f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")


GRADIENT = Check(
    code="GA101",
    slug="gradient",
    status="fail",
    summary="backward disagrees with central differences in float64 at smooth points",
    explanation=(
        "At every float64 probe point away from kinks and jumps, the backward (vector-Jacobian "
        "product with ones) is compared with central differences (step eps^(1/3)*max(1,|x|)); a "
        "point counts as smooth only when its forward and backward one-sided differences agree. "
        "Elementwise targets (verified by perturbation) are checked at every point in O(n): a point "
        "whose backward lies within half the tolerance of the secants to both its probe neighbours "
        "is proven right without calling the target again (the true derivative lies between them), "
        "and central differences decide the rest. Other targets fall back to "
        "torch.autograd.gradcheck on a small input. Declared surrogate / "
        "straight-through gradients are reported as info."
    ),
    fix="Correct the backward formula for the failing inputs, or declare the gradient a "
    "surrogate (surrogate=True, --surrogate) if it is deliberate.",
    example="backward returns 0 for x > 20 where softplus's derivative is 1",
    run=run_gradient,
    streams=True,
    location_role="backward",
    surrogate_kinds=("wrong", "gradcheck", "input-wrong", "input-missing", "input-gradcheck", "grad-output-linearity"),
    messages={
        "wrong": "backward disagrees with central differences at {count} of {total} smooth float64 "
                 "points ({where}); e.g. at x = {x} the backward gives {gradient} and central "
                 "differences give {numerical} (error {error:.3g}; largest relative error "
                 "{relative:.3g} at x = {worst}). {fix}",
        "unresolved": "the derivative cannot be resolved in float64 at {count} point(s) with |x| from "
                      "{smallest} to {largest} (e.g. x = {x}): the backward changes within the "
                      "shortest finite-difference step that float64's rounding allows there (a period "
                      "shorter than the step), so these points were skipped, not judged. Shown for "
                      "information.",
        "no-gradient": "no usable gradient: {reason}. {advice}",
        "constant": "no gradient flows back: {reason}. None is needed: central differences of "
                    "the float64 forward are 0 at all {count} smooth probe points, so the true "
                    "gradient is 0 there. Shown for information.",
        "gradcheck": "the target is not elementwise, so torch.autograd.gradcheck ran on a seeded "
                     "24-element float64 input and failed: {reason}. {fix}",
        "gradcheck-crashed": "torch.autograd.gradcheck on a seeded 24-element float64 input could "
                             "not run: {exception}.",
        "input-wrong": "the gradient with respect to {name} disagrees with central differences at {count} of "
                       "{total} smooth float64 points of the two-dimensional probe of x and {partner!r}; e.g. "
                       "at {at} the backward gives {gradient} and central differences give {numerical} "
                       "(error {error:.3g}). {fix}",
        "input-missing": "the backward gives no gradient for {name} (None), yet the output depends on it: "
                         "central differences are non-zero at {count} of {total} smooth float64 points, e.g. "
                         "{numerical} at {at}. Return its gradient from backward (in the input's position), "
                         "or pass it as a constant (inputs={{name: value}}, --input name=VALUE) if it is not "
                         "meant to be learned.",
        "input-count": "the backward does not return one gradient per input: {reason}. An autograd.Function's "
                       "backward returns exactly as many values as forward takes inputs (None for a "
                       "non-tensor or a constant).",
        "input-raised": "with several inputs, {reason}. Fix the target for tensors in every input slot.",
        "input-gradcheck": "torch.autograd.gradcheck over the inputs {names} (seeded, 24 elements of x{held}; used "
                           "where the target is not elementwise in every input, or takes parameter-like inputs) fails: "
                           "{reason}. {fix}",
        "aliasing": "the same tensor passed as x and as {partner!r} (f(t, t), e.g. a GLU of one tensor with "
                    "itself) gets a gradient that is not the sum of both partial derivatives at {count} of "
                    "{total} points; e.g. at t = {t} the backward gives {gradient} and the sum is {expected}. "
                    "The backward writes into a saved input, or assumes its inputs are distinct tensors: "
                    "compute the gradients out of place.",
        "aliasing-raised": "the same tensor passed as x and as {partner!r} (f(t, t)) makes the target "
                           "raise {exception}. Inputs may alias: do not write into them in place.",
        **INPUT_MESSAGES["GA101"],
    },
)

CHECKS = [GRADIENT]
