"""GA501: the target against a given reference implementation (``--reference``, ``reference=``).

Only when a reference is given. In every audit dtype the reference runs forward and backward
(with the grad_outputs the audit's stored backwards use) on the target's probe inputs, called
as the target is (laid out as it is; a target with several tensor inputs along the same section,
the reference taking the same inputs). Outputs of another shape than the input (a GLU, a slice)
are compared element by element and named by their flattened index:

* values or gradients that differ beyond the dtype's tolerance are a fail (where both are
  finite: a non-finite result is GA201/GA202's; and gradients not at a kink, where a different
  convention is GA301's info). In float64 the two are compared directly; in a lower precision a difference counts only where the target
  is clearly farther from the reference's float64 value than the reference's own rounding
  (two roundings of two formulas in bfloat16 differ by ulps, which is no defect);
* zeros whose signs differ are a warn naming the side whose -0.0 is spurious (that side's own
  float64 value is not negative there: the zero is exact or a positive underflow). Inputs that
  are -0.0 themselves are left out (propagating the input's sign is no defect), and so is a
  -0.0 whose float64 value is negative (an underflow: its sign is right).

GA301's kink-convention info against the reference is separate and unchanged.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch

from ..engine.messages import describe_intervals, example_index, intervals, number, runs
from ..engine.options import dtype_name
from ..engine.vjp import vjp
from ..model.report import Finding
from . import Check
from .device import TOLERANCES

if TYPE_CHECKING:
    from ..engine.context import AuditContext


def _run(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, signs: tuple[float, ...],
         seed: int, layout: tuple[int, ...] | None = None) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    """Forward and the backward for each grad_output sign of ``fn`` at ``x`` (raises what it
    raises); a 1-D ``x`` laid out as the target's calls lay it out (``layout``), and what has
    its size given back flat, as the audit's evaluations are."""
    shaped = x.reshape(layout) if layout is not None and x.dim() == 1 else x
    leaf = shaped.detach().clone().requires_grad_(True)
    flat = (lambda t: t.reshape(-1)) if shaped is not x else (lambda t: t)  # noqa: E731
    torch.manual_seed(seed)
    with torch.enable_grad():
        out = fn(leaf.clone())
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"it returned {type(out).__name__}, not a tensor")
        grads: dict[float, torch.Tensor] = {}
        if out.requires_grad:
            for i, sign in enumerate(signs):
                grad = vjp(out, leaf, torch.full_like(out, sign), retain_graph=i + 1 < len(signs))
                if grad is not None:
                    grads[sign] = flat(grad.detach())
    y = out.detach()
    return (flat(y) if y.numel() == leaf.numel() else y), grads


