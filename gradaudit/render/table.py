"""Plain-text output: a summary table, then what needs attention, one line per finding.

Three levels (``verbosity``): quiet (-1) prints the summary table and one line per warn/fail;
the default (0) adds each warn/fail's message and the kink tables of the targets that have
one, and ends with one line counting what it did not show; verbose (1) shows everything,
info findings, what each further dtype of a merged finding said, and tracebacks. A finding is
one line, ``path:line: CODE slug status in DTYPES: message``, as ruff, flake8 and mypy print
theirs (a terminal wraps it; grep finds it).
"""
from __future__ import annotations

import textwrap
from typing import Any

from tabulate import tabulate

from ..model.grouping import KINK_ROW, is_kink_row
from ..model.numbers import number
from ..model.report import Finding, Report, worst_status
from .location import DEFAULT, QUIET, VERBOSE, dtype_text, finding_location, verbosity_of

__all__ = ["KINK_ROW", "render_table", "failure_text", "cli_addressable", "summary_table", "kink_table"]


def summary_table(reports: list[Report]) -> str:
    rows = []
    for report in reports:
        counts = report.counts()
        rows.append([report.target, report.status, counts["error"] + counts["fail"], counts["warn"],
                     counts["info"], f"{report.seconds:.2f}"])
    return tabulate(rows, headers=["target", "status", "fail", "warn", "info", "seconds"], tablefmt="simple")


def kink_table(report: Report) -> str | None:
    """The kinks and jumps of a report; for a target with several inputs, with the input each
    lies along and the values the other inputs held (``details["input"]``, ``details["others"]``)."""
    rows = []
    several = any("input" in (f.details or {}) for f in report.findings if is_kink_row(f))
    for finding in report.findings:
        if not is_kink_row(finding) or finding.suppressed:
            continue
        details = finding.details or {}
        implemented = details.get("implemented", {})
        shown = implemented.get("float64", {}).get("alone")
        others = sorted({number(v["alone"]) for k, v in implemented.items() if k != "float64" and "alone" in v}
                        - ({number(shown)} if shown is not None else set()))
        held = ", ".join(f"{name} = {number(value)}" for name, value in (details.get("others") or {}).items())
        rows.append([
            *([details.get("input", "x"), held or "-"] if several else []),
            number(details["location"]), details.get("kind", "kink"), number(details["left"]), number(details["right"]),
            (number(shown) if shown is not None else "-") + (f" ({', '.join(others)} in other dtypes)" if others else ""),
            details.get("convention") or "", details["verdict"],
        ])
    if not rows:
        return None
    headers = ["at", "kind", "left", "right", "gradient", "convention", "verdict"]
    return tabulate(rows, headers=(["along", "others held at"] + headers) if several else ["x"] + headers[1:],
                    tablefmt="simple")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def finding_head(report: Report, finding: Finding) -> str:
    """``path:line: GA203 signed-zero-output warn in float32 and float16 (input gate)``."""
    location = finding_location(report, finding)
    where = ""
    if location:
        where = f"{location['path']}:{location['line']}: " if location.get("line") else f"{location['path']}: "
    dtypes = dtype_text(finding)
    return (f"{where}{finding.code} {finding.check} {finding.status}" + (f" in {dtypes}" if dtypes else "")
            + (f" (input {finding.input})" if finding.input else "") + (" [suppressed]" if finding.suppressed else ""))


def _finding_lines(report: Report, finding: Finding, verbosity: int) -> list[str]:
    head = finding_head(report, finding)
    if verbosity <= QUIET:
        return [f"{head} ({report.target})"]
    lines = [f"  {head}: {_one_line(finding.message)}"]
    details = finding.details or {}
    if finding.suppressed and details.get("suppression"):
        lines.append(f"      suppressed: {details['suppression'].get('reason') or '(no reason given)'}")
    if verbosity >= VERBOSE:
        for dtype, other in (details.get("per_dtype") or {}).items():
            lines.append(f"      in {dtype}: {_one_line(other.get('message', ''))}")
        if "traceback" in details:
            lines.append(textwrap.indent(details["traceback"].rstrip(), "      | "))
    return lines


