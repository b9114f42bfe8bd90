"""Kink and jump discovery: bracket on the float64 dense grid, then narrow each bracket.

A *kink* is a point where the one-sided derivatives differ (ReLU at 0); a *jump* is a
point where the one-sided limits of the forward differ (Heaviside at 0). Discovery costs
one pass over the grid that the audit has already evaluated, plus a fixed number of
small batched evaluations per candidate: O(grid), not O(grid^2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .inputs import log_magnitudes, tail_grid
from .numerics import relative_step

if TYPE_CHECKING:
    from .context import AuditContext

BISECTION_STEPS = 64
SLOPE_JUMP = 1e-2
"""Relative size of a change of slope that marks a kink candidate."""
KINK_SIZE = 1e-3
"""Smallest ``|R - L|`` that :func:`classify` reports, relative to ``1 + |L| + |R|``."""
QUIET_CHANGE = KINK_SIZE / 10
QUIET_STEPS = 3
"""A bracket whose largest excess change of slope (see :func:`_bisect`) stays below
``QUIET_CHANGE`` (relative to ``1 +`` its largest slope) for this many steps is smooth: a
kink of ``KINK_SIZE`` keeps it above half of that, once the curvature's variation is small."""


@dataclass
class Kink:
    """A non-differentiable point of an elementwise target."""

    location: float
    kind: str  # "kink" or "jump"
    left: float  # one-sided derivative from the left (kinks) or left limit (jumps)
    right: float
    declared: bool = False
    left_value: float = math.nan
    right_value: float = math.nan


def _dense_section(ctx: "AuditContext") -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 probe's points on the dense grid (multiples of DENSE_STEP in [-10, 10],
    +0.0 for zero; cached with the probe) and the target's values there, from a call of their
    own: a few thousand points, so the search neither waits for the whole probe's evaluation
    nor needs it stored."""
    x = ctx.dense_probe()
    return x, ctx.values64(x)


def candidate_brackets(x: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
    """Brackets ``[a, b]`` on a uniform grid where the slope changes abruptly."""
    if x.numel() < 5:
        return []
    step = torch.diff(x)
    slopes = torch.diff(y) / step
    finite = torch.isfinite(slopes)
    # second differences of the slopes: ~f'''(x) h^2 when smooth, ~|R - L| next to a kink
    curvature_change = torch.diff(slopes, n=2)
    scale = torch.maximum(torch.maximum(slopes[:-2].abs(), slopes[1:-1].abs()), slopes[2:].abs())
    all_finite = finite[:-2] & finite[1:-1] & finite[2:]
    flagged_mask = (all_finite & (curvature_change.abs() > SLOPE_JUMP * (scale + 1e-3))) | (
        ~all_finite & torch.isfinite(y[1:-2])
    )
    flagged = torch.nonzero(flagged_mask).flatten().tolist()
    brackets: list[tuple[float, float]] = []
    for i in flagged:
        # curvature_change[i] spans x[i] .. x[i+3]; the kink lies inside
        a, b = float(x[i]), float(x[min(i + 3, x.numel() - 1)])
        if brackets and a <= brackets[-1][1]:
            brackets[-1] = (brackets[-1][0], b)
        else:
            brackets.append((a, b))
    return brackets


SECTIONS = 8
"""Each bisection step evaluates a bracket at ``SECTIONS + 1`` evenly spaced points and keeps
two of its sections (a quarter of it)."""


def _bisect(ctx: "AuditContext", brackets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Narrow every bracket at once to the kink or jump inside it (arithmetic in NumPy: a
    few dozen steps of tiny arrays, where torch's per-call cost would dominate).

    Each step evaluates the bracket at nine evenly spaced points. On a smooth stretch the
    seven changes between consecutive secant slopes are nearly equal (the curvature times
    the section width); a kink adds ``R - L`` to the one or two changes at the ends of its
    section, a jump adds a large pair. The median of the seven is the curvature's share, so
    the change that exceeds it most marks the kink, whatever the signs of kink and
    curvature, and the two sections on either side of that point are kept. (Following the
    largest change itself loses a small kink against opposite curvature, -x^2 + 0.01 relu(x).)

    A bracket is dropped once it cannot hold a kink that :func:`classify` would report: a
    kink keeps its excess near ``|R - L| / 2`` at least, while on a smooth stretch (a candidate
    flagged where the slope crosses zero, as silu's does) the excess shrinks with the square
    of the bracket. Below ``QUIET_CHANGE`` (relative to ``1 +`` the largest slope) for
    ``QUIET_STEPS`` steps in a row, the bracket holds neither a jump (its slopes grow) nor a
    kink of the size :func:`classify` reports.
    """
    a = np.array([p[0] for p in brackets], dtype=np.float64)
    b = np.array([p[1] for p in brackets], dtype=np.float64)
    quiet = np.zeros(a.size, dtype=np.int64)
    fractions = np.linspace(0.0, 1.0, SECTIONS + 1)[:, None]
    with np.errstate(all="ignore"):  # inf and NaN slopes are expected near jumps
        for _ in range(BISECTION_STEPS):
            points = a + (b - a) * fractions
            points[-1] = b
            values = ctx.values64(torch.from_numpy(points.reshape(-1))).numpy().reshape(points.shape)
            slopes = np.diff(values, axis=0) / np.diff(points, axis=0)
            change = np.diff(slopes, axis=0)
            finite = np.isfinite(change)
            # the curvature's share from the finite changes; a non-finite one (next to an
            # infinite or NaN value) has infinite excess, so the bracket closes in on it
            share = np.median(np.where(finite, change, 0.0), axis=0, keepdims=True)
            excess = np.where(finite, np.abs(change - share), math.inf)
            columns = np.arange(a.size)
            peak = np.argmax(excess, axis=0)  # change ``peak`` sits at point ``peak + 1``
            a, b = points[peak, columns], points[peak + 2, columns]
            largest = excess[peak, columns]
            quiet = np.where(largest < QUIET_CHANGE * (1 + np.abs(slopes).max(axis=0)), quiet + 1, 0)
            keep = quiet < QUIET_STEPS
            a, b, quiet = a[keep], b[keep], quiet[keep]
            if bool(np.all((b - a) <= 1e-13 * np.maximum(np.abs(a), 1.0))):
                break
    return list(zip(a.tolist(), b.tolist()))


