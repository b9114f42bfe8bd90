"""GA203/GA204: -0.0 that the target (or its backward) *creates*.

A created -0.0 is classified (see DESIGN.md):
  spurious  (warn) the exact value is zero, e.g. ``x * mask``: the sign means nothing;
  underflow (info) the true value is a tiny negative number that rounded to zero;
  propagated (info) ``f(-0.0) == -0.0``, as tanh and relu on CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import torch

from ..engine import scans
from ..engine.blame import offending_inputs
from ..engine.calling import CallError
from ..engine.evaluation import Evaluation
from ..engine.messages import describe_intervals, example_index, intervals, number
from ..engine.options import dtype_name
from ..engine.vjp import vjp
from ..engine.zero_regions import (
    GENTLE_DECAY, SEARCH_POINTS, TINY, Remembered, WholeFn, classify, classify_whole, edge_decays, jitter, shuffled
)
from ..model.check import placeholders
from ..model.report import Finding
from . import Check, inputs_values
from .several import INPUT_MESSAGES, with_inputs

if TYPE_CHECKING:
    from ..engine.context import AuditContext

__all__ = ["CHECKS", "SIGNED_ZERO_GRADIENT", "SIGNED_ZERO_OUTPUT", "GENTLE_DECAY", "SEARCH_POINTS", "classify", "run_gradient", "run_output"]
_edge_decays = edge_decays  # the name the tests know

FIX_OUTPUT = (
    "Return real zeros: torch.where(mask, x, torch.zeros_like(x)) or x.clamp(min=0) instead of "
    "multiplying by a mask, or add + 0.0 to the result, which turns -0.0 into +0.0."
)
FIX_GRADIENT = (
    "In backward, select instead of multiplying by a mask: "
    "torch.where(mask, grad_output, torch.zeros_like(grad_output)), or add + 0.0 to the gradient."
)
KINDS = (("spurious", "warn"), ("underflow", "info"), ("rounding", "info"), ("undetermined", "info"),
         ("propagated", "info"))


@dataclass
class Row:
    """The created -0.0 of one class in one dtype (and grad_output sign)."""

    dtype: torch.dtype
    x: torch.Tensor
    """The sorted probe the indices describe (for a shape-changing output: the shuffled one)."""
    index: torch.Tensor
    kind: str
    sign: float | None = None
    outputs: int | None = None
    """Output elements, where the target changes the shape (``index`` is then into the output)."""
    elementwise: bool = True
    probe: str | None = None
    """``"shuffled"`` where the check evaluated the probe in a seeded order (shape-changing targets)."""


def _messages(what: str) -> dict[str, str]:
    """GA203's and GA204's message templates, by kind, for ``what`` (the forward or the backward)."""
    return {
        "spurious": what + " creates -0.0 in {dtype}{also} {where}; e.g. {example}, where the exact value "
                    "is +0 (the function is exactly zero around that point{around}). -0.0 == 0.0, so "
                    "allclose and gradcheck cannot see it, but atan2, 1/x, copysign and sign tests can. {fix}",
        "underflow": what + " returns -0.0 in {dtype}{also} {where}; e.g. {example}, where the true value "
                     "is a tiny negative number that rounds to zero: the sign is correct.",
        "undetermined": what + " returns -0.0 in {dtype}{also} {where}, where the float64 value is zero "
                        "too; gradaudit could not evaluate the target near those inputs, so it cannot "
                        "tell an exact zero from an underflow. Shown for information.",
        "rounding": what + " returns -0.0 in {dtype}{also} {where}; e.g. {example}, where the true value is "
                    "a tiny positive number lost to rounding or cancellation; the zero's sign is arbitrary there.",
        "propagated": what + " maps -0.0 to -0.0 in {dtype}{also}: the input's sign is propagated, as "
                      "torch.tanh does.",
        "propagated-product": what + " returns -0.0 in {dtype}{also} {where}; e.g. {example}, where the "
                              "function is zero but takes non-zero values arbitrarily close (perturbing "
                              "the inputs{perturbed}): the zero carries the sign of a vanishing product or "
                              "sum (as a * gelu(b) at a = +0.0), not a mask's.",
    }


def _zero_findings(check: Check, rows: list[Row], location: dict | None) -> Iterator[Finding]:
    """One finding per classification, showing the first dtype (float32 preferred) and naming the rest."""
    for kind, status in KINDS:
        hits = [r for r in rows if r.kind == kind and r.index.numel()]
        if not hits:
            continue
        hits.sort(key=lambda r: r.dtype != torch.float32)
        row = hits[0]
        dtypes = list(dict.fromkeys(dtype_name(r.dtype) for r in hits))
        yield _finding(check, status, row, dtypes, location)


def _tiny(ctx: "AuditContext") -> float:
    """The value at a zero region's edge that counts as tiny: float32's rounding for a target that
    computes float64 in float32 (1 - tanh(x)**2 steps from 1.2e-7 straight to 0 there)."""
    return max(TINY, 16 * ctx.working_eps)


def _interior(index: torch.Tensor) -> torch.Tensor:
    """The flagged probe indices whose both neighbours are flagged too (``index`` itself where
    none is): an example inside a zero region, not on its edge (hardswish is -0.0 at x = -3, but
    not zero just right of it)."""
    index = index.sort().values
    inside = index[1:-1][(index[2:] - index[1:-1] == 1) & (index[1:-1] - index[:-2] == 1)]
    return inside if inside.numel() else index


def _finding(check: Check, status: str, row: Row, dtypes: list[str], location: dict | None) -> Finding:
    x, index, kind = row.x, row.index, row.kind
    count, name = index.numel(), dtypes[0]
    also = f" (also in {', '.join(dtypes[1:])})" if dtypes[1:] else ""
    extra = f" for grad_output {number(row.sign)}" if row.sign is not None else ""
    details: dict = {"kind": kind, "count": count, "dtypes": dtypes,
                     **({"grad_output": row.sign} if row.sign is not None else {})}
    if row.outputs is None:
        i = example_index(x, _interior(index) if kind == "spurious" else index)
        where = f"at {count} of {x.numel()} inputs: {describe_intervals(x, index)}"
        example = f"x = {number(float(x[i]))} gives -0.0{extra}"
        examples = [{"input": float(x[i]), "output": "-0.0"}]
        details.update(intervals=intervals(x, index), inputs=offending_inputs(x, index, i))
    else:
        i = int(index[0])
        where = (f"at {count} of {row.outputs} output elements (the target changes the shape; probed with "
                 f"the inputs shuffled, so that every pairing of signs occurs)")
        example = f"output element {i} is -0.0{extra}"
        examples = [{"output_index": i, "output": "-0.0"}]
        details.update(intervals=[])
    if row.probe is not None:
        details["probe"] = row.probe
    around = "" if row.elementwise else (
        " in every input element it depends on (small perturbations of all of them"
        + (" and of grad_output" if row.sign is not None else "") + " leave it zero)")
    values = {"also": also, "where": where, "example": example, "around": around,
              "perturbed": " or grad_output" if row.sign is not None else ""}
    message_kind = kind if kind != "propagated" or row.elementwise else "propagated-product"
    wanted = placeholders(check.messages[message_kind])
    return check.finding(message_kind, status, **{k: v for k, v in values.items() if k in wanted},
                         dtype=name, location=location, examples=examples, details=details)


# -- float64 evaluations of the whole probe ----------------------------------------------------------
def _whole(ctx: "AuditContext", sign: float | None) -> WholeFn:
    """The float64 target (``sign`` None) or its vjp with grad_output ``sign`` at a whole probe;
    draw ``k`` perturbs grad_output by :func:`gradaudit.engine.zero_regions.jitter`."""
    seed = ctx.options.seed

    def values(x64: torch.Tensor, draw: int | None) -> torch.Tensor:
        if sign is None:
            with torch.no_grad():
                return ctx.call(x64.clone(), dtype=torch.float64).detach().to(torch.float64).reshape(-1)
        leaf = x64.clone().requires_grad_(True)
        with torch.enable_grad():
            out = ctx.call(leaf.clone(), dtype=torch.float64)
            grad_output = torch.full_like(out, sign)
            if draw is not None:
                grad_output = grad_output * (1 + jitter(out.numel(), draw, seed).reshape(out.shape).to(out.dtype))
            grad = vjp(out, leaf, grad_output)
        return (torch.zeros_like(leaf) if grad is None else grad.detach()).to(torch.float64).reshape(-1)

    return values


def _classify_whole(ctx: "AuditContext", x: torch.Tensor, created: torch.Tensor, exact: torch.Tensor,
                    sign: float | None) -> dict[str, torch.Tensor]:
    try:
        return classify_whole(x, created, exact, _whole(ctx, sign), ctx.options.seed, ctx.options.domain)
    except (CallError, RuntimeError):  # the target fails near the probe: say what is known
        return classify_whole(x, created, exact, None)


def _evaluate_at(ctx: "AuditContext", x: torch.Tensor, dtype: torch.dtype) -> Evaluation:
    """Forward and backward (each grad_output sign) of the target at ``x`` in ``dtype``."""
    ev = Evaluation(dtype=dtype, x=x)
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = ctx.call(leaf.clone(), dtype=dtype)
        ev.y = out.detach().clone()
        for sign in ctx.grad_output_signs if out.requires_grad else ():
            grad = vjp(out, leaf, torch.full_like(out, sign), retain_graph=True)
            if grad is not None:
                ev.grads[sign] = grad.detach().clone()
    return ev


def _shuffled(ctx: "AuditContext", dtype: torch.dtype) -> tuple[torch.Tensor, Evaluation, Evaluation] | None:
    """For a shape-changing target: the permutation of ``dtype``'s probe, the evaluation there,
    and the float64 one at the same inputs (shared by GA203 and GA204); None if it fails."""
    def compute() -> tuple[torch.Tensor, Evaluation, Evaluation] | None:
        x = ctx.evaluate(dtype).x
        order = shuffled(torch.arange(x.numel()), ctx.options.seed)
        try:
            ev = _evaluate_at(ctx, x[order], dtype)
            exact = ev if dtype == torch.float64 else _evaluate_at(ctx, x[order].to(torch.float64), torch.float64)
        except (CallError, RuntimeError):
            return None
        return order, ev, exact

    return ctx.memo(f"signed-zero shuffled {dtype}", compute)


def _changes_shape(ev: Evaluation) -> bool:
    return ev.y is not None and ev.y.shape != ev.x.shape


# -- the checks ------------------------------------------------------------------------------------------
def run_output(ctx: "AuditContext") -> Iterator[Finding]:
    rows: list[Row] = []
    elementwise = ctx.elementwise
    for dtype in ctx.options.dtypes:
        ev = ctx.evaluate(dtype)
        if ev.y is None:
            continue
        if _changes_shape(ev):
            rows += _shape_changing_output(ctx, dtype)
            continue
        created = ev.flags("y")[1]
        # the probe is sorted and holds -0.0 once, right before +0.0
        at = int(torch.searchsorted(ev.x, torch.tensor(0.0, dtype=ev.x.dtype))) if ev.x.dim() == 1 else -1
        kept = 0 <= at < ev.x.numel() and bool(scans.negative_zero(ev.x[at : at + 1])) and bool((created == at).any())
        if kept:  # f(-0.0) == -0.0: passed through, not created
            created = created[created != at]
        rows.append(Row(dtype, ev.x, torch.tensor([at] if kept else [], dtype=torch.long), "propagated"))
        if not created.numel():
            continue
        exact = ctx.exact_at(dtype, created).y
        if exact is None:
            continue
        if elementwise:
            values64 = ctx.memo("signed-zero values64", lambda: Remembered(ctx.values64))  # shared by the dtypes
            classes = classify(ev.x, created, exact, values64, _tiny(ctx))
        else:
            classes = _classify_whole(ctx, ev.x, created, exact, None)
        rows += [Row(dtype, ev.x, where, kind, elementwise=elementwise) for kind, where in classes.items()]
    yield from _zero_findings(SIGNED_ZERO_OUTPUT, rows, ctx.target.source("forward"))


def _shape_changing_output(ctx: "AuditContext", dtype: torch.dtype) -> list[Row]:
    found = _shuffled(ctx, dtype)
    if found is None:
        return []
    _, ev, exact = found
    created = scans.flags(ev.y)[1]
    if not created.numel() or exact.y is None:
        return []
    classes = _classify_whole(ctx, ev.x, created, exact.y.reshape(-1)[created], None)
    return [Row(dtype, ev.x, where, kind, outputs=ev.y.numel(), elementwise=False, probe="shuffled")
            for kind, where in classes.items()]


def run_gradient(ctx: "AuditContext") -> Iterator[Finding]:
    rows: list[Row] = []
    elementwise = ctx.elementwise
    for dtype in ctx.options.dtypes:
        ev = ctx.evaluate(dtype)
        if ev.grad_error or not ev.grads or ev.grads[1.0].shape != ev.x.shape:
            continue
        order, exact_ev = None, None
        if _changes_shape(ev):  # gradients over the shuffled probe, described at sorted inputs
            found = _shuffled(ctx, dtype)
            if found is None:
                continue
            order, ev, exact_ev = found
        for sign in ctx.grad_output_signs:
            if sign not in ev.grads:
                continue
            created = scans.flags(ev.grads[sign])[1] if order is not None else ev.flags(sign)[1]
            if not created.numel():
                continue
            if exact_ev is not None:
                exact = exact_ev.grads.get(sign)
                exact = exact.reshape(-1)[created] if exact is not None else None
            else:
                exact = ctx.exact_at(dtype, created).grads.get(sign)
            if exact is None:
                continue
            if elementwise:
                grads64 = ctx.memo(f"signed-zero grads64 {sign}", lambda s=sign: Remembered(lambda p: ctx.grads64(p, s)))
                classes = classify(ev.x, created, exact, grads64, _tiny(ctx))
            else:
                classes = _classify_whole(ctx, ev.x, created, exact, sign)
            x = ev.x
            if order is not None:  # shuffled positions -> the sorted probe's
                x = ctx.evaluate(dtype).x
                classes = {kind: torch.sort(order[where]).values for kind, where in classes.items()}
            rows += [Row(dtype, x, where, kind, sign, elementwise=elementwise,
                         probe="shuffled" if order is not None else None) for kind, where in classes.items()]
    yield from _zero_findings(SIGNED_ZERO_GRADIENT, rows, ctx.target.source("backward"))



SIGNED_ZERO_OUTPUT = Check(
    code="GA203",
    blame=("negative-zero", "forward"),
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
    run=with_inputs(run_output, lambda ctx: inputs_values.run_signed_zero_output(ctx, SIGNED_ZERO_OUTPUT)),
    messages={**_messages("the forward"), **INPUT_MESSAGES["GA203"]},
)

SIGNED_ZERO_GRADIENT = Check(
    code="GA204",
    blame=("negative-zero", "backward"), negative_grad_output=True,
    slug="signed-zero-gradient",
    status="warn / info",
    summary="the backward creates -0.0 gradients (probed with grad_outputs of both signs)",
    explanation=(
        "The backward is run with grad_output +1 and -1. A gradient of -0.0 is spurious when the "
        "exact gradient is zero, typically grad_output * mask with a negative grad_output."
    ),
    fix=FIX_GRADIENT,
    example="grad_output * (x > 0).float() with grad_output = -1 at x = -1.0 gives -0.0",
    run=with_inputs(run_gradient, lambda ctx: inputs_values.run_signed_zero_gradient(ctx, SIGNED_ZERO_GRADIENT)),
    location_role="backward",
    messages={**_messages("the backward"), **INPUT_MESSAGES["GA204"]},
)

CHECKS = [SIGNED_ZERO_OUTPUT, SIGNED_ZERO_GRADIENT]
