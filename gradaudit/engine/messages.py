"""Helpers that turn masks over the sorted probe inputs into words: intervals and examples."""
from __future__ import annotations

import math

import torch

from ..model.numbers import number
from . import scans

__all__ = ["number", "flagged", "runs", "runs_of", "describe_intervals", "intervals", "example_index"]


def flagged(mask: torch.Tensor) -> torch.Tensor:
    """The sorted indices where a 1-D bool ``mask`` holds. The helpers here accept either
    form: a caller with several messages about one mask scans it once and passes indices."""
    if mask.dtype == torch.bool:
        return scans.indices(mask)
    return mask


def runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """``(start, end)`` index pairs (inclusive) of the runs of True in a 1-D mask (or of its indices)."""
    return runs_of(flagged(mask))


def runs_of(index: torch.Tensor) -> list[tuple[int, int]]:
    """``(start, end)`` pairs (inclusive) of the runs of consecutive integers in the sorted
    ``index``: the work follows the number of flagged elements, not the size of the probe."""
    if index.numel() == 0:
        return []
    breaks = torch.nonzero(torch.diff(index) != 1).flatten()
    starts = torch.cat([index[:1], index[breaks + 1]]).tolist()
    ends = torch.cat([index[breaks], index[-1:]]).tolist()
    return list(zip(starts, ends))


def describe_intervals(x: torch.Tensor, mask: torch.Tensor, limit: int = 4) -> str:
    """Words for the inputs of ``x`` (sorted ascending) where ``mask`` holds.

    Runs that reach the end of the probe range are written as half-lines ("x <= -3"),
    and the negative or positive half as a whole as "x < 0" / "x > 0".
    """
    x64 = x.detach().to(torch.float64)
    pieces = runs(mask)
    if not pieces:
        return "no inputs"
    n = x64.numel()

    def value(i: int) -> float:
        return float(x64[i]) if 0 <= i < n else math.nan

    # sorted: a run that starts at the first input and stops at the last negative one is x < 0
    last_negative = pieces[0][1] if value(pieces[0][1]) < 0 and not value(pieces[0][1] + 1) < 0 else -1
    first_positive = pieces[-1][0] if value(pieces[-1][0]) > 0 and not value(pieces[-1][0] - 1) > 0 else -1
    words = []
    for start, end in pieces[:limit]:
        lo, hi = float(x64[start]), float(x64[end])
        if start == 0 and end == last_negative:
            words.append("x < 0")
        elif start == first_positive and end == n - 1:
            words.append("x > 0")
        elif start == 0 and end == n - 1:
            words.append("every input")
        elif start == 0:
            words.append(f"x <= {number(hi)}")
        elif end == n - 1:
            words.append(f"x >= {number(lo)}")
        elif start == end:
            words.append(f"x = {number(lo)}")
        else:
            words.append(f"{number(lo)} <= x <= {number(hi)}")
    if len(pieces) > limit:
        words.append(f"and {len(pieces) - limit} more interval(s)")
    return ", ".join(words)


def intervals(x: torch.Tensor, mask: torch.Tensor, limit: int = 8) -> list[list[float]]:
    """The runs of ``mask`` as ``[lo, hi]`` input pairs, for JSON details."""
    x64 = x.detach().to(torch.float64)
    return [[float(x64[s]), float(x64[e])] for s, e in runs(mask)[:limit]]


def example_index(x: torch.Tensor, mask: torch.Tensor, near: float = 1.0) -> int:
    """The flagged index whose input is the most readable: magnitude closest to ``near``."""
    indices = flagged(mask)
    x64 = x.detach().to(torch.float64).index_select(0, indices)
    score = (x64.abs().clamp(min=1e-300).log() - math.log(near)).abs()
    score = torch.where(x64 == x64.round(), score - 1.0, score)  # prefer whole numbers
    return int(indices[int(torch.argmin(score))])
