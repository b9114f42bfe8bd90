"""Tracing a target: which op created a defect (-0.0, NaN or inf) in its forward or backward.

* forward: a :class:`torch.overrides.TorchFunctionMode` sees every Python-level torch call
  (``x * mask``, ``torch.sqrt``, ``F.hardswish``) with its inputs, output and call site;
  the defect is followed back from the output to the op that *created* it (an output
  element holds the defect while no input held it at that element).
* backward: hooks on every autograd node tell which node created the defect in the
  gradient (its incoming gradient was clean there), and a
  :class:`torch.utils._python_dispatch.TorchDispatchMode` sees the kernels that run inside
  it, with the Python frames of a custom ``backward``.

The call site is the innermost frame outside torch and gradaudit; a defect inside a
built-in kernel called directly has none (its op is still named).
"""
from __future__ import annotations

import linecache
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..targets.types import display_path

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_GRADAUDIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # the package, above engine/


# -- defects -----------------------------------------------------------------------------------
def defect_mask(t: torch.Tensor, kind: str) -> torch.Tensor:
    """Where ``t`` holds the defect: -0.0 (``negative-zero``) or NaN/inf (``nonfinite``)."""
    if not (t.is_floating_point() or t.is_complex()) or t.device.type == "meta":
        return torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    with torch.no_grad():
        if kind == "negative-zero":
            return (t == 0) & torch.signbit(t) if t.is_floating_point() else torch.zeros(t.shape, dtype=torch.bool)
        return ~torch.isfinite(t)


def inherited(out_shape: torch.Size, input_masks: Iterable[torch.Tensor]) -> torch.Tensor:
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
class Event:
    op: str
    site: Site | None
    inputs: list[tuple[tuple[int, int] | None, torch.Tensor]]  # (writer, defect mask) per tensor input
    created: list[torch.Tensor]  # per output
    outputs: list[torch.Tensor] = field(repr=False, default_factory=list)


class ForwardTracer(TorchFunctionMode):
    """Record every torch call: inputs' defects, outputs' created defects, call site."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.events: list[Event] = []
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
        created = [defect_mask(o, self.kind) & ~inherited(o.shape, (m for _, m in before)) for o in outputs]
        self.events.append(Event(name, user_site(sys._getframe(1)), before, created, outputs))
        for j, o in enumerate(outputs):
            self.writer[id(o)] = (index, j)
            if o.grad_fn is not None:
                self.node_events.setdefault(id(o.grad_fn), index)
                self._keep.append(o.grad_fn)
        self._keep.append(inputs)
        return out

    def creator(self, out: torch.Tensor, elements: torch.Tensor) -> Event | None:
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
class Kernel:
    op: str
    node: int | None
    site: Site | None
    created: bool


class BackwardTracer(TorchDispatchMode):
    """Record every kernel run during backward with the autograd node that runs it."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.nodes: list[int] = []  # stack of running nodes (ids)
        self.kernels: list[Kernel] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        before = [defect_mask(t, self.kind) for t in _tensors((args, kwargs))]
        out = func(*args, **kwargs)
        created = any(bool((defect_mask(o, self.kind) & ~inherited(o.shape, before)).any()) for o in _tensors(out))
        self.kernels.append(Kernel(op_name(func), self.nodes[-1] if self.nodes else None,
                                    user_site(sys._getframe(1)), created))
        return out


def graph_nodes(root: Any) -> list[Any]:
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


def node_created(kind: str, grad_inputs: tuple, grad_outputs: tuple) -> bool:
    incoming = [defect_mask(g, kind) for g in grad_outputs if isinstance(g, torch.Tensor)]
    return any(bool((defect_mask(g, kind) & ~inherited(g.shape, incoming)).any())
               for g in grad_inputs if isinstance(g, torch.Tensor))


def zero_incoming(grad_outputs: tuple) -> bool:
    return any(isinstance(g, torch.Tensor) and bool((g == 0).any()) for g in grad_outputs)
