"""``gradaudit plot``: the function and its derivatives over a range, in a dtype, with what the
audit found drawn where it found it: kinks, -0.0 regions, the inputs where GA101 failed, where
GA201/GA202 found NaN or inf, and where a lower dtype overflowed (GA201/GA202/GA403 below
float64). The y-range follows the bulk of the curve: values beyond it (a huge gradient at a
kink) are clipped to the axis and marked, so one value does not flatten the picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .checks import catalogue
from .core import run_audit
from .engine.calling import CallError
from .engine.context import AuditContext
from .engine.numerics import numerical_derivative
from .engine.options import Options
from .engine.sections import elementwise_partners, section
from .model.report import Finding, Report
from .targets.types import Target

PLOT_POINTS = 2001
DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
Y_QUANTILES = (0.01, 0.99)
"""The y-range is the span of these quantiles of the finite values, with a margin; what lies
beyond is clipped to the axis and marked."""
Y_MARGIN = 0.15
NONFINITE_CODES = ("GA201", "GA202")
LOWER_DTYPE_CODES = ("GA201", "GA202", "GA403")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed, or the target cannot be drawn as curves over x."""


def _matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PlotUnavailable("gradaudit plot needs matplotlib: pip install 'gradaudit[plot]'") from exc
    return plt


def plot_range(options: Options, kinks: list[float], given: tuple[float, float] | None = None) -> tuple[float, float]:
    """``given`` (``--range LO HI``) or [-10, 10] widened to show every kink; clipped to the domain."""
    if given is not None:
        lo, hi = float(given[0]), float(given[1])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"--range {lo:g} {hi:g}: give two finite numbers LO < HI")
    else:
        lo, hi = -10.0, 10.0
        if kinks:
            lo, hi = min(lo, min(kinks) - 1.0), max(hi, max(kinks) + 1.0)
    if options.domain is not None:
        lo, hi = max(lo, options.domain[0]), min(hi, options.domain[1])
        if not lo < hi:
            raise ValueError(f"the range does not meet the domain [{options.domain[0]:g}, {options.domain[1]:g}]")
    return lo, hi


def _clip(intervals: list[list[float]], lo: float, hi: float) -> list[tuple[float, float]]:
    return [(max(a, lo), min(b, hi)) for a, b in intervals if b >= lo and a <= hi]


FLAT = 1e-9
"""A curve whose values all lie within this fraction of their magnitude is flat: its axis shows
the value with room around it, not the rounding between its points magnified."""


def y_limits(values: torch.Tensor) -> tuple[float, float] | None:
    """The y-range of the bulk of ``values``: the span of :data:`Y_QUANTILES` of the finite
    ones with a margin, widened to the full span when nothing lies far beyond it; a flat curve
    gets half its magnitude (at least 0.5) either side. None when no value is finite."""
    finite = values[torch.isfinite(values)].to(torch.float64)
    if not finite.numel():
        return None
    low, high = (float(q) for q in torch.quantile(finite, torch.tensor(Y_QUANTILES, dtype=torch.float64)))
    full_low, full_high = float(finite.min()), float(finite.max())
    if full_high - full_low <= FLAT * max(abs(full_low), abs(full_high), 1.0):  # a flat curve, up to rounding
        middle = (full_low + full_high) / 2
        half = 0.5 * max(abs(middle), 1.0)
        return middle - half, middle + half
    span = max(high - low, 1e-12 * max(abs(low), abs(high), 1.0), 1e-300)
    low, high = low - Y_MARGIN * span, high + Y_MARGIN * span
    if full_low >= low - span:  # nothing far below: show it all
        low = min(low, full_low - Y_MARGIN * 0.2 * span)
    if full_high <= high + span:
        high = max(high, full_high + Y_MARGIN * 0.2 * span)
    return low, high


@dataclass
class Section:
    """One curve's x: the points, and how the target is called along them. A target with
    several inputs gets one section per elementwise input, the others held fixed."""

    label: str
    x: torch.Tensor
    values: Callable[[torch.Tensor], torch.Tensor]
    grads: Callable[[torch.Tensor], torch.Tensor]
    context: AuditContext | None = None
    kinks: list[Any] | None = None


