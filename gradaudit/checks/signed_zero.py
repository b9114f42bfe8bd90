"""GA203/GA204: -0.0 that the target (or its backward) *creates*.

A created -0.0 is classified (see DESIGN.md):
  spurious  (warn) the exact value is zero, e.g. ``x * mask``: the sign means nothing;
  underflow (info) the true value is a tiny negative number that rounded to zero;
  propagated (info) ``f(-0.0) == -0.0``, as tanh and relu on CPU.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch

from .. import scans
from ..blame import offending_inputs
from ..context import dtype_name
from ..messages import describe_intervals, example_index, flagged, intervals, number, runs_of
from ..report import Finding
from . import Check

if TYPE_CHECKING:
    from ..context import AuditContext

GENTLE_DECAY = 1e3
"""Past the edge of an underflow region values grow by at most this factor over a small step."""
BISECTION_STEPS = 80

FIX_OUTPUT = (
    "Return real zeros: torch.where(mask, x, torch.zeros_like(x)) or x.clamp(min=0) instead of "
    "multiplying by a mask, or add + 0.0 to the result, which turns -0.0 into +0.0."
)
FIX_GRADIENT = (
    "In backward, select instead of multiplying by a mask: "
    "torch.where(mask, grad_output, torch.zeros_like(grad_output)), or add + 0.0 to the gradient."
)


MAX_RUNS = 32
"""Runs of undecided zeros examined at their edges; more than this are taken as spurious."""


SEARCH_POINTS = 64
"""Points evaluated at once per step of the edge search: each step narrows the bracket
65-fold, so a float64 bracket closes in about ten calls of the target instead of fifty."""


def _edge_decays(value_fn: Callable[[torch.Tensor], torch.Tensor], zero_x: float, other_x: float) -> bool:
    """Whether the zero region at ``zero_x`` is reached through gently decaying values.

    Search from the zero point towards ``other_x`` (non-zero value) for the last non-zero
    input ``edge``: each step evaluates ``SEARCH_POINTS`` evenly spread points of the bracket
    and keeps the two around the first non-zero value, until no float64 lies between them.
    The zero is a rounding of a tiny true value when the bracket does not cross x = 0 and
    the values decay gently into the zero (exponential tails, as silu or 1 - tanh^2) instead
    of reaching it at a root with a non-zero slope (hardswish at -3).
    """
    if (zero_x < 0) != (other_x < 0) or zero_x == 0 or other_x == 0:
        return False
    zero, edge = zero_x, other_x
    for _ in range(BISECTION_STEPS):
        inside = np.linspace(zero, edge, SEARCH_POINTS + 2)[1:-1]
        inside = inside[(inside != zero) & (inside != edge)]
        if not inside.size:
            break
        nonzero = np.flatnonzero(value_fn(torch.from_numpy(inside)).numpy() != 0)  # NaN counts as non-zero
        if nonzero.size:
            j = int(nonzero[0])
            edge = float(inside[j])
            if j:
                zero = float(inside[j - 1])
        else:
            zero = float(inside[-1])
    e = edge
    if abs(e) < 1.0:
        far = e * 2.0 if abs(e) > abs(zero) else e / 2.0
    else:
        far = e + 1e-3 * abs(e) * (1.0 if e > zero else -1.0)
    # evaluated in a batch of the search's size, so the target takes the same (vectorised)
    # code path as in the search: near the edge a scalar path may round to zero where the
    # vectorised one did not
    values = value_fn(torch.from_numpy(np.resize(np.array([e, far]), SEARCH_POINTS)))
    at_edge, beyond = float(values[0]), float(values[1])
    if at_edge == 0 or not beyond == beyond:
        return False
    return abs(beyond) <= GENTLE_DECAY * abs(at_edge)


def _is_isolated_root(value_fn: Callable[[torch.Tensor], torch.Tensor], lo: float, hi: float) -> bool:
    """Zeros confined to ``[lo, hi]`` (a point, or -0.0 and +0.0) between non-zero values of
    opposite sign, as a derivative at a smooth minimum: their sign carries no meaning."""
    delta = 1e-6 * max(1.0, abs(lo), abs(hi))
    if hi - lo > delta:
        return False
    left, right = value_fn(torch.tensor([lo - delta, hi + delta], dtype=torch.float64)).tolist()
    return left != 0 and right != 0 and (left < 0) != (right < 0)


def classify(
    x: torch.Tensor,
    created: torch.Tensor,
    exact: torch.Tensor,
    value_fn: Callable[[torch.Tensor], torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The indices per class of the created -0.0 elements (``created``, a mask or its sorted indices).

    ``exact`` holds the float64 values at the created inputs, in order. Negative there: an
    underflow (the sign is right). Positive: a rounding that lost a tiny positive value
    (cancellation, as gelu's backward in float32). Zero there too: each run of such inputs is
    examined in float64 with ``value_fn``; a lone root is dropped, a zero region reached
    through gently decaying values is an underflow (negative side) or rounding (positive
    side), and any other zero region is exactly zero: spurious. The work follows the number
    of created zeros, not the size of the probe.
    """
    index = flagged(created)
    exact = exact.to(torch.float64)
    kind = torch.zeros(index.numel(), dtype=torch.int8)  # 0 undecided, 1 underflow, 2 rounding, 3 dropped
    kind[exact < 0] = 1
    kind[exact > 0] = 2
    undecided = index[kind == 0]
    if value_fn is not None and undecided.numel():
        x64 = x.to(torch.float64)
        for start, end in runs_of(undecided)[:MAX_RUNS]:
            chosen = _classify_run(value_fn, x64, start, end)
            if chosen:  # the run's place among the created indices (both sorted)
                bounds = torch.searchsorted(index, torch.tensor([start, end]))
                kind[int(bounds[0]) : int(bounds[1]) + 1] = chosen
    names = ("spurious", "underflow", "rounding") if value_fn is not None else ("undetermined", "underflow", "rounding")
    result = {name: index[kind == code] for code, name in enumerate(names)}
    if value_fn is None:
        result["spurious"] = index[:0]
    return result


