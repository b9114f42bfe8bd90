"""The one option merge: decorator < config file < command line < call.

Every front end builds plain dicts, one per layer, and merges them here: :func:`gradaudit.audit`
(the decorator's options under the call's), the CLI's runner (a target's decorator options, its
``[tool.gradaudit.targets]`` table, then the command line, whose run-wide settings default to
the config file's ``[tool.gradaudit]``), and the pytest plugin (decorator, config table, the
``--gradaudit-*`` options over ``[tool.gradaudit]``, then the ``assert_audit`` keywords).
Validation is not done here: :func:`gradaudit.core.build_options` validates the result. Pure
data: no torch.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

LAYERS = ("decorator", "config", "command line", "call")
"""The layers of audit options, lowest precedence first."""

COMBINED = ("ignore",)
"""Options whose lists add up across layers instead of the later one replacing the earlier."""

MAPPINGS = ("inputs",)
"""Options that map names to values: a later layer replaces the entries it names only
(``--input slope=30`` keeps a declared ``bias`` role)."""

DECLARED = ("kinks", "domain", "surrogate", "reference", "ignore", "inputs")
"""Options a target declares (``@gradaudit.activation``, a per-target config table)."""

RUN_SETTINGS = ("dtypes", "size", "seed", "select", "ignore", "compile")
"""Run settings (``[tool.gradaudit]``, ``--dtype`` ...) that are audit options."""


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def merge_options(*layers: Mapping[str, Any] | None, combined: Iterable[str] = COMBINED) -> dict[str, Any]:
    """``layers`` merged, lowest precedence first: a value a later layer gives (not None)
    replaces the earlier one, except that the lists of ``combined`` options are joined, earlier
    first, and :data:`MAPPINGS` options are merged name by name. A key no layer gives a value is left out (its default applies)."""
    joined = frozenset(combined)
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                continue
            if key in joined and merged.get(key) is not None:
                merged[key] = _as_list(merged[key]) + _as_list(value)
            elif key in MAPPINGS and isinstance(merged.get(key), Mapping) and isinstance(value, Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


__all__ = ["LAYERS", "COMBINED", "MAPPINGS", "DECLARED", "RUN_SETTINGS", "merge_options"]
