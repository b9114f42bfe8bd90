"""A run of ``gradaudit check``: expand target strings, audit each target, report progress.

Targets are audited in this process, or, with ``jobs > 1`` or a ``timeout``, in worker
processes (:mod:`gradaudit.run.isolation`). Both paths go through the tasks of
:mod:`gradaudit.run.tasks` (:func:`expand`, :func:`audit_one`), which take and return
only plain data: target strings, option keywords and reports. The runner imports
isolation, never the other way round.
"""
from __future__ import annotations

import sys
from typing import IO, Any, Mapping

from .tasks import audit_one, expand, is_path, locate, names_one_target, stdout_to_stderr
from .config import Config
from ..model.report import Report
from ..targets.names import first_seen

PROGRESS_MIN_TARGETS = 8
"""Progress is shown on a terminal's stderr from this many targets on."""


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
        with stdout_to_stderr():  # what targets print must not corrupt a report on stdout
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
    seen: set[str] = set()  # a target named twice (a directory and a file in it) is audited once
    expanded = [(first_seen([n for n in names if not config.skips(n)], seen), errors)
                for names, errors in (expand(spec, verbose) for spec in specs)]
    progress.add(sum(len(names) for names, _ in expanded))
    for names, errors in expanded:
        reports.extend(errors)
        for name in names:
            reports.append(audit_one(name, option_kwargs, config, verbose))
            progress.advance(name)
    return reports


__all__ = ["run_check", "expand", "audit_one", "locate", "Progress", "names_one_target", "is_path"]
