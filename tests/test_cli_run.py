"""The run of ``gradaudit check`` survives its targets: SystemExit, Ctrl-C, bad per-target
options, printing, stray threads, and workers that send something other than data."""
from __future__ import annotations

import ast
import json
import math
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from conftest import ROOT
from gradaudit.cli import main

FAST = ["--dtype", "float64", "--select", "GA101"]

EXITING = textwrap.dedent('''
    import sys

    import torch
    import gradaudit


    @gradaudit.activation
    def exits_zero(x):
        sys.exit(0)


    @gradaudit.activation
    def exits_three(x):
        raise SystemExit(3)


    @gradaudit.activation
    def generator_exit(x):
        raise GeneratorExit()


    @gradaudit.activation(kinks=[0.0])
    def relu(x):
        return torch.where(x > 0, x, torch.zeros_like(x))
''')

DEATHS = textwrap.dedent('''
    import os
    import signal
    import time


    def os_exit(x):
        os._exit(3)


    def terminated(x):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
''')

MODULE_EXIT = textwrap.dedent('''
    import sys

    import torch
    import gradaudit


    @gradaudit.activation
    def relu(x):
        return torch.where(x > 0, x, torch.zeros_like(x))


    sys.exit(0)
''')

OPTIONS = textwrap.dedent('''
    import torch
    import gradaudit


    def relu(x):
        return torch.where(x > 0, x, torch.zeros_like(x))


    def other(x):
        return torch.where(x > 0, x, torch.zeros_like(x))


    @gradaudit.activation(domain=(5.0, -5.0))
    def declared_backwards(x):
        return torch.where(x > 0, x, torch.zeros_like(x))


    class Holder:
        @property
        def broken(self):
            raise RuntimeError("this property raises")


    holder = Holder()
''')

NOISY = textwrap.dedent('''
    import ctypes
    import os

    import torch

    print("noise at import")


    def relu(x):
        print("noise from print")
        os.write(1, b"noise at the file descriptor\\n")
        ctypes.CDLL(None).printf(b"noise from C printf\\n")
        return torch.where(x > 0, x, torch.zeros_like(x))
''')

THREADS = textwrap.dedent('''
    import threading
    import time

    import torch


    def relu(x):
        threading.Thread(target=time.sleep, args=(3600,), name="left-running").start()
        return torch.where(x > 0, x, torch.zeros_like(x))
''')

INTERRUPTS = textwrap.dedent('''
    import os
    import time

    import torch


    def interrupts(x):
        raise KeyboardInterrupt


    def waits(x):
        open(os.environ["GRADAUDIT_TEST_MARKER"], "w").close()
        time.sleep(120)
        return x


    def relu(x):
        return torch.where(x > 0, x, torch.zeros_like(x))
''')


def invoke(args, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, ["check", *args], catch_exceptions=False)


