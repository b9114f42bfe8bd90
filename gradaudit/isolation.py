"""Audit targets in worker processes, each within a time limit.

A target that hangs, kills its interpreter (``os.abort``, a segfault in an extension, the
out-of-memory killer) or runs out of memory must not take the run down with it: its
report becomes a GA901 error that says what happened, its worker is replaced, and every
other target is still audited.

Workers are long-lived ``spawn`` processes (torch is imported once per worker, not once per
target). They receive target strings and plain option keywords, never objects, and answer
with reports. Per task a worker sends ``("located", location)`` once it has found the
target, so a report for a target that then hangs or crashes still points at its source,
and ``("done", result)`` when finished.
"""
from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any

from .config import Config
from .report import Finding, Report
from .runner import Progress, names_one_target

STARTUP_SECONDS = 300.0
"""How long a new worker may take to import torch and gradaudit before the run gives up."""


# -- the worker process --------------------------------------------------------------------

def _worker_main(conn: Connection, option_kwargs: dict[str, Any], config: Config, verbose: bool,
                 threads: int) -> None:
    """Serve ``("expand" | "audit", name)`` tasks until ``None`` or the pipe closes."""
    os.dup2(2, 1)  # targets that print must not corrupt a JSON/SARIF report on stdout
    sys.stdout = sys.stderr
    import torch

    from . import runner

    torch.set_num_threads(threads)  # the workers share the cores instead of oversubscribing them

    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        kind, name = task
        try:
            if kind == "expand":
                result: Any = runner.expand(name, verbose)
            else:
                conn.send(("located", runner.locate(name)))
                result = runner.audit_one(name, option_kwargs, config, verbose)
        except MemoryError:
            report = _error(name, f"{name}: ran out of memory (MemoryError) while being audited. "
                                  f"The target allocates more than this machine has for gradaudit's "
                                  f"probe tensors (a few thousand elements): fix it, or restrict its "
                                  f"inputs with --domain.", "memory")
            result = ([], [report]) if kind == "expand" else report
        _send(conn, ("done", result))


def _send(conn: Connection, message: tuple[str, Any]) -> None:
    try:
        conn.send(message)
    except Exception:  # a finding's details hold something unpicklable: send them as text
        kind, result = message
        conn.send((kind, _plain(result)))


def _plain(result: Any) -> Any:
    if isinstance(result, Report):
        findings = [replace(f, details={k: repr(v) for k, v in f.details.items()} if f.details else None,
                            examples=[{k: repr(v) for k, v in e.items()} for e in f.examples])
                    for f in result.findings]
        return replace(result, findings=findings)
    if isinstance(result, tuple):
        return tuple(_plain(item) for item in result)
    if isinstance(result, list):
        return [_plain(item) for item in result]
    return result


# -- the parent ----------------------------------------------------------------------------

@dataclass
class _Task:
    key: tuple[int, ...]
    kind: str  # "expand": search a module or file for targets; "audit": audit one target
    name: str


@dataclass
class _Worker:
    process: Any
    conn: Connection
    born: float = field(default_factory=time.monotonic)
    ready: bool = False
    task: _Task | None = None
    started: float = 0.0
    location: dict[str, Any] | None = None


def _error(name: str, message: str, reason: str, location: dict[str, Any] | None = None,
           seconds: float = 0.0, **details: Any) -> Report:
    finding = Finding("GA901", "error", message, location=location, details={"reason": reason, **details})
    return Report(target=name, findings=[finding], location=location, seconds=seconds)


def _signal_name(exitcode: int) -> str:
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def _crash_report(task: _Task, exitcode: int | None, location: dict[str, Any] | None, seconds: float) -> Report:
    if exitcode is not None and exitcode < 0:
        how = f"was killed by {_signal_name(exitcode)}"
    else:
        how = f"exited with code {exitcode}"
    doing = "searching" if task.kind == "expand" else "auditing"
    message = (
        f"{task.name}: the worker process {doing} it {how}: the target crashed the Python "
        f"interpreter (os.abort, a segmentation fault in an extension, or the out-of-memory "
        f"killer, which sends SIGKILL). The other targets were still audited. Run "
        f"'gradaudit check {task.name}' alone, without --jobs or --timeout, to see the crash.")
    return _error(task.name, message, "crash", location, seconds, exitcode=exitcode)


def _timeout_report(task: _Task, limit: float, location: dict[str, Any] | None) -> Report:
    doing = "importing and searching" if task.kind == "expand" else "auditing"
    message = (
        f"{task.name}: {doing} it did not finish within the time limit of {limit:g} s "
        f"(--timeout), so its worker was stopped. The target hangs (an endless loop, a "
        f"blocking call, a deadlock) or is very slow on gradaudit's few thousand probe inputs: "
        f"fix it, raise --timeout, or audit it with a smaller --size. The other targets were "
        f"still audited.")
    return _error(task.name, message, "timeout", location, limit, timeout=limit)


