"""GitHub Actions workflow commands: one annotation per finding on the file and line.

``::error file=acts.py,line=12,title=GA203 signed-zero-output::message``; fail and error
are ``error``, warn is ``warning``, info (with -v) is ``notice``. See GitHub's "Workflow
commands for GitHub Actions".
"""
from __future__ import annotations

import os
from typing import Any

from ..model.report import Report, worst_status
from .location import finding_location, level, shown, verbosity_of

COMMAND = {"error": "error", "warning": "warning", "note": "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(reports: list[Report], verbose: bool = False, **extra: Any) -> str:
    """Annotations; under GitHub Actions (``GITHUB_STEP_SUMMARY`` names a file) the Markdown
    report is also appended to the job summary."""
    verbosity = verbosity_of(verbose, extra)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        from .markdown import render_markdown

        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(render_markdown(reports, verbose, **extra))
    lines = []
    for report in reports:
        for finding in shown(report, verbosity, bool(extra.get("show_suppressed"))):
            properties = []
            location = finding_location(report, finding)
            if location:
                properties.append(f"file={_escape_property(str(location['path']))}")
                if location.get("line"):
                    properties.append(f"line={int(location['line'])}")
            title = f"{finding.code} {finding.check} ({report.target})" + (" [suppressed]" if finding.suppressed else "")
            properties.append(f"title={_escape_property(title)}")
            command = COMMAND[level(finding.status)]
            lines.append(f"::{command} {','.join(properties)}::{_escape_data(finding.message)}")
    overall = worst_status([r.status for r in reports])
    lines.append(f"gradaudit: {len(reports)} target(s), overall {overall}")
    return "\n".join(lines) + "\n"
