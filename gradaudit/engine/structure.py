"""The target's structure: whether it is elementwise (output i depends on input i alone),
and which points lie near its kinks and jumps (found by :mod:`gradaudit.engine.kinks`).

1-D gathers use ``index_select``: advanced indexing opens an OpenMP parallel region even for
a few hundred elements, which on a busy machine waits for its second thread."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from . import scans
from .calling import Caller, CallError
from .options import Options


def same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise equality up to 1e-10 relative (vectorised and scalar kernels may differ in
    the last bit), with NaN equal to NaN."""
    return torch.isclose(a, b, rtol=1e-10, atol=0.0) | (torch.isnan(a) & torch.isnan(b))


def differ(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mask of the elements where :func:`same` fails; the exact comparison first, so the
    tolerant one only runs on the few elements that are not bitwise equal."""
    mask = a != b
    suspects = scans.indices(mask)
    if suspects.numel():
        flat_a, flat_b = a.reshape(-1), b.reshape(-1)
        mask.view(-1).index_copy_(0, suspects, ~same(flat_a.index_select(0, suspects),
                                                     flat_b.index_select(0, suspects)))
    return mask


def is_elementwise(caller: Caller, x: torch.Tensor, options: Options) -> bool:
    """Whether output i depends on input i alone. Verified three ways on ``x`` (the base
    probe): a random subset gives the same outputs alone as inside the whole (no
    normalisation across elements); perturbing a few elements changes only their outputs,
    over the whole and again over values in [-10, 10] (over the whole softmax is one-hot,
    the huge inputs dominate, so a perturbation there shows nothing)."""
    with torch.no_grad():
        try:
            y = caller.call(x.clone())  # the probe is shared: in-place targets get a copy
        except CallError:
            return False
    if y.shape != x.shape:
        return False
    generator = torch.Generator().manual_seed(options.seed + 1)
    n = x.numel()
    subset = torch.unique(torch.randint(0, n, (min(n, 64),), generator=generator))
    with torch.no_grad():
        try:
            alone = caller.call(x.index_select(0, subset))
        except CallError:
            return False
    if alone.shape != subset.shape or not bool(same(alone, y.index_select(0, subset)).all()):
        return False
    for _ in range(2):
        chosen = torch.randint(0, n, (max(3, min(n // 100, 1000)),), generator=generator)
        if not _only_perturbed_outputs_change(caller, options, x, y, chosen):
            return False
    moderate = x[x.abs() <= 10]
    if moderate.numel() < 8:
        return True
    picks = torch.linspace(0, moderate.numel() - 1, min(64, moderate.numel())).round().long()
    moderate = moderate.index_select(0, picks)
    with torch.no_grad():
        try:
            y = caller.call(moderate.clone())  # an in-place target (Hardswish(inplace=True)) overwrites its input
        except CallError:
            return False
    return y.shape == moderate.shape and _only_perturbed_outputs_change(
        caller, options, moderate, y, torch.arange(0, moderate.numel(), 7))


def _only_perturbed_outputs_change(caller: Caller, options: Options, x: torch.Tensor, y: torch.Tensor,
                                   chosen: torch.Tensor) -> bool:
    """Perturb ``x[chosen]`` and check that every other output stays as in ``y``."""
    perturbed = x.clone()
    perturbed.index_copy_(0, chosen, perturbed.index_select(0, chosen) * 0.75 + 0.3)
    if options.domain is not None:
        perturbed = perturbed.clamp(*options.domain)
    with torch.no_grad():
        try:
            y2 = caller.call(perturbed)
        except CallError:
            return False
    if y2.shape != y.shape:
        return False
    changed = differ(y2, y)
    changed.index_fill_(0, chosen, False)
    return not scans.any_true(changed)


def near_kink(kinks: Iterable[Any], x: torch.Tensor, halfwidth: torch.Tensor) -> torch.Tensor:
    """Mask of points whose interval ``x ± halfwidth`` touches one of ``kinks`` (kinks or jumps)."""
    mask = torch.zeros_like(x, dtype=torch.bool)
    for kink in kinks:
        reach = halfwidth * 2 + 1e-9 * max(1.0, abs(kink.location))
        mask |= (x - kink.location).abs() <= reach
    return mask


FLOAT32_VALUES = 100
"""Points, where the forward moves, that must all show it reading its input through float32."""


def computes_in_float32(caller: Caller, options: Options, elementwise: bool = True) -> bool:
    """Whether the float64 forward reads its input through float32 (``f(x.float())``, cast back
    or promoted against float64 parameters): at inputs float32 cannot hold, it gives exactly
    what it gives at those inputs rounded to float32, wherever it moves at all (at least
    :data:`FLOAT32_VALUES` points). Its float64 values then carry float32's rounding, which the
    numerical derivatives must allow for. A target that is not ``elementwise`` is called on each
    of the three inputs apart."""
    lo, hi = options.domain if options.domain is not None else (-10.0, 10.0)
    lo, hi = max(lo, -10.0), min(hi, 10.0)
    if not lo < hi:
        return False
    x = torch.linspace(lo, hi, 257, dtype=torch.float64)[1:-1] * (1 + 2.0 ** -40) + 2.0 ** -41
    rounded = x.to(torch.float32).to(torch.float64)
    moved = (x + 1e-3 * (1 + x.abs())).clamp(max=hi)
    try:
        if elementwise:  # one call for the three
            y, at_rounded, at_moved = caller.values64(torch.cat([x, rounded, moved])).reshape(3, -1)
        else:  # a row or a whole tensor is one input: three calls
            y, at_rounded, at_moved = (caller.call(t, dtype=torch.float64).detach().reshape(-1)
                                       for t in (x, rounded, moved))
    except (CallError, RuntimeError, ValueError):
        return False
    moving = torch.isfinite(y) & (y != at_moved)
    if int(moving.sum()) < FLOAT32_VALUES:
        return False
    return bool((y[moving] == at_rounded[moving]).all())
