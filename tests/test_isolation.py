"""--jobs and --timeout: targets that hang, abort or exhaust memory are errors; the rest still run."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from conftest import ROOT
from gradaudit.cli import main
from gradaudit.run.runner import Progress

FAST = ["--dtype", "float64", "--dtype", "float32"]

HAZARDS = textwrap.dedent('''
    import os
    import signal
    import time

    import torch
    import gradaudit


    @gradaudit.activation
    def hangs(x):
        while True:
            time.sleep(0.05)


    @gradaudit.activation
    def aborts(x):
        os.abort()


    @gradaudit.activation(kinks=[0.0])
    def correct_relu(x):
        return torch.where(x > 0, x, torch.zeros_like(x))
''')

MEMORY = textwrap.dedent('''
    import os
    import signal

    import torch


    def memory_error(x):
        raise MemoryError()


    def oom_killed(x):
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's out-of-memory killer does


    def correct_relu(x):
        return torch.where(x > 0, x, torch.zeros_like(x))
''')


def gradaudit_process(args, cwd, timeout=240):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gradaudit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def findings_by_target(document):
    return {r["target"]: r for r in document["results"]}


@pytest.mark.slow
def test_hanging_and_aborting_targets_are_errors_and_the_correct_one_passes(tmp_path):
    (tmp_path / "hazards.py").write_text(HAZARDS)
    completed = gradaudit_process(["check", "hazards.py", "--jobs", "2", "--timeout", "10",
                                   "--format", "json", *FAST], tmp_path)
    assert completed.returncode == 2, completed.stderr
    results = findings_by_target(json.loads(completed.stdout))
    assert list(results) == ["hazards.py:hangs", "hazards.py:aborts", "hazards.py:correct_relu"]
    assert {name: r["status"] for name, r in results.items()} == {
        "hazards.py:hangs": "error", "hazards.py:aborts": "error", "hazards.py:correct_relu": "pass"}
    (hang,) = results["hazards.py:hangs"]["findings"]
    (abort,) = results["hazards.py:aborts"]["findings"]
    assert hang["code"] == abort["code"] == "GA901"
    assert hang["details"]["reason"] == "timeout" and abort["details"]["reason"] == "crash"
    assert abort["details"]["exitcode"] < 0  # killed by a signal (SIGABRT)
    # the reports of targets that never returned still point at their source
    assert hang["location"]["path"] == abort["location"]["path"] == "hazards.py"
    assert hang["location"]["line"] < abort["location"]["line"]


@pytest.mark.slow
def test_memory_exhaustion_is_an_error_and_the_others_still_run(tmp_path):
    (tmp_path / "memory.py").write_text(MEMORY)
    targets = [f"memory.py:{name}" for name in ("memory_error", "oom_killed", "correct_relu")]
    completed = gradaudit_process(["check", *targets, "--timeout", "120", "--format", "json", *FAST], tmp_path)
    assert completed.returncode == 2, completed.stderr
    results = findings_by_target(json.loads(completed.stdout))
    assert [r["status"] for r in results.values()] == ["error", "error", "pass"]
    assert results[targets[1]]["findings"][0]["details"]["reason"] == "crash"
    assert results[targets[0]]["findings"][0]["code"] == "GA901"


@pytest.mark.slow
def test_workers_give_the_same_reports_as_one_process(in_root):
    args = ["check", "samples/seed_relu.py", "samples/defects.py:where_sqrt", "--format", "json", *FAST]
    alone = json.loads(CliRunner().invoke(main, args, catch_exceptions=False).output)
    pooled = gradaudit_process([*args, "--jobs", "2"], ROOT)
    assert pooled.returncode == 1, pooled.stderr

    def summary(document):
        return [(r["target"], r["status"], sorted(f["code"] for f in r["findings"])) for r in document["results"]]

    assert summary(json.loads(pooled.stdout)) == summary(alone)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream, total, shown", [(Terminal(), 8, True), (Terminal(), 3, False),
                                                  (io.StringIO(), 20, False)])
def test_progress_only_on_a_terminal_with_many_targets(stream, total, shown):
    progress = Progress(stream)
    progress.add(total)
    for index in range(total):
        progress.advance(f"t{index}")
    progress.close()
    assert (f"[{total}/{total}] t{total - 1}" in stream.getvalue()) is shown
