"""What a check is, as data: its stable identity, documentation and what it needs from the
engine (the run function itself lives with the check in :mod:`gradaudit.checks`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .report import Finding


@dataclass(frozen=True)
class Check:
    """A check's stable identity and documentation."""

    code: str
    slug: str
    status: str
    summary: str
    explanation: str
    fix: str
    example: str = ""
    run: Callable[[Any], Iterable[Finding]] | None = None
    streams: bool = False
    """Whether the check reads the float64 probe's evaluation only through
    ``AuditContext.evaluation_blocks`` (block by block, once); when every selected check
    does, a large probe is never stored whole."""
    negative_grad_output: bool = False
    """Whether the check reads the backward with grad_output -1 as well as +1 (the engine runs
    it only when a selected check says so)."""
    blame: tuple[str, str] | None = None
    """``(defect, phase)`` that blame traces for this check's warn/fail findings: defect
    ``"nonfinite"`` or ``"negative-zero"``, phase ``"forward"`` or ``"backward"``."""

    def finding(self, status: str, message: str, **fields: Any) -> Finding:
        """A finding of this check (its code and slug filled in)."""
        return Finding(self.code, status, message, check=self.slug, **fields)
