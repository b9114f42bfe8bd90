"""What a check is, as data: its stable identity, documentation and what it needs from the
engine (the run function itself lives with the check in :mod:`gradaudit.checks`)."""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

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

    messages: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Message templates by kind (``{"spurious": "the forward creates -0.0 in {dtype} ..."}``),
    filled by :meth:`finding`; ``{dtype}`` is the finding's dtype and ``{fix}`` the check's
    :attr:`fix` (or :data:`SURROGATE_EXPECTED` when the surrogate rule applies)."""
    surrogate_kinds: tuple[str, ...] = ()
    """Kinds of finding that become :attr:`surrogate_status` when the target is declared a
    surrogate / straight-through gradient (DESIGN.md: GA101, GA105, GA302)."""
    surrogate_status: str = "info"
    fixes: Mapping[str, str] = field(default_factory=dict, compare=False)
    """The fix for one kind of target (``Target.kind``, e.g. ``"custom op"``) where :attr:`fix`
    speaks of another (autograd.Function advice is wrong for a ``torch.library`` custom op);
    :meth:`finding` fills ``{fix}`` with it for a target of that kind."""
    location_role: str = "forward"
    """Which of the target's functions (``forward`` or ``backward``) a finding points at when
    the check gives no location of its own."""

    def finding(self, kind: str, status: str, /, *, audit: Any = None, location: dict[str, Any] | None = None,
                dtype: str | None = None, examples: list[dict[str, Any]] | None = None,
                details: dict[str, Any] | None = None, input: str | None = None, **values: Any) -> Finding:
        """The one constructor of this check's findings: the template of ``kind`` filled with
        ``values``, the surrogate rule applied and the location defaulted from ``audit`` (an
        :class:`~gradaudit.engine.context.AuditContext`, duck-typed: ``options.surrogate`` and
        ``target.source(role)``), code, slug and kind filled in. A template left with a
        placeholder unfilled, or a value no placeholder takes, raises ``KeyError``. ``input``
        names the target's parameter the finding is about when it is not the first."""
        template = self.messages[kind]
        declared = bool(audit is not None and getattr(audit.options, "surrogate", False))
        if declared and kind in self.surrogate_kinds:
            status, fix = self.surrogate_status, SURROGATE_EXPECTED
        else:
            fix = self.fix_for(getattr(getattr(audit, "target", None), "kind", None))
        unused = set(values) - placeholders(template)
        if unused:
            raise KeyError(f"{self.code} {kind}: no placeholder for {sorted(unused)}")
        if location is None and audit is not None:
            location = audit.target.source(self.location_role)
        return Finding(self.code, status, template.format(fix=fix, dtype=dtype, **values), dtype=dtype,
                       examples=list(examples or ()), location=location, details=details,
                       check=self.slug, kind=kind, input=input)

    def fix_for(self, target_kind: str | None) -> str:
        """The fix for a target of ``target_kind``: its entry in :attr:`fixes`, else :attr:`fix`."""
        return self.fixes.get(target_kind, self.fix) if target_kind is not None else self.fix


SURROGATE_EXPECTED = "The target is declared a surrogate / straight-through gradient, so this is expected."
"""What ``{fix}`` says in a finding the surrogate rule turned into information."""


def placeholders(template: str) -> set[str]:
    """The names a message template takes (``{dtype}`` and ``{where:.3g}`` give ``dtype``, ``where``)."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}
