"""GA201/GA202 (non-finite), GA203/GA204 (signed zeros) and GA403 (gradient dtype) for a
target with elementwise partners, over the two-dimensional probe of x and each partner in
every audit dtype (:mod:`gradaudit.engine.pairs`). A created -0.0 is judged in every input at
once (:func:`gradaudit.engine.zero_regions.classify_whole`): exactly zero around the point in
every input is spurious (warn), anything else information."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

import torch

from ..engine.messages import number
from ..engine.options import dtype_name
from ..engine.pairs import (
    FIRST, PairEvaluation, axis, describe_point, evaluate_at, example, pair_evaluation, reference_at
)
from ..engine.zero_regions import JITTER, classify_whole, edge_decays
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
    for partner in ctx.binding.partners:
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


def run_nonfinite_output(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    for partner, ev, ref in _evaluations(ctx, _signs(ctx)):
        exact = ref.output.to(torch.float64)
        bad = ~torch.isfinite(ev.output) & _fits(exact, ev.dtype)
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
            bad = ~torch.isfinite(grad) & _fits(exact.to(torch.float64), ev.dtype) & torch.isfinite(ev.output)
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


EXAMINED = 16
"""Created zeros judged per dtype, input and grad_output sign (evenly spread over them): the
judgement costs target calls, and the zeros of one kind share their verdict."""


def _examined(ev: PairEvaluation, zero: torch.Tensor) -> torch.Tensor:
    """Up to :data:`EXAMINED` of the pairs ``zero``, evenly spread, those on the structured grid
    (values bfloat16 holds, shared by every dtype's probe) first: their judgements repeat."""
    if zero.numel() <= EXAMINED:
        return zero
    common = torch.ones(zero.numel(), dtype=torch.bool)
    for values in ev.inputs.values():
        chosen = values[zero].to(torch.float64)
        common &= chosen.to(torch.bfloat16).to(torch.float64) == chosen
    ordered = torch.cat([zero[common], zero[~common]])
    if int(common.sum()) >= EXAMINED:
        ordered = zero[common]
    return ordered[torch.linspace(0, ordered.numel() - 1, EXAMINED).round().long().unique()].sort().values


def _classes(ctx: "AuditContext", ev: PairEvaluation, index: torch.Tensor, exact: torch.Tensor,
             gradient_of: str | None, sign: float) -> dict[str, torch.Tensor]:
    """The classes of the created zeros at the pairs ``index``, judged in every input at once
    (on those pairs alone)."""
    names = list(ev.inputs)
    n = index.numel()
    stacked = torch.cat([ev.inputs[name][index].to(torch.float64) for name in names])

    remembered: dict[tuple, float] = ctx.memo(f"pairs.remembered.{gradient_of}.{sign}.{tuple(names)}", dict)

    def whole(points: torch.Tensor, draw: int | None) -> torch.Tensor:
        """float64 values (or ``gradient_of``'s gradient) at ``points``, pair by pair from memory
        where known: the target is elementwise in the pairs, and the judgements of the dtypes and
        of the steps along a ray repeat most pairs."""
        rows = points.reshape(len(names), n).T.tolist()
        keys = [tuple(row) for row in rows]
        missing = [i for i, key in enumerate(keys) if key not in remembered]
        if missing:
            chosen = torch.tensor(missing)
            values = {name: points[k * n:(k + 1) * n][chosen] for k, name in enumerate(names)}
            result = evaluate_at(ctx, torch.float64, values, (sign,) if gradient_of is not None else ())
            out = result.output if gradient_of is None else (result.grads.get(sign) or {}).get(gradient_of)
            found = ([float("nan")] * len(missing) if out is None
                     else out.to(torch.float64).reshape(-1)[: len(missing)].tolist())
            remembered.update((keys[i], value) for i, value in zip(missing, found))
        return torch.tensor([remembered[key] for key in keys], dtype=torch.float64)

    classes = classify_whole(stacked, torch.arange(n), exact[index], whole, ctx.options.seed, ctx.options.domain)
    spurious = classes.get("spurious", torch.zeros(0, dtype=torch.long))
    if spurious.numel():
        underflows = _reached_gently(ctx, ev, index[spurious], gradient_of, sign)
        if underflows:
            keep = torch.tensor([int(i) not in underflows for i in index[spurious]], dtype=torch.bool)
            classes["spurious"] = spurious[keep]
            classes["underflow"] = torch.cat([classes.get("underflow", spurious[:0]), spurious[~keep]])
    return {kind: index[positions] for kind, positions in classes.items()}


def _reached_gently(ctx: "AuditContext", ev: PairEvaluation, spurious: torch.Tensor, gradient_of: str | None,
                    sign: float) -> set[int]:
    """Pairs among ``spurious`` whose zero region is reached through gently decaying values along
    one of the inputs (the others held), as the one-input audit judges along x: a saturating
    sigmoid's ``1 - s`` is an underflow, not a mask. Stops at the first pair that stays spurious
    along every input: one is enough for the verdict."""
    names = list(ev.inputs)
    line = axis(torch.float64, ctx.options.domain, ctx.options.kinks).sort().values
    found: set[int] = set()
    for i in spurious.tolist():
        point = {name: float(ev.inputs[name][i]) for name in names}
        if not any(_gentle_along(ctx, point, name, line, gradient_of, sign) for name in names):
            break
        found.add(i)
    return found


def _gentle_along(ctx: "AuditContext", point: dict[str, float], along: str, line: torch.Tensor,
                  gradient_of: str | None, sign: float) -> bool:
    """Whether, along ``along`` from ``point``, the zero is reached gently from the nearest
    non-zero value on the same side (:func:`gradaudit.engine.zero_regions.edge_decays`). The
    other inputs are held; one that is a zero is moved off it by a tiny amount of its sign (a
    zero factor gives the product's sign, which is no mask)."""
    held = {name: (math.copysign(JITTER, value) if value == 0 else value) for name, value in point.items()}

    def value_fn(points: torch.Tensor) -> torch.Tensor:
        values = {name: (points if name == along else torch.full_like(points, value)) for name, value in held.items()}
        result = evaluate_at(ctx, torch.float64, values, (sign,) if gradient_of is not None else ())
        out = result.output if gradient_of is None else (result.grads.get(sign) or {}).get(gradient_of)
        return torch.full_like(points, float("nan")) if out is None else out.to(torch.float64)

    zero = point[along]
    if zero == 0:
        return False
    same_side = line[(line != 0) & ((line < 0) == (zero < 0))]
    values = value_fn(same_side)
    nonzero = torch.nonzero((values != 0) & torch.isfinite(values)).flatten()
    if not nonzero.numel():
        return False
    nearest = same_side[nonzero][torch.argmin((same_side[nonzero] - zero).abs())]
    return edge_decays(value_fn, zero, float(nearest))


def _signed_zero_findings(ctx: "AuditContext", check: Check, ev: PairEvaluation, partner: str,
                          values: torch.Tensor, exact: torch.Tensor, name: str | None, sign: float,
                          gradient: bool) -> Iterator[Finding]:
    created_mask = (values == 0) & torch.signbit(values) & ~_negative_zero_input(ev)
    created = torch.nonzero(created_mask).flatten()
    if not created.numel():
        return
    exact = exact.to(torch.float64)
    empty = torch.zeros(0, dtype=torch.long)
    rounded = torch.nonzero(created_mask & (exact != 0)).flatten()  # float64 is not zero there: an underflow
    zero = torch.nonzero(created_mask & (exact == 0)).flatten()
    examined = _examined(ev, zero)
    classes = _classes(ctx, ev, examined, exact, name if gradient else None, sign) if examined.numel() else {}
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
    for partner, ev, ref in _evaluations(ctx, _signs(ctx)):
        yield from _signed_zero_findings(ctx, check, ev, partner, ev.output, ref.output, None, 1.0, False)


def run_signed_zero_gradient(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    for partner, ev, ref in _evaluations(ctx, _signs(ctx)):
        for sign in _signs(ctx):
            for name, grad in ev.grads[sign].items():
                exact = ref.grads[sign].get(name)
                if grad is None or exact is None or grad.numel() != ev.size or exact.numel() != ev.size:
                    continue
                yield from _signed_zero_findings(ctx, check, ev, partner, grad, exact, name, sign, True)


def run_gradient_dtypes(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    """GA403: each input's gradient in its input's dtype."""
    seen: set[tuple[str, torch.dtype]] = set()
    for partner in ctx.binding.partners:
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
