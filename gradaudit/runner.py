"""A run of ``gradaudit check``: expand target strings, audit each target, report progress.

Targets are audited in this process, or, with ``jobs > 1`` or a ``timeout``, in worker
processes (:mod:`gradaudit.isolation`). Both paths go through :func:`expand` and
:func:`audit_one`, which take and return only plain, picklable data: target strings,
option keywords and reports.
"""
from __future__ import annotations

import os
import sys
from typing import IO, Any, Mapping

from .config import Config
from .report import Report

PROGRESS_MIN_TARGETS = 8
"""Progress is shown on a terminal's stderr from this many targets on."""


def names_one_target(spec: str) -> bool:
    """Whether ``spec`` names one target (``mod:attr``) rather than a module or file to search."""
    windows_drive = len(spec) > 1 and spec[1] == ":" and spec[0].isalpha() and "\\" in spec
    return ":" in spec and not windows_drive


def is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec or os.path.isdir(spec)


def expand(spec: str, verbose: bool = False) -> tuple[list[str], list[Report]]:
    """The target strings ``spec`` stands for, or an error report saying why there are none.

    A file or directory with no targets (or that does not mention torch) gives neither: a
    pre-commit run passes every changed file, and most hold no activation.
    """
    if names_one_target(spec):
        return [spec], []
    from . import core
    from .targets import TargetError

    core.VERBOSE_TRACEBACKS = verbose
    try:
        targets = core.resolve_spec(spec)
    except TargetError as exc:
        return [], [core.error_report(spec, str(exc), core._traceback_details(exc))]
    if not targets and not is_path(spec):
        # a module named without an attribute that holds no target: core's "no targets" error
        return [], core.audit_target_string(spec, core.build_options())
    return [target.name for target in targets], []


def audit_one(name: str, option_kwargs: Mapping[str, Any], config: Config, verbose: bool = False) -> Report:
    """Audit the one target ``name`` with the run's options and its config table."""
    from . import core

    core.VERBOSE_TRACEBACKS = verbose
    options = core.build_options(**option_kwargs)
    (report,) = core.audit_target_string(name, options, config.declared_for)
    return report


def locate(name: str) -> dict[str, Any] | None:
    """Where target ``name`` is defined, or None if it cannot be resolved."""
    from .targets import TargetError, resolve

    try:
        targets = resolve(name)
    except (TargetError, ValueError):
        return None
    return targets[0].source("forward") if targets else None


class Progress:
    """``[3/20] target`` on stderr, only when there are many targets and stderr is a terminal."""

    def __init__(self, stream: IO[str] | None = None, minimum: int = PROGRESS_MIN_TARGETS) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.minimum = minimum
        self.total = 0
        self.done = 0
        self._width = 0

    @property
    def enabled(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return self.total >= self.minimum and bool(isatty and isatty())

    def add(self, count: int) -> None:
        self.total += count

    def advance(self, name: str) -> None:
        self.done += 1
        if self.enabled:
            line = f"[{self.done}/{self.total}] {name}"[:120]
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self.stream.flush()

    def close(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def run_check(
    specs: list[str],
    option_kwargs: Mapping[str, Any],
    config: Config,
    *,
    jobs: int = 1,
    timeout: float | None = None,
    verbose: bool = False,
    progress: Progress | None = None,
) -> list[Report]:
    """Audit every target ``specs`` name, in spec order and, within a spec, in source order."""
    progress = progress or Progress()
    try:
        if jobs > 1 or timeout is not None:
            from .isolation import audit_isolated

            return audit_isolated(specs, dict(option_kwargs), config, jobs=jobs, timeout=timeout,
                                  verbose=verbose, progress=progress)
        return _audit_in_process(specs, option_kwargs, config, verbose, progress)
    finally:
        progress.close()


def _audit_in_process(specs: list[str], option_kwargs: Mapping[str, Any], config: Config,
                      verbose: bool, progress: Progress) -> list[Report]:
    reports: list[Report] = []
    expanded = [([n for n in names if not config.skips(n)], errors)
                for names, errors in (expand(spec, verbose) for spec in specs)]
    progress.add(sum(len(names) for names, _ in expanded))
    for names, errors in expanded:
        reports.extend(errors)
        for name in names:
            reports.append(audit_one(name, option_kwargs, config, verbose))
            progress.advance(name)
    return reports


__all__ = ["run_check", "expand", "audit_one", "locate", "Progress"]