def sections(context: AuditContext, lo: float, hi: float, dtype: torch.dtype, kinks: list[Any]) -> list[Section]:
    """The sections to draw: x over [lo, hi] (kinks included), and for a target with elementwise
    partners one section along each partner with x (and the others) held at 1."""
    found = [_section("x" if not context.binding.several else "x (others = 1)", context, lo, hi, dtype, kinks)]
    for partner in elementwise_partners(context):
        along = section(context, partner.name, {"x": 1.0})
        along.evaluate(torch.float64)
        partner_kinks = list(along.kinks) if along.elementwise else []
        found.append(_section(f"{partner.name} (x = 1)", along, lo, hi, dtype, partner_kinks))
    return found


def _section(label: str, context: AuditContext, lo: float, hi: float, dtype: torch.dtype, kinks: list[Any]) -> Section:
    x = torch.linspace(lo, hi, PLOT_POINTS, dtype=torch.float64)
    inside = [k.location for k in kinks if lo <= k.location <= hi]
    x = torch.unique(torch.cat([x, torch.tensor(inside, dtype=torch.float64)]))

    def values(points: torch.Tensor) -> torch.Tensor:
        if dtype == torch.float64:
            return context.values64(points)
        with torch.no_grad():
            return context.call(points.to(dtype), dtype=dtype).detach().to(torch.float64)

    def grads(points: torch.Tensor) -> torch.Tensor:
        return context.grads64(points, dtype=dtype).to(torch.float64)

    return Section(label, x, values, grads, context, kinks)


def plot_target(target: Target, options: Options, path: str, *, x_range: tuple[float, float] | None = None,
                dtype: str = "float64") -> dict[str, Any]:
    """Audit ``target``, draw it in ``dtype`` over ``x_range`` to ``path`` (PNG, SVG or PDF by
    extension), and return what was drawn: kinks, shaded -0.0 intervals, non-finite points,
    clipped points, the inputs marked per code, the range and the dtype."""
    plt = _matplotlib()
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype}: choose from {', '.join(DTYPES)}")
    report: Report = run_audit(target, options)
    context = AuditContext(target, options)
    context.evaluate(torch.float64)
    kinks = list(context.kinks) if context.elementwise else []
    lo, hi = plot_range(options, [k.location for k in kinks], x_range)
    section, *others = sections(context, lo, hi, DTYPES[dtype], kinks)
    x = section.x
    try:
        y, analytic = section.values(x), section.grads(x)
    except CallError as exc:
        raise CallError(f"{target.name}: cannot be plotted: {exc}") from exc
    numeric = numerical_derivative(context, x, context.values64(x))["central"] if context.elementwise else None

    columns = 1 + len(others)
    figure, axes = plt.subplots(2, columns, sharex="col", figsize=(9 * columns, 7), constrained_layout=True,
                                squeeze=False)
    (top, bottom) = axes[0][0], axes[1][0]
    drawn_sections = [_draw_section(other, axes[0][k + 1], axes[1][k + 1], dtype, lo, hi)
                      for k, other in enumerate(others)]
    top.plot(x.numpy(), y.numpy(), color="C0", label=f"f(x) in {dtype}")
    bottom.plot(x.numpy(), analytic.numpy(), color="C1", label=f"backward in {dtype}")
    if numeric is not None:
        bottom.plot(x.numpy(), numeric.numpy(), color="C2", linestyle="--", label="central differences (float64)")
    limits = {id(top): y_limits(y), id(bottom): y_limits(torch.cat([analytic] + ([numeric] if numeric is not None else [])))}

    drawn_kinks = _draw_kinks(context, kinks, top, bottom, lo, hi, limits[id(bottom)])
    shaded = _draw_signed_zeros(report, top, bottom, lo, hi)
    marks = _draw_findings(report, top, bottom, lo, hi, limits)
    nonfinite = _draw_nonfinite(x, ((top, y), (bottom, analytic)), limits)
    clipped = 0
    for axis, values in ((top, y), (bottom, analytic)):
        clipped += _clip_axis(axis, x, values, limits[id(axis)])

    top.set_title(f"{target.name}: {report.status}  (plotted in {dtype}, x in [{lo:g}, {hi:g}])"
                  + (f", along {section.label}" if others else ""))
    top.set_ylabel("f(x)")
    bottom.set_ylabel("df/dx")
    bottom.set_xlabel(section.label if others else "x")
    for axis in [a for row in axes for a in row]:
        handles, labels = axis.get_legend_handles_labels()
        unique: dict[str, Any] = {}
        for label, handle in zip(labels, handles):
            unique.setdefault(label, handle)  # the first of a label: a span's patch before its ticks
        if unique:
            axis.legend(unique.values(), unique.keys(), fontsize=7, loc="best")
        axis.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return {"kinks": drawn_kinks, "spurious": shaded, "nonfinite": nonfinite, "status": report.status,
            "range": (lo, hi), "finite_range": all(math.isfinite(v) for v in (lo, hi)), "clipped": clipped,
            "marks": marks, "dtype": dtype, "ylim": {"f": limits[id(top)], "grad": limits[id(bottom)]},
            "sections": [section.label] + [other.label for other in others], "section_kinks": drawn_sections}


