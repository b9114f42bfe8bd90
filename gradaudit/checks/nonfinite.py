"""GA201/GA202: NaN or inf outputs and gradients at finite inputs inside the domain."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

import torch

from ..engine import scans
from ..engine.blame import offending_inputs
from ..engine.calling import CallError
from ..engine.inputs import SPECIAL_VALUES
from ..engine.messages import describe_intervals, example_index, flagged, intervals, number
from ..engine.numerics import HEADROOM, float32_inside, numerical_derivative, smooth_points
from ..engine.options import dtype_name
from ..model.report import Finding
from . import Check, inputs_values, parameter_values
from .several import INPUT_MESSAGES, with_inputs

if TYPE_CHECKING:
    from ..engine.context import AuditContext
    from ..engine.evaluation import Evaluation

DOMAIN_HINT = "If the target is undefined there, declare it: domain=(lo, hi) or --domain LO HI."


def defects(x: torch.Tensor, dtype: torch.dtype, values: torch.Tensor, exact: torch.Tensor,
            elementwise: bool = True, values_nonfinite: torch.Tensor | None = None,
            exact_is_reference: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(fail mask, info mask) of non-finite ``values`` given the float64 ``exact`` values.

    Below float64, a non-finite value is a defect where the float64 value is finite and fits
    in ``dtype``. In float64 itself, NaN is a defect and inf is information (an overflow or a
    pole cannot be told apart without more precision), unless ``exact_is_reference``: then
    ``exact`` does not come from the values' own formula (for gradients, the float64
    forward's central differences) and an inf where it is finite is a defect too. Inputs
    within ``HEADROOM`` of the dtype's max only give information.
    """
    nonfinite = values_nonfinite if values_nonfinite is not None else scans.nonfinite(values)
    magnitude = x.to(torch.float64).abs()
    if not elementwise:  # every output depends on every input: the largest one sets the headroom
        magnitude = magnitude.max().expand(values.shape) if magnitude.numel() else magnitude
    top = (magnitude * HEADROOM >= torch.finfo(dtype).max) & torch.isinf(values)
    if dtype == torch.float64:
        judged = torch.isnan(values) | (torch.isfinite(exact) if exact_is_reference else False)
        fail = nonfinite & judged & ~top
        return fail, nonfinite & ~fail
    fits = torch.isfinite(exact) & (exact.abs() <= torch.finfo(dtype).max)
    fail = nonfinite & fits & ~top
    return fail, nonfinite & fits & top


def exact_values(ctx: "AuditContext", dtype: torch.dtype, mask: torch.Tensor, pick) -> torch.Tensor | None:
    """Float64 values (NaN where not needed) at the ``mask``ed inputs of ``dtype``'s probe."""
    exact = torch.full(mask.shape, float("nan"), dtype=torch.float64)
    if not scans.any_true(mask):
        return exact
    values = pick(ctx.exact_at(dtype, mask))
    if values is None:
        return None
    exact[mask] = values.to(torch.float64)
    return exact


def _report(check: Check, noun: str, ev: "Evaluation", fail: torch.Tensor, info: torch.Tensor,
            exact: torch.Tensor, location: dict | None) -> Iterator[Finding]:
    name = dtype_name(ev.dtype)
    x = ev.x
    code = check.code
    values = ev.y if code == "GA201" else ev.grad
    assert values is not None
    for mask, status in ((fail, "fail"), (info, "info")):
        mask = flagged(mask)  # one scan of the mask for every message below
        count = mask.numel()
        if count == 0:
            continue
        i = example_index(x, mask)
        where = describe_intervals(x, mask)
        if status == "info":
            how = ""
        elif ev.dtype == torch.float64:
            how = (f" where the float64 forward's derivative (central differences) is finite "
                   f"(e.g. {number(float(exact[i]))})" if code == "GA202" and math.isfinite(float(exact[i])) else "")
        else:
            how = f" where the float64 value is finite and fits in {name} (e.g. {number(float(exact[i]))})"
        values_ = {"value": number(float(values[i])), "count": count, "where": where, "x": number(float(x[i]))}
        if status == "fail":
            values_["how"] = how
        yield check.finding("nonfinite" if status == "fail" else "not-judged", status, **values_,
                            dtype=name, location=location,
                      examples=[{"input": float(x[i]), noun.split()[0]: number(float(values[i]))}],
                      details={"intervals": intervals(x, mask), "count": count,
                               "inputs": offending_inputs(x, mask, i),
                               **({"grad_output": 1.0} if code == "GA202" else {})})


