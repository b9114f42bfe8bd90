"""Plain-text output: a summary table, kink tables and findings grouped by target."""
from __future__ import annotations

import textwrap
from typing import Any

from tabulate import tabulate

from ..model.numbers import number
from ..model.report import Report, worst_status

WIDTH = 100


def summary_table(reports: list[Report]) -> str:
    rows = []
    for report in reports:
        counts = report.counts()
        rows.append([report.target, report.status, counts["error"] + counts["fail"], counts["warn"],
                     counts["info"], f"{report.seconds:.2f}"])
    return tabulate(rows, headers=["target", "status", "fail", "warn", "info", "seconds"], tablefmt="simple")


KINK_ROW = ("location", "left", "right", "verdict")
"""The details a finding about one kink or jump carries: such findings make the kink table."""


def kink_table(report: Report) -> str | None:
    rows = []
    for finding in report.findings:
        details = finding.details or {}
        if not all(key in details for key in KINK_ROW):
            continue
        implemented = details.get("implemented", {})
        shown = implemented.get("float64", {}).get("alone")
        others = sorted({number(v["alone"]) for k, v in implemented.items() if k != "float64" and "alone" in v}
                        - ({number(shown)} if shown is not None else set()))
        rows.append([
            number(details["location"]), details.get("kind", "kink"), number(details["left"]), number(details["right"]),
            (number(shown) if shown is not None else "-") + (f" ({', '.join(others)} in other dtypes)" if others else ""),
            details.get("convention") or "", details["verdict"],
        ])
    if not rows:
        return None
    return tabulate(rows, headers=["x", "kind", "left", "right", "gradient", "convention", "verdict"], tablefmt="simple")


def findings_block(report: Report, verbose: bool) -> str:
    lines = []
    shown = [f for f in report.findings if verbose or f.status != "info"]
    hidden = len(report.findings) - len(shown)
    for finding in shown:
        where = ""
        if finding.location:
            where = f" [{finding.location.get('path')}:{finding.location.get('line')}]"
        head = (f"  {finding.code} {finding.check} {finding.status}" + (f" ({finding.dtype})" if finding.dtype else "")
                + (f" input {finding.input}" if finding.input else "") + where)
        lines.append(head)
        lines.append(textwrap.fill(finding.message, WIDTH, initial_indent="      ", subsequent_indent="      "))
        if verbose and finding.details and "traceback" in finding.details:
            lines.append(textwrap.indent(finding.details["traceback"].rstrip(), "      | "))
    if hidden:
        lines.append(f"  ({hidden} info finding(s) not shown; -v shows them)")
    return "\n".join(lines)


def render_table(reports: list[Report], verbose: bool = False, **_: Any) -> str:
    parts = [summary_table(reports)]
    for report in reports:
        kinks = kink_table(report)
        block = findings_block(report, verbose)
        if not block and not kinks:
            continue
        parts.append(f"\n{report.target}: {report.status}")
        if kinks:
            parts.append(textwrap.indent(kinks, "  "))
        if block:
            parts.append(block)
    overall = worst_status([r.status for r in reports])
    parts.append(f"\ngradaudit: {len(reports)} target(s), overall {overall}")
    return "\n".join(parts) + "\n"
