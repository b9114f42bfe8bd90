"""GA301/GA302: the gradient at kinks, and jumps with a finite gradient."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator

import torch

from ..engine.calling import CallError
from ..engine.messages import number
from ..engine.options import dtype_name
from ..model.report import Finding
from . import Check, inputs_kinks
from .gradient import staircase, surrogate_along_x
from .several import with_inputs

if TYPE_CHECKING:
    from ..engine.context import AuditContext
    from ..engine.kinks import Kink

PLACES = (0, 1, 7, 8, 15, 16, 17, 31, 32, 63, 64, 100, 128, 255, 256)
"""Positions of the kink inside a 257-element tensor: vector bodies and scalar tails."""


def gradients_at(ctx: "AuditContext", value: float, dtype: torch.dtype, fn=None) -> dict[str, float]:
    """The implemented gradient at ``value`` alone and at several places in a larger tensor."""
    point = torch.tensor(value, dtype=torch.float64).to(dtype)
    alone = ctx.grads64(point.reshape(1), 1.0, dtype) if fn is None else fn(point.reshape(1))
    big = (point.to(torch.float64) + torch.linspace(-0.5, 0.5, 257, dtype=torch.float64)).to(dtype)
    big[list(PLACES)] = point
    inside = ctx.grads64(big, 1.0, dtype) if fn is None else fn(big)
    values = inside[list(PLACES)].to(torch.float64)
    result = {"alone": float(alone[0])}
    # one NaN object for every NaN, so that NaNs count as one value (NaN != NaN)
    gradients = [math.nan if math.isnan(v) else v for v in values.tolist()]
    distinct = sorted(set(gradients), key=lambda v: (v != result["alone"], v))
    result["in_tensor"] = distinct[0] if len(distinct) == 1 else float("nan")
    if len(distinct) > 1:
        result["in_tensor_values"] = distinct
    return result


def convention(g: float, left: float, right: float, tol: float) -> str:
    if abs(g - left) <= tol and abs(g - right) <= tol:
        return "both one-sided derivatives"
    if abs(g - left) <= tol:
        return "the left derivative"
    if abs(g - right) <= tol:
        return "the right derivative"
    if abs(g - (left + right) / 2) <= tol:
        return "the mean of the one-sided derivatives"
    if abs(g) <= tol:
        return "zero (between the one-sided derivatives)"
    return "a value between the one-sided derivatives"


def judge(ctx: "AuditContext", kink: "Kink") -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """Status, kind, the message's values and the details for one kink."""
    left, right = kink.left, kink.right
    lo, hi = min(left, right), max(left, right)
    implemented: dict[str, Any] = {}
    problems: list[str] = []
    for dtype in ctx.options.dtypes:
        name = dtype_name(dtype)
        if float(torch.tensor(kink.location, dtype=torch.float64).to(dtype)) != kink.location:
            continue  # the kink is not representable in this dtype
        tol = (1e-6 if dtype == torch.float64 else 8 * torch.finfo(dtype).eps) * (1 + abs(left) + abs(right))
        try:
            measured = gradients_at(ctx, kink.location, dtype)
        except CallError as exc:
            problems.append(f"in {name} the backward at the kink failed: {exc}")
            continue
        implemented[name] = measured
        for where in ("alone", "in_tensor"):
            g = measured[where]
            if "in_tensor_values" in measured and where == "in_tensor":
                problems.append(f"in {name} the gradient at the kink depends on its position in the "
                                f"tensor: {', '.join(number(v) for v in measured['in_tensor_values'])}")
                continue
            if not math.isfinite(g):
                problems.append(f"in {name} the gradient at x = {number(kink.location)} is {number(g)}")
            elif not (lo - tol <= g <= hi + tol):
                problems.append(f"in {name} the gradient at x = {number(kink.location)} is {number(g)} "
                                f"({where}), outside [{number(lo)}, {number(hi)}]")
    details: dict[str, Any] = {
        "location": kink.location, "kind": kink.kind, "left": left, "right": right,
        "declared": kink.declared, "implemented": implemented,
    }
    if kink.location == 0:
        details.update(_zero_sides(ctx))
    g64 = implemented.get("float64", {}).get("alone", math.nan)
    details["convention"] = convention(g64, left, right, 1e-6 * (1 + abs(left) + abs(right))) if math.isfinite(g64) else None
    problems = list(dict.fromkeys(problems))
    if problems:
        details["verdict"] = "fail"
        values = {"x": number(kink.location), "left": number(left), "right": number(right),
                  "problems": "; ".join(problems[:3])}
        return "fail", "outside", values, details
    details["verdict"] = "pass"
    values = {"x": number(kink.location), "left": number(left), "right": number(right),
              "gradient": number(g64), "convention": details["convention"]}
    return "info", "convention", values, details


