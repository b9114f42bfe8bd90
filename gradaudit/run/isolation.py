"""Audit targets in worker processes, each within a time limit.

A target that hangs, kills its interpreter (``os.abort``, a segfault in an extension, the
out-of-memory killer) or runs out of memory must not take the run down with it: its
report becomes a GA901 error that says what happened, its worker is replaced, and every
other target is still audited.

Workers are long-lived ``spawn`` processes (torch is imported once per worker, not once per
target). They receive target strings and plain option keywords, never objects, and answer
with JSON data (:mod:`gradaudit.run.wire`), never pickles, so that a target running in a
worker cannot make the parent run code. Per task a worker sends ``located`` once it has found
the target, so a report for a target that then hangs or crashes still points at its source,
and ``done`` when finished; ``fatal`` says why, if the worker itself is about to die.
"""
from __future__ import annotations

import collections
import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from ..checks import ERROR
from ..model.report import Report
from ..targets.files import excluding
from ..targets.names import first_seen
from . import wire
from .config import Config
from .tasks import names_one_target

STARTUP_SECONDS = 300.0
"""How long a new worker may take to import torch and gradaudit before the run gives up."""


class ProgressLike(Protocol):
    def add(self, count: int) -> None: ...

    def advance(self, name: str) -> None: ...


# -- the worker process --------------------------------------------------------------------

def _worker_main(conn: Connection, option_kwargs: dict[str, Any], config: Config, verbose: bool,
                 threads: int) -> None:
    """Serve ``["expand" | "audit", name]`` tasks until ``null`` or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops the workers
    os.dup2(2, 1)  # targets that print must not corrupt a JSON/SARIF report on stdout
    sys.stdout = sys.stderr
    import torch

    from . import tasks

    options = tasks.RunOptions(option_kwargs)  # built once per worker, on its first audit
    torch.set_num_threads(threads)  # the workers share the cores instead of oversubscribing them

    def send(kind: str, payload: Any = None) -> None:
        conn.send_bytes(wire.encode(kind, payload))

    send("ready")
    with excluding(config.exclude, config.directory):
        _serve(conn, send, options, config, verbose)


def _serve(conn: Connection, send: Any, options: Any, config: Config, verbose: bool) -> None:
    """The worker's loop: one task at a time until ``null`` or the pipe closes."""
    from . import tasks

    while True:
        try:
            task = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if task is None:
            return
        kind, name = task
        try:
            if kind == "expand":
                result: Any = tasks.expand(name, verbose)
            else:
                result = tasks.audit_one(name, options, config, verbose,
                                         located=lambda where: send("located", where))
        except KeyboardInterrupt as exc:  # no Ctrl-C reaches a worker: the target raised it
            report = tasks.could_not_audit(name, exc, "searching it" if kind == "expand" else "auditing it", verbose)
            result = ([], [report]) if kind == "expand" else report
        except BaseException as exc:  # the worker's own failure: say what it was, then die
            code = exc.code if isinstance(exc, SystemExit) else None
            send("fatal", {"exception": type(exc).__name__, "message": str(exc)[:1000], "exit_code": code})
            raise
        send("done", result)


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
    fatal: dict[str, Any] | None = None
    """What the worker said it died of, if it could say."""


def _error(name: str, message: str, reason: str, location: dict[str, Any] | None = None,
           seconds: float = 0.0, **details: Any) -> Report:
    finding = ERROR.finding("message", "error", message=message, location=location, details={"reason": reason, **details})
    return Report(target=name, findings=[finding], location=location, seconds=seconds)


def _signal_name(exitcode: int) -> str:
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


CRASH_SIGNALS = ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT")
"""Signals by which a process dies when it crashes itself (rather than being killed)."""