def _classify_run(value_fn: Callable[[torch.Tensor], torch.Tensor], x64: torch.Tensor, start: int, end: int) -> int:
    """1 (underflow), 2 (rounding), 3 (dropped: a lone root) or 0 (spurious) for the run of
    zeros at probe indices ``start..end``, examined at its edges."""
    if _is_isolated_root(value_fn, float(x64[start]), float(x64[end])):
        return 3
    for edge, neighbour in ((start, start - 1), (end, end + 1)):
        if not 0 <= neighbour < x64.numel():
            continue
        value = float(value_fn(x64[neighbour : neighbour + 1])[0])
        if value == 0 or value != value:
            continue
        if _edge_decays(value_fn, float(x64[edge]), float(x64[neighbour])):
            return 1 if value < 0 else 2
    return 0


def _zero_findings(code: str, what: str, fix: str,
                   per_dtype: list[tuple[torch.dtype, torch.Tensor, torch.Tensor, str, str, float | None]],
                   location: dict | None) -> Iterator[Finding]:
    """One finding per classification, showing the first dtype (float32 preferred) and naming the
    rest. ``per_dtype`` rows: dtype, inputs, indices of the class's inputs, extra words, class,
    grad_output sign."""
    for kind, status in (("spurious", "warn"), ("underflow", "info"), ("rounding", "info"),
                         ("undetermined", "info"), ("propagated", "info")):
        hits = [(d, x, m, ex, s) for d, x, m, ex, k, s in per_dtype if k == kind and m.numel()]
        if not hits:
            continue
        hits.sort(key=lambda h: (h[0] != torch.float32,))
        dtype, x, index, extra, sign = hits[0]  # the indices of the shown dtype's inputs
        count = index.numel()
        others = [n for n in dict.fromkeys(dtype_name(h[0]) for h in hits[1:]) if n != dtype_name(hits[0][0])]
        i = example_index(x, index)
        where = describe_intervals(x, index)
        name = dtype_name(dtype)
        also = f" (also in {', '.join(others)})" if others else ""
        example_input = number(float(x[i]))
        if kind == "spurious":
            message = (
                f"{what} creates -0.0 in {name}{also} at {count} of {x.numel()} inputs: {where}; "
                f"e.g. x = {example_input} gives -0.0{extra}, where the exact value is +0 (the function "
                f"is exactly zero there). -0.0 == 0.0, so allclose and gradcheck cannot see it, but "
                f"atan2, 1/x, copysign and sign tests can. {fix}"
            )
        elif kind == "underflow":
            message = (
                f"{what} returns -0.0 in {name}{also} at {count} inputs ({where}), e.g. x = "
                f"{example_input}{extra}, where the true value is a tiny negative number that rounds "
                f"to zero: the sign is correct."
            )
        elif kind == "undetermined":
            message = (
                f"{what} returns -0.0 in {name}{also} at {count} inputs ({where}) where the float64 "
                f"value is zero too; the target is not elementwise, so gradaudit cannot tell an exact "
                f"zero from an underflow. Shown for information."
            )
        elif kind == "rounding":
            message = (
                f"{what} returns -0.0 in {name}{also} at {count} inputs ({where}), e.g. x = "
                f"{example_input}{extra}, where the true value is a tiny positive number lost to "
                f"rounding or cancellation; the zero's sign is arbitrary there."
            )
        else:
            message = f"{what} maps -0.0 to -0.0 in {name}{also}: the input's sign is propagated, as torch.tanh does."
        yield Finding(code, status, message, dtype=name, location=location,
                      examples=[{"input": float(x[i]), "output": "-0.0"}],
                      details={"kind": kind, "intervals": intervals(x, index), "count": count,
                               "dtypes": list(dict.fromkeys(dtype_name(h[0]) for h in hits)),
                               "inputs": offending_inputs(x, index, i),
                               **({"grad_output": sign} if sign is not None else {})})


