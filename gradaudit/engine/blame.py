"""Blame: the op and source line that created a -0.0, NaN or inf (GA201-GA204 findings).

After the checks ran, each warn/fail finding of those checks is re-run on a handful of its
offending inputs (``details["inputs"]``), on fresh copies, under tracing:

* forward: a :class:`torch.overrides.TorchFunctionMode` sees every Python-level torch call
  (``x * mask``, ``torch.sqrt``, ``F.hardswish``) with its inputs, output and call site;
  the defect is followed back from the output to the op that *created* it (an output
  element holds the defect while no input held it at that element).
* backward: hooks on every autograd node tell which node created the defect in the
  gradient (its incoming gradient was clean there), and a
  :class:`torch.utils._python_dispatch.TorchDispatchMode` sees the kernels that run inside
  it, with the Python frames of a custom ``backward``.

The call site is the innermost frame outside torch and gradaudit; a defect inside a
built-in kernel called directly has none (its op is still named). Tracing only reads:
results, statuses and counts of the findings stay as the checks made them; the message
gains one sentence, ``location`` points at the blamed line and ``details["blame"]``
records op, phase, path, line and source text.
"""
from __future__ import annotations

import linecache
import os
import sys
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .messages import flagged
from ..targets.resolve import display_path
from .zero_regions import shuffled

if TYPE_CHECKING:
    from .context import AuditContext
    from ..model.report import Finding

BLAMED_CODES = {"GA201": ("nonfinite", "forward"), "GA202": ("nonfinite", "backward"),
                "GA203": ("negative-zero", "forward"), "GA204": ("negative-zero", "backward")}
"""Check code -> (defect kind, phase) of the findings that get blamed."""
BLAMED_STATUSES = ("warn", "fail")
MAX_INPUTS = 8
"""Offending inputs a finding records and blame re-runs: the cost does not grow with the audit."""

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_GRADAUDIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # the package, above engine/


# -- what the checks record ------------------------------------------------------------------
def offending_inputs(x: torch.Tensor, mask: torch.Tensor, first: int | None = None,
                     limit: int = MAX_INPUTS) -> list[float]:
    """Up to ``limit`` inputs of ``x`` where ``mask`` (or its indices) holds, spread over it (``first``,
    an index such as the finding's example, is always included)."""
    indices = flagged(mask)
    if indices.numel() > limit:
        picks = torch.linspace(0, indices.numel() - 1, limit - (first is not None)).round().long()
        indices = indices[picks]
    chosen = ([first] if first is not None else []) + [int(i) for i in indices if int(i) != first]
    return [float(x[i]) for i in chosen[:limit]]


# -- defects -----------------------------------------------------------------------------------
def defect_mask(t: torch.Tensor, kind: str) -> torch.Tensor:
    """Where ``t`` holds the defect: -0.0 (``negative-zero``) or NaN/inf (``nonfinite``)."""
    if not (t.is_floating_point() or t.is_complex()) or t.device.type == "meta":
        return torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    with torch.no_grad():
        if kind == "negative-zero":
            return (t == 0) & torch.signbit(t) if t.is_floating_point() else torch.zeros(t.shape, dtype=torch.bool)
        return ~torch.isfinite(t)


def _inherited(out_shape: torch.Size, input_masks: Iterable[torch.Tensor]) -> torch.Tensor:
    """Output elements where some input already held the defect (broadcast; an input of
    another shape that holds it anywhere covers every element)."""
    covered = torch.zeros(out_shape, dtype=torch.bool)
    for mask in input_masks:
        if not bool(mask.any()):
            continue
        try:
            covered |= torch.broadcast_to(mask.cpu(), out_shape)
        except RuntimeError:
            covered[...] = True
    return covered


def _tensors(value: Any) -> list[torch.Tensor]:
    return [v for v in tree_flatten(value)[0] if isinstance(v, torch.Tensor)]


# -- call sites --------------------------------------------------------------------------------
@dataclass
class Site:
    """A line of the user's source."""

    path: str
    line: int
    source: str

    def location(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line}

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" + (f" ({self.source})" if self.source else "")


def user_site(frame: types.FrameType | None) -> Site | None:
    """The innermost frame outside torch and gradaudit, searched outwards from ``frame`` and
    only up to the first gradaudit frame (which is what called the target)."""
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if filename.startswith(_GRADAUDIT_DIR):
            return None
        if not filename.startswith(_TORCH_DIR) and not frame.f_code.co_filename.startswith("<"):
            source = linecache.getline(filename, frame.f_lineno).strip()
            return Site(display_path(filename), frame.f_lineno, source)
        frame = frame.f_back
    return None


