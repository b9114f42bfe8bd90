"""SARIF 2.1.0, for GitHub code scanning and other static-analysis viewers.

One rule per check code, with the catalogue's explanation, example and fix as its help;
one result per reported finding, located at the finding's (or else the target's) source
file and line. Relative paths are relative to ``%SRCROOT%``, the working directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any, Iterable

from ..model.check import Check
from ..model.codes import SLUGS
from ..model.grouping import message_shape
from ..model.report import Report, json_safe
from ..model.version import __version__
from .location import finding_location, level, shown, verbosity_of

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
DOCS_URL = "https://pypi.org/project/gradaudit/"
"""Where the check table is read when the installed metadata names no project URL."""


def help_uri(code: str) -> str:
    """The README's check table: on the project's source/home URL from the installed metadata
    (``project_urls`` / ``url`` in setup.cfg), else :data:`DOCS_URL`."""
    try:
        from importlib.metadata import PackageNotFoundError, metadata

        meta = metadata("gradaudit")
        urls = [entry.split(",", 1)[1].strip() for entry in (meta.get_all("Project-URL") or []) if "," in entry]
        base = next((u for u in urls if "github" in u or "gitlab" in u), None) or meta.get("Home-page") or DOCS_URL
    except (ImportError, PackageNotFoundError):  # pragma: no cover
        base = DOCS_URL
    base = base if base and base != "UNKNOWN" else DOCS_URL
    return f"{base.rstrip('/')}#checks"


def fingerprint(report: Report, finding: Any) -> str:
    """Stable across runs and line moves: the target, code, kind, input, dtypes and the message
    with its figures blanked (no counts, intervals or line numbers)."""
    key = "|".join([report.target, finding.code, finding.kind or "", finding.input or "", ",".join(finding.all_dtypes),
                    message_shape(finding)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


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
            "helpUri": help_uri(check.code),
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
        "partialFingerprints": {"gradauditFinding/v1": fingerprint(report, finding)},
    }
    if finding.dtype:
        result["properties"]["dtype"] = finding.dtype
    if finding.dtypes:
        result["properties"]["dtypes"] = list(finding.dtypes)
    if finding.suppressed:
        reason = ((finding.details or {}).get("suppression") or {}).get("reason") or ""
        result["suppressions"] = [{"kind": "inSource", **({"justification": reason} if reason else {})}]
    location = finding_location(report, finding)
    if location:
        physical: dict[str, Any] = {"artifactLocation": _artifact(location["path"])}
        if location.get("line"):
            physical["region"] = {"startLine": int(location["line"])}
        result["locations"] = [{"physicalLocation": physical}]
    return result


def sarif_document(reports: list[Report], verbose: bool | int = False, checks: Iterable[Check] = ()) -> dict[str, Any]:
    """The SARIF log; suppressed findings are always results, with SARIF's own ``suppressions``
    (viewers hide them), so nothing silenced is lost."""
    rules, rule_index = _rules(checks, reports)
    results = [_result(r, f, rule_index) for r in reports for f in shown(r, verbose, show_suppressed=True)]
    run = {
        "tool": {"driver": {"name": "gradaudit", "version": __version__, "semanticVersion": __version__,
                            "rules": rules}},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": pathlib.Path(os.getcwd()).as_uri() + "/"}},
        "results": results,
        "properties": {"targets": [{"target": r.target, "status": r.status} for r in reports]},
    }
    return json_safe({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]})


def render_sarif(reports: list[Report], verbose: bool = False, checks: Iterable[Check] = (), **extra: Any) -> str:
    return json.dumps(sarif_document(reports, verbosity_of(verbose, extra), checks), indent=2, allow_nan=False) + "\n"