def snap(lo: float, hi: float) -> float:
    """The shortest decimal inside ``[lo, hi]`` widened a little, else the midpoint."""
    centre = (lo + hi) / 2
    width = max(hi - lo, 1e-12 * max(1.0, abs(centre)))
    for digits in range(0, 13):
        candidate = round(centre, digits)
        if abs(candidate - centre) <= 2 * width:
            return float(candidate)
    return centre


def one_sided(ctx: "AuditContext", points: list[float], step: float | None = None) -> list[tuple[float, float, float, float]]:
    """Left/right derivative (second-order one-sided differences, steps of ``step`` relative to
    ``max(1, |x|)``: 1e-6 by default, longer for a target that computes in float32, whose
    rounding would swamp such a step) and left/right limit at each point, anchored a hair to each
    side so that f(point) itself is never used."""
    step = step if step is not None else one_sided_step(ctx)
    c = torch.tensor(points, dtype=torch.float64)
    return [tuple(row) for row in one_sided_array(ctx, c, step).tolist()]


def one_sided_array(ctx: "AuditContext", c: torch.Tensor, step: float) -> np.ndarray:
    """:func:`one_sided` at the float64 points ``c``, as an array of rows (left, right, left
    value, right value)."""
    delta = step * torch.clamp(c.abs(), min=1.0)
    anchor_left = c - 1e-6 * delta
    anchor_right = c + 1e-6 * delta
    grid = torch.stack(
        [anchor_left, anchor_left - delta, anchor_left - 2 * delta,
         anchor_right, anchor_right + delta, anchor_right + 2 * delta]
    )
    l0, l1, l2, r0, r1, r2 = ctx.values64(grid.flatten()).reshape(grid.shape)
    left = (3 * l0 - 4 * l1 + l2) / (anchor_left - grid[2])
    right = (-3 * r0 + 4 * r1 - r2) / (grid[5] - anchor_right)
    return torch.stack([left, right, l0, r0], dim=1).numpy()


def one_sided_step(ctx: "AuditContext") -> float:
    """The relative step of :func:`one_sided`: 1e-6, or an eighth of the central differences'
    step at the forward's working precision where that is longer (6e-4 for float32 inside)."""
    return max(1e-6, relative_step(ctx) / 8)


def classify(ctx: "AuditContext", location: float, declared: bool) -> Kink | None:
    """Measure a candidate point; None when it turns out smooth."""
    (left, right, left_value, right_value), = one_sided(ctx, [location])
    return _measured(location, left, right, left_value, right_value, declared)


