"""Find the targets inside a module, file or directory given without an attribute.

A target belongs to one module, the one that defines it, and is found and named only there:
an ``autograd.Function`` or no-argument ``nn.Module`` subclass whose ``__module__`` is that
module, a ``torch.library`` custom op (``CustomOpDef``) whose implementing function is defined
there, or a callable marked with ``@gradaudit.activation`` in that module. A file that imports
them (a test) holds no target of its own, so each object is audited once, under the name of
the file or module that defines it, and per-target configuration matches that name.
"""
from __future__ import annotations

import inspect
import os
import sys
from typing import Any

import torch

from .files import mentions_torch, python_files, skipped_file
from .loading import import_module, load_file
from .spec import Spec, TargetError, parse_spec
from .types import HOME_ATTRIBUTE, OPTIONS_ATTRIBUTE, Target, UnloadableFile, custom_op_definition, display_path

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
        definition = custom_op_definition(obj)  # its class's module is torch's: its function's counts
        defined_in = getattr(definition._init_fn if definition is not None else obj, "__module__", None)
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
        if not isinstance(obj, type) and custom_op_definition(obj) is obj:
            return True, marked
        return marked, marked
    except Exception:
        return False, False


def _line(obj: Any) -> int:
    try:
        definition = custom_op_definition(obj)
        return inspect.getsourcelines(definition._init_fn if definition is not None else obj)[1]
    except Exception:  # built-ins, instances, classes without source
        return 0


def _bound_name(module: Any, obj: Any) -> str | None:
    """The public name under which ``module`` binds ``obj``, if it does."""
    for name, value in vars(module).items() if module is not None else ():
        if value is obj and not name.startswith("_"):
            return name
    return None


def targets_in_module(module: Any, prefix: str, submodules: bool = False) -> list[Target]:
    """The targets ``module`` defines (``autograd.Function`` and no-argument ``nn.Module``
    subclasses, callables marked with ``@gradaudit.activation``), in source order, named
    ``prefix:attribute``; an object bound under several names is found once. With
    ``submodules`` (a package named as a module), the targets its submodules define and it
    exposes are found too, each named by its defining module (``pkg.acts:relu``)."""
    found: list[tuple[tuple[int, str, int], Target]] = []
    seen: set[int] = set()
    for name, obj in list(vars(module).items()):
        if name.startswith("_") or id(obj) in seen:
            continue
        candidate, marked = _is_candidate(obj)
        owner = _owner(obj, module, marked) if candidate else None
        if owner == module.__name__:
            key, target_name = (0, "", _line(obj)), f"{prefix}:{name}"
        elif submodules and owner is not None and owner.startswith(module.__name__ + "."):
            bound = _bound_name(sys.modules.get(owner), obj)
            key = (1, owner, _line(obj))
            target_name = f"{owner}:{bound}" if bound is not None else f"{prefix}:{name}"
        else:
            continue
        seen.add(id(obj))
        options = dict(_own_attribute(obj, OPTIONS_ATTRIBUTE) or {})
        found.append((key, Target(name=target_name, obj=obj, options=options)))
    return [target for _, target in sorted(found, key=lambda item: item[0])]


def _file_targets(path: str) -> list[Target]:
    return targets_in_module(load_file(path, display_path(path)), display_path(path))


def discover(spec: str | Spec) -> list[Target]:
    """Targets in a file (``path/to/acts.py``), directory, or module (``pkg.acts``; for a
    package, also those its submodules define and it exposes).

    In a directory, a file that fails to import is one :class:`UnloadableFile` target (a GA901
    error when audited) and the other files are still searched. A file that does not mention
    torch, or a ``setup.py``, is not imported and holds no target.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec)
    path = spec.container
    if os.path.isdir(path):
        targets: list[Target] = []
        for file in python_files(path):
            try:
                targets.extend(_file_targets(file))
            except TargetError as exc:
                name = display_path(file)
                targets.append(UnloadableFile(name=name, obj=None, error=str(exc)))
        return targets
    if spec.kind == "path":
        if os.path.isfile(path) and (skipped_file(path) or not mentions_torch(path)):
            return []
        return _file_targets(path)
    module = import_module(path, path)
    return targets_in_module(module, path, submodules=hasattr(module, "__path__"))