def _zero_sides(ctx: "AuditContext") -> dict[str, Any]:
    signed = torch.tensor([-0.0, 0.0], dtype=torch.float64)
    values = ctx.values64(signed)
    grads = ctx.grads64(signed)
    return {"f(-0.0)": number(float(values[0])), "f(+0.0)": number(float(values[1])),
            "grad(-0.0)": number(float(grads[0])), "grad(+0.0)": number(float(grads[1]))}


def run_kink(ctx: "AuditContext") -> Iterator[Finding]:
    if not ctx.elementwise or _no_gradient(ctx):
        return
    location = ctx.target.source("backward")
    for kink in ctx.kinks:
        if kink.kind != "kink":
            continue
        status, kind, values, details = judge(ctx, kink)
        yield KINK.finding(kind, status, **values, dtype="float64", location=location, details=details,
                           examples=[{"input": kink.location, "gradient": number(details["implemented"].get("float64", {}).get("alone", math.nan))}])
        if status == "info" and ctx.options.reference is not None:
            yield from _reference_convention(ctx, kink, details, location)


def _reference_convention(ctx: "AuditContext", kink: "Kink", details: dict[str, Any], location) -> Iterator[Finding]:
    reference = ctx.options.reference
    assert reference is not None
    fn = reference.callable_for(torch.float64)
    if ctx.binding.several:  # the reference takes the target's inputs: along x with the others held as x's are
        fn = ctx.binding.section(fn)
    leaf = torch.tensor([kink.location], dtype=torch.float64, requires_grad=True)
    try:
        (ref_grad,) = torch.autograd.grad(fn(leaf.clone()).sum(), leaf)
    except Exception as exc:
        yield KINK.finding("reference-without-gradient", "info", reference=reference.name,
                           x=number(kink.location), exception=type(exc).__name__, details=details)
        return
    ours = details["implemented"].get("float64", {}).get("alone", math.nan)
    theirs = float(ref_grad[0])
    if abs(ours - theirs) > 1e-6 * (1 + abs(theirs)):
        compared = {k: v for k, v in details.items() if k != "verdict"}
        yield KINK.finding(
            "reference-convention", "info", x=number(kink.location), gradient=number(ours),
            convention=details["convention"], torch=torch.__version__.split("+")[0], reference=reference.name,
            theirs=number(theirs), dtype="float64", location=location, details=dict(compared, reference=theirs))


def run_discontinuity(ctx: "AuditContext", straight_through_too: bool = True) -> Iterator[Finding]:
    if not ctx.elementwise or _no_gradient(ctx):
        return
    status = "info" if ctx.options.surrogate else "warn"  # the verdict in the details, as the finding's
    location = ctx.target.source("backward")
    stairs = staircase(ctx) if straight_through_too else None
    jumps: list[float] = []
    for kink in ctx.kinks:
        if kink.kind != "jump":
            continue
        try:
            g = gradients_at(ctx, kink.location, torch.float64)["alone"]
        except CallError:
            continue
        details = {"location": kink.location, "kind": "jump", "left": kink.left_value,
                   "right": kink.right_value, "implemented": {"float64": {"alone": g}}}
        if math.isfinite(g) and g != 0:
            if stairs is not None:
                jumps.append(kink.location)  # one finding for the whole staircase, below
                continue
            details["verdict"] = status
            yield DISCONTINUITY.finding("jump-gradient", "warn", audit=ctx, left=number(kink.left_value),
                                        right=number(kink.right_value), x=number(kink.location),
                                        gradient=number(g), dtype="float64", details=details)
        else:
            details["verdict"] = "pass"
            yield DISCONTINUITY.finding("jump", "info", left=number(kink.left_value), right=number(kink.right_value),
                                        x=number(kink.location), gradient=number(g), dtype="float64",
                                        location=location, details=details)
    if stairs is not None:
        wrong = stairs["wrong"]
        i = int(torch.nonzero(wrong)[0])
        yield DISCONTINUITY.finding("straight-through", "warn", audit=ctx, count=int(wrong.sum()),
                                    gradient=number(float(stairs["analytic"][i])), x=number(float(stairs["x"][i])),
                                    dtype="float64", details={"points": int(wrong.sum()), "jumps": jumps})