class _Pool:
    """Worker processes that each run one task at a time, replaced when they die or time out."""

    def __init__(self, jobs: int, timeout: float | None, args: tuple[Any, ...]) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.jobs = jobs
        self.timeout = timeout
        self.args = args
        self.workers: list[_Worker] = []

    def start(self) -> None:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child, *self.args), daemon=True,
                                       name="gradaudit-worker")
        process.start()
        child.close()
        self.workers.append(_Worker(process=process, conn=parent))

    def stop(self, worker: _Worker, kill: bool) -> None:
        self.workers.remove(worker)
        if kill and worker.process.is_alive():
            worker.process.kill()
        else:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()

    def close(self) -> None:
        for worker in list(self.workers):
            self.stop(worker, kill=worker.task is not None)


def audit_isolated(specs: list[str], option_kwargs: dict[str, Any], config: Config, *, jobs: int,
                   timeout: float | None, verbose: bool, progress: Progress) -> list[Report]:
    """Audit every target ``specs`` name in up to ``jobs`` workers, ``timeout`` s per target."""
    pending: collections.deque[_Task] = collections.deque()
    for index, spec in enumerate(specs):
        if names_one_target(spec):
            pending.append(_Task((index, 0), "audit", spec))
            progress.add(1)
        else:
            pending.append(_Task((index,), "expand", spec))
    results: list[tuple[tuple[int, ...], Report]] = []
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    pool = _Pool(max(1, jobs), timeout, (option_kwargs, config, verbose, threads))

    def finish(task: _Task, result: Any) -> None:
        if task.kind == "expand":
            names, errors = result
            names = [name for name in names if not config.skips(name)]
            results.extend(((task.key[0], 0), report) for report in errors)
            progress.add(len(names))
            pending.extend(_Task((task.key[0], j), "audit", name) for j, name in enumerate(names))
        else:
            results.append((task.key, result))
            progress.advance(task.name)

    try:
        while pending or any(w.task for w in pool.workers):
            busy = sum(1 for w in pool.workers if w.task is not None)
            while len(pool.workers) < min(pool.jobs, busy + len(pending)):
                pool.start()
            for worker in pool.workers:
                if worker.ready and worker.task is None and pending:
                    worker.task, worker.started, worker.location = pending.popleft(), time.monotonic(), None
                    worker.conn.send((worker.task.kind, worker.task.name))
            wait([w.conn for w in pool.workers] + [w.process.sentinel for w in pool.workers],
                 timeout=_next_deadline(pool))
            for worker in list(pool.workers):
                _service(pool, worker, finish, pending, results)
    finally:
        pool.close()
    return [report for _, report in sorted(results, key=lambda item: item[0])]


def _next_deadline(pool: _Pool) -> float:
    now = time.monotonic()
    waits = [1.0]
    for worker in pool.workers:
        if worker.task is not None and pool.timeout is not None:
            waits.append(worker.started + pool.timeout - now)
    return max(0.01, min(waits))


def _service(pool: _Pool, worker: _Worker, finish: Any, pending: collections.deque[_Task],
             results: list[tuple[tuple[int, ...], Report]]) -> None:
    """Read a worker's messages, then deal with its death, its time limit, or its start-up."""
    died = False
    try:
        while worker.conn.poll():
            kind, payload = worker.conn.recv()
            if kind == "ready":
                worker.ready = True
            elif kind == "located":
                worker.location = payload
            elif kind == "done" and worker.task is not None:
                task, worker.task = worker.task, None
                finish(task, payload)
    except (EOFError, OSError):
        died = True
    now = time.monotonic()
    if died or not worker.process.is_alive():
        worker.process.join(timeout=5)
        if worker.task is not None:
            task = worker.task
            finish(task, _expand_error(task, _crash_report(task, worker.process.exitcode, worker.location,
                                                           now - worker.started)))
            worker.task = None
        elif not worker.ready:
            _fail_all(pending, results, f"a gradaudit worker process failed to start (exit code "
                                        f"{worker.process.exitcode}); run without --jobs and --timeout")
        pool.stop(worker, kill=True)
    elif worker.task is not None and pool.timeout is not None and now - worker.started > pool.timeout:
        task = worker.task
        worker.task = None
        pool.stop(worker, kill=True)
        finish(task, _expand_error(task, _timeout_report(task, pool.timeout, worker.location)))
    elif not worker.ready and now - worker.born > STARTUP_SECONDS:
        pool.stop(worker, kill=True)
        _fail_all(pending, results, f"a gradaudit worker process did not start within {STARTUP_SECONDS:g} s")


def _expand_error(task: _Task, report: Report) -> Any:
    """An error report in the shape :func:`finish` expects for the task's kind."""
    return ([], [report]) if task.kind == "expand" else report


def _fail_all(pending: collections.deque[_Task], results: list[tuple[tuple[int, ...], Report]], why: str) -> None:
    while pending:
        task = pending.popleft()
        results.append((task.key if task.kind == "audit" else (task.key[0], 0),
                        _error(task.name, f"{task.name}: not audited: {why}.", "worker")))


__all__ = ["audit_isolated"]