def differs(ours: torch.Tensor, theirs: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Where ``ours`` differs from ``theirs`` (the reference in ``dtype``) beyond ``dtype``'s
    tolerance and, below float64, is also clearly farther than ``theirs`` from ``exact`` (the
    reference in float64). Only where both are finite: a non-finite result is GA201/GA202's."""
    rtol, atol = TOLERANCES[dtype]
    a, b, e = ours.to(torch.float64), theirs.to(torch.float64), exact.to(torch.float64)
    mismatch = torch.isfinite(a) & torch.isfinite(b) & ((a - b).abs() > atol + rtol * b.abs())
    if dtype == torch.float64:
        return mismatch
    fits = torch.isfinite(e) & (e.abs() <= torch.finfo(dtype).max)
    return mismatch & fits & ((a - e).abs() > 2 * (b - e).abs() + atol + rtol * e.abs())


def _pairs(ctx: "AuditContext", dtype: torch.dtype, fn: Callable, fn64: Callable) -> Iterator[tuple]:
    """(noun, grad_output sign or None, ours, theirs, our float64, their float64) for the output
    and each gradient."""
    ours = ctx.evaluate(dtype)
    signs = tuple(s for s in ctx.grad_output_signs if s in ours.grads)
    y, grads = _run(fn, ours.x, signs, ctx.options.seed, ctx.layout)
    if dtype == torch.float64:
        y64, grads64, own = y, grads, ours
    else:
        y64, grads64 = _run(fn64, ours.x.to(torch.float64), signs, ctx.options.seed, ctx.layout)
        own = ctx.reference64(dtype)
    if ours.y is not None and own.y is not None:
        yield "output", None, ours.y, y, own.y, y64
    for sign in signs:
        if sign in grads and sign in grads64 and sign in own.grads:
            yield "gradient", sign, ours.grads[sign], grads[sign], own.grads[sign], grads64[sign]


def _compare(ctx: "AuditContext", dtype: torch.dtype, fn: Callable, fn64: Callable) -> Iterator[Finding]:
    name, reference = dtype_name(dtype), ctx.options.reference.name
    x = ctx.evaluate(dtype).x
    for noun, sign, ours, theirs, own, exact in _pairs(ctx, dtype, fn, fn64):
        role = "forward" if noun == "output" else "backward"
        extra = "" if sign is None else f" for grad_output {number(sign)}"
        if ours.shape != theirs.shape:
            yield REFERENCE.finding("shape-differs", "fail", audit=ctx, noun=noun, shape=tuple(ours.shape),
                                    reference=reference, theirs=tuple(theirs.shape), dtype=name,
                                    location=ctx.target.source(role), details={"noun": noun, "reference": reference})
            continue
        if sign is None or sign > 0:  # values: the output and the +1 gradient (the -1 one is its negation)
            yield from _values(ctx, x, noun, role, ours, theirs, exact, dtype)
        yield from _zero_signs(ctx, x, noun, extra, role, (ours, own), (theirs, exact), dtype)


def _positions(x: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """What a finding names a flagged element of ``values`` by: the probe input ``x`` where there
    is one value per input, else the element's index in the flattened output (``False``)."""
    if values.shape == x.shape:
        return x, True
    return torch.arange(values.numel(), dtype=torch.float64), False


def _element_words(mask: torch.Tensor, shape: tuple[int, ...], limit: int = 4) -> str:
    pieces = runs(mask.reshape(-1))
    words = [f"{s}" if s == e else f"{s} to {e}" for s, e in pieces[:limit]]
    more = f" and {len(pieces) - limit} more runs" if len(pieces) > limit else ""
    return f"flattened elements {', '.join(words)}{more} of the output of shape {tuple(shape)}"


def _values(ctx: "AuditContext", x: torch.Tensor, noun: str, role: str, ours: torch.Tensor,
            theirs: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype) -> Iterator[Finding]:
    mask = differs(ours, theirs, exact, dtype).reshape(-1)
    if not bool(mask.any()):
        return
    points, by_input = _positions(x, ours)
    if noun == "gradient" and by_input and ctx.elementwise:  # at a kink conventions differ: GA301's info
        mask &= ~ctx.near_kink(x.to(torch.float64), torch.zeros_like(x, dtype=torch.float64))
        if not bool(mask.any()):
            return
    a, b = ours.reshape(-1), theirs.reshape(-1)
    gap = torch.where(mask, (a.to(torch.float64) - b.to(torch.float64)).abs(), torch.zeros((), dtype=torch.float64))
    i = int(torch.argmax(gap))
    rtol, atol = TOLERANCES[dtype]
    reference = ctx.options.reference.name
    at = f"x = {number(float(points[i]))}" if by_input else f"flattened output element {i}"
    example = {"input": float(points[i])} if by_input else {"element": i}
    yield REFERENCE.finding(
        "values-differ", "fail", audit=ctx, noun=noun, reference=reference, count=int(mask.sum()),
        total=mask.numel(), what="inputs" if by_input else "output elements",
        where=describe_intervals(points, mask) if by_input else _element_words(mask, tuple(ours.shape)),
        difference=number(float(gap[i])), at=at, ours=number(float(a[i])), theirs=number(float(b[i])),
        rtol=rtol, atol=atol, dtype=dtype_name(dtype), location=ctx.target.source(role),
        examples=[{**example, "target": number(float(a[i])), "reference": number(float(b[i]))}],
        details={"noun": noun, "reference": reference, "intervals": intervals(points, mask), "count": int(mask.sum()),
                 "max_difference": float(gap[i]), "by": "input" if by_input else "output element"})


def _zero_signs(ctx: "AuditContext", x: torch.Tensor, noun: str, extra: str, role: str,
                target: tuple[torch.Tensor, torch.Tensor], reference_values: tuple[torch.Tensor, torch.Tensor],
                dtype: torch.dtype) -> Iterator[Finding]:
    """Zeros of opposite signs; a side's -0.0 is spurious where its own float64 value is not
    negative (a negative one underflowed: that sign is right)."""
    (ours, own), (theirs, exact) = target, reference_values
    if len({ours.shape, theirs.shape, own.shape, exact.shape}) != 1:
        return
    points, by_input = _positions(x, ours)
    ours, theirs, own, exact = (t.reshape(-1) for t in (ours, theirs, own, exact))
    judged = (ours == 0) & (theirs == 0)
    if by_input:  # an input that is -0.0 itself: propagating its sign is no defect
        judged &= ~((points == 0) & torch.signbit(points))
    reference = ctx.options.reference.name
    for side, mask in (("target", judged & torch.signbit(ours) & ~torch.signbit(theirs) & ~(own < 0)),
                       ("reference", judged & torch.signbit(theirs) & ~torch.signbit(ours) & ~(exact < 0))):
        if not bool(mask.any()):
            continue
        i = example_index(points, mask)
        creator, other = ("the target", f"the reference {reference}") if side == "target" else \
            (f"the reference {reference}", "the target")
        example = {"input": float(points[i])} if by_input else {"element": i}
        yield REFERENCE.finding(
            "zero-sign-differs", "warn", audit=ctx, creator=creator, other=other, noun=noun, extra=extra,
            count=int(mask.sum()), what="inputs" if by_input else "output elements",
            where=describe_intervals(points, mask) if by_input else _element_words(mask, tuple(target[0].shape)),
            at=f"x = {number(float(points[i]))}" if by_input else f"flattened output element {i}",
            dtype=dtype_name(dtype), location=ctx.target.source(role),
            examples=[{**example, "target": number(float(ours[i])), "reference": number(float(theirs[i]))}],
            details={"noun": noun, "reference": reference, "spurious": side, "intervals": intervals(points, mask),
                     "count": int(mask.sum()), "by": "input" if by_input else "output element"})


def _reference_callable(ctx: "AuditContext", dtype: torch.dtype) -> Callable[[torch.Tensor], Any]:
    """The reference as the audit calls the target: for a target with several tensor inputs,
    the reference takes the same inputs and is called along the same section (the others held
    as the target's are)."""
    reference = ctx.options.reference
    assert reference is not None
    fn = reference.callable_for(dtype)
    return ctx.binding.section(fn) if ctx.binding.several else fn


def run(ctx: "AuditContext") -> Iterator[Finding]:
    reference = ctx.options.reference
    if reference is None:
        return
    fn64 = _reference_callable(ctx, torch.float64)
    for dtype in ctx.options.dtypes:
        try:
            yield from _compare(ctx, dtype, _reference_callable(ctx, dtype), fn64)
        except Exception as exc:  # the reference's own error: nothing more to compare
            yield REFERENCE.finding("reference-raises", "warn", audit=ctx, reference=reference.name,
                                    dtype=dtype_name(dtype), exception=f"{type(exc).__name__}: {exc}")
            return


REFERENCE = Check(
    code="GA501",
    slug="reference",
    status="fail / warn",
    summary="differs from a given reference implementation: values or gradients (fail), zero signs (warn)",
    explanation=(
        "With --reference TARGET (or reference= in audit()), the reference runs forward and backward on "
        "the probe inputs of every audit dtype. Values or gradients outside the dtype's tolerance of the "
        "reference's fail (below float64, only where the target is clearly farther from the reference's "
        "float64 value than the reference's own rounding); a zero of the other sign is a warn naming the "
        "side whose -0.0 is spurious. Without a reference the check does nothing."
    ),
    fix="Make the target compute what the reference computes, or give the reference it is meant to match.",
    example="gradaudit check acts.py:tanh_gelu --reference torch.nn.functional:gelu",
    run=run,
    messages={
        "values-differ": "the {noun} differs from the reference {reference} in {dtype} at {count} of {total} "
                         "{what} ({where}), by up to {difference}: at {at} the target gives {ours} and the "
                         "reference {theirs} (tolerance rtol={rtol:g}, atol={atol:g}). {fix}",
        "shape-differs": "the {noun} has shape {shape} but the reference {reference}'s has {theirs} in {dtype}. {fix}",
        "zero-sign-differs": "{creator} returns -0.0 where {other} returns +0.0: the {noun}{extra} in {dtype} at "
                             "{count} {what} ({where}), e.g. at {at}. The float64 value of {creator} is not "
                             "negative there, so that -0.0 is spurious: -0.0 == 0.0, but atan2, 1/x, copysign "
                             "and sign tests see it. Return real zeros (torch.where, clamp, or + 0.0) on that side.",
        "reference-raises": "the reference {reference} could not be compared in {dtype}: it raised {exception}.",
    },
)

CHECKS = [REFERENCE]