def _visible(finding: Finding, verbosity: int, show_suppressed: bool) -> bool:
    if finding.suppressed and not show_suppressed:
        return False
    if is_kink_row(finding) and finding.status == "info" and verbosity < VERBOSE:
        return False  # its row is in the kink table
    return finding.status != "info" or verbosity >= VERBOSE


def _not_shown(reports: list[Report], verbosity: int, show_suppressed: bool) -> dict[str, int]:
    counts = {"info finding(s)": 0, "suppressed finding(s)": 0}
    for report in reports:
        for finding in report.findings:
            if finding.suppressed:
                counts["suppressed finding(s)"] += not show_suppressed
            elif finding.status == "info" and not is_kink_row(finding) and verbosity < VERBOSE:
                counts["info finding(s)"] += 1
    return {name: count for name, count in counts.items() if count}


def _counts_line(hidden: dict[str, int], more: str, show_suppressed: bool) -> str:
    listed = ", ".join(f"{count} {name}" for name, count in hidden.items())
    hints = [more] if set(hidden) - {"suppressed finding(s)"} else []
    if "suppressed finding(s)" in hidden and not show_suppressed:
        hints.append("--show-suppressed lists the suppressed")
    return f"not shown: {listed}" + (f" ({'; '.join(hints)})" if hints else "")


def render_table(reports: list[Report], verbose: bool = False, **extra: Any) -> str:
    """The text report. ``extra``: ``verbosity`` (-1, 0, 1; else from ``verbose``),
    ``show_suppressed`` (list silenced findings) and ``more`` (the hint for what was not shown)."""
    verbosity = verbosity_of(verbose, extra)
    show_suppressed = bool(extra.get("show_suppressed"))
    parts = [summary_table(reports), ""]
    if verbosity <= QUIET:
        lines = [line for r in reports for f in r.findings if f.status != "info" and _visible(f, verbosity, show_suppressed)
                 for line in _finding_lines(r, f, verbosity)]
        parts.extend(lines)
    else:
        for report in reports:
            block = [line for f in report.findings if _visible(f, verbosity, show_suppressed)
                     for line in _finding_lines(report, f, verbosity)]
            kinks = kink_table(report)
            if not block and not kinks:
                continue
            parts.append(f"{report.target}: {report.status}")
            if kinks:
                parts.append(textwrap.indent(kinks, "  "))
            parts.extend(block)
        hidden = _not_shown(reports, verbosity, show_suppressed)
        if hidden:
            parts.append(_counts_line(hidden, str(extra.get("more") or "-v shows them"), show_suppressed))
    overall = worst_status([r.status for r in reports])
    parts.append(f"gradaudit: {len(reports)} target(s), overall {overall}")
    return "\n".join(parts) + "\n"


def cli_addressable(target: str) -> bool:
    """Whether ``gradaudit check TARGET`` can name this target: not a function local to another
    (``test_x:test_y.<locals>.inner``), a lambda, or an object named by its repr."""
    return bool(target) and not any(mark in target for mark in ("<", ">", "(", " "))


def failure_text(reports: list[Report], verbosity: int = DEFAULT, more: str | None = None) -> str:
    """The text of :meth:`Report.raise_for_status`'s exception: the default level, with a hint
    its reader can follow: ``more`` if given (the pytest plugin says ``pytest -v``), else the
    CLI command where every target is one the CLI can name, and the exception's report."""
    if more is None:
        names = [r.target for r in reports]
        command = f"`gradaudit check {' '.join(names)} -v` prints them, and " if all(map(cli_addressable, names)) else ""
        more = f"{command}AuditFailure.report.findings holds every one"
    return render_table(reports, verbosity=verbosity, more=more)
