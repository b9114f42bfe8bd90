"""Notices about the run rather than the mathematics: warnings the target raised (GA408) and
suppression comments that give no reason or name no check (GA409). Both are information only.

Neither check has a ``run``: ``gradaudit.core`` collects the warnings around the checks
(:func:`capture_warnings`) and reads the suppression comments at the target's definition.
"""
from __future__ import annotations

import os
import sys
import sysconfig
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from ..model.check import Check
from ..model.report import Finding

WARNING = Check(
    code="GA408",
    slug="runtime-warning",
    status="info",
    summary="the target (or torch, while running it) raised a Python warning",
    explanation=(
        "While gradaudit ran the target, a Python warning was raised by the target's code or by "
        "torch on its behalf (a deprecated call, a performance fallback, a dtype promotion). Each "
        "distinct warning is reported once, with where it was raised; none is printed to stderr. "
        "Torch's own warnings about gradaudit's use of jvp or vmap are not the target's and are dropped."
    ),
    fix="Read the warning: most name their own fix (a newer API, an explicit dtype). Silence it for "
    "this target with # gradaudit: ignore[GA408] reason, or with --ignore GA408.",
    example="a forward that calls torch.jit.script, or a backward that triggers a UserWarning in an op",
    messages={"warning": "{target} raised {category}: {text} (at {where}; seen {count} time(s) during the audit)."},
)

SUPPRESSION = Check(
    code="GA409",
    slug="suppression",
    status="info",
    summary="a '# gradaudit: ignore[...]' comment gives no reason, or names no check",
    explanation=(
        "A '# gradaudit: ignore[CODE] reason' comment on the line of a target's def or class (or "
        "of its decorators) silences those codes for that target, in the style of noqa. A "
        "suppression should say why, so that the next reader can judge it; one without a reason, "
        "or naming no known check, is reported as information."
    ),
    fix="Write the reason after the bracket: # gradaudit: ignore[GA203] the sign of zero is never read here.",
    example="def no_back(x):  # gradaudit: ignore[GA203]",
    messages={
        "no-reason": "the suppression of {codes} at {where} gives no reason; say why after the bracket "
                     "(# gradaudit: ignore[{codes}] why it is safe). {fix}",
        "unknown": "the suppression at {where} names {names}, which is no gradaudit check ({reason}); "
                   "nothing is silenced by it. Use codes such as GA203 or slugs such as signed-zero-output.",
    },
)

CHECKS = [WARNING, SUPPRESSION]

UNSUPPRESSIBLE = frozenset({"GA901", SUPPRESSION.code})
"""Codes a comment cannot silence: a target that could not be audited must never pass quietly."""

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_GRADAUDIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB_DIRS = tuple({os.path.abspath(sysconfig.get_paths()[key]) + os.sep for key in ("stdlib", "platstdlib")})


def _is_users(filename: str) -> bool:
    """Whether a frame's file is neither gradaudit's, nor torch's, nor the standard library's
    (import machinery included): the target's code or a library it calls."""
    if filename.startswith("<"):  # <frozen ...>, <string>: import machinery, code torch generates
        return filename == "<stdin>"
    path = os.path.abspath(filename)
    if path.startswith((_GRADAUDIT_DIR, _TORCH_DIR)):
        return False
    return not (path.startswith(_STDLIB_DIRS) and "site-packages" not in path)


def _user_frame(skip: int = 2) -> tuple[str, int] | None:
    """The innermost frame of code that is not gradaudit's, torch's or the standard library's,
    between the warning and gradaudit: a warning whose stack meets gradaudit's own frames first
    (torch warning about gradaudit's jvp or vmap) has none, whatever called gradaudit (pytest,
    click's test runner) above it."""
    frame = sys._getframe(skip)
    while frame is not None:
        filename = frame.f_code.co_filename
        if _is_users(filename):
            return filename, frame.f_lineno
        if os.path.abspath(filename).startswith(_GRADAUDIT_DIR):
            return None
        frame = frame.f_back
    return None


class WarningLog:
    """Distinct warnings, by (category, message, filename, lineno), with a count and the user's frame."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, str, int], dict[str, Any]] = {}

    def record(self, message: Any, category: type, filename: str, lineno: int, *_: Any, **__: Any) -> None:
        user = _user_frame()
        if user is None:  # raised by torch for gradaudit's own calls (jvp, vmap): not the target's
            return
        key = (category.__name__, str(message), filename, int(lineno))
        entry = self.seen.setdefault(key, {"count": 0, "user": user})
        entry["count"] += 1

    def findings(self, target: str) -> list[Finding]:
        """One GA408 info finding per distinct warning, located at the user's frame."""
        from ..targets.types import display_path

        out = []
        for (category, text, filename, lineno), entry in self.seen.items():
            path, line = entry["user"]
            shown = display_path(path) if not path.startswith("<") else path
            out.append(WARNING.finding(
                "warning", "info", target=target, category=category, text=text.strip(),
                where=f"{display_path(filename) if not filename.startswith('<') else filename}:{lineno}",
                count=entry["count"], location={"path": shown, "line": line},
                details={"category": category, "filename": filename, "lineno": lineno, "count": entry["count"]}))
        return out


@contextmanager
def capture_warnings() -> Iterator[WarningLog]:
    """Collect every warning raised inside (none reaches stderr or pytest's summary); the
    caller's warning filters and ``showwarning`` are restored on exit."""
    log = WarningLog()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = log.record
        yield log


def apply_suppressions(findings: list[Finding], suppressions: list[Any]) -> list[Finding]:
    """``findings`` with those whose code a suppression names marked ``suppressed`` (kept, never
    counted), plus a GA409 info for each suppression without a reason or naming no check.
    ``suppressions`` are :class:`gradaudit.targets.suppressions.Suppression`; names are codes,
    slugs or code prefixes, as ``--ignore`` takes them."""
    from dataclasses import replace

    from . import expand

    silenced: dict[str, Any] = {}
    notes: list[Finding] = []
    for suppression in suppressions:
        try:
            codes = expand(suppression.names) if suppression.names else set()
            if not codes:
                raise ValueError("the brackets are empty")
        except ValueError as exc:
            notes.append(SUPPRESSION.finding("unknown", "info", where=suppression.where,
                                             names=", ".join(suppression.names) or "nothing", reason=str(exc).split(";")[0],
                                             location={"path": suppression.path, "line": suppression.line}))
            continue
        for code in codes - UNSUPPRESSIBLE:
            silenced.setdefault(code, suppression)
        if not suppression.reason:
            notes.append(SUPPRESSION.finding("no-reason", "info", where=suppression.where,
                                             codes=",".join(suppression.names),
                                             location={"path": suppression.path, "line": suppression.line}))
    marked = [replace(f, suppressed=True, details={**(f.details or {}), "suppression": {
        "reason": silenced[f.code].reason, "path": silenced[f.code].path, "line": silenced[f.code].line}})
        if f.code in silenced else f for f in findings]
    return marked + notes
