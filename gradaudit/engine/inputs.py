"""The probe inputs: a structured, deterministic set of scalars per dtype and domain."""
from __future__ import annotations

import functools
import math
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from . import scans

DENSE_STEP = 1.0 / 64.0
"""Spacing of the dense grid over [-10, 10]; it holds every integer and half exactly."""
DENSE_LIMIT = 10.0
LOG_POINTS_PER_DECADE = 3
DEFAULT_SIZE = 2048
"""Default number of seeded random samples added to the structured grid."""
LOWER_PRECISION_SAMPLES = 16384
"""At most this many of the random samples (evenly spread) join the probes of the dtypes
below float64. The checks there (signed zeros, overflow, precision, dtype drift) concern
intervals, which the structured grid (every 1/64 over [-10, 10], the tails, every binade)
and this many samples (about 0.001 apart near zero) already resolve; bfloat16 holds fewer
distinct values than that in the sampled range anyway. ``size`` beyond it buys float64
gradient coverage, and the audit's cost grows with float64 alone."""


def dense_grid(domain: tuple[float, float] | None = None) -> np.ndarray:
    """The uniform grid over [-10, 10] (clipped to ``domain``), ascending, no -0.0."""
    steps = int(round(DENSE_LIMIT / DENSE_STEP))
    grid = np.arange(-steps, steps + 1, dtype=np.float64) * DENSE_STEP
    return _clip(grid, domain)


def representable_part(domain: tuple[float, float], dtype: torch.dtype) -> tuple[float, float] | None:
    """The part of ``domain`` whose values ``dtype`` holds as finite numbers that are not all
    zero: ``domain`` itself when the dtype covers it, a narrower interval when the domain
    reaches past the dtype's max, None when no value of it survives the rounding (every value
    overflows, or every value underflows to zero)."""
    info = torch.finfo(dtype)
    top = float(info.max)
    lo, hi = max(float(domain[0]), -top), min(float(domain[1]), top)
    if lo > hi:
        return None
    half_tiny = float(info.smallest_normal) * float(info.eps) / 2  # rounds to zero below this
    if -half_tiny <= lo and hi <= half_tiny:
        return None
    return lo, hi


def _clip(values: np.ndarray, domain: tuple[float, float] | None) -> np.ndarray:
    if domain is None:
        return values
    lo, hi = domain
    return values[(values >= lo) & (values <= hi)]


def tail_grid() -> np.ndarray:
    """Positive tail magnitudes past the dense grid: every integer from 10 to 100 and 32
    log-spaced points per decade from 100 to 10^4 (thresholds such as softplus's 20 sit here)."""
    return np.concatenate([np.arange(10.0, 101.0), np.logspace(2, 4, 65)])


def log_magnitudes(dtype: torch.dtype) -> np.ndarray:
    """Magnitudes from the dtype's smallest subnormal to just below its max: the two ends,
    the smallest normal, and ``LOG_POINTS_PER_DECADE`` points per decade on round exponents."""
    info = torch.finfo(dtype)
    tiny = float(info.smallest_normal) * float(info.eps)  # smallest subnormal
    top = float(info.max) * 0.99
    lo, hi = math.ceil(math.log10(tiny)), math.floor(math.log10(top))
    count = (hi - lo) * LOG_POINTS_PER_DECADE + 1
    decades = np.logspace(lo, hi, count)
    return np.concatenate([[tiny, float(info.smallest_normal), top], decades[decades < top]])


def kink_neighbours(kinks: Iterable[float], dtype: torch.dtype) -> np.ndarray:
    """Each kink, its neighbouring representable values, and points a little further out."""
    points: list[float] = []
    for kink in kinks:
        k = torch.tensor(float(kink), dtype=dtype)
        points.append(float(k))
        for direction in (-math.inf, math.inf):
            points.append(float(torch.nextafter(k, torch.tensor(direction, dtype=dtype))))
        scale = max(1.0, abs(float(kink)))
        for offset in (1e-6, 1e-3, 1e-1):
            points += [float(kink) - offset * scale, float(kink) + offset * scale]
    return np.asarray(points, dtype=np.float64)


