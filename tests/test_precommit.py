"""The pre-commit hook, run for real by pre-commit in a temporary git repository."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

yaml = pytest.importorskip("yaml")  # pre-commit depends on PyYAML

DEFECTIVE = textwrap.dedent('''
    import torch
    import gradaudit


    @gradaudit.activation
    def sqrt_relu(x):
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))  # NaN gradient for x <= 0
''')

CORRECT = textwrap.dedent('''
    import torch
    import gradaudit


    @gradaudit.activation
    def sqrt_relu(x):
        positive = x > 0
        safe = torch.where(positive, x, torch.ones_like(x))
        return torch.where(positive, torch.sqrt(safe), torch.zeros_like(x))
''')


def manifest_hook() -> dict:
    with open(os.path.join(ROOT, ".pre-commit-hooks.yaml"), encoding="utf-8") as handle:
        (hook,) = yaml.safe_load(handle)
    return hook


def test_manifest_declares_the_gradaudit_hook():
    hook = manifest_hook()
    assert hook["id"] == "gradaudit" and hook["entry"] == "gradaudit check"
    assert hook["language"] == "python" and hook["types"] == ["python"] and hook["require_serial"] is True
    pre_commit = shutil.which("pre-commit")
    if pre_commit is None:
        pytest.skip("pre-commit is not installed (it is a dev dependency)")
    completed = subprocess.run([pre_commit, "validate-manifest", os.path.join(ROOT, ".pre-commit-hooks.yaml")],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.slow
def test_hook_fails_on_a_defective_activation_and_passes_on_a_correct_one(tmp_path):
    pre_commit = shutil.which("pre-commit")
    if pre_commit is None:
        pytest.skip("pre-commit is not installed (it is a dev dependency)")
    repo = tmp_path / "repo"
    repo.mkdir()
    hook = dict(manifest_hook(), language="system",
                entry=f"{shlex.quote(sys.executable)} -m gradaudit check")  # the README's local form
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [hook]}]}))
    (repo / "pyproject.toml").write_text('[tool.gradaudit]\ndtypes = ["float64", "float32"]\n')
    (repo / "acts.py").write_text(DEFECTIVE)
    (repo / "util.py").write_text("raise SystemExit('a file without activations is never imported')\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PRE_COMMIT_HOME=str(tmp_path / "cache"), GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp_path))

    def git(*args):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)

    def pre_commit_run():
        git("add", "-A")
        return subprocess.run([pre_commit, "run", "--all-files"], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=300)

    git("init", "-q")
    failed = pre_commit_run()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "GA202" in failed.stdout and "acts.py:sqrt_relu" in failed.stdout
    (repo / "acts.py").write_text(CORRECT)
    passed = pre_commit_run()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout
