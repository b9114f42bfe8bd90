"""SARIF 2.1.0, for GitHub code scanning and other static-analysis viewers.

One rule per check code, with the catalogue's explanation, example and fix as its help;
one result per reported finding, located at the finding's (or else the target's) source
file and line. Relative paths are relative to ``%SRCROOT%``, the working directory.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterable

from ..model.check import Check
from ..model.codes import SLUGS
from ..model.report import Report, json_safe
from ..model.version import __version__
from .location import finding_location, level, shown

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _rules(checks: Iterable[Check], reports: list[Report]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One rule per check of ``checks`` (the registry's metadata, given by the front end), or,
    for a saved report rendered without it, per code the findings use."""
    checks = list(checks) or [Check(code, SLUGS.get(code, code.lower()), "", "", "", "")
                              for code in sorted({f.code for r in reports for f in r.findings})]
    rules, index = [], {}
    for position, check in enumerate(checks):
        index[check.code] = position
        help_text = f"{check.explanation}\n\nExample: {check.example}\n\nFix: {check.fix}" if check.example \
            else f"{check.explanation}\n\nFix: {check.fix}"
        rules.append({
            "id": check.code,
            "name": check.slug,
            "shortDescription": {"text": check.summary},
            "fullDescription": {"text": check.explanation},
            "help": {"text": help_text},
            "defaultConfiguration": {"level": level((check.status or "warn").split()[0])},
            "properties": {"status": check.status},
        })
    return rules, index


def _artifact(path: str) -> dict[str, Any]:
    if os.path.isabs(path):
        return {"uri": pathlib.Path(path).as_uri()}
    return {"uri": pathlib.PurePath(path).as_posix(), "uriBaseId": "%SRCROOT%"}


def _result(report: Report, finding: Any, rule_index: dict[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.code,
        "ruleIndex": rule_index[finding.code],
        "level": level(finding.status),
        "message": {"text": finding.message},
        "properties": {"target": report.target, "status": finding.status},
    }
    if finding.dtype:
        result["properties"]["dtype"] = finding.dtype
    location = finding_location(report, finding)
    if location:
        physical: dict[str, Any] = {"artifactLocation": _artifact(location["path"])}
        if location.get("line"):
            physical["region"] = {"startLine": int(location["line"])}
        result["locations"] = [{"physicalLocation": physical}]
    return result


def sarif_document(reports: list[Report], verbose: bool = False, checks: Iterable[Check] = ()) -> dict[str, Any]:
    rules, rule_index = _rules(checks, reports)
    results = [_result(r, f, rule_index) for r in reports for f in shown(r, verbose)]
    run = {
        "tool": {"driver": {"name": "gradaudit", "version": __version__, "semanticVersion": __version__,
                            "rules": rules}},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": pathlib.Path(os.getcwd()).as_uri() + "/"}},
        "results": results,
        "properties": {"targets": [{"target": r.target, "status": r.status} for r in reports]},
    }
    return json_safe({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]})


def render_sarif(reports: list[Report], verbose: bool = False, checks: Iterable[Check] = (), **_: Any) -> str:
    return json.dumps(sarif_document(reports, verbose, checks), indent=2, allow_nan=False) + "\n"
