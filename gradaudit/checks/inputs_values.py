"""GA201/GA202 (non-finite), GA203/GA204 (signed zeros) and GA403 (gradient dtype) for a
target with elementwise partners, over the two-dimensional probe of x and each partner in
every audit dtype (:mod:`gradaudit.engine.pairs`). A created -0.0 is judged in every input at
once (:func:`gradaudit.engine.zero_regions.classify_whole`): exactly zero around the point in
every input is spurious (warn), anything else information."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from ..engine.messages import number
from ..engine.numerics import HEADROOM
from ..engine.options import dtype_name
from ..engine.pair_zeros import EXAMINED, examined_zeros, judge_together, zero_classes
from ..engine.pairs import FIRST, PairEvaluation, describe_point, example, pair_evaluation, reference_at
from ..engine.sections import elementwise_partners
from ..model.check import Check
from ..model.report import Finding

if TYPE_CHECKING:
    from ..engine.context import AuditContext


def _label(name: str) -> str | None:
    return None if name == FIRST else name


def _shown(name: str) -> str:
    return "x" if name == FIRST else repr(name)


def _where(ev: PairEvaluation, mask: torch.Tensor) -> str:
    """The ranges of each input over the flagged pairs."""
    parts = []
    for name, values in ev.inputs.items():
        chosen = values[mask].to(torch.float64)
        lo, hi = float(chosen.min()), float(chosen.max())
        parts.append(f"{_shown(name).strip(chr(39))} = {number(lo)}" if lo == hi
                     else f"{_shown(name).strip(chr(39))} in [{number(lo)}, {number(hi)}]")
    return ", ".join(parts)


def _pick(mask: torch.Tensor, ev: PairEvaluation) -> int:
    """An example pair: the flagged one whose inputs are nearest to magnitude 1."""
    index = torch.nonzero(mask).flatten()
    size = sum((v[index].to(torch.float64).abs().log2().abs() for v in ev.inputs.values()),
               torch.zeros(index.numel(), dtype=torch.float64))
    size = torch.nan_to_num(size, nan=1e9, posinf=1e9)
    return int(index[int(torch.argmin(size))])


def _evaluations(ctx: "AuditContext", signs: tuple[float, ...]) -> Iterator[tuple[str, PairEvaluation, PairEvaluation]]:
    for partner in elementwise_partners(ctx):
        for dtype in ctx.options.dtypes:
            ev = pair_evaluation(ctx, partner, dtype, signs)
            if ev.error is not None or ev.grad_error is not None or ev.output is None:
                continue
            ref = reference_at(ctx, ev, signs)
            if ref.error is not None or ref.grad_error is not None or ref.output is None:
                continue
            yield partner.name, ev, ref


def _signs(ctx: "AuditContext") -> tuple[float, ...]:
    return (1.0, -1.0)


def _fits(exact: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.isfinite(exact) & (exact.abs() <= float(torch.finfo(dtype).max))


def _near_max(ev: PairEvaluation, values: torch.Tensor) -> torch.Tensor:
    """Pairs where ``values`` is inf and some input is within :data:`HEADROOM` of the dtype's max."""
    top = torch.zeros(ev.size, dtype=torch.bool)
    for inputs in ev.inputs.values():
        top |= inputs.to(torch.float64).abs() * HEADROOM >= torch.finfo(ev.dtype).max
    return top & torch.isinf(values.reshape(-1))


