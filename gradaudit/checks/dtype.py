"""GA403: dtypes and low precision.

Per audited dtype: the target must run, and return its input's dtype. In float16 and
bfloat16 it is compared with the same formula in float32 at the same (rounded) inputs, so
only what the low precision itself breaks is reported: overflow in exp-based formulas,
cancellation. Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` a float32 input must
still give finite values close to the plain float32 result.

The gradient's dtype is not checked: autograd casts whatever the backward returns to the
input's dtype before it reaches the caller.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from ..engine import scans
from ..engine.calling import CallError, describe_exception
from ..engine.inputs import representable_part
from ..engine.messages import describe_intervals, example_index, intervals, number
from ..engine.numerics import HEADROOM, float32_inside
from ..engine.options import dtype_name
from ..engine.small_inputs import clause, close, forward_is_random
from ..engine.vjp import vjp
from ..model.report import Finding
from . import Check, inputs_values
from .layouts_judge import as_float64, close64
from .several import INPUT_MESSAGES, with_inputs

if TYPE_CHECKING:
    from ..engine.context import AuditContext

LOW_PRECISION = (torch.float16, torch.bfloat16)
TOLERANCE_UNITS = 16
"""Allowed error, in units of the low dtype's eps, relative to the value plus ``|x|``: a few
roundings of the intermediates of a formula such as ``x * sigmoid(x)`` fit comfortably."""
FIX_PRECISION = (
    "Use a stable formulation (torch.sigmoid / F.silu instead of 1 / (1 + exp(-x)), logaddexp, "
    "clamp the argument of exp), or compute internally in at least float32 and cast the result "
    "back with .to(x.dtype), as torch's own kernels do: x.to(torch.promote_types(x.dtype, "
    "torch.float32)), which leaves float64 alone where .float() would round it."
)


def run_dtype(ctx: "AuditContext") -> Iterator[Finding]:
    location = ctx.target.source("forward")
    base = ctx.evaluate(torch.float64)
    for dtype in ctx.options.dtypes:
        name = dtype_name(dtype)
        if ctx.options.domain is not None:
            part = representable_part(ctx.options.domain, dtype)
            if part != tuple(float(v) for v in ctx.options.domain):
                yield _range_info(ctx.options.domain, part, dtype)
            if part is None:
                continue
        ev = ctx.evaluate(dtype)
        if ev.error is not None:
            error = _dtype_error(ctx, dtype)
            if error is not None:
                yield DTYPE.finding("unsupported", "warn", reason=clause(error), dtype=name, location=location)
            continue
        assert ev.y is not None
        if ev.y.dtype != dtype:
            yield DTYPE.finding("output-dtype", "warn", output_dtype=dtype_name(ev.y.dtype), dtype=name,
                                location=location,
                          examples=[{"input_dtype": name, "output_dtype": dtype_name(ev.y.dtype)}])
        elif dtype == torch.float64 and float32_inside(ctx):
            yield DTYPE.finding("computed-in-float32", "warn", dtype=name, location=location)
        if ev.grad_error is not None and base.grad_error is None:
            yield DTYPE.finding("backward-fails", "warn", reason=ev.grad_error, dtype=name,
                                location=ctx.target.source("backward"))
        if dtype in LOW_PRECISION and not forward_is_random(ctx):  # other draws are no precision loss
            yield from _low_precision(ctx, dtype)
    if torch.bfloat16 in ctx.options.dtypes and torch.float32 in ctx.options.dtypes:
        yield from _autocast(ctx)


def _range_info(domain: tuple[float, float], part: tuple[float, float] | None, dtype: torch.dtype) -> Finding:
    """Once per dtype that cannot represent the whole ``domain``: what it audits instead."""
    name = dtype_name(dtype)
    info = torch.finfo(dtype)
    shown = f"[{number(float(domain[0]))}, {number(float(domain[1]))}]"
    limits = (f"its finite values reach {number(float(info.max))} and it rounds magnitudes below "
              f"{number(float(info.smallest_normal) * float(info.eps) / 2)} to zero")
    details = {"domain": [float(domain[0]), float(domain[1])],
               "representable": None if part is None else [part[0], part[1]]}
    if part is None:
        return DTYPE.finding("domain-unrepresentable", "info", domain=shown, limits=limits, dtype=name,
                             details=details)
    return DTYPE.finding("domain-partial", "info", lo=number(part[0]), hi=number(part[1]), domain=shown,
                         limits=limits, dtype=name, details=details)


def _dtype_error(ctx: "AuditContext", dtype: torch.dtype) -> str | None:
    """Why the target fails in ``dtype``, or None when the failure is the probe's shape, not the
    dtype: the float64 probe values (a shape that works in float64) cast to ``dtype`` run."""
    try:
        with torch.no_grad():
            ctx.call(ctx.evaluate(torch.float64).x.to(dtype, copy=True), dtype=dtype)
    except CallError as exc:
        return str(exc)
    return None


def _compare(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Masks ``nonfinite`` and ``far`` of ``low`` against ``high`` (same inputs ``x``), where
    ``high`` is finite and representable in ``dtype`` and ``x`` is not at the dtype's edge.
    Computed by NumPy in float64 (exact for every dtype compared here; :func:`close64`), two
    to three times faster than torch's operations at probe sizes."""
    info = torch.finfo(dtype)
    low64, high64, x64 = as_float64(low), as_float64(high), as_float64(x)
    with np.errstate(over="ignore"):
        judged = np.isfinite(high64) & (np.abs(high64) <= info.max) & (np.abs(x64) * HEADROOM < info.max)
    finite = np.isfinite(low64)
    nonfinite = judged & ~finite
    far = judged & finite & ~close64(low64, high64, x64, info.eps, TOLERANCE_UNITS, signed_zeros=False)
    return {"nonfinite": torch.from_numpy(nonfinite), "far": torch.from_numpy(far)}