def op_name(func: Any) -> str:
    """A readable op name: ``mul`` for ``Tensor.__rmul__``, ``sqrt`` for ``aten.sqrt.default``."""
    if isinstance(func, torch._ops.OpOverload):
        return func.overloadpacket.__name__
    name = getattr(func, "__name__", None) or str(func)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        aliases = {"truediv": "div", "rtruediv": "div", "setitem": "setitem", "getitem": "getitem"}
        if name in aliases:
            return aliases[name]
        if name[:1] in "ri" and name[1:] in ("add", "sub", "mul", "div", "truediv", "pow", "matmul", "and", "or"):
            name = name[1:] + ("_" if name[0] == "i" else "")
    return name


def node_op_name(node: Any) -> str:
    """``sqrt`` for ``SqrtBackward0``; ``MyFn.backward`` for a custom Function's node."""
    name = node.name()
    base = name.rstrip("0123456789")
    if base.endswith("Backward") and not type(node).__module__.startswith("torch.autograd.function"):
        base = base[: -len("Backward")]
        return "".join(("_" + c.lower()) if c.isupper() else c for c in base).lstrip("_")
    return base[: -len("Backward")] + ".backward" if base.endswith("Backward") else name


# -- forward tracing -----------------------------------------------------------------------------
@dataclass
class _Event:
    op: str
    site: Site | None
    inputs: list[tuple[tuple[int, int] | None, torch.Tensor]]  # (writer, defect mask) per tensor input
    created: list[torch.Tensor]  # per output
    outputs: list[torch.Tensor] = field(repr=False, default_factory=list)


class _ForwardTracer(TorchFunctionMode):
    """Record every torch call: inputs' defects, outputs' created defects, call site."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.events: list[_Event] = []
        self.writer: dict[int, tuple[int, int]] = {}
        self.node_events: dict[int, int] = {}
        self._keep: list[Any] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        inputs = _tensors((args, kwargs))
        before = [(self.writer.get(id(t)), defect_mask(t, self.kind).clone()) for t in inputs]
        out = func(*args, **kwargs)
        outputs = _tensors(out)
        name = op_name(func)
        mutated = (name.endswith("_") and not name.startswith("_")) or name == "setitem"
        if mutated and args and isinstance(args[0], torch.Tensor) and all(o is not args[0] for o in outputs):
            outputs = [args[0]] + outputs
        if not outputs:
            return out
        index = len(self.events)
        created = [defect_mask(o, self.kind) & ~_inherited(o.shape, (m for _, m in before)) for o in outputs]
        self.events.append(_Event(name, user_site(sys._getframe(1)), before, created, outputs))
        for j, o in enumerate(outputs):
            self.writer[id(o)] = (index, j)
            if o.grad_fn is not None:
                self.node_events.setdefault(id(o.grad_fn), index)
                self._keep.append(o.grad_fn)
        self._keep.append(inputs)
        return out

    def creator(self, out: torch.Tensor, elements: torch.Tensor) -> _Event | None:
        """The event that created the defect at ``elements`` of ``out``: follow the defect
        backwards through the inputs that carried it; else the first event that created one."""
        step = self.writer.get(id(out))
        seen: set[tuple[int, int]] = set()
        while step is not None and step not in seen:
            seen.add(step)
            event = self.events[step[0]]
            created = event.created[step[1]]
            if bool((created & elements).any()) if created.shape == elements.shape else bool(created.any()):
                return event
            step = None
            for writer, mask in event.inputs:
                carried = mask & elements if mask.shape == elements.shape else mask
                if bool(carried.any()):
                    step, elements = writer, carried
                    break
        return next((e for e in self.events if any(bool(c.any()) for c in e.created)), None)


# -- backward tracing ----------------------------------------------------------------------------
@dataclass
class _Kernel:
    op: str
    node: int | None
    site: Site | None
    created: bool


class _BackwardTracer(TorchDispatchMode):
    """Record every kernel run during backward with the autograd node that runs it."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.nodes: list[int] = []  # stack of running nodes (ids)
        self.kernels: list[_Kernel] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        before = [defect_mask(t, self.kind) for t in _tensors((args, kwargs))]
        out = func(*args, **kwargs)
        created = any(bool((defect_mask(o, self.kind) & ~_inherited(o.shape, before)).any()) for o in _tensors(out))
        self.kernels.append(_Kernel(op_name(func), self.nodes[-1] if self.nodes else None,
                                    user_site(sys._getframe(1)), created))
        return out


def _graph(root: Any) -> list[Any]:
    """Every autograd node reachable from ``root``."""
    found: dict[int, Any] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in found:
            continue
        found[id(node)] = node
        stack.extend(n for n, _ in node.next_functions)
    return list(found.values())


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