def special_values(ctx: "AuditContext") -> Iterator[Finding]:
    """-inf, inf and NaN, probed apart from the grid: a NaN input that comes out as a number
    hides bad data downstream (information, not a defect)."""
    if not ctx.elementwise:
        return
    try:
        out = ctx.values64(torch.tensor(SPECIAL_VALUES, dtype=torch.float64))
    except CallError:
        return
    mapping = {number(x): number(float(y)) for x, y in zip(SPECIAL_VALUES, out.tolist())}
    if not torch.isnan(out[2]):
        yield NONFINITE_OUTPUT.finding("nan-hidden", "info", audit=ctx, value=number(float(out[2])),
                                       minus_inf=mapping["-inf"], plus_inf=mapping["inf"], dtype="float64",
                                       details={"special": mapping})


def slope_reference(ctx: "AuditContext", ev: "Evaluation", where: torch.Tensor) -> torch.Tensor:
    """The derivative of the float64 forward at the ``where``-masked inputs of ``ev`` (NaN
    elsewhere and where it cannot be told): central differences where the forward is smooth
    around the input (no kink, no jump, no pole within the step, inside the domain), and at
    -0.0 the gradient of +0.0 where +0.0 and both neighbours in the probe share one finite
    gradient (a -inf there alone is the sign of zero reaching a 1/x, not a pole)."""
    reference = torch.full(ev.x.shape, float("nan"), dtype=torch.float64)
    index = scans.indices(where)
    if not index.numel():
        return reference
    x = ev.x.reshape(-1)[index].to(torch.float64)
    try:
        y = ctx.values64(x)
        numeric = numerical_derivative(ctx, x, y)
    except CallError:
        return reference
    smooth = smooth_points(ctx, x, numeric) & torch.isfinite(y)
    values = torch.where(smooth, numeric["central"], float("nan"))
    grad = ev.grad.reshape(-1)
    probe = ev.x.reshape(-1)
    for k in scans.indices((x == 0) & torch.signbit(x)).tolist():  # the probe's one -0.0, if flagged
        i = int(index[k])
        if not (1 <= i and i + 2 < probe.numel() and bool(probe[i - 1] < 0) and bool(probe[i + 2] > 0)
                and bool(probe[i + 1] == 0) and not bool(torch.signbit(probe[i + 1]))):
            continue
        left, positive_zero, right = (float(grad[j]) for j in (i - 1, i + 1, i + 2))
        if math.isfinite(positive_zero) and left == positive_zero == right:
            values[k] = positive_zero
    reference.view(-1)[index] = values
    return reference


def _reshaped(ctx: "AuditContext", check: Check, ev: "Evaluation") -> Iterator[Finding]:
    """A target whose output has another shape than x (a GLU's halves): its non-finite outputs
    (or gradients) judged against the float64 output (or gradient) of the same formula at the same
    inputs, whole: below float64 a value that is finite and fits there is a defect; in float64 a
    NaN (a NaN gradient only where every output is finite) is. Elements of the output are not
    elements of x, so the finding names output elements and an input each depends on."""
    gradient = check is NONFINITE_GRADIENT
    values = ev.grad if gradient else ev.y
    if values is None or (gradient and values.shape != ev.x.shape):
        return
    bad = scans.nonfinite(values)
    if not scans.any_true(bad):
        return
    if gradient and ev.dtype == torch.float64 and not bool(torch.isfinite(ev.y).all()):
        return  # a NaN gradient beside an overflowing output may be inf - inf: not judged
    x64 = ev.x.detach().to(torch.float64)
    try:
        if ev.dtype == torch.float64:
            exact = values.detach().to(torch.float64)
        else:
            exact = ctx.grads64(x64) if gradient else ctx.call(x64.clone(), dtype=torch.float64).detach()
    except Exception:
        return  # the float64 call's own failure is reported elsewhere
    if exact.shape != values.shape:
        return
    fail, _ = defects(ev.x, ev.dtype, values, exact, elementwise=False, values_nonfinite=bad)
    fail = flagged(fail)
    if not fail.numel():
        return
    k = int(fail[0])
    if gradient:
        at = f"x = {number(float(ev.x.reshape(-1)[k]))} (element {k} of x)"
    else:
        at = f"output element {k}{_depends_on(ctx, x64, k)}"
    how = (f" where the float64 {'gradient' if gradient else 'output'} of the same formula at the same inputs is "
           f"finite and fits (e.g. {number(float(exact.reshape(-1)[k]))})" if ev.dtype != torch.float64 else
           (" where every output element is finite" if gradient else ""))
    yield check.finding("nonfinite-reshaped", "fail", audit=ctx, value=number(float(values.reshape(-1)[k])),
                        dtype=dtype_name(ev.dtype), count=fail.numel(), total=values.numel(), how=how,
                        shape=tuple(ev.y.shape), x_shape=tuple(ev.x.shape), at=at,
                        location=ctx.target.source("backward" if gradient else "forward"),
                        details={"count": fail.numel(), "element": k})