def _no_gradient(ctx: "AuditContext") -> bool:
    """Whether the backward gives no gradient at all (GA101 says so): nothing to judge at kinks
    and jumps."""
    first = ctx.first_evaluation()
    return first is not None and first.grad_error is not None



KINK = Check(
    code="GA301",
    slug="kink",
    status="fail / info",
    summary="at a kink the gradient is non-finite or outside the one-sided derivatives (fail); "
    "a convention different from the reference (info)",
    explanation=(
        "Kinks (points where the one-sided derivatives differ: relu at 0, relu6 at 0 and 6, "
        "hardswish at +-3) are declared with kinks=[...] or discovered on the float64 grid by "
        "bracketing and bisection. At each, the implemented gradient is measured alone and inside "
        "a larger tensor, in every audited dtype. PyTorch's rule for non-differentiable points "
        "allows any value between the one-sided derivatives; outside that, or non-finite, fails."
    ),
    fix="Make the backward's branch at the kink return one of the one-sided derivatives.",
    example="a ReLU whose backward returns 2 at exactly x == 0",
    run=with_inputs(run_kink, lambda ctx: inputs_kinks.run_sections(ctx, run_kink)),
    location_role="backward",
    messages={
        "outside": "kink at x = {x} (left derivative {left}, right {right}): {problems}. A gradient "
                   "at a kink must be finite and lie between the one-sided derivatives (PyTorch "
                   "picks one of them, e.g. relu'(0) = 0). Fix the backward's branch for x == {x} "
                   "(check <= versus <, and divisions by |x|).",
        "convention": "kink at x = {x}: left derivative {left}, right {right}; the gradient there "
                      "is {gradient} = {convention}.",
        "reference-without-gradient": "the reference {reference} has no gradient at x = {x} ({exception}).",
        "reference-convention": "convention differs from the reference at the kink x = {x}: yours is "
                                "{gradient} ({convention}); torch {torch}'s {reference} gives {theirs}. "
                                "Both lie between the one-sided derivatives, so this is a convention, "
                                "not a defect.",
    },
)

DISCONTINUITY = Check(
    code="GA302",
    slug="discontinuity",
    status="warn / info",
    summary="the forward jumps, or is piecewise constant, while the backward is finite and non-zero "
    "(an undeclared straight-through estimator)",
    explanation=(
        "A forward with jumps (Heaviside, round, sign) has no useful derivative; a finite non-zero "
        "gradient there is a surrogate. That is fine when intended (straight-through estimators, "
        "spiking networks) and must be declared with surrogate=True, which turns this and GA101 "
        "into info."
    ),
    fix="If this is a deliberate straight-through or surrogate gradient, declare it with "
    "surrogate=True (--surrogate); otherwise the backward is wrong (make it 0 away from the "
    "jumps, or make the forward continuous).",
    example="(x > 0).float() forward with identity backward",
    run=with_inputs(run_discontinuity, lambda ctx: [] if surrogate_along_x(ctx) else inputs_kinks.run_sections(
        ctx, lambda section: run_discontinuity(section, straight_through_too=False))),  # one staircase, one finding
    location_role="backward",
    surrogate_kinds=("jump-gradient", "straight-through"),
    messages={
        "jump-gradient": "the forward jumps from {left} to {right} at x = {x}, yet the backward "
                         "reports a finite gradient {gradient} there. {fix}",
        "jump": "the forward jumps from {left} to {right} at x = {x}; the gradient there is {gradient}.",
        "straight-through": "the forward is piecewise constant (its central differences are 0 at "
                            "{count} smooth points where the backward is non-zero, e.g. {gradient} "
                            "at x = {x}): the backward is a straight-through estimator. {fix}",
    },
)

CHECKS = [KINK, DISCONTINUITY]
