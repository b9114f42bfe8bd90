"""Created -0.0 in the two-dimensional probe of several inputs: which are *spurious* (the
function is exactly zero around the pair in every input), which *propagated* (a small move of
the inputs makes them non-zero: the sign of a vanishing product) and which *underflows*
(reached through gently decaying values along some input). Engine code: it knows pairs,
values and gradients, no check code; verdicts are remembered per pair for the whole audit."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .pairs import PairEvaluation, axis, evaluate_at
from .zero_regions import JITTER, RAY_POWERS, jitter, reached_gently, search_edge

if TYPE_CHECKING:
    from .context import AuditContext


PAIR_DRAWS = 2
"""Perturbations of a pair: one random move of every input and its negation (a product's
factors are scalars here, so a pair that two opposite moves leave at zero is not a vanishing
product)."""
EXAMINED = 16
"""Created zeros judged per dtype, input and grad_output sign (evenly spread over them): the
judgement costs target calls, and the zeros of one kind share their verdict."""


def examined_zeros(ctx: "AuditContext", ev: PairEvaluation, zero: torch.Tensor, gradient_of: str | None,
              sign: float) -> torch.Tensor:
    """Up to :data:`EXAMINED` of the pairs ``zero``: those judged already (in another dtype's
    probe, which shares most pairs) first, then others evenly spread, those on the structured
    grid (values bfloat16 holds) first."""
    if zero.numel() <= EXAMINED:
        return zero
    names = list(ev.inputs)
    verdicts: dict[tuple, str] = ctx.memo(f"pairs.verdicts.{gradient_of}.{tuple(names)}", dict)
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


def zero_classes(ctx: "AuditContext", ev: PairEvaluation, index: torch.Tensor, gradient_of: str | None,
             sign: float) -> dict[str, torch.Tensor]:
    """The classes of the created zeros at the pairs ``index`` whose float64 value is zero too.

    A zero that a small perturbation of every input makes non-zero is *propagated* (the sign of
    a vanishing product). The rest are followed along the ray that brings every input's
    magnitude towards 1 (:func:`_ray_power`): zero all along it, exactly zero around the point
    in every input, *spurious*; leaving the zero at some power, one pair of those that leave at
    that power is followed along each input, the others held (:func:`_gentle_along`): reached
    through gently decaying values along one of them, an *underflow* (a mask's step is not).
    Verdicts are remembered per pair (the dtypes' probes share most pairs) and shared by both
    grad_output signs: a backward is linear in grad_output (a gradient check tests it), so -1 gives the
    zeros +1 gives, with the other sign, around every pair alike."""
    names = list(ev.inputs)
    verdicts: dict[tuple, str] = ctx.memo(f"pairs.verdicts.{gradient_of}.{tuple(names)}", dict)
    points = {int(i): tuple(float(ev.inputs[name][i]) for name in names) for i in index.tolist()}
    todo = [i for i, point in points.items() if point not in verdicts]
    if todo:
        _judge_zeros(ctx, names, [points[i] for i in todo], gradient_of, sign, verdicts)
    found: dict[str, list[int]] = {}
    for i, point in points.items():
        found.setdefault(verdicts[point], []).append(i)
    return {kind: torch.tensor(where, dtype=torch.long) for kind, where in found.items()}


def judge_together(ctx: "AuditContext", cases: list[tuple[PairEvaluation, torch.Tensor, str | None]]) -> None:
    """Judge the created zeros of many probes at once: ``(evaluation, pair indices, gradient_of)`` of
    every dtype and grad_output sign. Each pair is judged once per gradient (the dtypes' probes
    share most pairs, and a backward is linear in grad_output, so the zeros of -1 lie where those
    of +1 do), in one :func:`_judge_zeros` per gradient and set of inputs: its calls are batched
    over the pairs, so judging all at once takes the calls of judging one probe. The verdicts are
    then :func:`zero_classes`' to read."""
    todo: dict[tuple[str | None, tuple[str, ...]], dict[tuple, None]] = {}
    for ev, index, gradient_of in cases:
        names = tuple(ev.inputs)
        verdicts: dict[tuple, str] = ctx.memo(f"pairs.verdicts.{gradient_of}.{names}", dict)
        columns = [ev.inputs[name][index].to(torch.float64).tolist() for name in names]
        for point in zip(*columns):
            if point not in verdicts:
                todo.setdefault((gradient_of, names), {})[point] = None
    for (gradient_of, names), points in todo.items():
        verdicts = ctx.memo(f"pairs.verdicts.{gradient_of}.{names}", dict)
        _judge_zeros(ctx, list(names), list(points), gradient_of, 1.0, verdicts)


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
    for draw in range(PAIR_DRAWS):  # every input moved a little at once, in one call per draw
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
            key = (gradient_of, along, others, zero < 0)
            if key not in memory and key not in wanted:
                wanted[key] = line[(line != 0) & ((line < 0) == (zero < 0))]
        if not wanted:
            continue
        columns = {name: [] for name in names}
        for (_, _, others, _), segment in wanted.items():
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
    line_key = (gradient_of, along, others, side)
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
        brackets = memory.setdefault((gradient_of, along, side), [])  # closed with other inputs held
        confirmed = next((found for found, lo, hi in brackets if _confirms(value_fn, zero, nearest, found, lo, hi)), None)
        if confirmed is None:
            confirmed, lo, hi = search_edge(value_fn, *_narrowed(value_fn, zero, nearest), points=WIDE_SEARCH)
            brackets.append((confirmed, lo, hi))
        memory[search_key] = confirmed
    return memory[search_key]


WIDE_SEARCH = 1024
"""Points per step of the pairs' edge search: a float64 bracket closes in about five calls
(the target is elementwise in the pairs, so the batch size changes no value)."""


def _confirms(value_fn: Any, zero: float, nearest: float, found: bool, lo: float, hi: float) -> bool:
    """Whether the bracket (``lo`` the last zero, ``hi`` the first non-zero) that a search closed
    with other inputs held also lies between ``zero`` and ``nearest`` and is still an edge there,
    decaying gently (or not) as it did: then the search along this line would close it too, and its
    verdict is ``found``. Two calls instead of a search (where the edge does not depend on the held
    inputs, as for a product's factors; where it does, the check fails and the search runs)."""
    low, high = min(zero, nearest), max(zero, nearest)
    if not (low <= lo <= high and low <= hi <= high) or abs(lo - zero) > abs(hi - zero):
        return False
    values = value_fn(torch.tensor(np.resize(np.array([lo, hi]), WIDE_SEARCH))).tolist()
    if values[0] != 0 or values[1] == 0 or not math.isfinite(values[1]):
        return False
    return reached_gently(value_fn, hi, lo, relative=abs(hi) >= 1.0, batch=WIDE_SEARCH) == found


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
        if not found.size:  # zero up to the last point before the non-zero end: the edge lies past it
            zero = float(inside[-1])
            continue
        j = int(found[0])
        nonzero = float(inside[j])
        if j:
            zero = float(inside[j - 1])
    return zero, nonzero
