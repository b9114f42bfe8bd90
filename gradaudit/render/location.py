"""Where a finding points in the user's source, for formats that annotate files."""
from __future__ import annotations

import os
from typing import Any

from ..model.report import Finding, Report


def finding_location(report: Report, finding: Finding) -> dict[str, Any] | None:
    """``{"path", "line"}`` of the finding, else of the target, else the target's file.

    A target that could not be imported still has a file when it was named as
    ``path/to/file.py:attr``; its line is then unknown (None).
    """
    location = finding.location or report.location
    if location and location.get("path"):
        return location
    module = report.target.rpartition(":")[0] or report.target
    if module.endswith(".py") and os.path.isfile(module):
        return {"path": module, "line": None}
    return None


def level(status: str) -> str:
    """The annotation level of a finding status: ``error``, ``warning`` or ``note``."""
    return {"error": "error", "fail": "error", "warn": "warning"}.get(status, "note")


def shown(report: Report, verbose: bool) -> list[Finding]:
    """The findings a format reports: info findings only when verbose, like the table."""
    return [f for f in report.findings if verbose or f.status != "info"]