def _crash_report(task: _Task, exitcode: int | None, location: dict[str, Any] | None, seconds: float,
                  fatal: dict[str, Any] | None = None) -> Report:
    """A worker died while on ``task``: say how, as the worker said (``fatal``) or as its exit
    status shows (a signal, or an exit code)."""
    doing = "searching" if task.kind == "expand" else "auditing"
    alone = f"Run 'gradaudit check {task.name}' alone, without --jobs or --timeout, to see it happen."
    if fatal is not None:
        exception = str(fatal.get("exception"))
        reason = "exit" if exception == "SystemExit" else "exception"
        how = f"raised {exception}({fatal.get('exit_code')!r})" if reason == "exit" else f"raised {exception}: {fatal.get('message')}"
        message = (f"{task.name}: the worker process {doing} it {how} outside the target's call and died. "
                   f"The other targets were still audited. {alone}")
        return _error(task.name, message, reason, location, seconds, exitcode=exitcode,
                      exception=exception, exit_code=fatal.get("exit_code"))
    if exitcode is not None and exitcode < 0:
        name = _signal_name(exitcode)
        if name in CRASH_SIGNALS:
            why = ("the target crashed the Python interpreter (os.abort, a segmentation fault or "
                   "another fault in an extension)")
        elif name == "SIGKILL":
            why = ("the out-of-memory killer sends SIGKILL when the target allocates more than the "
                   "machine has (or another process killed it)")
        else:
            why = "the target, or another process, sent it that signal"
        message = (f"{task.name}: the worker process {doing} it was killed by {name}: {why}. The "
                   f"other targets were still audited. {alone}")
        return _error(task.name, message, "crash", location, seconds, exitcode=exitcode, signal=name)
    message = (f"{task.name}: the worker process {doing} it exited with code {exitcode} before it "
               f"reported a result: the target ended the process itself (os._exit({exitcode}), or "
               f"an extension that calls exit()). An activation must return a tensor. The other "
               f"targets were still audited. {alone}")
    return _error(task.name, message, "exit", location, seconds, exitcode=exitcode)


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
                worker.conn.send_bytes(b"null")
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
                   timeout: float | None, verbose: bool, progress: ProgressLike) -> list[Report]:
    """Audit every target ``specs`` name in up to ``jobs`` workers, ``timeout`` s per target."""
    pending: collections.deque[_Task] = collections.deque(
        _Task((index,), "expand", spec) for index, spec in enumerate(specs) if not names_one_target(spec))
    expanded: dict[int, list[str]] = {index: [spec] for index, spec in enumerate(specs) if names_one_target(spec)}
    results: list[tuple[tuple[int, ...], Report]] = []
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    pool = _Pool(max(1, jobs), timeout, (option_kwargs, config, verbose, threads))
    seen: set[str] = set()
    released = 0

    def release() -> None:
        """Queue the audits of every spec whose own and earlier specs' targets are known, in
        spec order, so that a target named twice is audited once, under its first spelling."""
        nonlocal released
        while released < len(specs) and released in expanded:
            names = first_seen([n for n in expanded[released] if not config.skips(n)], seen)
            progress.add(len(names))
            pending.extend(_Task((released, j), "audit", name) for j, name in enumerate(names))
            released += 1

    def finish(task: _Task, result: Any) -> None:
        if task.kind == "expand":
            names, errors = result
            results.extend(((task.key[0], 0), report) for report in errors)
            expanded[task.key[0]] = names
            release()
        else:
            results.append((task.key, result))
            progress.advance(task.name)

    release()
    try:
        while pending or any(w.task for w in pool.workers):
            busy = sum(1 for w in pool.workers if w.task is not None)
            while len(pool.workers) < min(pool.jobs, busy + len(pending)):
                pool.start()
            for worker in pool.workers:
                if worker.ready and worker.task is None and pending:
                    worker.task, worker.started, worker.location = pending.popleft(), time.monotonic(), None
                    worker.conn.send_bytes(json.dumps([worker.task.kind, worker.task.name]).encode())
            wait([w.conn for w in pool.workers] + [w.process.sentinel for w in pool.workers],
                 timeout=_next_deadline(pool))
            for worker in list(pool.workers):
                _service(pool, worker, finish, pending, results)
    finally:
        pool.close()
    for index in range(released, len(specs)):  # the workers failed before every spec was searched
        for j, name in enumerate(expanded.get(index, [])):
            results.append(((index, j), _error(name, f"{name}: not audited: the gradaudit worker "
                                                     f"processes failed; run without --jobs and --timeout.", "worker")))
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
            expect = {"audit": "report", "expand": "expansion"}.get(worker.task.kind) if worker.task else None
            kind, payload = wire.decode(worker.conn.recv_bytes(), expect)
            if kind == "ready":
                worker.ready = True
            elif kind == "located":
                worker.location = payload
            elif kind == "fatal":
                worker.fatal = payload
            elif kind == "done" and worker.task is not None:
                task, worker.task = worker.task, None
                finish(task, payload)
    except (EOFError, OSError):
        died = True
    except wire.WireError as exc:  # not data from gradaudit's worker: never trust that process again
        _reject(pool, worker, finish, pending, results, str(exc))
        return
    now = time.monotonic()
    if died or not worker.process.is_alive():
        worker.process.join(timeout=5)
        if worker.task is not None:
            task = worker.task
            finish(task, _expand_error(task, _crash_report(task, worker.process.exitcode, worker.location,
                                                           now - worker.started, worker.fatal)))
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


def _reject(pool: _Pool, worker: _Worker, finish: Any, pending: collections.deque[_Task],
            results: list[tuple[tuple[int, ...], Report]], why: str) -> None:
    """A worker sent a message that is not gradaudit's JSON: stop it; its task is an error."""
    task, worker.task = worker.task, None
    pool.stop(worker, kill=True)
    if task is None:
        if not worker.ready:
            _fail_all(pending, results, f"a gradaudit worker process sent a malformed message ({why})")
        return
    message = (f"{task.name}: the worker process auditing it sent a message that is not gradaudit's "
               f"JSON data ({why}), so it was stopped and its message ignored, never loaded: the "
               f"target took over the worker's connection or output. The other targets were still "
               f"audited.")
    finish(task, _expand_error(task, _error(task.name, message, "protocol", worker.location)))


def _expand_error(task: _Task, report: Report) -> Any:
    """An error report in the shape :func:`finish` expects for the task's kind."""
    return ([], [report]) if task.kind == "expand" else report


def _fail_all(pending: collections.deque[_Task], results: list[tuple[tuple[int, ...], Report]], why: str) -> None:
    while pending:
        task = pending.popleft()
        results.append((task.key if task.kind == "audit" else (task.key[0], 0),
                        _error(task.name, f"{task.name}: not audited: {why}.", "worker")))


__all__ = ["audit_isolated"]
