"""Where a finding points in the user's source, and which findings a format shows."""
from __future__ import annotations

import os
from typing import Any

from ..model.report import Finding, Report

QUIET, DEFAULT, VERBOSE = -1, 0, 1
"""Verbosity levels every renderer takes as ``verbosity=`` (``-q``, default, ``-v``)."""


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


def verbosity_of(verbose: bool, extra: dict[str, Any]) -> int:
    """The verbosity a renderer was asked for: ``verbosity=`` (-1, 0, 1) if given, else from ``verbose``."""
    given = extra.get("verbosity")
    if given is None:
        return VERBOSE if verbose else DEFAULT
    return max(QUIET, min(VERBOSE, int(given)))


def shown(report: Report, verbose: bool | int, show_suppressed: bool = False) -> list[Finding]:
    """The findings a format reports: info findings only when verbose (``verbose`` True or a
    verbosity of 1), suppressed ones only when ``show_suppressed``."""
    return [f for f in report.findings
            if (verbose is True or (verbose is not False and verbose >= VERBOSE) or f.status != "info")
            and (show_suppressed or not f.suppressed)]


def dtype_text(finding: Finding) -> str:
    """``float32``, ``float32 and float16``, ``float32, float16 and bfloat16``, or ""."""
    dtypes = finding.all_dtypes
    if len(dtypes) <= 1:
        return dtypes[0] if dtypes else ""
    return f"{', '.join(dtypes[:-1])} and {dtypes[-1]}"
