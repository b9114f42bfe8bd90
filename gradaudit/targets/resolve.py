"""Turn a target string into the targets it names: the front of the targets layer.

The string is parsed once, by :func:`gradaudit.targets.spec.parse_spec`; ``module:attr``
names one target (:func:`gradaudit.targets.loading.resolve_named`), ``ns::op`` or ``torch.ops.ns.op`` one
custom op (:func:`gradaudit.targets.loading.resolve_op`), ``@group`` a target group
(:mod:`gradaudit.targets.groups`), and a bare module, file or directory is searched
(:func:`gradaudit.targets.discovery.discover`). Import other names from the module that
defines them: :mod:`~gradaudit.targets.spec` (``Spec``, ``TargetError``),
:mod:`~gradaudit.targets.types` (``Target``), :mod:`~gradaudit.targets.loading`,
:mod:`~gradaudit.targets.names`.
"""
from __future__ import annotations

from .discovery import discover
from .groups import resolve_group
from .loading import resolve_named, resolve_op
from .spec import Spec, parse_spec
from .types import Target, unique


def resolve(spec: str | Spec) -> list[Target]:
    """The targets a target string names, each object once; :class:`TargetError` if it
    cannot be loaded."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.kind == "group":
        return resolve_group(spec.container)
    if spec.kind == "attribute":
        return [resolve_named(spec)]
    if spec.kind == "op":
        return [resolve_op(spec)]
    return unique(discover(spec))


__all__ = ["resolve"]
