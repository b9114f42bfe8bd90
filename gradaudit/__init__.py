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

__version__ = "0.1.0"

_EXPORTS = {
    "audit": "core",
    "activation": "decorator",
    "Report": "report",
    "Finding": "report",
    "AuditFailure": "report",
}

if TYPE_CHECKING:  # pragma: no cover
    from .core import audit
    from .decorator import activation
    from .report import AuditFailure, Finding, Report


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradaudit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = ["audit", "Report", "Finding", "AuditFailure", "activation", "__version__"]
