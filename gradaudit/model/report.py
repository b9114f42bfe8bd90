"""Findings and per-target reports: the data every front end renders.

Pure data: this module imports neither torch, nor the check registry, nor a renderer.
A finding's slug comes from :data:`gradaudit.model.codes.SLUGS`; the text of
:class:`AuditFailure` comes from the renderer installed with :func:`set_failure_renderer`
(``gradaudit.core`` installs the table renderer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .codes import SLUGS
from .version import __version__

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
    check: str = ""
    """The check's slug, e.g. ``signed-zero-output``; filled from the code when not given."""
    kind: str | None = None
    """Which of its check's messages this is (``spurious``, ``underflow``, ...): set by
    :meth:`gradaudit.model.check.Check.finding`; None for a finding built by hand."""
    input: str | None = None
    """The target's parameter the finding is about, for a target with several tensor inputs;
    None for the first input (DESIGN.md: only other inputs are named)."""
    dtypes: list[str] | None = None
    """Every dtype this one finding holds in, :attr:`dtype` first, when it holds in several
    (set by :func:`gradaudit.model.grouping.group_dtypes`); None for one dtype."""
    suppressed: bool = False
    """Silenced by a ``# gradaudit: ignore[CODE] reason`` comment at the target's definition:
    kept in the report (and the JSON, as ``"suppressed": true``) but never counted."""

    def __post_init__(self) -> None:
        if self.status not in ("info", "warn", "fail", "error"):
            raise ValueError(f"finding status must be info, warn, fail or error, not {self.status!r}")
        if not self.check:  # a finding built by hand: its slug from the code
            self.check = SLUGS.get(self.code, "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "check": self.check,
            "status": self.status,
            "message": self.message,
        }
        if self.kind is not None:
            out["kind"] = self.kind
        if self.input is not None:
            out["input"] = self.input
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.dtypes:
            out["dtypes"] = list(self.dtypes)
        if self.examples:
            out["examples"] = self.examples
        if self.location is not None:
            out["location"] = self.location
        if self.details is not None:
            out["details"] = self.details
        if self.suppressed:
            out["suppressed"] = True
        return out

    @property
    def all_dtypes(self) -> list[str]:
        """The dtypes the finding holds in (``dtypes``, else ``[dtype]``, else none)."""
        return list(self.dtypes) if self.dtypes else ([self.dtype] if self.dtype else [])


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def run_document(reports: list["Report"]) -> dict[str, Any]:
    """The JSON document of DESIGN.md for a run of ``reports`` (NaN and infinities as strings)."""
    return json_safe({
        "tool": "gradaudit",
        "version": __version__,
        "status": worst_status([r.status for r in reports]),
        "results": [r.result_dict() for r in reports],
    })


FailureRenderer = Callable[[list["Report"]], str]
_failure_renderer: FailureRenderer | None = None


def set_failure_renderer(render: FailureRenderer) -> None:
    """Install the text renderer :meth:`Report.raise_for_status` puts in its exception
    (the render layer's table; the model itself renders nothing)."""
    global _failure_renderer
    _failure_renderer = render


def _plain_text(reports: list["Report"]) -> str:
    """The findings one per line: the failure text when no renderer is installed."""
    return "".join(f"  {f.code} {f.check} {f.status}: {f.message}\n" for r in reports for f in r.findings)


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
    def active(self) -> list[Finding]:
        """The findings that count: every one not suppressed."""
        return [f for f in self.findings if not f.suppressed]

    @property
    def suppressed(self) -> list[Finding]:
        """The findings silenced by a ``# gradaudit: ignore[...]`` comment."""
        return [f for f in self.findings if f.suppressed]

    @property
    def status(self) -> str:
        """``pass``, ``warn``, ``fail`` or ``error``: the worst finding not suppressed."""
        return worst_status([f.status for f in self.active])

    def counts(self) -> dict[str, int]:
        """Number of findings per status (suppressed ones not counted)."""
        out = {"error": 0, "fail": 0, "warn": 0, "info": 0}
        for finding in self.active:
            out[finding.status] += 1
        return out

    def codes(self, status: str | None = None) -> set[str]:
        """Codes of the findings not suppressed, optionally only those with ``status``."""
        return {f.code for f in self.active if status is None or f.status == status}

    def result_dict(self) -> dict[str, Any]:
        """This target's entry in the ``results`` list of the JSON output."""
        return {
            "target": self.target,
            "status": self.status,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of DESIGN.md for a run of this one target."""
        return run_document([self])

    def raise_for_status(self, strict: bool = False) -> "Report":
        """Raise :class:`AuditFailure` on a fail or error (or a warn when ``strict``)."""
        limit = STATUS_ORDER["warn"] if strict else STATUS_ORDER["fail"]
        if STATUS_ORDER[self.status] >= limit:
            render = _failure_renderer or _plain_text
            raise AuditFailure(f"gradaudit: {self.target} is {self.status}\n" + render([self]), self)
        return self