def process(args, cwd, timeout=240, env=None):
    environment = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    return subprocess.run([sys.executable, "-m", "gradaudit", "check", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def by_target(stdout):
    return {r["target"]: r for r in json.loads(stdout)["results"]}


def error_of(result):
    (finding,) = result["findings"]
    assert finding["code"] == "GA901" and finding["status"] == "error"
    return finding


# -- issue 18 item 14: SystemExit and Ctrl-C ------------------------------------------------

def test_system_exit_from_a_target_is_an_error_and_the_others_still_run(tmp_path, monkeypatch):
    (tmp_path / "exiting.py").write_text(EXITING)
    result = invoke(["exiting.py", "--format", "json", *FAST], tmp_path, monkeypatch)
    assert result.exit_code == 2
    results = by_target(result.stdout)
    assert list(results) == [f"exiting.py:{n}" for n in ("exits_zero", "exits_three", "generator_exit", "relu")]
    assert results["exiting.py:relu"]["status"] == "pass"
    for name in ("exits_zero", "exits_three", "generator_exit"):
        error_of(results[f"exiting.py:{name}"])
    assert "Traceback" not in result.output


def test_system_exit_at_import_time_is_an_error_and_the_others_still_run(tmp_path, monkeypatch):
    (tmp_path / "module_exit.py").write_text(MODULE_EXIT)
    (tmp_path / "exiting.py").write_text(EXITING)
    result = invoke(["module_exit.py", "module_exit.py:relu", "exiting.py:relu", "--format", "json", *FAST],
                    tmp_path, monkeypatch)
    assert result.exit_code == 2
    results = by_target(result.stdout)
    error_of(results["module_exit.py"])
    error_of(results["module_exit.py:relu"])
    assert results["exiting.py:relu"]["status"] == "pass"


def test_system_exit_ends_no_real_process_silently(tmp_path):
    (tmp_path / "exiting.py").write_text(EXITING)
    completed = process(["exiting.py:exits_zero", "exiting.py:relu", "--format", "json", *FAST], tmp_path)
    assert completed.returncode == 2, completed.stderr
    results = by_target(completed.stdout)
    assert [r["status"] for r in results.values()] == ["error", "pass"]
    error_of(results["exiting.py:exits_zero"])


def test_a_worker_death_is_described_as_what_it_was(tmp_path):
    (tmp_path / "exiting.py").write_text(EXITING)
    (tmp_path / "deaths.py").write_text(DEATHS)
    targets = ["deaths.py:os_exit", "deaths.py:terminated", "exiting.py:exits_three", "exiting.py:relu"]
    completed = process([*targets, "--jobs", "2", "--format", "json", *FAST], tmp_path)
    assert completed.returncode == 2, completed.stderr
    results = by_target(completed.stdout)
    exited = error_of(results["deaths.py:os_exit"])["details"]
    assert exited["reason"] == "exit" and exited["exitcode"] == 3
    killed = error_of(results["deaths.py:terminated"])["details"]
    assert killed["reason"] == "crash" and killed["signal"] == "SIGTERM"
    error_of(results["exiting.py:exits_three"])
    assert results["exiting.py:relu"]["status"] == "pass"


def test_a_worker_that_dies_of_an_exception_it_reported_is_described_by_it():
    from gradaudit.run import isolation

    task = isolation._Task((0, 0), "audit", "x.py:f")
    exited = isolation._crash_report(task, 4, None, 0.0, {"exception": "SystemExit", "exit_code": 4, "message": "4"})
    raised = isolation._crash_report(task, 1, None, 0.0, {"exception": "RuntimeError", "message": "boom"})
    assert exited.findings[0].details["reason"] == "exit" and exited.findings[0].details["exit_code"] == 4
    assert raised.findings[0].details["reason"] == "exception" and raised.findings[0].details["exception"] == "RuntimeError"


def test_keyboard_interrupt_stops_the_run_with_exit_130(tmp_path, monkeypatch):
    (tmp_path / "interrupts.py").write_text(INTERRUPTS)
    result = invoke(["interrupts.py:interrupts", "interrupts.py:relu", "--format", "json", *FAST],
                    tmp_path, monkeypatch)
    assert result.exit_code == 130
    assert result.stdout == "" and "Traceback" not in result.output


def test_ctrl_c_stops_a_real_process_with_exit_130(tmp_path):
    (tmp_path / "interrupts.py").write_text(INTERRUPTS)
    marker = tmp_path / "started"
    environment = dict(os.environ, PYTHONPATH=ROOT, GRADAUDIT_TEST_MARKER=str(marker))
    child = subprocess.Popen([sys.executable, "-m", "gradaudit", "check", "interrupts.py:waits", *FAST],
                             cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 200
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), child.communicate(timeout=10)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert stdout == "" and "Traceback" not in stderr


# -- issue 18 item 15: bad per-target options -----------------------------------------------

@pytest.mark.parametrize("table, option", [
    ("domain = [5, -5]", "domain"),
    ("domain = [0, nan]", "domain"),
    ('ignore = ["GA999"]', "ignore"),
    ('reference = "nosuchmodule:fn"', "reference"),
    ('reference = "options.py:holder.broken"', "reference"),
    ('kinks = ["a"]', "kinks"),
    ("kinks = [inf]", "kinks"),
])
def test_a_bad_config_table_is_an_error_for_its_target_only(tmp_path, monkeypatch, table, option):
    (tmp_path / "options.py").write_text(OPTIONS)
    (tmp_path / "pyproject.toml").write_text(f'[tool.gradaudit.targets."options.py:relu"]\n{table}\n')
    result = invoke(["options.py:relu", "options.py:other", "--format", "json", *FAST], tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    results = by_target(result.stdout)
    assert error_of(results["options.py:relu"])["details"]["option"] == option
    assert results["options.py:other"]["status"] == "pass"
    assert "Traceback" not in result.output


def test_a_bad_declared_option_is_an_error_for_its_target_only(tmp_path, monkeypatch):
    (tmp_path / "options.py").write_text(OPTIONS)
    result = invoke(["options.py:declared_backwards", "options.py:other", "--format", "json", *FAST],
                    tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    results = by_target(result.stdout)
    error_of(results["options.py:declared_backwards"])
    assert results["options.py:other"]["status"] == "pass"


def test_bad_config_tables_are_errors_for_their_targets_in_workers_too(tmp_path):
    (tmp_path / "options.py").write_text(OPTIONS)
    (tmp_path / "pyproject.toml").write_text('[tool.gradaudit.targets."options.py:relu"]\nignore = ["GA999"]\n')
    completed = process(["options.py:relu", "options.py:other", "--jobs", "2", "--format", "json", *FAST], tmp_path)
    assert completed.returncode == 2, completed.stderr
    results = by_target(completed.stdout)
    assert error_of(results["options.py:relu"])["details"]["option"] == "ignore"
    assert results["options.py:other"]["status"] == "pass"


@pytest.mark.parametrize("option", [["--reference", "options.py:holder.broken"], ["--domain", "nan", "1"],
                                    ["--kink", "inf"], ["--device", "nosuchdevice"]])
def test_a_bad_option_of_the_whole_run_is_a_usage_error_without_traceback(tmp_path, monkeypatch, option):
    (tmp_path / "options.py").write_text(OPTIONS)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "options.py:other", *option, *FAST])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""


# -- issue 18 item 16: what a target prints, threads it leaves running ----------------------

@pytest.mark.parametrize("output_format", ["json", "sarif"])
def test_what_a_target_prints_stays_off_stdout_in_process(tmp_path, monkeypatch, output_format):
    (tmp_path / "noisy.py").write_text(NOISY)
    result = invoke(["noisy.py:relu", "--format", output_format, *FAST], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    assert "noise from print" in result.stderr


def test_what_a_target_prints_stays_off_a_real_stdout(tmp_path):
    (tmp_path / "noisy.py").write_text(NOISY)
    completed = process(["noisy.py:relu", "--format", "json", *FAST], tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["status"] == "pass"
    for noise in ("noise at import", "noise from print", "noise at the file descriptor", "noise from C printf"):
        assert noise in completed.stderr


def test_a_thread_the_target_leaves_running_does_not_hang_the_command(tmp_path):
    (tmp_path / "threads.py").write_text(THREADS)
    completed = process(["threads.py:relu", "--format", "json", *FAST], tmp_path, timeout=150)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["status"] == "pass"


# -- issue 18 item 18: workers send data, never pickles -------------------------------------

def _leave_a_mark(path):
    with open(path, "w") as handle:
        handle.write("executed")
    return ("done", None)


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_leave_a_mark, (self.path,))


class _FakeProcess:
    exitcode = None
    sentinel = None

    def is_alive(self):
        return True


class _FakePool:
    timeout = None

    def __init__(self):
        self.stopped = []

    def stop(self, worker, kill):
        self.stopped.append(worker)


@pytest.mark.parametrize("message", ["pickle", b"not json", b'{"kind": "done", "payload": {"target": 3}}'])
def test_a_worker_message_that_is_not_json_data_is_an_error_and_never_executed(tmp_path, message):
    from gradaudit.run import isolation

    mark = tmp_path / "mark"
    parent, child = multiprocessing.Pipe()
    child.send_bytes(pickle.dumps(_Payload(str(mark))) if message == "pickle" else message)
    worker = isolation._Worker(process=_FakeProcess(), conn=parent, ready=True,
                               task=isolation._Task((0, 0), "audit", "x.py:f"), started=time.monotonic())
    finished = []
    pool = _FakePool()
    isolation._service(pool, worker, lambda task, result: finished.append((task, result)), [], [])
    assert not mark.exists()
    ((task, report),) = finished
    assert task.name == "x.py:f" and report.status == "error" and report.codes() == {"GA901"}
    assert pool.stopped == [worker]
    parent.close()
    child.close()


def test_reports_cross_the_pipe_as_json_and_come_back_equal():
    from gradaudit.run.wire import decode, encode
    from gradaudit.model.report import Finding, Report

    report = Report(target="a.py:f", location={"path": "a.py", "line": 3}, seconds=1.5, findings=[
        Finding("GA203", "warn", "m", dtype="float32", examples=[{"input": -1.0, "output": "-0.0"}],
                location={"path": "a.py", "line": 4}, details={"interval": [-math.inf, 0.0], "nan": math.nan}),
        Finding("GA901", "error", "e", details={"object": object()})])
    data = encode("done", report)
    assert isinstance(data, bytes)
    kind, back = decode(data, expect="report")
    assert kind == "done" and back.target == report.target and back.location == report.location
    assert [f.code for f in back.findings] == ["GA203", "GA901"]
    assert back.findings[0].examples == report.findings[0].examples
    assert back.findings[0].details["interval"] == [-math.inf, 0.0] and math.isnan(back.findings[0].details["nan"])
    assert isinstance(back.findings[1].details["object"], str)


# -- issue 19: no import cycle between runner and isolation ---------------------------------

def _imports(module_path):
    tree = ast.parse(open(module_path, encoding="utf-8").read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [alias.name for alias in node.names]
            found.update(name.rsplit(".", 1)[-1] for name in names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.rsplit(".", 1)[-1] for alias in node.names)
    return found


def test_isolation_does_not_import_the_runner():
    package = os.path.join(ROOT, "gradaudit", "run")
    for module in ("isolation.py", "tasks.py", "wire.py"):
        assert "runner" not in _imports(os.path.join(package, module)), module
