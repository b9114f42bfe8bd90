"""Load what a parsed target string (:class:`gradaudit.targets.spec.Spec`) names: modules and
files by importlib, then ``module:attr``.

Every file is its own module: a file inside a package is imported by its dotted name (so its
relative imports work) unless that name is taken by another file (``a/ops/acts.py`` and
``b/ops/acts.py``), in which case its package is imported under a private name. While a file is
imported, its directory (or its package's root) is first on ``sys.path`` and ``sys.argv`` is
``[path]``; both are put back as found afterwards.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import os
import sys
from typing import Any, Iterator

from .spec import Spec, TargetError, looks_like_path
from .types import OPTIONS_ATTRIBUTE, Target, custom_op_definition, display_path

_FAILED: dict[tuple[str, int], str] = {}
"""Files that failed to import, by (absolute path, modification time): the error, so that a
file named again (a directory scan, then its error target) does not run twice."""


@contextlib.contextmanager
def import_context(directory: str | None, argv0: str | None = None) -> Iterator[None]:
    """``directory`` first on ``sys.path`` (and ``sys.argv == [argv0]``) while a module is
    imported; ``sys.path`` and ``sys.argv`` are restored afterwards, entries the module added included."""
    saved_path, saved_argv = list(sys.path), sys.argv
    if directory is not None and directory not in sys.path:
        sys.path.insert(0, directory)
    if argv0 is not None:
        sys.argv = [argv0]
    try:
        yield
    finally:
        sys.path[:] = saved_path
        sys.argv = saved_argv


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


def _same_file(module: Any, path: str) -> bool:
    found = getattr(module, "__file__", None)
    return isinstance(found, str) and os.path.normcase(os.path.realpath(found)) == os.path.normcase(os.path.realpath(path))


def _name_is_free(root: str, dotted: str, absolute: str) -> bool:
    """Whether no module already loaded holds ``dotted`` or one of its packages from another file."""
    parts = dotted.split(".")
    for depth in range(1, len(parts) + 1):
        loaded = sys.modules.get(".".join(parts[:depth]))
        if loaded is None:
            continue
        expected = absolute if depth == len(parts) else os.path.join(root, *parts[:depth], "__init__.py")
        if not _same_file(loaded, expected):
            return False
    return True


def _private_package(root: str, top: str) -> str:
    """Import package ``root/top`` under a private name (its dotted name is another file's)."""
    directory = os.path.join(root, top)
    alias = f"_gradaudit_pkg_{top}_{hashlib.sha1(os.path.abspath(directory).encode()).hexdigest()[:10]}"
    if alias not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            alias, os.path.join(directory, "__init__.py"), submodule_search_locations=[directory])
        if spec is None or spec.loader is None:
            raise ImportError(f"{directory} cannot be imported as a package")
        module = importlib.util.module_from_spec(spec)
        sys.modules[alias] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[alias]
            raise
    return alias


def _family(top: str) -> list[str]:
    return [name for name in sys.modules if name == top or name.startswith(top + ".")]


def _import_aliased(root: str, dotted: str) -> Any:
    """Import ``root``'s ``dotted`` with its top package under a private name, the loaded
    package of that name (another file's) moved aside meanwhile: the file's relative imports
    and its absolute imports of its own package (``from ops.helpers import x``) then both
    find this root's modules. Modules imported by the package's own name are not kept."""
    top, _, rest = dotted.partition(".")
    theirs = {name: sys.modules.pop(name) for name in _family(top)}
    try:
        alias = _private_package(root, top)
        return importlib.import_module(f"{alias}.{rest}" if rest else alias)
    finally:
        for name in _family(top):
            del sys.modules[name]
        sys.modules.update(theirs)


def _import_failed(path: str, target: str, exc: BaseException) -> TargetError:
    return TargetError(
        f"{target}: importing {path!r} raised {type(exc).__name__}: {exc}. Fix the error in that "
        f"file (run it with python to see the traceback, or add -v)."
    )


def load_file(path: str, target: str) -> Any:
    """Import a Python file as its own module: by its dotted name when it lives in a package
    (so relative imports work) and that name is not another file's, else under a private,
    stable name. A file that failed to import raises the same error again without running."""
    if not os.path.isfile(path):
        raise TargetError(
            f"{target}: no such file {path!r}. Check the path, relative to the working "
            f"directory {os.getcwd()!r}."
        )
    absolute = os.path.abspath(path)
    failure_key = (absolute, os.stat(absolute).st_mtime_ns)
    if failure_key in _FAILED:
        raise TargetError(_FAILED[failure_key])
    try:
        return _load_file(absolute, path)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the user's module: SystemExit and import errors included
        error = _import_failed(path, target, exc)
        _FAILED[failure_key] = str(error)
        raise error from exc