def _draw_section(section: Section, top: Any, bottom: Any, dtype: str, lo: float, hi: float) -> list[float]:
    """A section along another input: its curve, backward, central differences and kinks."""
    x = section.x
    y, analytic = section.values(x), section.grads(x)
    top.plot(x.numpy(), y.numpy(), color="C0", label=f"f in {dtype}")
    bottom.plot(x.numpy(), analytic.numpy(), color="C1", label=f"backward in {dtype}")
    context = section.context
    if context is not None and context.elementwise:
        numeric = numerical_derivative(context, x, context.values64(x))["central"]
        bottom.plot(x.numpy(), numeric.numpy(), color="C2", linestyle="--", label="central differences (float64)")
    kinks = [k.location for k in section.kinks or [] if lo <= k.location <= hi]
    for location in kinks:
        for axis in (top, bottom):
            axis.axvline(location, color="0.5", linestyle=":", label="kink")
    for axis, values in ((top, y), (bottom, analytic)):
        limit = y_limits(values)
        if limit is not None:
            axis.set_ylim(*limit)
    top.set_title(f"along {section.label}")
    bottom.set_xlabel(section.label)
    return kinks


def _draw_kinks(context: AuditContext, kinks: list[Any], top: Any, bottom: Any, lo: float, hi: float,
                limit: tuple[float, float] | None) -> list[float]:
    """Kinks (one-sided derivatives and the implemented gradient, held inside the gradient
    axis's y-range so that a huge one-sided derivative stays visible) and jumps."""

    def inside(value: float) -> float:
        if limit is None or not math.isfinite(value):
            return value if math.isfinite(value) else (limit[0] if limit else 0.0)
        return min(max(value, limit[0]), limit[1])

    drawn = []
    for kink in kinks:
        if not lo <= kink.location <= hi:
            continue
        for axis in (top, bottom):
            axis.axvline(kink.location, color="grey", linestyle=":", linewidth=1)
        if kink.kind == "kink":
            at = torch.tensor([kink.location], dtype=torch.float64)
            top.plot([kink.location], [float(context.values64(at)[0])], "o", color="k")
            bottom.plot([kink.location], [inside(kink.left)], "<", color="C3", markersize=8, label="left derivative")
            bottom.plot([kink.location], [inside(kink.right)], ">", color="C4", markersize=8, label="right derivative")
            implemented = float(context.grads64(at)[0])
            shown = inside(implemented)
            bottom.plot([kink.location], [shown], "o", color="k", markersize=5, label="gradient at the kink")
            bottom.annotate(f"x={kink.location:g}\nL={kink.left:.3g} R={kink.right:.3g} g={implemented:.3g}",
                            (kink.location, shown), textcoords="offset points", xytext=(6, 6), fontsize=7)
        else:
            top.annotate(f"jump at {kink.location:g}", (kink.location, kink.right_value),
                         textcoords="offset points", xytext=(6, 6), fontsize=7)
        drawn.append(kink.location)
    return drawn


def _draw_signed_zeros(report: Report, top: Any, bottom: Any, lo: float, hi: float) -> list[tuple[float, float]]:
    shaded = []
    phases = {code: check.blame[1] for code, check in catalogue().items()
              if check.blame is not None and check.blame[0] == "negative-zero"}
    for finding in report.findings:
        details = finding.details or {}
        if finding.code in phases and details.get("kind") == "spurious":
            axis = top if phases[finding.code] == "forward" else bottom
            for a, b in _clip(details.get("intervals", []), lo, hi):
                axis.axvspan(a, b, color="C3", alpha=0.10, label=f"creates -0.0 ({finding.code})")
                shaded.append((a, b))
    return shaded


