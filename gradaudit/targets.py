"""Turn target strings and Python objects into callables gradaudit can audit.

Target strings:
    ``package.module:attr``, ``path/to/file.py:attr`` and dotted attributes after the
    colon (``mymod:Acts.relu``), optionally binding literal keyword arguments
    (``torch.nn.functional:softmax(dim=-1)``, a ``functools.partial``). Without a colon, a
    module or file is searched for targets (see :func:`discover`); ``@name`` is a group.

How each kind of object is called:
    an ``autograd.Function`` subclass through ``.apply``; an ``nn.Module`` subclass is
    instantiated with no arguments; an ``nn.Module`` instance, a function or a
    ``functools.partial`` is called as is. Modules are copied and cast to each audit dtype.
"""
from __future__ import annotations

import ast
import copy
import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

OPTIONS_ATTRIBUTE = "__gradaudit__"
"""Attribute where ``@gradaudit.activation`` stores a target's audit options."""


class TargetError(Exception):
    """A target cannot be audited; the message is one paragraph that says what to do."""


@dataclass
class Target:
    """One auditable callable and where it came from."""

    name: str
    obj: Any
    options: dict[str, Any] = field(default_factory=dict)
    _sources: dict[str, dict[str, Any] | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``function``, ``autograd.Function``, ``nn.Module`` or ``nn.Module class``."""
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
                obj = obj()
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

    def source(self, role: str = "forward") -> dict[str, Any] | None:
        """``{"path", "line"}`` of the target's ``forward`` or ``backward`` source, if known
        (a fresh dict each time; the source is read once per role)."""
        if role not in self._sources:
            self._sources[role] = self._find_source(role)
        found = self._sources[role]
        return dict(found) if found is not None else None

    def _find_source(self, role: str) -> dict[str, Any] | None:
        obj = self.obj
        while isinstance(obj, functools.partial):
            obj = obj.func
        candidates: list[Any] = []
        if isinstance(obj, type) and issubclass(obj, torch.autograd.Function):
            candidates = [getattr(obj, role, None), obj]
        elif isinstance(obj, torch.nn.Module) or (
            isinstance(obj, type) and issubclass(obj, torch.nn.Module)
        ):
            cls = obj if isinstance(obj, type) else type(obj)
            candidates = [getattr(cls, "forward", None), cls]
        else:
            candidates = [obj]
        for candidate in candidates:
            location = source_location(candidate)
            if location is not None:
                return location
        return None


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
        qualname = getattr(base, "__qualname__", None) or type(base).__qualname__
        module = getattr(base, "__module__", None) or type(base).__module__
        name = f"{module}:{qualname}" if module else qualname
    options = dict(getattr(obj, OPTIONS_ATTRIBUTE, {}) or {})
    return Target(name=name, obj=obj, options=options)


def _looks_like_path(module_part: str) -> bool:
    return module_part.endswith(".py") or os.sep in module_part or "/" in module_part


def package_module(absolute: str) -> tuple[str, str] | None:
    """``(root, "pkg.sub.mod")`` for a file inside a package (directories with __init__.py),
    so that it is imported by its dotted name and its relative imports work; else None."""
    directory, filename = os.path.split(absolute)
    if not os.path.isfile(os.path.join(directory, "__init__.py")):
        return None
    parts = [] if filename == "__init__.py" else [os.path.splitext(filename)[0]]
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        directory, package = os.path.split(directory)
        parts.insert(0, package)
    return directory, ".".join(parts)


def load_file(path: str, target: str) -> Any:
    """Import a Python file as a module: by its dotted name when it lives in a package (so
    relative imports work), else under a private, stable name."""
    if not os.path.isfile(path):
        raise TargetError(
            f"{target}: no such file {path!r}. Check the path, relative to the working "
            f"directory {os.getcwd()!r}."
        )
    absolute = os.path.abspath(path)
    in_package = package_module(absolute)
    if in_package is not None:
        root, dotted = in_package
        if root not in sys.path:
            sys.path.insert(0, root)
        return import_module(dotted, target)
    digest = hashlib.sha1(absolute.encode()).hexdigest()[:10]
    module_name = f"_gradaudit_file_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, absolute)
    if spec is None or spec.loader is None:
        raise TargetError(f"{target}: {path!r} cannot be imported as a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    directory = os.path.dirname(absolute)
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[module_name]
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise TargetError(
            f"{target}: importing {path!r} raised {type(exc).__name__}: {exc}. Fix the error "
            f"in that file (run it with python to see the traceback, or add -v)."
        ) from exc
    finally:
        if added:
            sys.path.remove(directory)
    return module


def import_module(name: str, target: str) -> Any:
    """Import a dotted module, turning any failure into a :class:`TargetError`."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise TargetError(
            f"{target}: cannot import module {name!r} ({exc}). Check the spelling, that the "
            f"package is installed in this Python environment, or give a file instead, as "
            f"path/to/file.py:attribute."
        ) from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise TargetError(
            f"{target}: importing module {name!r} raised {type(exc).__name__}: {exc}. Fix the "
            f"error in that module (add -v for the traceback)."
        ) from exc


