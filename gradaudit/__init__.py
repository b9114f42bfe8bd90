"""gradaudit: audit PyTorch activations and custom autograd.Functions.

Public API::

    from gradaudit import audit
    audit(my_activation).raise_for_status()
"""
from __future__ import annotations

__version__ = "0.1.0"

from .core import audit
from .decorator import activation
from .report import AuditFailure, Finding, Report

__all__ = ["audit", "Report", "Finding", "AuditFailure", "activation", "__version__"]