def _node_created(kind: str, grad_inputs: tuple, grad_outputs: tuple) -> bool:
    incoming = [defect_mask(g, kind) for g in grad_outputs if isinstance(g, torch.Tensor)]
    return any(bool((defect_mask(g, kind) & ~_inherited(g.shape, incoming)).any())
               for g in grad_inputs if isinstance(g, torch.Tensor))


def _zero_incoming(grad_outputs: tuple) -> bool:
    return any(isinstance(g, torch.Tensor) and bool((g == 0).any()) for g in grad_outputs)


def trace(ctx: "AuditContext", dtype: torch.dtype, inputs: list[float], kind: str, phase: str,
          sign: float = 1.0) -> Blame | None:
    """Re-run the target on ``inputs`` under tracing; the op that created the defect, if found."""
    fn = ctx.target.callable_for(dtype)  # a fresh copy: the audit's modules stay untouched
    x = torch.tensor(inputs, dtype=torch.float64).to(dtype)
    leaf = x.clone().requires_grad_(phase == "backward")
    forward = _ForwardTracer(kind)
    torch.manual_seed(ctx.options.seed)
    with torch.enable_grad(), forward:
        y = fn(leaf.clone())
    if not isinstance(y, torch.Tensor):
        return None
    if phase == "forward":
        held = [defect_mask(x, kind)] if y.shape == x.shape else []  # else: the ops inside tell
        elements = defect_mask(y, kind) & ~_inherited(y.shape, held)
        if not bool(elements.any()):
            return None  # not reproduced on these inputs alone
        event = forward.creator(y, elements)
        return Blame(event.op, "forward", event.site) if event is not None else None
    if y.grad_fn is None:
        return None
    return _trace_backward(forward, y, leaf, kind, sign)


def _trace_backward(forward: _ForwardTracer, y: torch.Tensor, leaf: torch.Tensor, kind: str, sign: float) -> Blame | None:
    tracer = _BackwardTracer(kind)
    nodes = _graph(y.grad_fn)
    consumers = {id(n): [m for m in nodes if any(c is n for c, _ in m.next_functions)] for n in nodes}
    first: list[tuple[Any, bool]] = []
    handles = []
    for node in nodes:
        def pre(grad_outputs: tuple, node_id: int = id(node)) -> None:
            tracer.nodes.append(node_id)

        def post(grad_inputs: tuple, grad_outputs: tuple, node: Any = node) -> None:
            if tracer.nodes:
                tracer.nodes.pop()
            if not first and _node_created(kind, grad_inputs, grad_outputs):
                first.append((node, _zero_incoming(grad_outputs)))

        handles += [node.register_prehook(pre), node.register_hook(post)]
    try:
        with tracer:
            torch.autograd.grad(y, leaf, torch.full_like(y, sign), allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    if not first:
        return None
    node, zero_incoming = first[0]
    kernel = next((k for k in tracer.kernels if k.node == id(node) and k.created), None)
    if kernel is not None and kernel.site is not None:  # a custom backward: its own line
        return Blame(kernel.op, "backward", kernel.site)
    event_index = forward.node_events.get(id(node))
    event = forward.events[event_index] if event_index is not None else None
    op = event.op if event is not None else node_op_name(node)
    via = None
    if kind == "nonfinite" and zero_incoming:
        for consumer in consumers.get(id(node), []):
            index = forward.node_events.get(id(consumer))
            feeder = forward.events[index] if index is not None else None
            via = (feeder.op if feeder else node_op_name(consumer), feeder.site if feeder else None)
            break
    return Blame(op, "backward", event.site if event is not None else None,
                 kernel=kernel.op if kernel is not None else None, via=via)


# -- wiring ----------------------------------------------------------------------------------------
def blame_findings(ctx: "AuditContext", findings: list["Finding"]) -> None:
    """Add the blamed op and line to every warn/fail GA201-GA204 finding (in place).

    Never raises for the target's sake: a target that cannot be traced keeps its finding as
    the check wrote it.
    """
    from .context import parse_dtype

    for finding in findings:
        if finding.code not in BLAMED_CODES or finding.status not in BLAMED_STATUSES or finding.dtype is None:
            continue
        kind, phase = BLAMED_CODES[finding.code]
        details = finding.details or {}
        inputs = details.get("inputs") or [e["input"] for e in finding.examples if "input" in e]
        dtype = parse_dtype(finding.dtype)
        if not ctx.elementwise:  # outputs depend on other elements: trace the whole probe
            probe = ctx.evaluate(dtype).x
            if details.get("probe") == "shuffled":  # as GA203/GA204 saw a shape-changing target
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
