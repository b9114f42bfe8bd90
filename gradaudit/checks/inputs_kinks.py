"""GA301/GA302 along each input of a target with elementwise partners: the kink and jump
checks run on *sections*, the target along one input with the others held at a few values
(:data:`SECTION_VALUES`), so a kink of SwiGLU-like targets in the gate is found and judged where
it lies. The section along x at the partners' default value is the main audit's."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Iterator

import torch

from ..engine.binding import DEFAULT_FILL
from ..engine.context import AuditContext
from ..engine.messages import number
from ..engine.sections import elementwise_partners, section
from ..model.report import Finding

SECTION_VALUES = (-3.0, -1.0, -0.0, 0.0, 1.0, 3.0)
"""Values the other input holds along a section."""
SECTION_DTYPES = (torch.float64, torch.float32)
"""Dtypes a section's kinks are judged in (the main audit judges x's in every dtype)."""
SECTION_CODES = frozenset({"GA301", "GA302"})


def sections(ctx: AuditContext) -> list[tuple[str | None, dict[str, float], AuditContext]]:
    """(input the section runs along, the values the others hold, its audit context), shared by
    GA301 and GA302 (built once per audit)."""

    def build() -> list[tuple[str | None, dict[str, float], AuditContext]]:
        options = dataclasses.replace(ctx.options, codes=SECTION_CODES,
                                      dtypes=tuple(d for d in ctx.options.dtypes if d in SECTION_DTYPES))
        found = []
        for partner in elementwise_partners(ctx):
            for value in SECTION_VALUES:
                found.append((partner.name, {"x": value}, {"x": value}))
                if value != DEFAULT_FILL:
                    found.append((None, {partner.name: value}, {partner.name: value}))
        return [(along, shown, section(ctx, along, fixed, options)) for along, shown, fixed in found]

    return ctx.memo("kink.sections", build)


def run_sections(ctx: AuditContext, run: Callable[[Any], Iterable[Finding]]) -> Iterator[Finding]:
    """``run`` (GA301's or GA302's) on every section; each finding names the input it runs
    along and the others' values (``details["input"]`` and ``details["others"]``)."""
    seen: set[tuple[str | None, str | None, float]] = set()
    for along, fixed, along_one in sections(ctx):
        for finding in run(along_one):
            details = dict(finding.details or {})
            key = (along, finding.kind, round(float(details.get("location", float("nan"))), 12))
            if finding.status == "info" and key in seen:
                continue  # the same kink of the same kind at another held value: shown once
            seen.add(key)
            others = ", ".join(f"{name} = {number(value)}" for name, value in fixed.items())
            details.update({"input": along or "x", "others": fixed})
            finding.details = details
            finding.input = along
            finding.message = f"along {along or 'x'} with {others}: {finding.message}"
            yield finding

