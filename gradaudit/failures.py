"""GA901: a target that could not be audited, and whose code is at fault.

A crash is the target's when its traceback reaches code outside torch, gradaudit, NumPy
and the standard library (the target's own module, or a third-party package it uses); the
finding then names that frame's file and line. A crash with no such frame is gradaudit's.
A target that raises ``SystemExit`` or ``GeneratorExit`` is an error of that target, never
the end of the run; ``KeyboardInterrupt`` still stops the run (the user pressed Ctrl-C).
"""
from __future__ import annotations

import os
import sysconfig
import traceback
from typing import Any

import numpy
import torch

from .checks import ERROR
from .model.report import Finding

TARGET_EXITS = (SystemExit, GeneratorExit)
"""What a target may raise that is no ``Exception`` but must not end the audit run."""

_INTERNAL_ROOTS = tuple(os.path.dirname(os.path.abspath(path)) + os.sep
                        for path in (torch.__file__, numpy.__file__, __file__))
"""torch's, NumPy's and gradaudit's package directories."""
_STDLIB = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep


class OptionError(ValueError):
    """A bad audit option: :attr:`option` names it, :attr:`target` the target (when known)."""

    def __init__(self, option: str, message: str, target: str | None = None) -> None:
        super().__init__(f"{target}: {message}" if target else message)
        self.option = option
        self.target = target
        self.reason = message

    def for_target(self, target: str) -> "OptionError":
        """The same error, naming ``target``."""
        return OptionError(self.option, self.reason, target)


def _internal(filename: str) -> bool:
    """Whether a frame's file belongs to torch, gradaudit, NumPy or the standard library."""
    if filename.startswith("<frozen"):
        return True
    path = os.path.abspath(filename) if not filename.startswith("<") else filename
    if path.startswith(_INTERNAL_ROOTS):
        return True
    return path.startswith(_STDLIB) and "-packages" + os.sep not in path


def user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of ``exc`` (or of the exceptions it was raised ``from``) outside
    torch, gradaudit, NumPy and the standard library: where the target's own code raised."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for frame in reversed(traceback.extract_tb(current.__traceback__)):
            if not _internal(frame.filename):
                return frame
        current = current.__cause__  # explicit chaining only: a bug in an except block is ours
    return None


def frame_location(frame: traceback.FrameSummary) -> dict[str, Any]:
    from .targets.types import display_path

    return {"path": display_path(frame.filename), "line": frame.lineno}


def innermost_cause(exc: BaseException) -> BaseException:
    """The exception the target itself raised: the end of the explicit ``from`` chain."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def describe(exc: BaseException) -> str:
    """``Type: first line`` of an exception; ``SystemExit(3)`` for an exit."""
    if isinstance(exc, TARGET_EXITS):
        return f"{type(exc).__name__}({', '.join(map(repr, exc.args))})"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def exit_finding(target: str, exc: BaseException, during: str, location: dict[str, Any] | None,
                 details: dict[str, Any] | None = None) -> Finding:
    """GA901 for a target that raised ``SystemExit`` or ``GeneratorExit`` ``during`` a phase."""
    frame = user_frame(exc)
    where = frame_location(frame) if frame is not None else location
    at = f" at {where['path']}:{where['line']}" if where else ""
    return ERROR.finding("exit", "error", target=target, during=during, exception=describe(exc), at=at,
                         exit_type=type(exc).__name__, location=where, details=details)


def crash_finding(target: str, code: str, slug: str, exc: BaseException,
                  details: dict[str, Any] | None) -> Finding | None:
    """GA901 for a check that crashed in the target's own code (forward, backward, or code
    they call), naming that file and line; None when no frame of the traceback is the
    target's, i.e. the crash is gradaudit's."""
    frame = user_frame(exc)
    if frame is None:
        return None
    where = frame_location(frame)
    return ERROR.finding("crash", "error", target=target, code=code, slug=slug,
                         exception=describe(innermost_cause(exc)), path=where["path"], line=where["line"],
                         function=frame.name, location=where, details=details)


def option_finding(target: str, exc: OptionError, location: dict[str, Any] | None) -> Finding:
    """GA901 for a target whose own options (``@gradaudit.activation`` or its config table)
    are invalid; ``details["option"]`` names the option."""
    return ERROR.finding("option", "error", target=target, option=exc.option, reason=exc.reason,
                         location=location, details={"option": exc.option})
