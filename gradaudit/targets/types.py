"""What a target is: :class:`Target`, where a target's source lives, and
which targets are the same object (near the bottom of the targets layer: it imports only
:mod:`gradaudit.targets.names` and :mod:`gradaudit.targets.spec`).

How each kind of object is called:
    an ``autograd.Function`` subclass through ``.apply``; an ``nn.Module`` subclass is
    instantiated with no arguments; an ``nn.Module`` instance, a function, a
    ``functools.partial`` or a ``torch.library`` custom op (a ``CustomOpDef``, or an op of
    ``torch.ops`` outside PyTorch's own namespaces) is called as is. Modules are copied and
    cast to each audit dtype.
"""
from __future__ import annotations

import copy
import functools
import inspect
import os
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from .names import dedupe_key
from .spec import TargetError

OPTIONS_ATTRIBUTE = "__gradaudit__"
"""Attribute where ``@gradaudit.activation`` stores a target's audit options."""
HOME_ATTRIBUTE = "__gradaudit_module__"
"""Attribute where ``@gradaudit.activation`` records the module it was applied in: the file
that owns a marked object (``gelu = gradaudit.activation(F.gelu)`` belongs to that file)."""


@dataclass
class Target:
    """One auditable callable and where it came from."""

    name: str
    obj: Any
    options: dict[str, Any] = field(default_factory=dict)
    _sources: dict[str, dict[str, Any] | None] = field(default_factory=dict, init=False, repr=False, compare=False)
    _built: torch.nn.Module | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``function``, ``autograd.Function``, ``nn.Module``, ``nn.Module class`` or ``custom op``."""
        if is_custom_op(self.obj):
            return "custom op"
        if isinstance(self.obj, type) and issubclass(self.obj, torch.autograd.Function):
            return "autograd.Function"
        if isinstance(self.obj, type) and issubclass(self.obj, torch.nn.Module):
            return "nn.Module class"
        if isinstance(self.obj, torch.nn.Module):
            return "nn.Module"
        return "function"

    def callable_for(self, dtype: torch.dtype, device: str | torch.device = "cpu") -> Callable[[torch.Tensor], Any]:
        """The target as a one-tensor callable, with any module copied and cast to ``dtype``."""
        obj = self.obj
        kind = self.kind
        if kind == "autograd.Function":
            return obj.apply
        if kind == "nn.Module class":
            try:
                obj = self._instance()
            except Exception as exc:  # the user's constructor
                raise TargetError(
                    f"{self.name}: the nn.Module subclass {obj.__qualname__} cannot be "
                    f"constructed with no arguments ({type(exc).__name__}: {exc}). Audit an "
                    f"instance instead, e.g. audit({obj.__qualname__}(...)) or a module-level "
                    f"instance as 'module:instance_name'."
                ) from exc
        if isinstance(obj, torch.nn.Module):
            module = copy.deepcopy(obj)
            return module.to(device=device, dtype=dtype)
        if not callable(obj):
            raise TargetError(
                f"{self.name}: {type(obj).__name__} object is not callable. Point gradaudit at "
                f"a function, an nn.Module, or an autograd.Function subclass."
            )
        return obj

    def _instance(self) -> torch.nn.Module:
        """The module class built once, with seeded initial weights (the caller's generator left as
        it was): every dtype's copy is cast from it, so all dtypes audit one function."""
        if self._built is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self._built = self.obj()
        return self._built

    def source(self, role: str = "forward") -> dict[str, Any] | None:
        """``{"path", "line"}`` of the target's ``forward`` or ``backward`` source, if known
        (a fresh dict each time; the source is read once per role)."""
        if role not in self._sources:
            self._sources[role] = self._find_source(role)
        found = self._sources[role]
        return dict(found) if found is not None else None

    @property
    def implementation(self) -> Callable[..., Any] | None:
        """For a custom op, the Python function that implements it (what blame traces into
        instead of the op, which tracing cannot see inside); None otherwise."""
        return implementing_function(self.obj)

    def _find_source(self, role: str) -> dict[str, Any] | None:
        obj = self.obj
        while isinstance(obj, functools.partial):
            obj = obj.func
        candidates: list[Any] = []
        definition = custom_op_definition(obj)
        if definition is not None:  # the registered backward (register_autograd), else the implementation
            candidates = [getattr(definition, "_backward_fn", None)] if role == "backward" else []
            candidates.append(getattr(definition, "_init_fn", None))
        elif isinstance(obj, type) and issubclass(obj, torch.autograd.Function):
            candidates = [getattr(obj, role, None), obj]
        elif isinstance(obj, torch.nn.Module) or (
            isinstance(obj, type) and issubclass(obj, torch.nn.Module)
        ):
            cls = obj if isinstance(obj, type) else type(obj)
            candidates = [getattr(cls, "forward", None), cls]
        elif applied_function(obj) is not None:
            candidates = [getattr(applied_function(obj), role, None), applied_function(obj)]
        else:
            candidates = [scripted_function(obj) or obj]
        for candidate in candidates:
            location = source_location(candidate)
            if location is not None:
                return location
        return None


TORCH_NAMESPACES = frozenset({"aten", "prim", "prims", "quantized", "_quantized", "rngprims", "inductor",
                              "higher_order", "_c10d_functional", "c10d_functional", "_c10d", "profiler",
                              "debugprims", "_test", "mkldnn", "mkl", "onednn", "quantized_decomposed"})
"""Namespaces of ``torch.ops`` that hold PyTorch's own operators, not custom ops."""


