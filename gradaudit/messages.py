"""Helpers that turn masks over the sorted probe inputs into words: intervals and examples."""
from __future__ import annotations

import math

import torch


def number(value: float) -> str:
    """A short, exact-enough rendering of a float that keeps the sign of zero."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == round(value) and abs(value) < 1e6:
        return f"{value:.1f}"
    return f"{value:.6g}"


def runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """``(start, end)`` index pairs (inclusive) of the runs of True in a 1-D mask."""
    flags = mask.to(torch.int8)
    if flags.numel() == 0:
        return []
    edges = torch.diff(flags, prepend=torch.zeros(1, dtype=torch.int8), append=torch.zeros(1, dtype=torch.int8))
    starts = torch.nonzero(edges == 1).flatten().tolist()
    ends = (torch.nonzero(edges == -1).flatten() - 1).tolist()
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
    negative = torch.nonzero((x64 < 0)).flatten()
    positive = torch.nonzero((x64 > 0)).flatten()
    last_negative = int(negative[-1]) if negative.numel() else -1
    first_positive = int(positive[0]) if positive.numel() else -1
    n = x64.numel()
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
    indices = torch.nonzero(mask).flatten()
    x64 = x.detach().to(torch.float64)[indices]
    score = (x64.abs().clamp(min=1e-300).log() - math.log(near)).abs()
    score = torch.where(x64 == x64.round(), score - 1.0, score)  # prefer whole numbers
    return int(indices[int(torch.argmin(score))])
