"""Markdown for pull-request comments: a summary table, then a table of findings."""
from __future__ import annotations

from typing import Any

from ..model.report import Report, worst_status
from .location import dtype_text, finding_location, shown, verbosity_of


def _cell(text: object) -> str:
    """Table-safe text: no pipes or line breaks break the row."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")


def _where(report: Report, finding: object) -> str:
    location = finding_location(report, finding)  # type: ignore[arg-type]
    if not location:
        return ""
    return f"`{location['path']}:{location['line']}`" if location.get("line") else f"`{location['path']}`"


def render_markdown(reports: list[Report], verbose: bool = False, **extra: Any) -> str:
    """Summary and findings tables; ``verbosity`` 1 adds info findings, ``show_suppressed`` the
    silenced ones (marked), -1 leaves out the messages."""
    verbosity = verbosity_of(verbose, extra)
    overall = worst_status([r.status for r in reports])
    lines = [f"### gradaudit: {len(reports)} target(s), overall **{overall}**", ""]
    lines += ["| target | status | fail | warn | info |", "|---|---|---:|---:|---:|"]
    for report in reports:
        counts = report.counts()
        lines.append(f"| `{_cell(report.target)}` | **{report.status}** | {counts['error'] + counts['fail']} "
                     f"| {counts['warn']} | {counts['info']} |")
    findings = [(r, f) for r in reports for f in shown(r, verbosity, bool(extra.get("show_suppressed")))]
    if findings:
        lines += ["", "| target | code | check | status | dtype | where | message |", "|---|---|---|---|---|---|---|"]
        for report, finding in findings:
            lines.append(
                f"| `{_cell(report.target)}` | {finding.code} | {finding.check} | {finding.status}"
                f"{' (suppressed)' if finding.suppressed else ''} | {_cell(dtype_text(finding))} "
                f"| {_where(report, finding)} | {_cell(finding.message) if verbosity >= 0 else ''} |")
    return "\n".join(lines) + "\n"
