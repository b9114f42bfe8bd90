"""Turn target strings and Python objects into callables gradaudit can audit.

Target strings:
    ``package.module:attr``, ``path/to/file.py:attr`` and dotted attributes after the
    colon (``mymod:Acts.relu``), optionally binding literal keyword arguments
    (``torch.nn.functional:softmax(dim=-1)``, a ``functools.partial``). Without a colon, a
    module, file or directory is searched for targets (see :func:`discover`); ``@name`` is a group.

This module is the front of the targets layer; the imports inside the layer go one way:
``targets`` -> ``discovery``, ``groups`` -> ``loading`` -> ``target_types`` (what a target
is) -> ``target_names`` (which names are one target; no torch). Its names stay importable from here: :class:`Target`, :class:`TargetError`,
:func:`target_from_object`, :func:`resolve`.
"""
from __future__ import annotations

from .discovery import discover
from .groups import resolve_group
from .loading import (import_module, load_container, load_file, names_attribute, package_module,
                      resolve_attribute, resolve_named, split_call)
from .names import dedupe_key, first_seen, unique_names
from .types import (HOME_ATTRIBUTE, OPTIONS_ATTRIBUTE, Target, TargetError, UnloadableFile,
                           display_path, source_location, target_from_object, unique)


def resolve(spec: str) -> list[Target]:
    """The targets a command-line target string names.

    ``mod:attr`` and ``file.py:attr`` name one target; ``@group`` names a target group
    (see :mod:`gradaudit.targets.groups`); a bare module, file or directory is searched with
    :func:`discover`, each object once.
    """
    if spec.startswith("@"):
        return resolve_group(spec[1:])
    if names_attribute(spec):
        return [resolve_named(spec)]
    return unique(discover(spec))


__all__ = [
    "HOME_ATTRIBUTE", "OPTIONS_ATTRIBUTE", "Target", "TargetError", "UnloadableFile", "dedupe_key",
    "discover", "display_path", "first_seen", "import_module", "load_container", "load_file", "package_module",
    "resolve", "resolve_attribute", "resolve_named", "source_location", "split_call",
    "target_from_object", "unique", "unique_names",
]
