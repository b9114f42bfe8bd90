"""Findings and per-target reports: the data every front end renders."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUS_ORDER = {"pass": 0, "info": 0, "warn": 1, "fail": 2, "error": 3}
"""Severity of a finding or target status; ``info`` counts as ``pass``."""


def worst_status(statuses: list[str]) -> str:
    """The most severe of ``statuses`` as a target status (``info`` becomes ``pass``)."""
    worst = "pass"
    for status in statuses:
        if STATUS_ORDER[status] > STATUS_ORDER[worst]:
            worst = status
    return worst


@dataclass
class Finding:
    """One observation of one check about one target."""

    code: str
    status: str
    message: str
    dtype: str | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    location: dict[str, Any] | None = None
    details: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in ("info", "warn", "fail", "error"):
            raise ValueError(f"finding status must be info, warn, fail or error, not {self.status!r}")

    @property
    def check(self) -> str:
        """The check's slug, e.g. ``signed-zero-output``."""
        from .checks import catalogue

        return catalogue()[self.code].slug

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "check": self.check,
            "status": self.status,
            "message": self.message,
        }
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.examples:
            out["examples"] = self.examples
        if self.location is not None:
            out["location"] = self.location
        if self.details is not None:
            out["details"] = self.details
        return out


class AuditFailure(AssertionError):
    """Raised by :meth:`Report.raise_for_status`; its text is the rendered findings."""

    def __init__(self, message: str, report: "Report") -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Report:
    """The result of auditing one target."""

    target: str
    findings: list[Finding] = field(default_factory=list)
    location: dict[str, Any] | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per check code (its share of the cached evaluations included, in the order the
    checks ran), for profiling; not part of the JSON output."""

    @property
    def status(self) -> str:
        """``pass``, ``warn``, ``fail`` or ``error``: the worst finding."""
        return worst_status([f.status for f in self.findings])

    def counts(self) -> dict[str, int]:
        """Number of findings per status."""
        out = {"error": 0, "fail": 0, "warn": 0, "info": 0}
        for finding in self.findings:
            out[finding.status] += 1
        return out

    def codes(self, status: str | None = None) -> set[str]:
        """Codes of the findings, optionally only those with ``status``."""
        return {f.code for f in self.findings if status is None or f.status == status}

    def result_dict(self) -> dict[str, Any]:
        """This target's entry in the ``results`` list of the JSON output."""
        return {
            "target": self.target,
            "status": self.status,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of DESIGN.md for a run of this one target."""
        from .render.json import run_document

        return run_document([self])

    def raise_for_status(self, strict: bool = False) -> "Report":
        """Raise :class:`AuditFailure` on a fail or error (or a warn when ``strict``)."""
        limit = STATUS_ORDER["warn"] if strict else STATUS_ORDER["fail"]
        if STATUS_ORDER[self.status] >= limit:
            from .render.table import render_table

            raise AuditFailure(
                f"gradaudit: {self.target} is {self.status}\n" + render_table([self]), self
            )
        return self
