"""Find the targets inside a module, file or directory given without an attribute.

A target belongs to one module, the one that defines it, and is found and named only there:
an ``autograd.Function`` or no-argument ``nn.Module`` subclass whose ``__module__`` is that
module, or a callable marked with ``@gradaudit.activation`` in that module. A file that imports
them (a test) holds no target of its own, so each object is audited once, under the name of
the file or module that defines it, and per-target configuration matches that name.
"""
from __future__ import annotations

import inspect
import os
import sys
from typing import Any

import torch

from .loading import import_module, load_file
from .files import mentions_torch, python_files, skipped_file
from .names import looks_like_path
from .types import HOME_ATTRIBUTE, OPTIONS_ATTRIBUTE, Target, TargetError, UnloadableFile, display_path

__all__ = ["discover", "targets_in_module", "mentions_torch"]


def _constructs_without_arguments(cls: type) -> bool:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in signature.parameters.values()
    )


def _own_attribute(obj: Any, name: str) -> Any:
    """``obj.__dict__[name]`` (None if absent): the object's own mark, not a class's."""
    try:
        own = object.__getattribute__(obj, "__dict__")
        return own.get(name) if hasattr(own, "get") else None
    except Exception:  # no __dict__, or one that raises when read
        return None


def _binds(module: Any, obj: Any) -> bool:
    return any(value is obj for value in vars(module).values())


def _owner(obj: Any, module: Any, marked: bool) -> str | None:
    """The name of the module ``obj`` belongs to: for a marked object, where it was marked (or
    defined) if that module binds it, else ``module``; otherwise its ``__module__``."""
    try:
        defined_in = getattr(obj, "__module__", None)
    except Exception:
        defined_in = None
    if not marked:
        return defined_in if isinstance(defined_in, str) else None
    for name in (_own_attribute(obj, HOME_ATTRIBUTE), defined_in):
        if not isinstance(name, str):
            continue
        if name == module.__name__:
            return name
        other = sys.modules.get(name)
        if other is not None and other is not module and _binds(other, obj):
            return name
    return module.__name__


def _is_candidate(obj: Any) -> tuple[bool, bool]:
    """(is a target kind, is marked) for a module attribute; anything that raises when
    inspected (a lazy proxy, a raising ``__class__``) is neither."""
    try:
        marked = isinstance(_own_attribute(obj, OPTIONS_ATTRIBUTE), dict)
        if isinstance(obj, type) and issubclass(obj, torch.autograd.Function):
            return True, marked
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
            return marked or _constructs_without_arguments(obj), marked
        return marked, marked
    except Exception:
        return False, False


def _line(obj: Any) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except Exception:  # built-ins, instances, classes without source
        return 0


def targets_in_module(module: Any, prefix: str) -> list[Target]:
    """The targets ``module`` defines (``autograd.Function`` and no-argument ``nn.Module``
    subclasses, callables marked with ``@gradaudit.activation``), in source order, named
    ``prefix:attribute``; an object bound under several names is found once."""
    found: list[tuple[int, Target]] = []
    seen: set[int] = set()
    for name, obj in list(vars(module).items()):
        if name.startswith("_") or id(obj) in seen:
            continue
        candidate, marked = _is_candidate(obj)
        if not candidate or _owner(obj, module, marked) != module.__name__:
            continue
        seen.add(id(obj))
        options = dict(_own_attribute(obj, OPTIONS_ATTRIBUTE) or {})
        found.append((_line(obj), Target(name=f"{prefix}:{name}", obj=obj, options=options)))
    return [target for _, target in sorted(found, key=lambda item: item[0])]


def _file_targets(path: str) -> list[Target]:
    return targets_in_module(load_file(path, display_path(path)), display_path(path))


def discover(spec: str) -> list[Target]:
    """Targets in a file (``path/to/acts.py``), directory, or module (``pkg.acts``).

    In a directory, a file that fails to import is one :class:`UnloadableFile` target (a GA901
    error when audited) and the other files are still searched. A file that does not mention
    torch, or a ``setup.py``, is not imported and holds no target.
    """
    if os.path.isdir(spec):
        targets: list[Target] = []
        for path in python_files(spec):
            try:
                targets.extend(_file_targets(path))
            except TargetError as exc:
                name = display_path(path)
                targets.append(UnloadableFile(name=name, obj=None, error=str(exc)))
        return targets
    if looks_like_path(spec):
        if os.path.isfile(spec) and (skipped_file(spec) or not mentions_torch(spec)):
            return []
        return _file_targets(spec)
    return targets_in_module(import_module(spec, spec), spec)
