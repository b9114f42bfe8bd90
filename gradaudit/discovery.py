"""Find the targets inside a module or file given without an attribute."""
from __future__ import annotations

import inspect
import os
from typing import Any

import torch

from .targets import OPTIONS_ATTRIBUTE, Target, import_module, load_file


def mentions_torch(path: str) -> bool:
    """Whether a file's text mentions torch; files that do not are never imported."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "torch" in handle.read()
    except OSError:
        return False


def _constructs_without_arguments(cls: type) -> bool:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in signature.parameters.values()
    )


def targets_in_module(module: Any, prefix: str) -> list[Target]:
    """``autograd.Function`` and no-argument ``nn.Module`` subclasses defined in ``module``,
    and callables marked with ``@gradaudit.activation``, in source order."""
    found: list[tuple[int, Target]] = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        marked = OPTIONS_ATTRIBUTE in getattr(obj, "__dict__", {})
        defined_here = getattr(obj, "__module__", None) == module.__name__
        is_function_class = isinstance(obj, type) and issubclass(obj, torch.autograd.Function)
        is_module_class = isinstance(obj, type) and issubclass(obj, torch.nn.Module)
        if marked or (defined_here and is_function_class) or (
            defined_here and is_module_class and _constructs_without_arguments(obj)
        ):
            try:
                line = inspect.getsourcelines(obj)[1]
            except (TypeError, OSError):
                line = 0
            options = dict(getattr(obj, OPTIONS_ATTRIBUTE, {}) or {})
            found.append((line, Target(name=f"{prefix}:{name}", obj=obj, options=options)))
    return [target for _, target in sorted(found, key=lambda item: item[0])]


def discover(spec: str) -> list[Target]:
    """Targets in a file (``path/to/acts.py``), directory, or module (``pkg.acts``)."""
    if os.path.isdir(spec):
        targets: list[Target] = []
        for root, dirs, files in os.walk(spec):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            for filename in sorted(files):
                if filename.endswith(".py"):
                    path = os.path.join(root, filename)
                    if mentions_torch(path):
                        targets.extend(targets_in_module(load_file(path, path), path))
        return targets
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        if os.path.isfile(spec) and not mentions_torch(spec):
            return []
        return targets_in_module(load_file(spec, spec), spec)
    return targets_in_module(import_module(spec, spec), spec)
