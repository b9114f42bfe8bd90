"""The check catalogue.

A check is data (:class:`Check`) plus a function that yields findings. Every module in
this package that defines ``CHECKS`` is collected automatically, so a new check is one new
module (or one more entry in an existing module's ``CHECKS``) and nothing else.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import Iterable

from ..model.check import Check

ERROR = Check(
    code="GA901",
    slug="error",
    status="error",
    summary="the target could not be imported, called, or returned something other than a tensor",
    explanation=(
        "gradaudit could not audit the target at all: the module or attribute is missing, "
        "the object is not callable, calling it on a float64 tensor raised, or it returned "
        "something other than one tensor. The other targets of the run are still audited."
    ),
    fix="Point gradaudit at a callable that takes one tensor and returns one tensor "
    "(an activation function, an nn.Module, or an autograd.Function subclass).",
    example="gradaudit check mypkg.acts:missing_name",
    messages={
        "message": "{message}",
        "exit": "{target}: {during}, the target raised {exception}{at}, which would end the whole run "
                "(a CI gate would then pass with nothing audited). A target must not exit: raise an "
                "exception instead of calling sys.exit() or raising {exit_type}.",
        "crash": "{target}: while running {code} ({slug}), the target's code raised {exception} at "
                 "{path}:{line} (in {function}). Fix the target there, or exclude that check with "
                 "ignore=['{code}'] / --ignore {code}. Other checks still ran.",
        "option": "{target}: its option {option} is invalid: {reason}. Fix it where the target declares "
                  "it (@gradaudit.activation(...) or its [tool.gradaudit.targets] table).",
        "call": "{target}: while running {code} ({slug}), {reason}. Fix the target or exclude that "
                "check with ignore=['{code}'] / --ignore {code}.",
        "internal": "{target}: gradaudit's check {code} ({slug}) crashed with {exception}. This is a "
                    "gradaudit bug; please report it with the output of -v. Other checks still ran.",
    },
)
"""GA901. Its kinds ``call`` and ``internal`` are for the run loop (``gradaudit.core``);
``message`` carries a front end's own text."""


@lru_cache(maxsize=None)
def catalogue() -> dict[str, Check]:
    """Every check, by code, in code order."""
    found: dict[str, Check] = {ERROR.code: ERROR}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for check in getattr(module, "CHECKS", ()):
            if check.code in found:
                raise RuntimeError(f"duplicate check code {check.code}")
            found[check.code] = check
    return dict(sorted(found.items()))


def lookup(name: str) -> Check:
    """A check by code (``GA203``) or slug (``signed-zero-output``); ``KeyError`` if none."""
    for check in catalogue().values():
        if name.upper() == check.code or name.lower() == check.slug:
            return check
    raise KeyError(name)


def expand(patterns: Iterable[str] | None) -> set[str]:
    """Codes matched by ``patterns``: codes, code prefixes (``GA2``) or slugs.

    Raises ``ValueError`` naming a pattern that matches no check.
    """
    codes: set[str] = set()
    for pattern in patterns or ():
        pattern = pattern.strip()
        matched = {
            code
            for code, check in catalogue().items()
            if code.startswith(pattern.upper()) or check.slug == pattern.lower()
        }
        if not pattern or not matched:
            known = ", ".join(f"{c.code} ({c.slug})" for c in catalogue().values())
            raise ValueError(f"unknown check {pattern!r}; known checks: {known}")
        codes |= matched
    return codes


def selected(select: Iterable[str] | None, ignore: Iterable[str] | None) -> set[str]:
    """Codes to run given select/ignore patterns (select defaults to every check)."""
    codes = expand(select) if select else set(catalogue())
    return codes - expand(ignore)
