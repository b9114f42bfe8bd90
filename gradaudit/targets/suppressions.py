"""Inline suppressions in the style of noqa: ``# gradaudit: ignore[GA203] reason``.

The comment goes on the line of the target's ``def`` or ``class``, or on one of its decorator
lines; it silences the named codes (or slugs, or code prefixes) for that target alone. This
module only reads the comments (pure text, no torch); ``gradaudit.core`` applies them.
"""
from __future__ import annotations

import linecache
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable

COMMENT = re.compile(r"#\s*gradaudit:\s*ignore\[(?P<names>[^\]]*)\](?P<reason>[^#]*)", re.IGNORECASE)
DEFINITION = re.compile(r"\s*(async\s+def|def|class)\b")
MAX_DECORATOR_LINES = 40
"""How far below the first decorator line the ``def``/``class`` line is looked for."""


@dataclass(frozen=True)
class Suppression:
    """One ``ignore[...]`` comment: the names it lists, its reason ("" if none) and where it is."""

    names: tuple[str, ...]
    reason: str
    path: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _lines(path: str) -> list[str]:
    full = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    return linecache.getlines(full) or linecache.getlines(path)


def definition_lines(lines: list[str], line: int) -> list[int]:
    """The 1-based lines of the definition at ``line``: the decorators above it, the lines down
    to its ``def``/``class`` line (``line`` may be a decorator's or the definition's)."""
    if not 1 <= line <= len(lines):
        return []
    start = line
    while start > 1 and lines[start - 2].lstrip().startswith("@"):
        start -= 1
    end = line
    while end < min(len(lines), line + MAX_DECORATOR_LINES) and not DEFINITION.match(lines[end - 1]):
        end += 1
    if not DEFINITION.match(lines[end - 1]):
        end = line
    return list(range(start, end + 1))


def parse_comment(text: str) -> tuple[tuple[str, ...], str] | None:
    """``(names, reason)`` of a suppression comment in one source line, or None."""
    match = COMMENT.search(text)
    if match is None:
        return None
    names = tuple(part.strip() for part in match.group("names").split(",") if part.strip())
    return names, match.group("reason").strip()


def read_suppressions(locations: Iterable[dict[str, Any] | None]) -> list[Suppression]:
    """The suppression comments at each definition of ``locations`` (``{"path", "line"}`` of the
    target's ``def``/``class`` or first decorator), each comment once."""
    found: dict[tuple[str, int], Suppression] = {}
    for location in locations:
        if not location or not location.get("path") or not location.get("line"):
            continue
        path = str(location["path"])
        lines = _lines(path)
        for number in definition_lines(lines, int(location["line"])):
            parsed = parse_comment(lines[number - 1])
            if parsed is not None and (path, number) not in found:
                found[(path, number)] = Suppression(parsed[0], parsed[1], path, number)
    return list(found.values())
