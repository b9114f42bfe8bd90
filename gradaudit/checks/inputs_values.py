"""GA201/GA202 (non-finite), GA203/GA204 (signed zeros) and GA403 (gradient dtype) for a
target with elementwise partners, over the two-dimensional probe of x and each partner in
every audit dtype (:mod:`gradaudit.engine.pairs`). A created -0.0 is judged in every input at
once (:func:`gradaudit.engine.zero_regions.classify_whole`): exactly zero around the point in
every input is spurious (warn), anything else information."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from ..engine.messages import number
from ..engine.options import dtype_name
from ..engine.pairs import (
    FIRST, PairEvaluation, axis, describe_point, evaluate_at, example, pair_evaluation, reference_at
)
from ..engine.zero_regions import DRAWS, JITTER, RAY_POWERS, edge_decays, jitter
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
    for partner in ctx.elementwise_partners():
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


def _examined(ctx: "AuditContext", ev: PairEvaluation, zero: torch.Tensor, gradient_of: str | None,
              sign: float) -> torch.Tensor:
    """Up to :data:`EXAMINED` of the pairs ``zero``: those judged already (in another dtype's
    probe, which shares most pairs) first, then others evenly spread, those on the structured
    grid (values bfloat16 holds) first."""
    if zero.numel() <= EXAMINED:
        return zero
    names = list(ev.inputs)
    verdicts: dict[tuple, str] = ctx.memo(f"pairs.verdicts.{gradient_of}.{sign}.{tuple(names)}", dict)
    columns = [ev.inputs[name][zero].to(torch.float64).tolist() for name in names]
    known = torch.tensor([tuple(c[k] for c in columns) in verdicts for k in range(zero.numel())], dtype=torch.bool)
    if int(known.sum()) >= EXAMINED:
        chosen = zero[known]
        return chosen[torch.linspace(0, chosen.numel() - 1, EXAMINED).round().long().unique()]
    common = torch.ones(zero.numel(), dtype=torch.bool)
    for values in ev.inputs.values():
        chosen = values[zero].to(torch.float64)
        common &= chosen.to(torch.bfloat16).to(torch.float64) == chosen
    fresh = torch.cat([zero[common & ~known], zero[~common & ~known]])
    need = EXAMINED - int(known.sum())
    fresh = fresh[torch.linspace(0, fresh.numel() - 1, min(need, fresh.numel())).round().long().unique()]
    return torch.cat([zero[known], fresh]).sort().values


def _classes(ctx: "AuditContext", ev: PairEvaluation, index: torch.Tensor, gradient_of: str | None,
             sign: float) -> dict[str, torch.Tensor]:
    """The classes of the created zeros at the pairs ``index`` whose float64 value is zero too.

    A zero that a small perturbation of every input makes non-zero is *propagated* (the sign of
    a vanishing product). The rest are followed along the ray that brings every input's
    magnitude towards 1 (:func:`_ray_power`): zero all along it, exactly zero around the point
    in every input, *spurious*; leaving the zero at some power, one pair of those that leave at
    that power is followed along each input, the others held (:func:`_gentle_along`): reached
    through gently decaying values along one of them, an *underflow* (a mask's step is not).
    Verdicts are remembered per pair (the dtypes' probes share most pairs)."""
    names = list(ev.inputs)
    verdicts: dict[tuple, str] = ctx.memo(f"pairs.verdicts.{gradient_of}.{sign}.{tuple(names)}", dict)
    points = {int(i): tuple(float(ev.inputs[name][i]) for name in names) for i in index.tolist()}
    todo = [i for i, point in points.items() if point not in verdicts]
    if todo:
        _judge_zeros(ctx, names, [points[i] for i in todo], gradient_of, sign, verdicts)
    found: dict[str, list[int]] = {}
    for i, point in points.items():
        found.setdefault(verdicts[point], []).append(i)
    return {kind: torch.tensor(where, dtype=torch.long) for kind, where in found.items()}


def _values(ctx: "AuditContext", names: list[str], columns: list[torch.Tensor], gradient_of: str | None,
            sign: float) -> torch.Tensor:
    """The float64 output (or ``gradient_of``'s gradient) at the pairs ``columns`` (one per input)."""
    result = evaluate_at(ctx, torch.float64, dict(zip(names, columns)), (sign,) if gradient_of is not None else ())
    out = result.output if gradient_of is None else (result.grads.get(sign) or {}).get(gradient_of)
    return torch.full_like(columns[0], float("nan")) if out is None else out.to(torch.float64).reshape(-1)


def _judge_zeros(ctx: "AuditContext", names: list[str], points: list[tuple[float, ...]], gradient_of: str | None,
                 sign: float, verdicts: dict[tuple, str]) -> None:
    columns = [torch.tensor([p[k] for p in points], dtype=torch.float64) for k in range(len(names))]
    waiting = torch.ones(len(points), dtype=torch.bool)
    for draw in range(DRAWS):  # every input moved a little at once, in one call per draw
        moved = []
        for k, column in enumerate(columns):
            noise = jitter(column.numel(), draw, ctx.options.seed, stream=k + 1)
            step = column + noise * torch.where(column == 0, torch.ones_like(column), column.abs())
            moved.append(step.clamp(*ctx.options.domain) if ctx.options.domain is not None else step)
        values = _values(ctx, names, moved, gradient_of, sign)
        waiting &= ~((values != 0) & torch.isfinite(values))
    for i in torch.nonzero(~waiting).flatten().tolist():
        verdicts[points[i]] = "propagated"
    rest = torch.nonzero(waiting).flatten()
    if not rest.numel():
        return
    first = _ray_power(ctx, names, [column[rest] for column in columns], gradient_of, sign)
    line = axis(torch.float64, ctx.options.domain, ctx.options.kinks).sort().values
    _prefill_lines(ctx, names, [points[i] for i in rest.tolist()], line, gradient_of, sign)
    for power in torch.unique(first).tolist():
        group = rest[first == power].tolist()
        spread = [group[int(k)] for k in torch.linspace(0, len(group) - 1, min(3, len(group))).round().long().unique()]
        judged = {i: _gentle(ctx, names, points[i], line, gradient_of, sign) for i in spread}
        if len(set(judged.values())) > 1:  # the group mixes kinds of zeros: judge each
            judged.update({i: _gentle(ctx, names, points[i], line, gradient_of, sign) for i in group if i not in judged})
        for i in group:
            verdicts[points[i]] = "underflow" if judged.get(i, judged[spread[0]]) else "spurious"


def _gentle(ctx: "AuditContext", names: list[str], point: tuple[float, ...], line: torch.Tensor,
            gradient_of: str | None, sign: float) -> bool:
    """Whether the zero at ``point`` is reached gently along one of the inputs."""
    held = dict(zip(names, point))
    return any(_gentle_along(ctx, held, name, line, gradient_of, sign) for name in names)


def _ray_power(ctx: "AuditContext", names: list[str], columns: list[torch.Tensor], gradient_of: str | None,
               sign: float) -> torch.Tensor:
    """For each pair, the first of :data:`RAY_POWERS` at which ``sign(v) |v| ** t`` in every
    input (signs kept, magnitudes brought towards 1) leaves the zero region, or -1: one call
    for every pair and power."""
    count = columns[0].numel()
    moved = []
    for column in columns:
        offset = torch.where(column == 0, torch.copysign(torch.full_like(column, JITTER), column), column)
        rays = torch.stack([torch.copysign(offset.abs() ** power, offset) for power in RAY_POWERS])
        moved.append(rays.clamp(*ctx.options.domain).reshape(-1) if ctx.options.domain is not None else rays.reshape(-1))
    values = _values(ctx, names, moved, gradient_of, sign).reshape(len(RAY_POWERS), count)
    off = (values != 0) & torch.isfinite(values)
    return torch.where(off.any(0), off.to(torch.int8).argmax(0), torch.full((count,), -1)).to(torch.long)


def _held(names: list[str], point: tuple[float, ...]) -> dict[str, float]:
    """The inputs of ``point`` by name, a zero moved off zero by a tiny amount of its sign (a
    zero factor gives the product's sign, which is no mask)."""
    return {name: (math.copysign(JITTER, value) if value == 0 else value) for name, value in zip(names, point)}


def _prefill_lines(ctx: "AuditContext", names: list[str], points: list[tuple[float, ...]], line: torch.Tensor,
                   gradient_of: str | None, sign: float) -> None:
    """The non-zero points of the structured axis along each input from each of ``points`` (the
    others held), for :func:`_gentle_along`: one call per input for all of them."""
    memory: dict[tuple, Any] = ctx.memo("pairs.along", dict)
    for along in names:
        wanted: dict[tuple, torch.Tensor] = {}
        for point in points:
            held = _held(names, point)
            zero = dict(zip(names, point))[along]
            if zero == 0:
                continue
            others = tuple((name, value) for name, value in held.items() if name != along)
            key = (gradient_of, sign, along, others, zero < 0)
            if key not in memory and key not in wanted:
                wanted[key] = line[(line != 0) & ((line < 0) == (zero < 0))]
        if not wanted:
            continue
        columns = {name: [] for name in names}
        for (_, _, _, others, _), segment in wanted.items():
            held_others = dict(others)
            for name in names:
                columns[name].append(segment if name == along else torch.full_like(segment, held_others[name]))
        values = _values(ctx, names, [torch.cat(columns[name]) for name in names], gradient_of, sign)
        start = 0
        for key, segment in wanted.items():
            part = values[start:start + segment.numel()]
            memory[key] = segment[(part != 0) & torch.isfinite(part)]
            start += segment.numel()


def _gentle_along(ctx: "AuditContext", point: dict[str, float], along: str, line: torch.Tensor,
                  gradient_of: str | None, sign: float) -> bool:
    """Whether, along ``along`` from ``point``, the zero is reached gently from the nearest
    non-zero value on the same side (:func:`gradaudit.engine.zero_regions.edge_decays`). The
    other inputs are held; one that is a zero is moved off it by a tiny amount of its sign (a
    zero factor gives the product's sign, which is no mask)."""
    held = {name: (math.copysign(JITTER, value) if value == 0 else value) for name, value in point.items()}
    zero = point[along]
    if zero == 0:
        return False
    others = tuple((name, value) for name, value in held.items() if name != along)
    memory: dict[tuple, Any] = ctx.memo("pairs.along", dict)  # one line per held values, one search per bracket

    def value_fn(points: torch.Tensor) -> torch.Tensor:
        values = {name: (points if name == along else torch.full_like(points, value)) for name, value in held.items()}
        result = evaluate_at(ctx, torch.float64, values, (sign,) if gradient_of is not None else ())
        out = result.output if gradient_of is None else (result.grads.get(sign) or {}).get(gradient_of)
        return torch.full_like(points, float("nan")) if out is None else out.to(torch.float64)

    side = zero < 0
    line_key = (gradient_of, sign, along, others, side)
    if line_key not in memory:
        same_side = line[(line != 0) & ((line < 0) == side)]
        values = value_fn(same_side)
        memory[line_key] = same_side[(values != 0) & torch.isfinite(values)]
    candidates = memory[line_key]
    if not candidates.numel():
        return False
    distance = (candidates.abs().log() - math.log(abs(zero))).abs()  # in magnitude: the tails span 600 decades
    nearest = float(candidates[torch.argmin(distance)])
    search_key = line_key + (nearest, zero > nearest)  # the zeros between the same nonzero point and region
    if search_key not in memory:
        memory[search_key] = _edge_decays(value_fn, *_narrowed(value_fn, zero, nearest))
    return memory[search_key]


WIDE_SEARCH = 1024
"""Points per step of the pairs' edge search: a float64 bracket closes in about five calls
(the target is elementwise in the pairs, so the batch size changes no value)."""


def _edge_decays(value_fn: Any, zero_x: float, other_x: float) -> bool:
    """:func:`gradaudit.engine.zero_regions.edge_decays` with :data:`WIDE_SEARCH` points a step."""
    return edge_decays(value_fn, zero_x, other_x, points=WIDE_SEARCH)


NARROWING = 3
"""Steps of geometric narrowing before the edge search, for brackets that span decades (the
tails): 64 log-spaced points a step bring 600 decades within about 0.01% in three calls."""


def _narrowed(value_fn: Any, zero: float, nonzero: float) -> tuple[float, float]:
    """A bracket (a zero, the nearest non-zero) within ``zero .. nonzero`` (same sign) whose ends
    are close in magnitude, found on log-spaced points: the linear edge search then takes a
    few calls instead of one per two decades."""
    for _ in range(NARROWING):
        if max(abs(zero), abs(nonzero)) <= 2 * min(abs(zero), abs(nonzero)):
            break
        sign = math.copysign(1.0, zero)
        inside = sign * np.geomspace(abs(zero), abs(nonzero), 66)[1:-1]
        values = value_fn(torch.from_numpy(inside)).numpy()
        found = np.flatnonzero((values != 0) & np.isfinite(values))
        if not found.size:
            break
        j = int(found[0])
        nonzero = float(inside[j])
        if j:
            zero = float(inside[j - 1])
    return zero, nonzero


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
    examined = _examined(ctx, ev, zero, name if gradient else None, sign)
    classes = _classes(ctx, ev, examined, name if gradient else None, sign) if examined.numel() else {}
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
    for partner in ctx.elementwise_partners():
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