def _finding_inputs(finding: Finding, lo: float, hi: float) -> list[float]:
    """The inputs a finding names (examples and ``inputs``) that lie in [lo, hi]."""
    details = finding.details or {}
    found = [e.get("input") for e in finding.examples or []] + list(details.get("inputs") or [])
    return sorted({float(v) for v in found if isinstance(v, (int, float)) and lo <= float(v) <= hi})


def _draw_findings(report: Report, top: Any, bottom: Any, lo: float, hi: float,
                   limits: dict[int, tuple[float, float] | None]) -> dict[str, int]:
    """Shade and mark where GA101 failed, where GA201/GA202 found NaN/inf (float64), and where
    a lower dtype overflowed; returns the number of intervals or inputs marked per code."""
    marks: dict[str, int] = {}
    for finding in report.findings:
        if finding.status not in ("fail", "warn"):
            continue
        dtype = finding.dtype or "float64"
        intervals = _clip((finding.details or {}).get("intervals") or [], lo, hi)
        inputs = _finding_inputs(finding, lo, hi)
        if finding.code == "GA101":
            style, axis, label = dict(color="red", alpha=0.12, hatch="//"), bottom, "GA101: backward wrong"
        elif finding.code in NONFINITE_CODES and dtype == "float64":
            axis = top if finding.code == "GA201" else bottom
            style, label = dict(color="purple", alpha=0.10), f"{finding.code}: NaN/inf in float64"
        elif finding.code in LOWER_DTYPE_CODES and dtype != "float64":
            axis = top if finding.code == "GA201" or _about_output(finding) else bottom
            style, label = dict(color="orange", alpha=0.12), f"{finding.code}: {', '.join(_dtypes(finding))} overflows"
        else:
            continue
        for a, b in intervals:
            axis.axvspan(a, b, label=label, **style)
        limit = limits.get(id(axis))
        edge = limit[0] if limit else 0.0
        if inputs:
            axis.plot(inputs, [edge] * len(inputs), "|", color=style["color"], markersize=14, label=label)
        marks[finding.code] = marks.get(finding.code, 0) + len(intervals) + len(inputs)
    return marks


def _about_output(finding: Finding) -> bool:
    return any("output" in e for e in finding.examples or [])


def _dtypes(finding: Finding) -> list[str]:
    many = getattr(finding, "dtypes", None) or (finding.details or {}).get("dtypes")
    return list(many) if many else [finding.dtype or "float64"]


def _draw_nonfinite(x: torch.Tensor, curves: tuple[tuple[Any, torch.Tensor], ...],
                    limits: dict[int, tuple[float, float] | None]) -> int:
    """Mark the drawn points whose value is NaN or inf (in the plotted dtype) on the axis's floor."""
    bad = torch.zeros_like(x, dtype=torch.bool)
    for axis, values in curves:
        where = ~torch.isfinite(values)
        bad |= where
        if where.any():
            limit = limits.get(id(axis))
            floor = limit[0] if limit else 0.0
            axis.plot(x[where].numpy(), [floor] * int(where.sum()), "x", color="red", markersize=4,
                      label="NaN/inf in the plotted dtype")
    return int(bad.sum())


def _clip_axis(axis: Any, x: torch.Tensor, values: torch.Tensor, limit: tuple[float, float] | None) -> int:
    """Set the axis's y-range and mark the finite values beyond it on its edges; their count."""
    if limit is None:
        return 0
    low, high = limit
    axis.set_ylim(low, high)
    finite = torch.isfinite(values)
    above, below = finite & (values > high), finite & (values < low)
    for mask, edge, marker in ((above, high, "^"), (below, low, "v")):
        if mask.any():
            axis.plot(x[mask].numpy(), [edge] * int(mask.sum()), marker, color="k", markersize=6, clip_on=False,
                      label="clipped: value beyond the axis")
            peak = values[mask].abs().max()
            axis.annotate(f"|value| up to {float(peak):.3g}", (float(x[mask][0]), edge), textcoords="offset points",
                          xytext=(4, -10 if marker == "^" else 4), fontsize=7)
    return int(above.sum() + below.sum())