def _custom_op_def_type() -> type | None:
    try:
        from torch._library.custom_ops import CustomOpDef
    except ImportError:  # pragma: no cover - a torch without torch.library.custom_op
        return None
    return CustomOpDef


def op_qualname(obj: Any) -> str | None:
    """``ns::name`` of a ``CustomOpDef``, ``OpOverload`` or ``OpOverloadPacket``; else None."""
    definition_type = _custom_op_def_type()
    if definition_type is not None and isinstance(obj, definition_type):
        return obj._qualname
    if isinstance(obj, torch._ops.OpOverload):
        return obj._schema.name
    if isinstance(obj, torch._ops.OpOverloadPacket):
        return obj._qualified_op_name
    return None


def is_custom_op(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.library`` custom op: a ``CustomOpDef``, or an operator of
    ``torch.ops`` outside PyTorch's own namespaces (``torch.ops.mylib.op``)."""
    qualname = op_qualname(obj)
    return qualname is not None and qualname.partition("::")[0] not in TORCH_NAMESPACES


def custom_op_definition(obj: Any) -> Any | None:
    """The ``CustomOpDef`` that ``torch.library.custom_op`` made for ``obj`` (itself, or the
    op of ``torch.ops`` it registered, default overload or packet); None otherwise."""
    definition_type = _custom_op_def_type()
    if definition_type is None:
        return None
    if isinstance(obj, definition_type):
        return obj
    if isinstance(obj, torch._ops.OpOverload) and obj._overloadname not in ("default", ""):
        return None
    qualname = op_qualname(obj)
    if qualname is None:
        return None
    from torch._library.custom_ops import OPDEFS

    return OPDEFS.get(qualname)


def implementing_function(obj: Any) -> Callable[..., Any] | None:
    """The Python function a custom op made by ``torch.library.custom_op`` runs; else None."""
    definition = custom_op_definition(obj)
    return getattr(definition, "_init_fn", None) if definition is not None else None


def applied_function(obj: Any) -> type | None:
    """The ``autograd.Function`` subclass whose ``apply`` ``obj`` is (``audit(MyFn.apply)``); None
    otherwise. Its signature, name and source are the class's."""
    owner = getattr(obj, "__self__", None)
    if getattr(obj, "__name__", None) == "apply" and isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        return owner
    return None


def scripted_function(obj: Any) -> Callable[..., Any] | None:
    """The Python function that ``torch.jit.script`` compiled into ``obj``; None otherwise. A
    scripted function has no Python signature, name or source of its own; its original does."""
    if not isinstance(obj, torch.jit.ScriptFunction):
        return None
    original = getattr(obj, "_torchdynamo_inline", None) or getattr(obj, "__original_fn", None)
    return original if callable(original) else None


def display_path(path: str) -> str:
    """``path`` relative to the working directory when under it, else absolute."""
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    if absolute == cwd or absolute.startswith(cwd + os.sep):
        return os.path.relpath(absolute, cwd)
    return absolute


def source_location(obj: Any) -> dict[str, Any] | None:
    """Where ``obj`` is defined, or None for built-ins. A function's line comes from its code
    object (the first decorator's line, as :func:`inspect.getsourcelines` gives it, without
    tokenizing the source: that took 0.2 ms per call, paid twice per audit); a class's line
    is looked up once per class."""
    try:
        obj = inspect.unwrap(obj)
        path = inspect.getsourcefile(obj)
        if path is None:
            return None
        code = getattr(getattr(obj, "__func__", obj), "__code__", None)  # functions and methods
        line = code.co_firstlineno if isinstance(code, types.CodeType) else _class_line(obj)
    except (TypeError, OSError):
        return None
    return {"path": display_path(path), "line": max(int(line), 1)}


@functools.lru_cache(maxsize=256)
def _class_line(obj: Any) -> int:
    """The first line of ``obj``'s source (classes: the source is parsed, so cache it)."""
    return inspect.getsourcelines(obj)[1]


def target_from_object(obj: Any, name: str | None = None) -> Target:
    """A :class:`Target` for a Python object passed to :func:`gradaudit.audit`."""
    if name is None:
        base = obj.func if isinstance(obj, functools.partial) else obj
        base = implementing_function(base) or scripted_function(base) or applied_function(base) or base
        qualname = getattr(base, "__qualname__", None) or type(base).__qualname__
        module = getattr(base, "__module__", None) or type(base).__module__
        name = f"{module}:{qualname}" if module else qualname
    options = dict(getattr(obj, OPTIONS_ATTRIBUTE, {}) or {})
    return Target(name=name, obj=obj, options=options)


@dataclass
class UnloadableFile(Target):
    """A file of a directory scan that failed to import: audited, it is one GA901 error (the
    rest of the directory is still audited). Its name is the file's path, a target string that
    fails the same way when resolved again."""

    error: str = ""

    @property
    def kind(self) -> str:
        return "error"

    def callable_for(self, dtype: torch.dtype, device: str | torch.device = "cpu") -> Callable[[torch.Tensor], Any]:
        raise TargetError(self.error)

    def source(self, role: str = "forward") -> dict[str, Any] | None:
        return None


def unique(targets: Iterable[Target]) -> list[Target]:
    """``targets`` without repeated objects, in first-seen order: an object that several
    target strings reach is audited once, under the first name."""
    seen: set[Any] = set()
    kept = []
    for target in targets:
        key = ("error", dedupe_key(target.name)) if isinstance(target, UnloadableFile) else id(target.obj)
        if key not in seen:
            seen.add(key)
            kept.append(target)
    return kept
