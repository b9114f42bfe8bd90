"""The tasks of a ``gradaudit check`` run, shared by the runner and its worker processes.

:func:`resolve_targets` resolves a target string once and :func:`audit_target` audits what it
gave (the runner, in this process); :func:`expand` and :func:`audit_one` take and return only
plain data (target strings, reports), for worker processes. Whatever a target raises while it
is imported, searched or audited, ``SystemExit`` and ``GeneratorExit`` included, becomes a GA901 report for that target (only
``KeyboardInterrupt`` goes through, to stop the run). :func:`stdout_to_stderr` keeps what
targets print off stdout, which holds the report. Both the runner and
:mod:`gradaudit.run.isolation` import this module; neither imports the other's internals.
"""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from ..checks import ERROR
from ..model.report import Report
from ..targets.spec import TargetError, parse_spec
from .config import Config, TargetOptionError

if TYPE_CHECKING:  # pragma: no cover
    from ..targets.types import Target


def names_one_target(spec: str) -> bool:
    """Whether ``spec`` names one target (``mod:attr``) rather than a module, file, directory
    or group to search; a malformed ``mod:attr`` counts as one (auditing it reports why)."""
    try:
        return parse_spec(spec).names_one_target
    except TargetError:
        return True


def resolve_targets(spec: str, verbose: bool = False) -> tuple[list[Target], list[Report]]:
    """The targets ``spec`` names, resolved once, or an error report saying why there are none.

    A file or directory with no targets (or that does not mention torch) gives neither: a
    pre-commit run passes every changed file, and most hold no activation.
    """
    from .. import core

    core.VERBOSE_TRACEBACKS = verbose
    try:
        parsed = parse_spec(spec)
        targets = core.resolve_spec(parsed)
    except TargetError as exc:
        return [], [core.error_report(spec, str(exc), core._traceback_details(exc))]
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit, GeneratorExit or any exception of the searched module
        return [], [could_not_audit(spec, exc, "searching it for targets", verbose)]
    if not targets and not parsed.is_path:
        return [], [core.no_targets_report(spec)]  # a module or group that holds no target
    return targets, []


def expand(spec: str, verbose: bool = False) -> tuple[list[str], list[Report]]:
    """The names of the targets ``spec`` stands for (a worker's answer to the parent), or an
    error report saying why there are none."""
    if names_one_target(spec):
        return [spec], []
    targets, errors = resolve_targets(spec, verbose)
    return [target.name for target in targets], errors


class RunOptions:
    """The run's audit options, built from its option keywords once, on first use (a bad
    ``--reference`` then fails every target's audit, each as its own GA901)."""

    def __init__(self, option_kwargs: Mapping[str, Any]) -> None:
        self.kwargs = dict(option_kwargs)
        self._built: Any = None

    def get(self) -> Any:
        if self._built is None:
            from .. import core

            self._built = core.build_options(**self.kwargs)
        return self._built


def audit_target(target: Target, options: RunOptions, config: Config, verbose: bool = False) -> Report:
    """Audit one resolved target with the run's options and its config table.

    Never raises but ``KeyboardInterrupt``: a target that cannot be audited (it exits, its
    options or its config table are bad, it raises where gradaudit does not expect it) is a
    GA901 report, so that the other targets are still audited. A config table's value that
    is bad in itself (a reversed domain) is found by ``config.declared_for``; one that needs
    the target's context to judge (an unknown check, a reference that cannot be loaded) by
    :func:`gradaudit.core.merge_declared`.
    """
    from .. import core

    core.VERBOSE_TRACEBACKS = verbose
    try:
        return core.audit_resolved(target, options.get(), config.declared_for)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return could_not_audit(target.name, exc, "auditing it", verbose, _source(target))


def audit_one(name: str, options: RunOptions, config: Config, verbose: bool = False,
              located: Callable[[dict[str, Any] | None], None] | None = None) -> Report:
    """Resolve the one target ``name`` (once), say where it is (``located``), and audit it."""
    targets, errors = resolve_targets(name, verbose)
    if errors or not targets:
        from .. import core

        return errors[0] if errors else core.no_targets_report(name)
    if located is not None:
        located(_source(targets[0]))
    return audit_target(targets[0], options, config, verbose)


def _source(target: Target) -> dict[str, Any] | None:
    """Where ``target`` is defined, or None if that cannot be found."""
    try:
        return target.source("forward")
    except KeyboardInterrupt:
        raise
    except BaseException:
        return None


def could_not_audit(name: str, exc: BaseException, doing: str, verbose: bool = False,
                    location: dict[str, Any] | None = None) -> Report:
    """The GA901 report of a target that raised ``exc`` where gradaudit could not go on."""
    kind = type(exc).__name__
    details: dict[str, Any] = {"reason": "exception", "exception": kind}
    if isinstance(exc, TargetOptionError):
        details = {"reason": "options", "option": exc.option}
        message = (f"{name}: not audited: {exc}. Fix that option; the other targets were still "
                   f"audited.")
    elif isinstance(exc, SystemExit):
        code = exc.code if exc.code is None or isinstance(exc.code, (int, str)) else repr(exc.code)
        details = {"reason": "exit", "exception": kind, "exit_code": code}
        message = (f"{name}: raised SystemExit({code!r}) while gradaudit was {doing}: the target "
                   f"(or code it calls) runs sys.exit() or exit(), which would end the whole run. "
                   f"An activation must return a tensor; move the exit under "
                   f"'if __name__ == \"__main__\":' or out of the target. The other targets were "
                   f"still audited.")
    elif isinstance(exc, MemoryError):
        details = {"reason": "memory", "exception": kind}
        message = (f"{name}: ran out of memory (MemoryError) while gradaudit was {doing}. The "
                   f"target allocates more than this machine has for gradaudit's probe tensors (a "
                   f"few thousand elements): fix it, or restrict its inputs with --domain.")
    elif isinstance(exc, KeyboardInterrupt):
        details = {"reason": "interrupt", "exception": kind}
        message = (f"{name}: raised KeyboardInterrupt while gradaudit was {doing}, in a worker "
                   f"process that no Ctrl-C reaches: the target raises it itself. Fix the target.")
    else:
        message = (f"{name}: raised {kind}: {exc} while gradaudit was {doing}, so it could not "
                   f"be audited. Fix the target or its options (-v shows the traceback); the "
                   f"other targets were still audited.")
    if verbose:
        details["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    finding = ERROR.finding("message", "error", message=message, location=location, details=details)
    return Report(target=name, findings=[finding], location=location)


# -- what targets print -------------------------------------------------------------------

def _flush_c_stdio() -> None:
    """Flush C's stdio buffers, so that a target's ``printf`` lands where fd 1 points now."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to flush (Windows, static builds)
        pass


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send whatever is printed inside the block to stderr: Python's ``print`` through
    ``sys.stdout`` and C-level writes to file descriptor 1 alike. Stdout holds only the report."""
    saved_stream = sys.stdout
    with contextlib.suppress(Exception):
        saved_stream.flush()
    _flush_c_stdio()
    try:
        saved_fd: int | None = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptor 1 or 2 (a detached process): redirect print only
        saved_fd = None
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        _flush_c_stdio()
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        sys.stdout = saved_stream


__all__ = ["names_one_target", "resolve_targets", "expand", "RunOptions", "audit_target", "audit_one",
           "could_not_audit", "stdout_to_stderr"]
