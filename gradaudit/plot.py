"""``gradaudit plot``: the function, its derivatives, kinks, -0.0 regions and non-finite points."""
from __future__ import annotations

import math
from typing import Any

import torch

from .checks import catalogue
from .core import run_audit
from .engine.calling import CallError
from .engine.context import AuditContext
from .engine.numerics import numerical_derivative
from .engine.options import Options
from .model.report import Report
from .targets.types import Target

PLOT_POINTS = 2001


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PlotUnavailable("gradaudit plot needs matplotlib: pip install 'gradaudit[plot]'") from exc
    return plt


def plot_range(options: Options, kinks: list[float]) -> tuple[float, float]:
    """[-10, 10] widened to show every kink, clipped to the domain."""
    lo, hi = -10.0, 10.0
    if kinks:
        lo, hi = min(lo, min(kinks) - 1.0), max(hi, max(kinks) + 1.0)
    if options.domain is not None:
        lo, hi = max(lo, options.domain[0]), min(hi, options.domain[1])
    return lo, hi


def _clip(intervals: list[list[float]], lo: float, hi: float) -> list[tuple[float, float]]:
    return [(max(a, lo), min(b, hi)) for a, b in intervals if b >= lo and a <= hi]


def plot_target(target: Target, options: Options, path: str) -> dict[str, Any]:
    """Audit ``target``, draw the picture to ``path`` (PNG, SVG or PDF by extension), and
    return what was drawn: kink locations, shaded -0.0 intervals, non-finite point count."""
    plt = _matplotlib()
    report: Report = run_audit(target, options)
    context = AuditContext(target, options)
    context.evaluate(torch.float64)
    kinks = [k for k in context.kinks] if context.elementwise else []
    lo, hi = plot_range(options, [k.location for k in kinks])
    x = torch.linspace(lo, hi, PLOT_POINTS, dtype=torch.float64)
    x = torch.unique(torch.cat([x, torch.tensor([k.location for k in kinks], dtype=torch.float64)]))
    try:
        y = context.values64(x)
        analytic = context.grads64(x)
    except CallError as exc:
        raise CallError(f"{target.name}: cannot be plotted: {exc}") from exc
    numeric = numerical_derivative(context, x, y)["central"] if context.elementwise else None

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 7), constrained_layout=True)
    top.plot(x.numpy(), y.numpy(), color="C0", label="f(x)")
    bottom.plot(x.numpy(), analytic.numpy(), color="C1", label="backward (analytic)")
    if numeric is not None:
        bottom.plot(x.numpy(), numeric.numpy(), color="C2", linestyle="--", label="central differences")

    drawn_kinks = []
    for kink in kinks:
        for axis in (top, bottom):
            axis.axvline(kink.location, color="grey", linestyle=":", linewidth=1)
        if kink.kind == "kink":
            at = float(context.values64(torch.tensor([kink.location], dtype=torch.float64))[0])
            top.plot([kink.location], [at], "o", color="k")
            bottom.plot([kink.location], [kink.left], "<", color="C3", markersize=8, label="left derivative")
            bottom.plot([kink.location], [kink.right], ">", color="C4", markersize=8, label="right derivative")
            implemented = float(context.grads64(torch.tensor([kink.location], dtype=torch.float64))[0])
            bottom.plot([kink.location], [implemented], "o", color="k", markersize=5, label="gradient at the kink")
            bottom.annotate(f"x={kink.location:g}\nL={kink.left:.3g} R={kink.right:.3g}", (kink.location, implemented),
                            textcoords="offset points", xytext=(6, 6), fontsize=8)
        else:
            top.annotate(f"jump at {kink.location:g}", (kink.location, kink.right_value),
                         textcoords="offset points", xytext=(6, 6), fontsize=8)
        drawn_kinks.append(kink.location)

    shaded = []
    signed_zero_phases = {code: check.blame[1] for code, check in catalogue().items()
                          if check.blame is not None and check.blame[0] == "negative-zero"}
    for finding in report.findings:
        details = finding.details or {}
        if finding.code in signed_zero_phases and details.get("kind") == "spurious":
            axis = top if signed_zero_phases[finding.code] == "forward" else bottom
            for a, b in _clip(details.get("intervals", []), lo, hi):
                axis.axvspan(a, b, color="C3", alpha=0.12, label=f"creates -0.0 ({finding.code})")
                shaded.append((a, b))

    bad = ~torch.isfinite(y) | ~torch.isfinite(analytic)
    for axis, values in ((top, y), (bottom, analytic)):
        finite = values[torch.isfinite(values)]
        floor = float(finite.min()) if finite.numel() else 0.0
        marks = x[~torch.isfinite(values)]
        if marks.numel():
            axis.plot(marks.numpy(), [floor] * marks.numel(), "x", color="red", label="non-finite")

    top.set_title(f"{target.name}: {report.status}")
    top.set_ylabel("f(x)")
    bottom.set_ylabel("df/dx")
    bottom.set_xlabel("x (float64)")
    for axis in (top, bottom):
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        if unique:
            axis.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
        axis.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return {"kinks": drawn_kinks, "spurious": shaded, "nonfinite": int(bad.sum()), "status": report.status,
            "range": (lo, hi), "finite_range": all(math.isfinite(v) for v in (lo, hi))}
