"""Where a created -0.0 sits: in a region where the function is exactly zero, or not.

The engine side of the signed-zero checks (DESIGN.md, "Signed zeros: created, not inherited"): it
knows values and float64 evaluations, no check code. A -0.0 whose float64 value is zero too
is *spurious* when the function is exactly zero around the point, and an *underflow* (or a
*rounding*) when the zero region is reached through gently decaying values: values that
shrink towards it, or subnormal ones. A mask that steps from 1/6 straight to 0 is neither
decaying nor subnormal: spurious.

Elementwise targets are examined along x, at the edges of each run of zeros
(:func:`classify`). Other targets (several inputs, a shape that changes) are examined in
every input element at once (:func:`classify_whole`): a -0.0 that some small perturbation
of the inputs (and of grad_output) makes non-zero lies where the function is not exactly
zero (its sign is that of a vanishing product or sum: propagated); one that stays zero is
followed along a ray that brings every input's magnitude towards 1, as an elementwise zero
along x.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .messages import flagged, runs_of

ValueFn = Callable[[torch.Tensor], torch.Tensor]
"""float64 points -> float64 values, elementwise."""
WholeFn = Callable[[torch.Tensor, "int | None"], torch.Tensor]
"""(float64 probe, perturbation draw of grad_output or None) -> flat float64 values."""

GENTLE_DECAY = 1e3
"""Past the edge of an underflow region values grow by at most this factor over a small step."""
DECAY = 4.0
"""...and by at least this factor a step further away (10%, or x2 near zero): they decay into
the zero region. A step from 1/6 to 0 (a mask) has the same value on both sides of it."""
TINY = 2.0 ** -40
"""Values this small at the edge are rounding residues of terms of order one (1 - tanh**2,
softmin's vjp) or reach the zero region through subnormals (1 / x**2 once x**2 overflows):
an underflow or a rounding however they behave past the edge. A mask steps from values of
the order of its function (1/6, 0.5)."""
BISECTION_STEPS = 80
SEARCH_POINTS = 64
"""Points evaluated at once per step of the edge search: each step narrows the bracket
65-fold, so a float64 bracket closes in about ten calls of the target instead of fifty."""
MAX_RUNS = 32
"""Runs of undecided zeros examined at their edges; more than this are taken as spurious."""

JITTER = 2.0 ** -24
"""Relative size of the perturbations (absolute for inputs that are zero)."""
DRAWS = 4
"""Perturbations tried: two random ones and their negations."""
RAY_POWERS = (0.75, 0.5, 0.25) + tuple(2.0 ** -k for k in range(3, 13))
"""Powers ``t`` of the ray ``sign(x) |x|**t`` tried, nearest first, to find where a zero region
ends: the ray brings every magnitude towards 1 at once (2**-12 maps 1e-308 .. 1e308 into
0.8 .. 1.2), so a product of a tiny and a huge input leaves its underflow too."""
MAX_EXAMINED = len(RAY_POWERS)
"""Zeros (of a non-elementwise target) followed to the edge of their region, one per power at
which zeros end: each stands for the others that end at the same power."""
RAY_PRECISION = 2.0 ** -32
"""Relative width at which the search along the ray stops."""
RAY_NEAR = 1e-6
"""The small step past the edge along the ray (relative): a power's step moves large inputs
far more than a step along x does."""


# -- the edge of a zero region ------------------------------------------------------------------
class Remembered:
    """A float64 value function that answers again from memory: calls with exactly the same
    points (same float64 values in the same order, so the target took the same code path), and
    :func:`edge_decays` with the same bracket. The probes of several dtypes often hold the same
    inputs around a zero region, and then their edge searches are the same. Lives as long as
    the audit (``ctx.memo``)."""

    def __init__(self, value_fn: ValueFn) -> None:
        self.value_fn = value_fn
        self.values: dict[tuple, torch.Tensor] = {}
        self.edges: dict[tuple[float, float], bool] = {}

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        key = (points.dtype, tuple(points.shape), points.detach().contiguous().numpy().tobytes())
        if key not in self.values:
            self.values[key] = self.value_fn(points)
        return self.values[key]


def edge_decays(value_fn: ValueFn, zero_x: float, other_x: float, points: int = SEARCH_POINTS,
                tiny: float = TINY) -> bool:
    """Whether the zero region at ``zero_x`` is reached through gently decaying values.

    Search from the zero point towards ``other_x`` (non-zero value) for the last non-zero
    input ``edge``: each step evaluates ``SEARCH_POINTS`` evenly spread points of the bracket
    and keeps the two around the first non-zero value, until no float64 lies between them.
    The zero is a rounding of a tiny true value when the bracket does not cross x = 0 and the
    values decay gently into the zero (exponential tails, as silu or 1 - tanh^2), not when they
    reach it at a root with a non-zero slope (hardswish at -3) or in one step (a mask).
    ``points`` per step: more close the bracket in fewer calls, where the batch size changes no
    value (the target evaluated elementwise on any batch, as for the pairs of several inputs).
    """
    if isinstance(value_fn, Remembered):
        if (zero_x, other_x) not in value_fn.edges:
            value_fn.edges[zero_x, other_x] = search_edge(value_fn, zero_x, other_x, points, tiny)[0]
        return value_fn.edges[zero_x, other_x]
    return search_edge(value_fn, zero_x, other_x, points, tiny)[0]


def search_edge(value_fn: ValueFn, zero_x: float, other_x: float, points: int = SEARCH_POINTS,
                tiny: float = TINY) -> tuple[bool, float, float]:
    """:func:`edge_decays`'s verdict, and the bracket it closed: the last zero and the first non-zero
    input (a later search of the same region, with other inputs held, can confirm it in one call).
    Not gentle where the bracket crosses or touches 0."""
    if (zero_x < 0) != (other_x < 0) or zero_x == 0 or other_x == 0:
        return False, zero_x, other_x
    zero, edge = zero_x, other_x
    for _ in range(BISECTION_STEPS):
        inside = np.linspace(zero, edge, points + 2)[1:-1]
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
    # evaluated in a batch of the search's size, so the target takes the same (vectorised)
    # code path as in the search: near the edge a scalar path may round to zero where the
    # vectorised one did not
    return reached_gently(value_fn, edge, zero, relative=abs(edge) >= 1.0, batch=points, tiny=tiny), zero, edge


def reached_gently(value_fn: ValueFn, edge: float, zero: float, relative: bool, batch: int = 3,
                   near: float = 1e-3, tiny: float = TINY) -> bool:
    """Whether values decay gently into the zero region that begins past ``edge`` (towards
    ``zero``): they grow by at most ``GENTLE_DECAY`` a small step away from it (no root with a
    slope) and are tiny at the edge or grow by ``DECAY`` a step further (no mask's step).
    Steps are relative (``near``, 0.1% by default, and 10% of ``edge``), or a factor 2 near zero."""
    away = 1.0 if edge > zero else -1.0
    if relative:
        points = [edge, edge + near * abs(edge) * away, edge + 0.1 * abs(edge) * away]
    else:
        far = edge * 2.0 if abs(edge) > abs(zero) else edge / 2.0
        points = [edge, far, far]
    values = value_fn(torch.from_numpy(np.resize(np.array(points), max(batch, 3)))).tolist()
    at_edge, near, further = values[0], values[1], values[2]
    if at_edge == 0 or not math.isfinite(at_edge) or not near == near:
        return False
    if near == 0:
        return True  # zero again past the edge: values that flicker around zero (cancellation), no step
    if abs(near) > GENTLE_DECAY * abs(at_edge):
        return False
    return abs(at_edge) <= tiny or abs(further) >= DECAY * abs(at_edge)


def is_isolated_root(value_fn: ValueFn, lo: float, hi: float) -> bool:
    """Zeros confined to ``[lo, hi]`` (a point, or -0.0 and +0.0) between non-zero values of
    opposite sign, as a derivative at a smooth minimum: their sign carries no meaning."""
    delta = 1e-6 * max(1.0, abs(lo), abs(hi))
    if hi - lo > delta:
        return False
    left, right = value_fn(torch.tensor([lo - delta, hi + delta], dtype=torch.float64)).tolist()
    return left != 0 and right != 0 and (left < 0) != (right < 0)


# -- elementwise targets ----------------------------------------------------------------------------
def classify(x: torch.Tensor, created: torch.Tensor, exact: torch.Tensor,
             value_fn: ValueFn | None, tiny: float = TINY) -> dict[str, torch.Tensor]:
    """The indices per class of the created -0.0 elements (``created``, a mask or its sorted
    indices) of an elementwise target over the sorted probe ``x``.

    ``exact`` holds the float64 values at the created inputs, in order. Negative there: an
    underflow (the sign is right). Positive: a rounding that lost a tiny positive value
    (cancellation, as gelu's backward in float32). Zero there too: each run of such inputs is
    examined in float64 with ``value_fn``; a lone root is dropped, a zero region reached
    through gently decaying values is an underflow (negative side) or rounding (positive
    side), and any other zero region is exactly zero: spurious. The work follows the number
    of created zeros, not the size of the probe. The bookkeeping is NumPy's (a few hundred
    indices, where a torch operation costs several times a NumPy one).
    """
    index = flagged(created).cpu().numpy()
    exact64 = exact.detach().cpu().to(torch.float64).numpy()
    kind = np.zeros(index.size, dtype=np.int8)  # 0 undecided, 1 underflow, 2 rounding, 3 dropped
    kind[exact64 < 0] = 1
    kind[exact64 > 0] = 2
    undecided = index[kind == 0]
    if value_fn is not None and undecided.size:
        x64 = x.to(torch.float64)
        for start, end in runs_of(torch.from_numpy(undecided))[:MAX_RUNS]:
            chosen = _classify_run(value_fn, x64, start, end, tiny)
            if chosen:  # the run's place among the created indices (both sorted)
                first, last = np.searchsorted(index, [start, end])
                kind[int(first) : int(last) + 1] = chosen
    names = ("spurious", "underflow", "rounding") if value_fn is not None else ("undetermined", "underflow", "rounding")
    result = {name: torch.from_numpy(index[kind == code]) for code, name in enumerate(names)}
    if value_fn is None:
        result["spurious"] = torch.from_numpy(index[:0])
    return result


def _classify_run(value_fn: ValueFn, x64: torch.Tensor, start: int, end: int, tiny: float = TINY) -> int:
    """1 (underflow), 2 (rounding), 3 (dropped: a lone root) or 0 (spurious) for the run of
    zeros at probe indices ``start..end``, examined at its edges."""
    if is_isolated_root(value_fn, float(x64[start]), float(x64[end])):
        return 3
    for edge, neighbour in ((start, start - 1), (end, end + 1)):
        if not 0 <= neighbour < x64.numel():
            continue
        value = float(value_fn(x64[neighbour : neighbour + 1])[0])
        if value == 0 or value != value:
            continue
        if edge_decays(value_fn, float(x64[edge]), float(x64[neighbour]), tiny=tiny):
            return 1 if value < 0 else 2
    return 0


# -- every other target -------------------------------------------------------------------------------
def jitter(numel: int, draw: int, seed: int, stream: int = 0) -> torch.Tensor:
    """Relative perturbations for draw ``draw`` (float64, ``numel`` of them, up to ``JITTER``):
    draws come in pairs of opposite sign."""
    generator = torch.Generator().manual_seed(seed * 7919 + stream * 104729 + draw // 2)
    noise = (torch.rand(numel, generator=generator, dtype=torch.float64) * 2 - 1) * JITTER
    return noise if draw % 2 == 0 else -noise


def shuffled(x: torch.Tensor, seed: int) -> torch.Tensor:
    """The probe in a seeded order: a target that splits its input (a * act(b) over two halves)
    then meets every pairing of signs, where the sorted probe pairs negatives with positives."""
    return x.index_select(0, torch.randperm(x.numel(), generator=torch.Generator().manual_seed(seed + 17)))


def _perturbed(x64: torch.Tensor, draw: int, seed: int, domain: tuple[float, float] | None) -> torch.Tensor:
    noise = jitter(x64.numel(), draw, seed, stream=1).reshape(x64.shape)
    moved = x64 + noise * torch.where(x64 == 0, torch.ones_like(x64), x64.abs())
    moved = torch.where(torch.isfinite(moved), moved, x64)
    return moved.clamp(*domain) if domain is not None else moved


def classify_whole(x: torch.Tensor, created: torch.Tensor, exact: torch.Tensor, whole: WholeFn | None,
                   seed: int = 0, domain: tuple[float, float] | None = None) -> dict[str, torch.Tensor]:
    """The indices per class of the created -0.0 elements (sorted flat indices ``created``) of
    a target that is not elementwise, evaluated at the probe ``x``; ``exact`` as in
    :func:`classify`. ``whole`` evaluates the float64 target at a whole probe.

    A float64 zero that any of ``DRAWS`` small perturbations of every input (and of
    grad_output) makes non-zero is *propagated*: the function is not exactly zero around the
    point. One that stays zero is followed along the ray of :func:`_follow_rays`, which brings
    every input's magnitude towards 1: zero all along it, or reached through values that do
    not decay gently, it is spurious; reached gently, an underflow (negative values) or a
    rounding (positive). The cost: ``DRAWS`` calls, ``RAY_POWERS`` calls, and about sixty per
    power at which zeros end (only where float64 is zero too).
    """
    index = flagged(created)
    exact = exact.to(torch.float64)
    kind = torch.zeros(index.numel(), dtype=torch.int8)  # 0 spurious, 1 underflow, 2 rounding, 3 propagated
    kind[exact < 0] = 1
    kind[exact > 0] = 2
    undecided = torch.nonzero(kind == 0).flatten()
    names = ("spurious", "underflow", "rounding", "propagated")
    if whole is None:
        return {"undetermined": index[undecided], "underflow": index[kind == 1], "rounding": index[kind == 2]}
    x64 = x.to(torch.float64)
    for draw in range(DRAWS):
        if not undecided.numel():
            break
        values = whole(_perturbed(x64, draw, seed, domain), draw).reshape(-1)[index[undecided]]
        moved = (values != 0) & torch.isfinite(values)
        kind[undecided[moved]] = 3
        undecided = undecided[~moved]
    if undecided.numel():
        for position, chosen in _follow_rays(x64, index[undecided], whole, domain).items():
            kind[undecided[position]] = chosen
    return {name: index[kind == code] for code, name in enumerate(names)}


def _follow_rays(x64: torch.Tensor, elements: torch.Tensor, whole: WholeFn,
                 domain: tuple[float, float] | None) -> dict[int, int]:
    """Class (1 underflow, 2 rounding, 3 propagated; absent: spurious) of each of ``elements``
    (positions into it), following the ray ``base + sign(d) |d|**t``, ``d = x - base``, from
    t = 1 towards 0 (``base``: zero, or the domain's point nearest to it; inputs at ``base``
    start a ``JITTER`` away, on the side of their sign). Signs, and so sign conditions such as
    b < 0, hold along it."""
    base = min(max(0.0, domain[0]), domain[1]) if domain is not None else 0.0
    offset = x64 - base
    offset = torch.where(offset == 0, torch.copysign(torch.full_like(offset, JITTER), offset), offset)

    log_size = offset.abs().log()
    start = offset + base

    def point(t: float, moving: torch.Tensor | None = None) -> torch.Tensor:
        """The ray at power ``t``, for the inputs at the indices ``moving`` (default: all)."""
        if moving is None:
            moved = torch.copysign(torch.exp(log_size * t), offset) + base
        else:
            moved = start.clone()
            moved[moving] = torch.copysign(torch.exp(log_size[moving] * t), offset[moving]) + base
        return moved.clamp(*domain) if domain is not None else moved

    found = torch.full((elements.numel(),), -1, dtype=torch.long)  # first power where non-zero
    for k, power in enumerate((1.0,) + RAY_POWERS):
        waiting = torch.nonzero(found < 0).flatten()
        if not waiting.numel():
            break
        values = whole(point(power), 0).reshape(-1)[elements[waiting]]
        found[waiting[(values != 0) & torch.isfinite(values)]] = k
    chosen: dict[int, int] = {p: 3 for p in torch.nonzero(found == 0).flatten().tolist()}  # moved off zero inputs
    for k in torch.unique(found[found > 0]).tolist()[:MAX_EXAMINED]:  # the rest stay spurious
        group = torch.nonzero(found == k).flatten()
        verdict = _ray_verdict(point, whole, int(elements[group[0]]), RAY_POWERS[k - 1], x64.numel())
        if verdict:
            chosen.update((p, verdict) for p in group.tolist())
    return chosen


def _nonzero(value: float) -> bool:
    return value != 0 and math.isfinite(value)


def _ray_verdict(point: Callable[..., torch.Tensor], whole: WholeFn, element: int, power: float, size: int) -> int:
    """1, 2 or 0 (spurious) for one output element, zero at power 1 and non-zero at ``power``
    (``size`` inputs).

    First the inputs that must move are narrowed down by halves (a * gelu(b): b alone), so
    that the others do not shrink or grow the value along the ray; then the edge of the zero
    region is searched between ``power`` and 1 and examined as along x."""
    def value(t: float, moving: torch.Tensor) -> float:
        return float(whole(point(t, moving), 0).reshape(-1)[element])

    moving = torch.arange(size)
    while moving.numel() > 1:  # halve the moving inputs while the value stays non-zero
        for half in (moving[: moving.numel() // 2], moving[moving.numel() // 2 :]):
            if _nonzero(value(power, half)):
                moving = half
                break
        else:
            break
    zero, nonzero = 1.0, power
    for _ in range(BISECTION_STEPS):
        middle = math.sqrt(nonzero) * math.sqrt(zero) if zero > 2 * nonzero else nonzero + (zero - nonzero) / 2
        if zero - nonzero <= RAY_PRECISION * zero or middle in (nonzero, zero):
            break
        if _nonzero(value(middle, moving)):
            nonzero = middle
        else:
            zero = middle
    at = lambda ts: torch.tensor([value(float(t), moving) for t in ts], dtype=torch.float64)  # noqa: E731
    if not reached_gently(at, nonzero, zero, relative=True, near=RAY_NEAR):
        return 0
    return 1 if value(nonzero, moving) < 0 else 2
