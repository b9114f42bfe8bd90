"""Renderers: the only code that formats reports for people or tools.

Each format is a module here with a ``render_<name>(reports, verbose=False, **extra) -> str``;
the front end passes ``checks=`` (the registry's check metadata), which SARIF reads for its rules.
"""
from __future__ import annotations

import importlib
from typing import Callable

FORMATS = ("table", "json", "sarif", "markdown", "github")
"""Output formats, in the order ``--format`` lists them."""


def renderer(name: str) -> Callable[..., str]:
    """The render function for an output format name."""
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return getattr(module, f"render_{name}")


__all__ = ["FORMATS", "renderer"]
