"""A run of ``gradaudit check``: expand target strings, audit each target, report progress.

Targets are audited in this process, or, with ``jobs > 1`` or a ``timeout``, in worker
processes (:mod:`gradaudit.run.isolation`). Both paths go through the tasks of
:mod:`gradaudit.run.tasks`: in this process each target string is resolved once and its
targets audited as resolved; workers exchange only plain data (target strings, option
keywords, reports). The runner imports isolation, never the other way round.
"""
from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any, Mapping

from ..model.report import Report
from ..targets.files import excluding
from ..targets.names import first_seen
from .config import Config
from .tasks import RunOptions, audit_target, names_one_target, resolve_targets, stdout_to_stderr

if TYPE_CHECKING:  # pragma: no cover
    from ..targets.types import Target

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
        with stdout_to_stderr(), excluding(config.exclude, config.directory):  # stdout holds the report
            if jobs > 1 or timeout is not None:
                from .isolation import audit_isolated

                return audit_isolated(specs, dict(option_kwargs), config, jobs=jobs, timeout=timeout,
                                      verbose=verbose, progress=progress)
            return _audit_in_process(specs, option_kwargs, config, verbose, progress)
    finally:
        progress.close()


def _audit_in_process(specs: list[str], option_kwargs: Mapping[str, Any], config: Config,
                      verbose: bool, progress: Progress) -> list[Report]:
    """Resolve every spec once (all of them first, for the progress total), then audit the
    targets they gave; a target named twice (a directory and a file in it) is audited once."""
    seen: set[str] = set()
    resolved: list[tuple[list[Target], list[Report]]] = []
    for spec in specs:
        named = names_one_target(spec)
        if named and (config.skips(spec) or not first_seen([spec], seen)):
            continue
        targets, errors = resolve_targets(spec, verbose)
        if not named:
            targets = [t for t in targets if not config.skips(t.name) and first_seen([t.name], seen)]
        resolved.append((targets, errors))
    progress.add(sum(len(targets) for targets, _ in resolved))
    options = RunOptions(option_kwargs)
    reports: list[Report] = []
    for targets, errors in resolved:
        reports.extend(errors)
        for target in targets:
            reports.append(audit_target(target, options, config, verbose))
            progress.advance(target.name)
    return reports


__all__ = ["run_check", "Progress"]