def run_nonfinite_output(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    for partner, ev, ref in _evaluations(ctx, _signs(ctx)):
        exact = ref.output.to(torch.float64)
        bad = ~torch.isfinite(ev.output) & _fits(exact, ev.dtype) & ~_near_max(ev, ev.output)
        if bool(bad.any()):
            i = _pick(bad, ev)
            yield check.finding("input-output", "fail", audit=ctx, input=partner, partner=partner,
                                dtype=dtype_name(ev.dtype), value=number(float(ev.output[i])),
                                count=int(bad.sum()), total=ev.size, where=_where(ev, bad),
                                at=describe_point(ev.inputs, i, number), exact=number(float(exact[i])),
                                examples=[{**example(ev.inputs, i), "output": float(ev.output[i])}])


def run_nonfinite_gradient(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    for partner, ev, ref in _evaluations(ctx, _signs(ctx)):
        for name, grad in ev.grads[1.0].items():
            exact = ref.grads[1.0].get(name)
            if grad is None or exact is None or grad.shape != exact.shape or grad.numel() != ev.size:
                continue
            bad = (~torch.isfinite(grad) & _fits(exact.to(torch.float64), ev.dtype) & torch.isfinite(ev.output)
                   & ~_near_max(ev, grad))
            if bool(bad.any()):
                i = _pick(bad, ev)
                yield check.finding("input-gradient", "fail", audit=ctx, input=_label(name),
                                    partner=partner, name=_shown(name), dtype=dtype_name(ev.dtype),
                                    value=number(float(grad[i])), count=int(bad.sum()), total=ev.size,
                                    where=_where(ev, bad), at=describe_point(ev.inputs, i, number),
                                    exact=number(float(exact[i])),
                                    examples=[{**example(ev.inputs, i), "gradient": float(grad[i])}])


def _negative_zero_input(ev: PairEvaluation) -> torch.Tensor:
    mask = torch.zeros(ev.size, dtype=torch.bool)
    for values in ev.inputs.values():
        mask |= (values == 0) & torch.signbit(values)
    return mask


def _zeros(ev: PairEvaluation, values: torch.Tensor, exact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pairs where ``values`` holds a created -0.0 (no input is -0.0 there), those of them whose
    float64 value is not zero (an underflow), and those where it is zero too (to be judged)."""
    created_mask = (values == 0) & torch.signbit(values) & ~_negative_zero_input(ev)
    exact = exact.to(torch.float64)
    return (torch.nonzero(created_mask).flatten(), torch.nonzero(created_mask & (exact != 0)).flatten(),
            torch.nonzero(created_mask & (exact == 0)).flatten())


def _signed_zero_findings(ctx: "AuditContext", check: Check, ev: PairEvaluation, partner: str,
                          zeros: tuple[torch.Tensor, torch.Tensor, torch.Tensor], examined: torch.Tensor,
                          classes: dict[str, torch.Tensor], name: str | None, sign: float,
                          gradient: bool) -> Iterator[Finding]:
    created, rounded, _ = zeros
    empty = torch.zeros(0, dtype=torch.long)
    groups = {"spurious": classes.get("spurious", empty),
              "propagated": torch.cat([rounded[:EXAMINED]] + [classes.get(k, empty) for k in
                                                               ("propagated", "underflow", "rounding", "undetermined")])}
    for kind, status in (("spurious", "warn"), ("propagated", "info")):
        chosen = groups[kind]
        if not chosen.numel():
            continue
        mask = torch.zeros(ev.size, dtype=torch.bool)
        mask[chosen] = True
        i = _pick(mask, ev)
        extra = {"name": _shown(name), "sign": number(sign)} if gradient else {}
        yield check.finding(
            f"input-{kind}", status, audit=ctx, input=_label(name) if gradient else partner,
            partner=partner, dtype=dtype_name(ev.dtype), count=created.numel(), total=ev.size,
            where=_where(ev, mask), at=describe_point(ev.inputs, i, number), **extra,
            examples=[{**example(ev.inputs, i), ("gradient" if gradient else "output"): "-0.0"}],
            details={"created": created.numel(), "examined": examined.numel(), "examined_" + kind: chosen.numel()})


def run_signed_zero_output(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    cases = []
    for partner, ev, ref in _evaluations(ctx, _signs(ctx)):
        zeros = _zeros(ev, ev.output, ref.output)
        if zeros[0].numel():
            cases.append((partner, ev, None, 1.0, zeros, examined_zeros(ctx, ev, zeros[2], None, 1.0)))
    yield from _judged_findings(ctx, check, cases, gradient=False)


def run_signed_zero_gradient(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    cases = []
    for partner, ev, ref in _evaluations(ctx, _signs(ctx)):
        for name in ev.grads[1.0]:
            for sign in _signs(ctx):
                grad, exact = ev.grads[sign].get(name), ref.grads[sign].get(name)
                if grad is None or exact is None or grad.numel() != ev.size or exact.numel() != ev.size:
                    continue
                zeros = _zeros(ev, grad, exact)
                if zeros[0].numel():
                    cases.append((partner, ev, name, sign, zeros, examined_zeros(ctx, ev, zeros[2], name, sign)))
    yield from _judged_findings(ctx, check, cases, gradient=True)


def _judged_findings(ctx: "AuditContext", check: Check, cases: list, gradient: bool) -> Iterator[Finding]:
    """The findings of ``cases`` (partner, evaluation, gradient_of, sign, zeros, examined pairs), whose
    zeros of every dtype and sign are judged together first (:func:`judge_together`)."""
    judge_together(ctx, [(ev, examined, name) for _, ev, name, _, _, examined in cases if examined.numel()])
    for partner, ev, name, sign, zeros, examined in cases:
        classes = zero_classes(ctx, ev, examined, name, sign) if examined.numel() else {}
        yield from _signed_zero_findings(ctx, check, ev, partner, zeros, examined, classes, name, sign, gradient)


def run_gradient_dtypes(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    """GA403: each input's gradient in its input's dtype."""
    seen: set[tuple[str, torch.dtype]] = set()
    for partner in elementwise_partners(ctx):
        for dtype in ctx.options.dtypes:
            ev = pair_evaluation(ctx, partner, dtype)
            if ev.error or ev.grad_error or not ev.grads:
                continue
            for name, grad in ev.grads[1.0].items():
                if name == FIRST or grad is None or grad.dtype == dtype or (name, dtype) in seen:
                    continue
                seen.add((name, dtype))
                yield check.finding("input-gradient-dtype", "warn", audit=ctx, input=name, name=_shown(name),
                                    got=dtype_name(grad.dtype), dtype=dtype_name(dtype),
                                    location=ctx.target.source("backward"))