def run_output(ctx: "AuditContext") -> Iterator[Finding]:
    per_dtype = []
    value_fn = ctx.values64 if ctx.elementwise else None
    for dtype in ctx.options.dtypes:
        ev = ctx.evaluate(dtype)
        if ev.y is None or ev.y.shape != ev.x.shape:
            continue
        created = ev.flags("y")[1]
        # the probe is sorted and holds -0.0 once, right before +0.0
        at = int(torch.searchsorted(ev.x, torch.tensor(0.0, dtype=ev.x.dtype))) if ev.x.dim() == 1 else -1
        kept = 0 <= at < ev.x.numel() and bool(scans.negative_zero(ev.x[at : at + 1])) and bool((created == at).any())
        if kept:  # f(-0.0) == -0.0: passed through, not created
            created = created[created != at]
        per_dtype.append((dtype, ev.x, torch.tensor([at] if kept else [], dtype=torch.long), "", "propagated", None))
        if not created.numel():
            continue
        exact = ctx.exact_at(dtype, created).y
        if exact is None:
            continue
        classes = classify(ev.x, created, exact, value_fn)
        per_dtype += [(dtype, ev.x, where, "", kind, None) for kind, where in classes.items()]
    yield from _zero_findings("GA203", "the forward", FIX_OUTPUT, per_dtype, ctx.target.source("forward"))


def run_gradient(ctx: "AuditContext") -> Iterator[Finding]:
    if not ctx.elementwise:
        return  # a vjp element mixes many grad_output elements: "created" has no meaning
    per_dtype = []
    for dtype in ctx.options.dtypes:
        ev = ctx.evaluate(dtype)
        if ev.grad_error or not ev.grads or ev.grads[1.0].shape != ev.x.shape:
            continue
        for sign in ctx.grad_output_signs:
            created = ev.flags(sign)[1]
            if not created.numel():
                continue
            exact = ctx.exact_at(dtype, created).grads.get(sign)
            if exact is None:
                continue
            classes = classify(ev.x, created, exact, lambda p, s=sign: ctx.grads64(p, s))
            extra = f" for grad_output {number(sign)}"
            per_dtype += [(dtype, ev.x, where, extra, kind, sign) for kind, where in classes.items()]
    yield from _zero_findings("GA204", "the backward", FIX_GRADIENT, per_dtype, ctx.target.source("backward"))


CHECKS = [
    Check(
        code="GA203",
        slug="signed-zero-output",
        status="warn / info",
        summary="the target creates -0.0 outputs (spurious: warn; underflow or propagated: info)",
        explanation=(
            "An output is a created -0.0 when it is -0.0 and its input is not. x * (x > 0).float() "
            "returns -0.0 for every negative x because a negative number times 0 is -0.0. -0.0 == 0.0, "
            "so allclose, assert_close and gradcheck never notice, but atan2, 1/x, copysign, divmod "
            "and sign tests do. Zeros whose exact value is a tiny negative number (silu(-100.) in "
            "float32) are correct underflows, and f(-0.0) == -0.0 is propagation: both are info."
        ),
        fix=FIX_OUTPUT,
        example="x * (x > 0).float() at x = -1.0 gives -0.0",
        run=run_output,
    ),
    Check(
        code="GA204",
        slug="signed-zero-gradient",
        status="warn / info",
        summary="the backward creates -0.0 gradients (probed with grad_outputs of both signs)",
        explanation=(
            "The backward is run with grad_output +1 and -1. A gradient of -0.0 is spurious when the "
            "exact gradient is zero, typically grad_output * mask with a negative grad_output."
        ),
        fix=FIX_GRADIENT,
        example="grad_output * (x > 0).float() with grad_output = -1 at x = -1.0 gives -0.0",
        run=run_gradient,
    ),
]
