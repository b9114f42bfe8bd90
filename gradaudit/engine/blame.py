"""Blame: the op and source line that created a -0.0, NaN or inf in a finding's offending
inputs.

After the checks ran, each warn/fail finding of a check that declares what to blame is
re-run on a handful of its offending inputs (``details["inputs"]``), on fresh copies, under
tracing (:mod:`gradaudit.engine.tracing`); for a ``torch.library`` custom op the forward traced
is the Python function that implements it, not the op. Tracing only reads: results, statuses and counts
of the findings stay as the checks made them; the message gains one sentence, ``location``
points at the blamed line and ``details["blame"]`` records op, phase, path, line and source
text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import torch

from .messages import flagged
from .options import parse_dtype
from .tracing import (
    BackwardTracer, ForwardTracer, Site, defect_mask, graph_nodes, inherited, node_created, node_op_name, op_name,
    user_site, zero_incoming
)
from .vjp import vjp
from .zero_regions import shuffled

if TYPE_CHECKING:
    from ..model.report import Finding
    from .context import AuditContext

__all__ = ["Blame", "Site", "blame_findings", "defect_mask", "offending_inputs", "op_name", "trace", "user_site"]

BLAMED_STATUSES = ("warn", "fail")
MAX_INPUTS = 8
"""Offending inputs a finding records and blame re-runs: the cost does not grow with the audit."""


def offending_inputs(x: torch.Tensor, mask: torch.Tensor, first: int | None = None,
                     limit: int = MAX_INPUTS) -> list[float]:
    """Up to ``limit`` inputs of ``x`` where ``mask`` (or its indices) holds, spread over it (``first``,
    an index such as the finding's example, is always included)."""
    indices = flagged(mask)
    if indices.numel() > limit:
        picks = torch.linspace(0, indices.numel() - 1, limit - (first is not None)).round().long()
        indices = indices.index_select(0, picks)
    chosen = ([first] if first is not None else []) + [int(i) for i in indices if int(i) != first]
    return [float(x[i]) for i in chosen[:limit]]


@dataclass
class Blame:
    """Where a defect was created."""

    op: str
    phase: str
    site: Site | None
    kernel: str | None = None
    via: tuple[str, Site | None] | None = None
    """For a backward node fed a zero gradient (the torch.where trap): the op that fed it."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "phase": self.phase}
        if self.kernel and self.kernel != self.op:
            out["kernel"] = self.kernel
        if self.site is not None:
            out.update(path=self.site.path, line=self.site.line, source=self.site.source)
        if self.via is not None:
            out["via"] = {"op": self.via[0], **(self.via[1].location() if self.via[1] else {})}
        return out

    def sentence(self, kind: str) -> str:
        what = "-0.0" if kind == "negative-zero" else "the non-finite value"
        kernel = f" (kernel {self.kernel})" if self.kernel and self.kernel != self.op else ""
        if self.site is None:
            where = " inside the built-in op (no line of the target's Python source calls it)"
        else:
            where = f" at {self.site}"
        if self.phase == "forward":
            return f"Blame: {what} is created by {self.op}{kernel}{where}."
        text = f"Blame: {what} is created in the backward of {self.op}{kernel}{where}"
        if self.via is not None:
            op, site = self.via
            same = site is not None and self.site is not None and site.location() == self.site.location()
            text += (f", whose incoming gradient is a zero from {op}"
                     + (" on the same line" if same else f" at {site}" if site else "")
                     + f": {op} passes 0 to the unused branch, and 0 times {self.op}'s non-finite "
                       f"derivative there is NaN")
        return text + "."


def trace(ctx: "AuditContext", dtype: torch.dtype, inputs: list[float], kind: str, phase: str,
          sign: float = 1.0) -> Blame | None:
    """Re-run the target on ``inputs`` under tracing; the op that created the defect, if found."""
    fn = ctx.target.callable_for(dtype)  # a fresh copy: the audit's modules stay untouched
    if phase == "forward" and ctx.target.implementation is not None:
        # a custom op: tracing cannot see inside the dispatcher's call, so trace the Python
        # function that implements it (its backward, register_autograd's, is seen as it runs)
        fn = ctx.target.implementation
    x = torch.tensor(inputs, dtype=torch.float64).to(dtype)
    leaf = x.clone().requires_grad_(phase == "backward")
    forward = ForwardTracer(kind)
    torch.manual_seed(ctx.options.seed)
    with torch.enable_grad(), forward:
        y = fn(leaf.clone())
    if not isinstance(y, torch.Tensor):
        return None
    if phase == "forward":
        held = [defect_mask(x, kind)] if y.shape == x.shape else []  # else: the ops inside tell
        elements = defect_mask(y, kind) & ~inherited(y.shape, held)
        if not bool(elements.any()):
            return None  # not reproduced on these inputs alone
        event = forward.creator(y, elements)
        return Blame(event.op, "forward", event.site) if event is not None else None
    if y.grad_fn is None:
        return None
    return _trace_backward(forward, y, leaf, kind, sign)


def _trace_backward(forward: ForwardTracer, y: torch.Tensor, leaf: torch.Tensor, kind: str, sign: float) -> Blame | None:
    tracer = BackwardTracer(kind)
    nodes = graph_nodes(y.grad_fn)
    consumers = {id(n): [m for m in nodes if any(c is n for c, _ in m.next_functions)] for n in nodes}
    first: list[tuple[Any, bool]] = []
    handles = []
    for node in nodes:
        def pre(grad_outputs: tuple, node_id: int = id(node)) -> None:
            tracer.nodes.append(node_id)

        def post(grad_inputs: tuple, grad_outputs: tuple, node: Any = node) -> None:
            if tracer.nodes:
                tracer.nodes.pop()
            if not first and node_created(kind, grad_inputs, grad_outputs):
                first.append((node, zero_incoming(grad_outputs)))

        handles += [node.register_prehook(pre), node.register_hook(post)]
    try:
        with tracer:
            vjp(y, leaf, torch.full_like(y, sign))
    finally:
        for handle in handles:
            handle.remove()
    if not first:
        return None
    node, fed_zero = first[0]
    kernel = next((k for k in tracer.kernels if k.node == id(node) and k.created), None)
    if kernel is not None and kernel.site is not None:  # a custom backward: its own line
        return Blame(kernel.op, "backward", kernel.site)
    event_index = forward.node_events.get(id(node))
    event = forward.events[event_index] if event_index is not None else None
    op = event.op if event is not None else node_op_name(node)
    via = None
    if kind == "nonfinite" and fed_zero:
        for consumer in consumers.get(id(node), []):
            index = forward.node_events.get(id(consumer))
            feeder = forward.events[index] if index is not None else None
            via = (feeder.op if feeder else node_op_name(consumer), feeder.site if feeder else None)
            break
    return Blame(op, "backward", event.site if event is not None else None,
                 kernel=kernel.op if kernel is not None else None, via=via)


# -- wiring ----------------------------------------------------------------------------------------
def blame_findings(ctx: "AuditContext", findings: list["Finding"],
                   blamed: Mapping[str, tuple[str, str]]) -> None:
    """Add the blamed op and line to every warn/fail finding whose code ``blamed`` maps to
    ``(defect, phase)``: defect ``"nonfinite"`` or ``"negative-zero"``, phase ``"forward"`` or
    ``"backward"`` (in place).

    Never raises for the target's sake: a target that cannot be traced keeps its finding as
    the check wrote it.
    """
    for finding in findings:
        if finding.code not in blamed or finding.status not in BLAMED_STATUSES or finding.dtype is None:
            continue
        kind, phase = blamed[finding.code]
        details = finding.details or {}
        inputs = details.get("inputs") or [e["input"] for e in finding.examples if "input" in e]
        dtype = parse_dtype(finding.dtype)
        if not ctx.elementwise:  # outputs depend on other elements: trace the whole probe
            probe = ctx.evaluate(dtype).x
            if details.get("probe") == "shuffled":  # as the check saw a shape-changing target
                probe = shuffled(probe, ctx.options.seed)
            inputs = probe.tolist()
        if not inputs:
            continue
        try:
            blame = trace(ctx, dtype, inputs, kind, phase, float(details.get("grad_output", 1.0)))
        except Exception:  # the target misbehaves under tracing: leave the finding as it is
            continue
        if blame is None:
            continue
        finding.details = {**details, "blame": blame.to_dict()}
        finding.message = f"{finding.message} {blame.sentence(kind)}"
        if blame.site is not None:
            finding.location = blame.site.location()