def load_container(module_part: str, target: str) -> Any:
    """The module named by the part of a target string before the colon."""
    if _looks_like_path(module_part):
        return load_file(module_part, target)
    return import_module(module_part, target)


def resolve_attribute(container: Any, attribute: str, target: str) -> Any:
    """Follow a dotted attribute path such as ``Acts.relu`` from ``container``."""
    obj = container
    walked: list[str] = []
    for part in attribute.split("."):
        if not hasattr(obj, part):
            where = getattr(container, "__file__", None) or getattr(container, "__name__", "?")
            owner = ".".join(walked) or (
                display_path(where) if str(getattr(container, "__name__", "")).startswith("_gradaudit_file_")
                else getattr(container, "__name__", "module"))
            available = sorted(n for n in dir(obj) if not n.startswith("_"))[:12]
            raise TargetError(
                f"{target}: {owner} has no "
                f"attribute {part!r} (looked in {where}). Check the name after the colon; "
                f"available names include: {', '.join(available) or 'none'}."
            )
        obj = getattr(obj, part)
        walked.append(part)
    return obj


def split_call(attribute: str, target: str) -> tuple[str, dict[str, Any]]:
    """``softmax(dim=-1)`` -> ``("softmax", {"dim": -1})``: keyword arguments with literal
    values bind the target as a ``functools.partial``; a plain name has none."""
    if not attribute.endswith(")") or "(" not in attribute:
        return attribute, {}
    try:
        call = ast.parse(attribute, mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError("only keyword arguments are allowed")
        keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
        name = ast.unparse(call.func)
    except (SyntaxError, ValueError) as exc:
        raise TargetError(
            f"{target}: cannot read the arguments in {attribute!r} ({exc}). Bind keyword arguments "
            f"with literal values only, e.g. torch.nn.functional:softmax(dim=-1)."
        ) from None
    return name, keywords


def resolve(spec: str) -> list[Target]:
    """The targets a command-line target string names.

    ``mod:attr`` and ``file.py:attr`` name one target; ``@group`` names a target group
    (see :mod:`gradaudit.groups`); a bare module or file is searched with :func:`discover`.
    """
    if spec.startswith("@"):
        from .groups import resolve_group

        return resolve_group(spec[1:])
    if ":" in spec and not (len(spec) > 1 and spec[1] == ":" and spec[0].isalpha() and "\\" in spec):
        module_part, attribute = spec.rsplit(":", 1)
        if not module_part or not attribute:
            raise TargetError(
                f"{spec}: a target is 'package.module:attribute' or 'path/to/file.py:attribute'; "
                f"one side of the colon is empty."
            )
        attribute, keywords = split_call(attribute, spec)
        container = load_container(module_part, spec)
        obj = resolve_attribute(container, attribute, spec)
        options = dict(getattr(obj, OPTIONS_ATTRIBUTE, {}) or {})
        if keywords:
            obj = functools.partial(obj, **keywords)
        return [Target(name=spec, obj=obj, options=options)]
    from .discovery import discover

    return discover(spec)
