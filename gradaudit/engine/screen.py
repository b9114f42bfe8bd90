"""The gradient screen: which probe points' backward provably agrees with the forward, from the
probe's own values, without calling the target (engine code: it knows no check)."""
from __future__ import annotations

import functools
from typing import Callable

import torch

from . import inputs
from .numerics import ATOL, EPS64, RTOL

SCREEN_BLOCK = 1 << 17
"""Points screened per block: the temporaries of a block stay in cache and are recycled by
the allocator, where probe-sized ones would each be fresh memory (page faults cost more
than the arithmetic)."""


def screen(x: torch.Tensor, y: torch.Tensor, analytic: torch.Tensor,
           spacing: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """Points whose backward provably agrees with the forward, from the probe's own values.

    The probe is sorted, so each inner point has neighbours on both sides. By the mean value
    theorem the secants to them have slopes ``left = f'(a)`` and ``right = f'(b)`` with
    ``a < x < b``, so wherever the derivative is monotone over the three points, ``f'(x)``
    lies between them, and ``|backward - f'(x)| <= |backward - left| + |backward - right|``.
    A point passes when that bound, plus the rounding of the secants, is within half of
    the gradient tolerance: a pass implies the central-difference test would pass too. Everything
    else (grid ends, kinks, coarse stretches, non-finite values) goes to that test. No call
    of the target: a dozen vectorised PyTorch operations per block, on torch's threads, in
    block-sized buffers, which read the reciprocal gaps ``spacing()`` gives
    (:func:`gradaudit.engine.inputs.spacing` of ``x``, cached with the probe). The verdicts go to ``out`` (a bool buffer like ``x``) when given.
    """
    passed = torch.empty(x.numel(), dtype=torch.bool) if out is None else out
    if y.dtype != torch.float64 or analytic.dtype != torch.float64 or x.numel() < 3:
        return passed.fill_(False)  # its rounding bound assumes float64 values (a dtype drift is judged elsewhere)
    passed[0] = passed[-1] = False  # the ends lack a neighbour; the blocks below write the rest
    whole_spacing = functools.cache(spacing if spacing is not None else lambda: inputs.spacing(x))
    scratch = functools.cache(lambda: scratch_buffers(min(SCREEN_BLOCK, x.numel() - 2)))
    for start in range(1, x.numel() - 1, SCREEN_BLOCK):
        stop = min(start + SCREEN_BLOCK, x.numel() - 1)  # inner points start..stop-1
        screen_block(x[start - 1 : stop + 1], y[start - 1 : stop + 1], analytic[start:stop], passed[start:stop],
                      functools.partial(spacing_of_block, whole_spacing, start - 1, stop + 1), scratch)
    return passed


def spacing_of_block(spacing: Callable[[], tuple[torch.Tensor, torch.Tensor]], start: int,
                      stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reciprocal gaps of the probe's points ``start..stop-1`` from the whole probe's."""
    inverse_step, inverse_shorter = spacing()
    return inverse_step[start : stop - 1], inverse_shorter[start : stop - 2]


def scratch_buffers(points: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Work buffers for :func:`screen_block` of up to ``points`` inner points."""
    return (torch.empty(points + 1, dtype=torch.float64), torch.empty(points, dtype=torch.float64),
            torch.empty(points, dtype=torch.float64))


def screen_block(x: torch.Tensor, y: torch.Tensor, analytic: torch.Tensor, out: torch.Tensor,
                  spacing: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                  scratch: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """:func:`screen` for the inner points of ``x`` (with one more on each side; ``y`` the
    values there), into ``out``, in PyTorch operations with the reciprocal gaps ``spacing()``
    gives, in the buffers ``scratch()`` gives."""
    inverse_step, inverse_shorter = spacing()
    m = analytic.numel()
    slope, bound, term = (buffer[: m + 1 if i == 0 else m] for i, buffer in enumerate(scratch()))
    torch.sub(y[1:], y[:-1], out=slope).mul_(inverse_step)
    left, right = slope[:-1], slope[1:]
    torch.sub(analytic, left, out=bound).abs_()
    bound.add_(torch.sub(analytic, right, out=term).abs_())
    # the secants' rounding: a few ulps of the value over the shorter step
    bound.addcmul_(torch.abs(y[1:-1], out=term), inverse_shorter, value=4 * EPS64)
    bound.sub_(torch.abs(left, out=term), alpha=RTOL / 2)
    # strictly less: an infinite secant (an overflowing neighbour) makes the bound infinite
    # too, and inf < inf fails; NaN fails any comparison
    torch.lt(bound, ATOL / 2, out=out)