def _depends_on(ctx: "AuditContext", x64: torch.Tensor, k: int) -> str:
    """``, which depends on x[i] = a, ...`` for output element ``k``: the inputs its float64 gradient
    reaches at x = 0.5 everywhere (at the probe's own values a NaN there spreads to every input
    through 0 * inf in the backward of the others)."""
    leaf = torch.full_like(x64, 0.5).requires_grad_(True)
    try:
        with torch.enable_grad():
            out = ctx.call(leaf * 1.0, dtype=torch.float64)
            (grad,) = torch.autograd.grad(out.reshape(-1)[k], leaf, allow_unused=True)
    except Exception:
        return ""
    if grad is None:
        return ""
    inputs = torch.nonzero((grad.reshape(-1) != 0) & torch.isfinite(grad.reshape(-1))).flatten()[:3].tolist()
    return (", which depends on " + ", ".join(f"x[{i}] = {number(float(x64.reshape(-1)[i]))}" for i in inputs)
            if inputs else "")


def _downcast(ctx: "AuditContext", ev: "Evaluation", fail: torch.Tensor, info: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """For a target that computes float64 in float32 inside, a float64 input past float32's range
    is inf inside it (silu(-inf) is NaN): the downcast's consequence, which GA403's
    computed-in-float32 warn names, so it is shown as info rather than failed twice."""
    if ev.dtype != torch.float64 or ev.x.shape != fail.shape or not float32_inside(ctx) or not scans.any_true(fail):
        return fail, info
    beyond = ev.x.to(torch.float64).abs() > torch.finfo(torch.float32).max
    return fail & ~beyond, info | (fail & beyond)


def run_output(ctx: "AuditContext") -> Iterator[Finding]:
    yield from special_values(ctx)
    for dtype in ctx.options.dtypes:
        ev = ctx.evaluate(dtype)
        if ev.y is not None and ev.y.shape != ev.x.shape:
            yield from _reshaped(ctx, NONFINITE_OUTPUT, ev)
            continue
        if ev.y is None:
            continue
        if not ev.flags("y")[0].numel():
            continue
        bad = scans.nonfinite(ev.y)
        exact = exact_values(ctx, dtype, bad, lambda e: e.y)
        if exact is None:
            continue
        fail, info = _downcast(ctx, ev, *defects(ev.x, dtype, ev.y, exact, ctx.elementwise, bad))
        yield from _report(NONFINITE_OUTPUT, "output", ev, fail, info, exact, ctx.target.source("forward"))


def run_gradient(ctx: "AuditContext") -> Iterator[Finding]:
    for dtype in ctx.options.dtypes:
        ev = ctx.evaluate(dtype)
        if ev.y is not None and ev.grad is not None and ev.y.shape != ev.x.shape:
            yield from _reshaped(ctx, NONFINITE_GRADIENT, ev)
            continue
        if ev.y is None or ev.grad is None or ev.grad.shape != ev.x.shape:
            continue
        if not ev.flags(1.0)[0].numel():
            continue
        bad = scans.nonfinite(ev.grad)
        exact = exact_values(ctx, dtype, bad, lambda e: e.grad)
        if exact is None:
            exact = torch.full_like(ev.x, float("nan"), dtype=torch.float64)
        # where the float64 backward is no better, the float64 forward's own slope decides; below
        # float64 (always audited for gradients) that is the float64 finding's business
        by_slope = ctx.elementwise and dtype == torch.float64
        if by_slope:
            exact = torch.where(torch.isfinite(exact), exact, slope_reference(ctx, ev, bad & ~torch.isfinite(exact)))
        fail, info = _downcast(ctx, ev, *defects(ev.x, dtype, ev.grad, exact, ctx.elementwise, bad,
                                                 exact_is_reference=by_slope))
        finite_output = ~scans.nonfinite(ev.y)
        yield from _report(NONFINITE_GRADIENT, "gradient", ev, fail & finite_output, info & finite_output, exact,
                           ctx.target.source("backward"))
    yield from parameter_values.run_parameter_gradients(ctx, NONFINITE_GRADIENT)


FIX_OUTPUT = ("Compute in a stable form (log1p, expm1, softplus, logaddexp, clamp before exp) so "
              "intermediate values do not overflow. " + DOMAIN_HINT)
FIX_GRADIENT = ("A NaN gradient at a finite output usually comes from torch.where or masking over a "
                "branch whose own gradient is NaN or inf (sqrt, log, 1/x of out-of-range values): "
                "0 * inf = NaN. Make the branch safe before selecting, e.g. "
                "torch.where(x > 0, torch.sqrt(x.clamp(min=tiny)), 0), or fix the backward. " + DOMAIN_HINT)


def _messages(noun: str) -> dict[str, str]:
    """GA201's and GA202's templates by kind, for ``noun`` (output or gradient)."""
    return {
        "nonfinite": noun + " is {value} in {dtype} at {count} finite input(s){how}: {where}; e.g. x = {x}. {fix}",
        "parameter": "the gradient of the parameter {name} is {value} in {dtype} at {count} input(s) where the "
                     "float64 gradient at the same inputs is finite and fits (e.g. {exact}): {where}; e.g. x = {x}. "
                     "{fix}",
        "nonfinite-reshaped": noun + " is {value} in {dtype} at {count} of {total} elements{how} (output of shape "
                              "{shape} for x of shape {x_shape}); e.g. at {at}. {fix}",
        "not-judged": noun + " is {value} in {dtype} at {count} finite input(s) (an overflow or a pole, or "
                      "a formula without headroom near the dtype's max; not judged): {where}; e.g. x = {x}. "
                      "Shown for information.",
    }



NONFINITE_OUTPUT = Check(
    code="GA201",
    blame=("nonfinite", "forward"),
    slug="nonfinite-output",
    status="fail",
    summary="NaN/inf output for a finite input where the float64 value is finite and representable",
    explanation=(
        "Every probe input is finite. Below float64 an output that is NaN or inf where the float64 "
        "value at the same input is finite and fits in the dtype is a defect (an intermediate "
        "overflowed). In float64 NaN is a defect, inf is shown as info."
    ),
    fix=FIX_OUTPUT,
    example="log(1 + exp(x)) is inf in float32 for x > 88",
    run=with_inputs(run_output, lambda ctx: inputs_values.run_nonfinite_output(ctx, NONFINITE_OUTPUT)),
    messages={**_messages("output"), **INPUT_MESSAGES["GA201"],
              "nan-hidden": "a NaN input comes out as {value}: NaNs from upstream layers are hidden here "
                            "instead of propagating (f(-inf) = {minus_inf}, f(inf) = {plus_inf}). Shown "
                            "for information."},
)

NONFINITE_GRADIENT = Check(
    code="GA202",
    blame=("nonfinite", "backward"),
    slug="nonfinite-gradient",
    status="fail",
    summary="NaN/inf gradient at a finite input with a finite output (e.g. the torch.where trap)",
    explanation=(
        "Same rule as GA201, for the vector-Jacobian product with ones. The classic case is "
        "torch.where(x > 0, torch.sqrt(x), 0): the unused branch's gradient is NaN for x <= 0, and "
        "0 * NaN = NaN flows back."
    ),
    fix=FIX_GRADIENT,
    example="torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))",
    run=with_inputs(run_gradient, lambda ctx: inputs_values.run_nonfinite_gradient(ctx, NONFINITE_GRADIENT)),
    location_role="backward",
    messages={**_messages("gradient"), **INPUT_MESSAGES["GA202"]},
)

CHECKS = [NONFINITE_OUTPUT, NONFINITE_GRADIENT]
