"""gradaudit: audit PyTorch activations and custom autograd.Functions.

Public API::

    from gradaudit import audit
    audit(my_activation).raise_for_status()

The names below are imported on first use, so ``import gradaudit`` (and the pytest
plugin, which pytest loads at every start) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .model.version import __version__

_EXPORTS = {
    "audit": "core",
    "activation": "targets.decorator",
    "Report": "model.report",
    "Finding": "model.report",
    "AuditFailure": "model.report",
}

if TYPE_CHECKING:  # pragma: no cover
    from .core import audit
    from .model.report import AuditFailure, Finding, Report
    from .targets.decorator import activation


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradaudit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = ["audit", "Report", "Finding", "AuditFailure", "activation", "__version__"]
