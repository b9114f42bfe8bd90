"""The check catalogue as a Markdown table: the README's "Checks" table is this output."""
from __future__ import annotations

from typing import Iterable, Protocol


class CheckRow(Protocol):
    """What the table reads of a check's metadata."""

    code: str
    slug: str
    status: str
    summary: str


def render_check_table(checks: Iterable[CheckRow]) -> str:
    """``| code | slug | status | finds |``, one row per check, in the order given."""
    lines = ["| code | slug | status | finds |", "|---|---|---|---|"]
    lines += [f"| {c.code} | {c.slug} | {c.status} | {c.summary} |" for c in checks]
    return "\n".join(lines)