def _load_file(absolute: str, path: str) -> Any:
    in_package = package_module(absolute)
    if in_package is not None:
        root, dotted = in_package
        with import_context(root, path):
            if _name_is_free(root, dotted, absolute):
                module = importlib.import_module(dotted)
                if _same_file(module, absolute):
                    return module
            return _import_aliased(root, dotted)
    digest = hashlib.sha1(absolute.encode()).hexdigest()[:10]
    module_name = f"_gradaudit_file_{os.path.splitext(os.path.basename(absolute))[0]}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, absolute)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path!r} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with import_context(os.path.dirname(absolute), path):
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def import_module(name: str, target: str) -> Any:
    """Import a dotted module (the working directory importable meanwhile), turning any
    failure into a :class:`TargetError`."""
    cwd = os.getcwd() if os.getcwd() not in sys.path and "" not in sys.path else None
    try:
        with import_context(cwd):
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and not name.startswith(exc.name) and exc.name != name:
            raise TargetError(
                f"{target}: importing module {name!r} raised ModuleNotFoundError: {exc}. Install the "
                f"missing module in this Python environment (add -v for the traceback)."
            ) from exc
        raise TargetError(
            f"{target}: cannot import module {name!r} ({exc}). Check the spelling, that the "
            f"package is installed in this Python environment, or give a file instead, as "
            f"path/to/file.py:attribute."
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise TargetError(
            f"{target}: importing module {name!r} raised {type(exc).__name__}: {exc}. Fix the "
            f"error in that module (add -v for the traceback)."
        ) from exc


def load_container(module_part: str, target: str) -> Any:
    """The module named by the part of a target string before the colon."""
    if looks_like_path(module_part):
        return load_file(module_part, target)
    return import_module(module_part, target)


def _has_attribute(obj: Any, name: str) -> bool:
    """``hasattr`` that treats any exception of a raising attribute as missing."""
    try:
        getattr(obj, name)
    except Exception:
        return False
    return True


def resolve_attribute(container: Any, attribute: str, target: str) -> Any:
    """Follow a dotted attribute path such as ``Acts.relu`` from ``container``."""
    obj = container
    walked: list[str] = []
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except Exception as exc:
            where = getattr(container, "__file__", None) or getattr(container, "__name__", "?")
            owner = ".".join(walked) or (
                display_path(where) if str(getattr(container, "__name__", "")).startswith(("_gradaudit_file_", "_gradaudit_pkg_"))
                else getattr(container, "__name__", "module"))
            if not isinstance(exc, AttributeError):
                raise TargetError(
                    f"{target}: reading {owner}.{part} raised {type(exc).__name__}: {exc}. Fix the "
                    f"attribute, or name the object it stands for."
                ) from exc
            available = sorted(n for n in dir(obj) if not n.startswith("_") and _has_attribute(obj, n))[:12]
            raise TargetError(
                f"{target}: {owner} has no "
                f"attribute {part!r} (looked in {where}). Check the name after the colon; "
                f"available names include: {', '.join(available) or 'none'}."
            ) from None
        walked.append(part)
    return obj


def resolve_named(spec: Spec) -> Target:
    """The one target of a ``module:attr`` or ``path/to/file.py:attr`` spec, named as given."""
    container = load_container(spec.container, spec.text)
    obj = resolve_attribute(container, spec.attribute, spec.text)
    options = dict(getattr(obj, OPTIONS_ATTRIBUTE, {}) or {})
    if spec.keywords:
        obj = functools.partial(obj, **spec.keywords)
    return Target(name=spec.text, obj=obj, options=options)


def resolve_op(spec: Spec) -> Target:
    """The custom op an ``op`` spec (``ns::op``, ``torch.ops.ns.op``) names: its ``CustomOpDef``
    where ``torch.library.custom_op`` made it (the Python function that implements it is then
    known), else the ``torch.ops`` packet or overload."""
    import torch

    name, _, overload = spec.attribute.partition(".")
    try:
        obj = getattr(getattr(torch.ops, spec.container), name)
        if overload:
            obj = getattr(obj, overload)
    except (AttributeError, RuntimeError) as exc:
        raise TargetError(
            f"{spec.text}: no operator {spec.container}::{spec.attribute} is registered ({exc}). Import "
            f"the module that registers it first, or name the op where it is defined, as "
            f"path/to/file.py:op_name."
        ) from None
    definition = custom_op_definition(obj)
    if definition is not None:
        obj = definition
    return Target(name=spec.text, obj=obj, options=dict(getattr(obj, OPTIONS_ATTRIBUTE, {}) or {}))