def sorted_uniform(size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` sorted uniform samples in (0, 1), drawn in O(n) as normalised exponential
    spacings (the order statistics of a uniform sample), so no sort is needed."""
    spacings = torch.empty(size + 1, dtype=torch.float64).exponential_(generator=generator)
    return (torch.cumsum(spacings, 0) / spacings.sum())[:-1]


def random_samples(size: int, seed: int, domain: tuple[float, float] | None) -> list[np.ndarray]:
    """``size`` seeded samples, as sorted runs: normal with scale 1 (half) and 4 (half), or
    uniform over a finite domain."""
    generator = torch.Generator().manual_seed(seed)
    if size <= 0:
        return []
    if domain is not None and math.isfinite(domain[0]) and math.isfinite(domain[1]):
        lo, hi = domain
        return [(lo + (hi - lo) * sorted_uniform(size, generator)).numpy()]
    runs = []
    for scale, count in ((1.0, (size + 1) // 2), (4.0, size // 2)):
        uniform = sorted_uniform(count, generator)
        runs.append((scale * math.sqrt(2.0) * torch.erfinv(2 * uniform - 1)).numpy())
    return runs


def _holds(values: torch.Tensor, candidate: float) -> bool:
    """Whether the sorted ``values`` hold ``candidate`` (binary search)."""
    position = int(torch.searchsorted(values, torch.tensor(candidate, dtype=values.dtype)))
    return position < values.numel() and float(values[position]) == candidate


def _unused_value(unique: torch.Tensor, dtype: torch.dtype, anchor: float, lo: float, hi: float) -> torch.Tensor | None:
    """A value of ``dtype`` inside [lo, hi] near ``anchor`` that the sorted ``unique`` does not hold yet."""
    value = torch.tensor(anchor, dtype=dtype)
    for direction in (math.inf, -math.inf):
        step = value
        for _ in range(64):
            step = torch.nextafter(step, torch.tensor(direction, dtype=dtype))
            candidate = float(step)
            if lo <= candidate <= hi and math.isfinite(candidate) and not _holds(unique, candidate):
                return torch.tensor([candidate], dtype=torch.float64)
    return None


@functools.lru_cache(maxsize=4)
def merged_random_samples(size: int, seed: int, domain: tuple[float, float] | None) -> np.ndarray:
    """The random samples as one sorted run, shared by every dtype of an audit (read-only)."""
    runs = random_samples(size, seed, domain)
    merged = np.sort(np.concatenate(runs), kind="stable") if runs else np.zeros(0)
    merged.setflags(write=False)
    return merged


def _merge_sorted(small: np.ndarray, large: np.ndarray) -> np.ndarray:
    """Two ascending arrays as one, in one linear copy of the larger."""
    return np.insert(large, np.searchsorted(large, small), small)


def probe_values(
    dtype: torch.dtype,
    *,
    domain: tuple[float, float] | None = None,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    kinks: Sequence[float] = (),
    samples: int | None = None,
) -> torch.Tensor:
    """The sorted, de-duplicated probe inputs for ``dtype`` (finite values, both zeros).

    Values are produced in float64 and rounded once to ``dtype``; ascending order, with
    -0.0 directly before +0.0. Every step is a linear pass or a binary search. The result
    is cached, so every target of a run with the same options shares it: read it, never
    write into it.

    ``samples`` caps the random samples taken (evenly spread over the ``size`` drawn), so
    a capped probe is a subset of the full one; by default float64 takes all of them and
    the lower precisions at most ``LOWER_PRECISION_SAMPLES``.
    """
    return _cached_probe(*_probe_key(dtype, domain, size, seed, kinks, samples))


def probe_spacing(dtype: torch.dtype, **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The spacing (see :func:`spacing`) of ``probe_values(dtype, **options)``, cached with it."""
    return _cached_spacing(*_probe_key(dtype, **options))


def spacing(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 / step, 1 / shorter step)`` of the sorted points ``x``: the reciprocal of each
    gap between neighbours (``numel - 1`` values) and, for each inner point, of the shorter
    of its two gaps (``numel - 2`` values). A repeated value (the zeros) gives inf."""
    step = torch.diff(x)
    return torch.reciprocal(step), torch.reciprocal(torch.minimum(step[:-1], step[1:]))


def base_positions(*, domain: tuple[float, float] | None, size: int, seed: int, kinks: Sequence[float],
                   base_samples: int) -> torch.Tensor:
    """Where the points of the float64 probe with ``base_samples`` of the samples (a subset)
    sit in the full float64 probe: sorted indices, cached with the probes (read-only). A
    point the subset holds but the full probe does not (the parity point) is left out."""
    return _cached_base_positions(_probe_key(torch.float64, domain, size, seed, kinks, None),
                                  _probe_key(torch.float64, domain, size, seed, kinks, base_samples))


@functools.lru_cache(maxsize=4)
def _cached_base_positions(full_key: tuple, base_key: tuple) -> torch.Tensor:
    full, base = _cached_probe(*full_key), _cached_probe(*base_key)
    if base.numel() == full.numel():
        return torch.arange(full.numel())
    index = torch.searchsorted(full, base)
    index[(base == 0) & ~torch.signbit(base)] += 1  # +0.0 sits right after -0.0
    index = index.clamp_(max=full.numel() - 1)
    return index[full[index] == base]


def dense_points(*, domain: tuple[float, float] | None, size: int, seed: int,
                 kinks: Sequence[float]) -> torch.Tensor:
    """The float64 probe's points on :func:`dense_grid` (+0.0 for zero), found by binary
    search and gathered once (cached with the probe, read-only): a gather from a probe of a
    million points is a cache miss per point."""
    return _cached_dense_points(_probe_key(torch.float64, domain, size, seed, kinks, None))


@functools.lru_cache(maxsize=4)
def _cached_dense_points(key: tuple) -> torch.Tensor:
    full = _cached_probe(*key)
    grid = torch.from_numpy(dense_grid())
    # the last match: +0.0 sits right after -0.0, and the grid's zero is +0.0
    index = (torch.searchsorted(full, grid, right=True) - 1).clamp_(min=0)
    return full[index[full[index] == grid]]


def clear_caches() -> None:
    """Forget every cached probe, sample draw, spacing and position (what the first audit of
    a run pays for; the benchmark measures it)."""
    for cached in (merged_random_samples, _cached_probe, _cached_spacing, _cached_base_positions,
                   _cached_dense_points):
        cached.cache_clear()


def _probe_key(dtype: torch.dtype, domain: tuple[float, float] | None = None, size: int = DEFAULT_SIZE,
               seed: int = 0, kinks: Sequence[float] = (), samples: int | None = None) -> tuple:
    return (dtype, None if domain is None else tuple(domain), int(size), int(seed),
            tuple(float(k) for k in kinks), sample_count(dtype, size, samples))


def sample_count(dtype: torch.dtype, size: int, samples: int | None = None) -> int:
    """How many of the ``size`` random samples ``dtype``'s probe takes: at most ``samples`` when
    given, else all of them in float64 and at most ``LOWER_PRECISION_SAMPLES`` below it. Never
    more than ``size``, so requests for the same probe share one cache entry."""
    if samples is None:
        samples = size if dtype == torch.float64 else LOWER_PRECISION_SAMPLES
    return min(int(samples), int(size))


@functools.lru_cache(maxsize=12)
def _cached_probe(dtype: torch.dtype, domain: tuple[float, float] | None, size: int, seed: int,
                  kinks: tuple[float, ...], samples: int) -> torch.Tensor:
    return _build_probe(dtype, domain, size, seed, kinks, samples)


@functools.lru_cache(maxsize=2)
def _cached_spacing(dtype: torch.dtype, domain: tuple[float, float] | None, size: int, seed: int,
                    kinks: tuple[float, ...], samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    return spacing(_cached_probe(dtype, domain, size, seed, kinks, samples).to(torch.float64))


def _build_probe(dtype: torch.dtype, domain: tuple[float, float] | None, size: int, seed: int,
                 kinks: tuple[float, ...], limit: int) -> torch.Tensor:
    """:func:`probe_values`, uncached."""
    magnitudes = log_magnitudes(dtype)
    structured = [dense_grid(), tail_grid(), -tail_grid(), magnitudes, -magnitudes, kink_neighbours(kinks, dtype)]
    if domain is not None:
        structured.append(np.asarray([v for v in domain if math.isfinite(v)], dtype=np.float64))
    grid = np.unique(np.concatenate(structured))
    samples = merged_random_samples(size, seed, domain)
    if samples.size > limit:
        samples = samples[:: -(-samples.size // max(limit, 1))]
    if dtype == torch.float64 and samples.size:  # no rounding follows: drop grid values the samples hold
        at = np.minimum(np.searchsorted(samples, grid), samples.size - 1)
        grid = grid[samples[at] != grid]
    values = _clip(_merge_sorted(grid, samples), domain)
    rounded = torch.from_numpy(values).to(dtype)
    if dtype != torch.float64:
        rounded = rounded.to(torch.float64)  # exact round trip
    # sorted, so values that overflowed the dtype sit at the two ends
    first = int(torch.searchsorted(rounded, torch.tensor(-math.inf, dtype=torch.float64), right=True))
    last = int(torch.searchsorted(rounded, torch.tensor(math.inf, dtype=torch.float64)))
    unique = rounded[first:last]
    repeated = unique[1:] == unique[:-1]  # sorted: duplicates are neighbours (+0.0 == -0.0)
    if scans.any_true(repeated):  # rounding to a lower precision merged values
        keep = torch.ones_like(unique, dtype=torch.bool)
        keep[1:] = ~repeated
        unique = unique[keep]
    insertions: list[tuple[int, float]] = []
    position = int(torch.searchsorted(unique, torch.tensor(0.0, dtype=torch.float64)))
    if position < unique.numel() and float(unique[position]) == 0.0:
        unique[position] = 0.0  # ``values`` is a fresh array; a -0.0 there becomes +0.0 ...
        insertions.append((position, -0.0))  # ... and -0.0 goes right before it
    if (unique.numel() + len(insertions)) % 2:  # an even count, so pairing targets (glu) accept the probe
        lo, hi = domain if domain is not None else (-math.inf, math.inf)
        anchor = min(max(math.pi, lo), hi) if math.isfinite(min(max(math.pi, lo), hi)) else 0.0
        value = _unused_value(unique, dtype, anchor, lo, hi)
        if value is not None:
            insertions.append((int(torch.searchsorted(unique, value)), float(value)))
    if insertions:  # one copy for all of them
        pieces, done = [], 0
        for position, value in sorted(insertions, key=lambda item: item[0]):
            pieces += [unique[done:position], torch.tensor([value], dtype=torch.float64)]
            done = position
        unique = torch.cat(pieces + [unique[done:]])
    return unique.to(dtype)


SPECIAL_VALUES = (-math.inf, math.inf, math.nan)
"""Probed separately: how a target propagates these is information, not a defect."""
