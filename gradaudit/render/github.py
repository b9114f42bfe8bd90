"""GitHub Actions workflow commands: one annotation per finding on the file and line.

``::error file=acts.py,line=12,title=GA203 signed-zero-output::message``; fail and error
are ``error``, warn is ``warning``, info (with -v) is ``notice``. See GitHub's "Workflow
commands for GitHub Actions".
"""
from __future__ import annotations

from typing import Any

from ..model.report import Report, worst_status
from .location import finding_location, level, shown

COMMAND = {"error": "error", "warning": "warning", "note": "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(reports: list[Report], verbose: bool = False, **_: Any) -> str:
    lines = []
    for report in reports:
        for finding in shown(report, verbose):
            properties = []
            location = finding_location(report, finding)
            if location:
                properties.append(f"file={_escape_property(str(location['path']))}")
                if location.get("line"):
                    properties.append(f"line={int(location['line'])}")
            properties.append(f"title={_escape_property(f'{finding.code} {finding.check} ({report.target})')}")
            command = COMMAND[level(finding.status)]
            lines.append(f"::{command} {','.join(properties)}::{_escape_data(finding.message)}")
    overall = worst_status([r.status for r in reports])
    lines.append(f"gradaudit: {len(reports)} target(s), overall {overall}")
    return "\n".join(lines) + "\n"
