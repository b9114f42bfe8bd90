"""Numbers as text: short, exact enough, and with the sign of zero kept."""
from __future__ import annotations

import math


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