def _measured(location: float, left: float, right: float, left_value: float, right_value: float,
              declared: bool) -> Kink | None:
    """The kink or jump that one-sided derivatives and limits at ``location`` show; None when
    smooth (unless ``declared``)."""
    scale = 1.0 + abs(left_value) + abs(right_value)
    if not (math.isfinite(left_value) and math.isfinite(right_value)):
        kind = "jump"
    elif abs(left_value - right_value) > 1e-4 * scale:
        kind = "jump"
    elif math.isfinite(left) and math.isfinite(right) and abs(left - right) > KINK_SIZE * (1 + abs(left) + abs(right)):
        kind = "kink"
    elif not (math.isfinite(left) and math.isfinite(right)):
        kind = "kink"
    else:
        if not declared:
            return None
        kind = "kink"
    return Kink(location, kind, left, right, declared, left_value, right_value)


TAIL_SCAN_LIMIT = 1e300
"""Largest magnitude scanned for kinks on the tail points: one-sided differences further out overflow."""


def _on_tail_points(ctx: "AuditContext") -> list[Kink]:
    """Kinks and jumps exactly at the probe's structured points past the dense grid (every integer
    from 10 to 100, then log-spaced magnitudes: clamp(x, -10, 10), relu(x - 20), clamp(x, max=1e5)),
    from one-sided differences at all of them in one call, and again with a tenfold step at the
    few that look like one (a kink's one-sided slopes hold steady, rounding noise does not). The
    dense grid's search finds kinks anywhere in [-10, 10]; past it a kink between probe points is
    never straddled by the central differences of a probe point, but one on a probe point is (they
    average its two slopes)."""
    magnitudes = np.unique(np.concatenate([tail_grid(), log_magnitudes(torch.float64)]))
    magnitudes = magnitudes[(magnitudes >= 10.0) & (magnitudes <= TAIL_SCAN_LIMIT)]
    points = np.concatenate([-magnitudes[::-1], magnitudes])
    if ctx.options.domain is not None:
        lo, hi = ctx.options.domain
        points = points[(points > lo) & (points < hi)]
    if not points.size:
        return []
    fine = one_sided_array(ctx, torch.from_numpy(points), one_sided_step(ctx))
    left, right, left_value, right_value = fine.T
    with np.errstate(all="ignore"):
        finite = np.isfinite(fine).all(axis=1)  # an overflowing tail: the non-finite checks say it, not a kink
        scale = 1.0 + np.abs(left_value) + np.abs(right_value)
        candidate = finite & ((np.abs(left - right) > KINK_SIZE * (1 + np.abs(left) + np.abs(right)))
                              | (np.abs(left_value - right_value) > 1e-4 * scale))
    if not candidate.any():
        return []
    chosen = points[candidate].tolist()
    coarse = one_sided(ctx, chosen, step=10 * one_sided_step(ctx))
    found = []
    for p, measured, (left_coarse, right_coarse, _, _) in zip(chosen, fine[candidate].tolist(), coarse):
        noise = abs(measured[0] - left_coarse) + abs(measured[1] - right_coarse)  # rounding or curvature
        if all(map(math.isfinite, (left_coarse, right_coarse))) and abs(measured[0] - measured[1]) > 10 * noise:
            found.append(_measured(p, *measured, declared=False))
    return [kink for kink in found if kink is not None]


def find_kinks(ctx: "AuditContext") -> list[Kink]:
    """Declared kinks plus those discovered on the float64 dense grid and at the structured
    points past it, sorted."""
    if not ctx.elementwise:
        return [k for k in (classify(ctx, float(v), True) for v in ctx.options.kinks) if k]
    x, y = _dense_section(ctx)
    brackets = candidate_brackets(x, y)
    found: list[float] = []
    if brackets:
        for lo, hi in _bisect(ctx, brackets):
            found.append(snap(lo, hi) + 0.0)  # + 0.0: never report a kink at -0.0
    kinks: list[Kink] = []
    declared = [float(v) for v in ctx.options.kinks]
    for value in declared:
        kink = classify(ctx, value, True)
        if kink:
            kinks.append(kink)
    for value in found:
        if any(abs(value - d) <= 1e-6 * max(1.0, abs(d)) for d in declared):
            continue
        if any(abs(value - k.location) <= 1e-9 * max(1.0, abs(value)) for k in kinks):
            continue
        kink = classify(ctx, value, False)
        if kink:
            kinks.append(kink)
    for kink in (_on_tail_points(ctx) if ctx.scan_tail_kinks else []):
        if not any(abs(kink.location - k.location) <= 1e-9 * max(1.0, abs(kink.location)) for k in kinks):
            kinks.append(kink)
    return sorted(kinks, key=lambda k: k.location)
