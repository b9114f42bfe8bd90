"""Renderers: the only code that formats reports for people or tools."""
from __future__ import annotations

from typing import Callable

from ..report import Report

FORMATS = ("table", "json")


def renderer(name: str) -> Callable[..., str]:
    """The render function for an output format name."""
    if name == "table":
        from .table import render_table

        return render_table
    if name == "json":
        from .json import render_json

        return render_json
    raise ValueError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")


__all__ = ["FORMATS", "renderer", "Report"]