def _at_kink(ctx: "AuditContext", x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inputs within two of ``dtype``'s units of a kink or jump: there the target's constant
    (clamp(min=0.1)) rounds in ``dtype`` too, so the input may sit on its kink in ``dtype`` and
    beside it in float32, and either one-sided gradient is right."""
    info = torch.finfo(dtype)
    x64 = x.to(torch.float64)
    unit = torch.clamp(x64.abs(), min=float(info.smallest_normal)) * info.eps
    return ctx.near_kink(x64, 2 * unit)


def _between_neighbours(ctx: "AuditContext", x: torch.Tensor, low: torch.Tensor, bad: torch.Tensor,
                        dtype: torch.dtype, noun: str) -> torch.Tensor:
    """Flagged inputs where the low-precision value lies between the float32 values at the input and
    at its two neighbours in ``dtype``: a kink or jump whose constant rounds in ``dtype`` (a
    quantizer's round-half boundary, bf16's clip point -6.40625 for -6.4, xIELU's eps) sits on
    the input there, and the value is right for an input an ulp away."""
    index = scans.indices(bad.reshape(-1))
    at = x.reshape(-1)[index]
    points = torch.cat([torch.nextafter(at, torch.tensor(-math.inf, dtype=dtype)), at,
                        torch.nextafter(at, torch.tensor(math.inf, dtype=dtype))]).to(torch.float32)
    try:
        if noun == "output":
            values = ctx.call(points, dtype=torch.float32).detach()
        else:
            values = ctx.grads64(points, dtype=torch.float32)
    except Exception:
        return torch.zeros_like(bad)
    values = values.to(torch.float64).reshape(3, -1)
    got = low.reshape(-1)[index].to(torch.float64)
    tolerance = TOLERANCE_UNITS * torch.finfo(dtype).eps * (values.abs().amax(0) + 1.0)
    inside = (got >= values.amin(0) - tolerance) & (got <= values.amax(0) + tolerance)
    explained = torch.zeros(bad.numel(), dtype=torch.bool)
    explained[index] = inside & ~torch.isnan(got)
    return explained.reshape(bad.shape)


def _low_precision(ctx: "AuditContext", dtype: torch.dtype) -> Iterator[Finding]:
    ev = ctx.evaluate(dtype)
    reference = ctx.evaluate_in(dtype, torch.float32)
    name = dtype_name(dtype)
    if ev.y is None or reference.y is None or ev.y.shape != reference.y.shape:
        return
    pairs = [("output", ev.y, reference.y, "forward")]
    if ev.grad is not None and reference.grad is not None:
        pairs.append(("gradient", ev.grad, reference.grad, "backward"))
    for noun, low, high, role in pairs:
        if low.shape != ev.x.shape:
            x = torch.ones_like(low, dtype=torch.float64)  # not elementwise: judge by value only
        else:
            x = ev.x
        masks = _compare(x, low, high, dtype)
        bad = masks["nonfinite"] | masks["far"]
        if low.shape == ev.x.shape and ctx.kinks and scans.any_true(bad):
            bad &= ~_at_kink(ctx, ev.x, dtype)
        if low.shape == ev.x.shape and scans.any_true(bad):
            bad &= ~_between_neighbours(ctx, ev.x, low, bad, dtype, noun)
        if not scans.any_true(bad):
            continue
        flat_x = x.reshape(-1)
        flat_bad = bad.reshape(-1)
        i = example_index(flat_x, flat_bad)
        got, want = float(low.reshape(-1)[i]), float(high.reshape(-1)[i])
        parts = []
        if int(masks["nonfinite"].sum()):
            parts.append(f"non-finite at {int(masks['nonfinite'].sum())}")
        if int(masks["far"].sum()):
            parts.append(f"off by more than {TOLERANCE_UNITS} eps at {int(masks['far'].sum())}")
        where = describe_intervals(flat_x, flat_bad) if low.shape == ev.x.shape else "see examples"
        yield DTYPE.finding("low-precision", "warn", noun=noun, problems=" and ".join(parts), total=low.numel(),
                            where=where, x=number(float(flat_x[i])), got=number(got), want=number(want),
                            dtype=name, location=ctx.target.source(role),
                      examples=[{"input": float(flat_x[i]), noun: number(got), "float32": number(want)}],
                      details={"intervals": intervals(flat_x, flat_bad) if low.shape == ev.x.shape else [],
                               "nonfinite": int(masks["nonfinite"].sum()), "far": int(masks["far"].sum())})


def _autocast(ctx: "AuditContext") -> Iterator[Finding]:
    """The float32 probe under CPU autocast to bfloat16 against plain float32.

    Autocast may round inputs to bfloat16 (prelu, matmul), so a value also passes when it
    matches float32 at the bfloat16-rounded input; inputs within bfloat16 rounding of a kink
    are not judged.
    """
    plain = ctx.evaluate(torch.float32)
    if plain.y is None or (plain.grad_error or "").startswith("backward raised"):
        return  # it fails without autocast too: GA101's finding
    try:
        out, grad = _run_autocast(ctx, plain.x)
    except (CallError, RuntimeError) as exc:
        text = str(exc) if isinstance(exc, CallError) else f"backward raised {describe_exception(exc)}"
        advice = AUTOCAST_CUSTOM_OP if ctx.target.kind == "custom op" else AUTOCAST_FUNCTION
        yield DTYPE.finding("autocast-fails", "warn", audit=ctx, reason=clause(text), advice=advice, dtype="float32",
                            details={"autocast": "bfloat16"})
        return
    rounded: dict[str, torch.Tensor | None] = {}
    pairs = [("output", out, plain.y)]
    if grad is not None and plain.grad is not None:
        pairs.append(("gradient", grad, plain.grad))
    for noun, value, reference in pairs:
        if value.shape != reference.shape:
            continue
        elementwise = value.shape == plain.x.shape and ctx.elementwise
        x = plain.x if elementwise else torch.ones_like(reference, dtype=torch.float64)
        masks = _compare(x, value.to(torch.float32), reference, torch.bfloat16)
        bad = masks["nonfinite"] | masks["far"]
        if elementwise:
            bad &= ~ctx.near_kink(plain.x.to(torch.float64), plain.x.to(torch.float64).abs() * torch.finfo(torch.bfloat16).eps)
        if scans.any_true(bad) and elementwise:
            if not rounded:
                rounded.update(zip(("output", "gradient"), _plain_at_rounded(ctx, plain.x)))
            alternative = rounded.get(noun)
            if alternative is not None:
                bad &= ~close(value, alternative, x, torch.finfo(torch.bfloat16).eps, TOLERANCE_UNITS, signed_zeros=False)
        if not scans.any_true(bad):
            continue
        flat_x, flat_bad = x.reshape(-1), bad.reshape(-1)
        i = example_index(flat_x, flat_bad)
        got, want = float(value.reshape(-1)[i]), float(reference.reshape(-1)[i])
        yield DTYPE.finding("autocast-differs", "warn", audit=ctx, noun=noun, count=int(bad.sum()),
                            total=bad.numel(), x=number(float(flat_x[i])), got=number(got), want=number(want),
                            dtype="float32",
                      examples=[{"input": float(flat_x[i]), noun: number(got), "float32": number(want)}],
                      details={"autocast": "bfloat16"})


def _run_autocast(ctx: "AuditContext", x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Output and gradient (grad_output of ones; backward outside autocast, as recommended)."""
    leaf = x.clone().requires_grad_(True)
    with torch.enable_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ctx.call(leaf.clone(), dtype=torch.float32)
        grad = None
        if out.requires_grad:
            grad = vjp(out, leaf, torch.ones_like(out))
    return out.detach(), None if grad is None else grad.detach()


def _plain_at_rounded(ctx: "AuditContext", x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Plain float32 output and gradient at ``x`` rounded to bfloat16."""
    leaf = x.to(torch.bfloat16).to(torch.float32).requires_grad_(True)
    with torch.enable_grad():
        out = ctx.call(leaf.clone(), dtype=torch.float32)
        grad = None
        if out.requires_grad:
            grad = vjp(out, leaf, torch.ones_like(out))
    return out.detach(), None if grad is None else grad.detach()



AUTOCAST_FUNCTION = ("In an autograd.Function, decorate forward with @torch.amp.custom_fwd(device_type='cpu') and "
                     "backward with @torch.amp.custom_bwd(device_type='cpu'), or cast inputs to one dtype before "
                     "mixing them.")
AUTOCAST_CUSTOM_OP = ("Register the op's autocast behaviour with torch.library.register_autocast(op, 'cpu', "
                      "torch.float32), or cast its inputs to one dtype before mixing them.")


DTYPE = Check(
    code="GA403",
    slug="dtype",
    status="warn / info",
    summary="output dtype differs from the input's; float16/bfloat16 non-finite or far off where float32 is fine",
    explanation=(
        "For every audited dtype the target must run and return the input's dtype. In float16 and "
        "bfloat16 its outputs and gradients are compared with the same target in float32 at the "
        "same rounded inputs, allowing 16 eps of the low dtype relative to the value plus |x|: "
        "what remains is what the low precision breaks, such as exp(-x) overflowing in "
        "x / (1 + exp(-x)). The float32 probe is also run under torch.autocast('cpu', "
        "dtype=torch.bfloat16) and compared with plain float32. A dtype that cannot represent "
        "all of a given domain says so once (info) and is audited where it can."
    ),
    fix=FIX_PRECISION,
    example="x / (1 + torch.exp(-x)) has a NaN gradient in float16 for x < -11",
    run=with_inputs(run_dtype, lambda ctx: inputs_values.run_gradient_dtypes(ctx, DTYPE)),
    messages={
        **INPUT_MESSAGES["GA403"],
        "unsupported": "the target does not run in {dtype}: {reason}. Callers training in mixed precision "
                       "hit this; compute in a supported dtype and cast back, or restrict the audit with "
                       "dtypes=[...] if {dtype} is out of scope.",
        "output-dtype": "the output is {output_dtype} for a {dtype} input: the target changes the dtype "
                        "(a hard-coded .float(), torch.float32 constant or a tensor created without "
                        "dtype=x.dtype), so downstream layers silently run in another precision. Return "
                        "the input's dtype: create tensors with dtype=x.dtype and cast the result back "
                        "with .to(x.dtype).",
        "backward-fails": "the backward fails in {dtype} only: {reason}. Compute the backward in a "
                          "supported dtype and cast the gradient back.",
        "domain-unrepresentable": "{dtype} cannot represent the domain {domain} ({limits}): no input of "
                                  "it exists in {dtype}, so {dtype} is not audited there; the other "
                                  "dtypes are. Shown for information; drop {dtype} with dtypes=[...] to "
                                  "silence it.",
        "domain-partial": "{dtype} represents only [{lo}, {hi}] of the domain {domain} ({limits}): "
                          "{dtype} is audited there, the rest of the domain in the other dtypes. Shown "
                          "for information; drop {dtype} with dtypes=[...] to silence it.",
        "computed-in-float32": "float64 inputs are computed in float32 inside: at inputs float32 cannot hold, "
                               "the target gives exactly what it gives at them rounded to float32 (.float() "
                               "... .to(x.dtype) rounds float64 down). float64 callers (gradcheck, double-precision code) get float32 "
                               "accuracy; gradaudit judges the float64 checks at float32's rounding. Upcast "
                               "with x.to(torch.promote_types(x.dtype, torch.float32)) instead of .float().",
        "low-precision": "in {dtype} the {noun} is {problems} of {total} inputs where the same formula "
                         "in float32 at the same inputs is finite and fits in {dtype}: {where}; e.g. "
                         "x = {x} gives {got} in {dtype} and {want} in float32. {fix}",
        "autocast-fails": "under torch.autocast('cpu', dtype=torch.bfloat16) the target fails: {reason}. {advice}",
        "autocast-differs": "under torch.autocast('cpu', dtype=torch.bfloat16) the {noun} differs from "
                            "plain float32 beyond bfloat16 precision or is non-finite at {count} of "
                            "{total} float32 inputs; e.g. x = {x} gives {got} instead of {want}. {fix}",
    },
)

CHECKS = [DTYPE]
