"""Sections: a target with several inputs seen along one of them, the others held, as a
one-input audit context (kinks along each input, the plot's panels), and which partners the
target is elementwise in (where the two-dimensional probe of :mod:`.pairs` holds)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..model.numbers import number
from ..targets.types import Target
from .context import AuditContext
from .options import Options


def section(ctx: AuditContext, along: str | None, fixed: dict[str, float], options: Options | None = None) -> AuditContext:
    """The audit context of ``ctx``'s target along one input (``along``: a partner's name, None
    for x) with the others held at ``fixed`` (by name, ``"x"`` for x): a one-input target,
    located where the target is, with no reference and no roles."""
    described = ", ".join(f"{name} = {number(value)}" for name, value in fixed.items())
    fn = ctx.binding.section(None, along=along, fixed=fixed, fn_for=lambda t: ctx.raw_callable_for(
        t.dtype, "cpu" if t.device.type == "meta" else t.device.type))
    target = Target(name=f"{ctx.target.name} along {along or 'x'} ({described})", obj=fn)
    for role in ("forward", "backward"):
        target._sources[role] = ctx.target.source(role)
    along_one = AuditContext(target, replace(options or ctx.options, inputs={}, reference=None), ctx.needs)
    along_one.scan_tail_kinks = False
    along_one.__dict__["working_eps"] = ctx.working_eps  # the same forward: detected once
    settled = _settled(ctx).get(along) if along is not None else ctx.elementwise
    if settled:  # known elementwise along that input: a section's test would repeat it
        along_one.__dict__["elementwise"] = True
    return along_one


def _settled(ctx: AuditContext) -> dict[str, bool]:
    """Partner name -> whether the target is elementwise in it, as tested (once per audit)."""
    return ctx.memo("sections.elementwise", dict)


def partner_elementwise(ctx: AuditContext, name: str) -> bool:
    """Whether output i depends on the partner ``name``'s element i alone (x held at 1)."""
    settled = _settled(ctx)
    if name not in settled:
        settled[name] = section(ctx, name, {"x": 1.0}).elementwise
    return settled[name]


def elementwise_partners(ctx: AuditContext) -> list[Any]:
    """The partners (``like`` inputs) over which the two-dimensional probe holds: the target
    is elementwise in x and in each of them."""
    if not ctx.binding.partners or not ctx.elementwise:
        return []
    return [p for p in ctx.binding.partners if partner_elementwise(ctx, p.name)]
