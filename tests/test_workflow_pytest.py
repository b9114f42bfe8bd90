"""Issue 22: `pytest --gradaudit` collects every configured target as a test item (like
pytest-mypy); each passes or fails with the findings table and is skipped where its device is
missing. Through pytester, in a subprocess (torch cannot be imported twice in one process)."""
from __future__ import annotations

import os
import textwrap

import pytest

from conftest import ROOT

pytest_plugins = ["pytester"]

PLUGIN = ["-p", "no:gradaudit", "-p", "gradaudit.pytest_plugin"]

ACTIVATIONS = textwrap.dedent('''
    import torch
    import gradaudit


    def where_sqrt(x):
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))


    def no_back(x):
        return x * (x > 0).float()


    def fine(x):
        return torch.tanh(x)
''')


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.mkpydir("pkg")
    (pytester.path / "pkg" / "acts.py").write_text(ACTIVATIONS)
    (pytester.path / "scripts").mkdir()
    (pytester.path / "scripts" / "marked.py").write_text(
        "import torch, gradaudit\n\n@gradaudit.activation\ndef bad(x):\n"
        "    return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))\n")
    pytester.makefile(".toml", pyproject=textwrap.dedent('''
        [tool.gradaudit]
        targets = ["pkg.acts:where_sqrt", "pkg/acts.py:no_back", "pkg.acts:fine", "scripts"]
        exclude = ["scripts/*.py"]
        dtypes = ["float64", "float32"]
        select = ["GA1", "GA2"]
    '''))
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    return pytester


def test_configured_targets_are_items_that_pass_fail_or_skip(project):
    result = project.runpytest_subprocess(*PLUGIN, "--gradaudit", "-rA")
    result.assert_outcomes(passed=3, failed=1)  # test_plain, no_back (warn), fine; where_sqrt fails
    result.stdout.fnmatch_lines(["*GA202*", "*PASSED gradaudit::pkg/acts.py:no_back*",
                                 "*FAILED gradaudit::pkg.acts:where_sqrt*"])  # the findings table
    assert "scripts/marked.py" not in result.stdout.str()  # exclude applies to configured folders


def test_without_the_flag_no_audit_items_are_collected(project):
    result = project.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=1)


def test_strict_fails_warn_items_and_items_are_selectable(project):
    result = project.runpytest_subprocess(*PLUGIN, "--gradaudit", "--gradaudit-strict", "-m", "gradaudit",
                                          "-k", "no_back")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*GA203*"])


def test_a_configured_target_that_does_not_exist_is_a_failing_item(project):
    (project.path / "pyproject.toml").write_text('[tool.gradaudit]\ntargets = ["pkg.acts:missing"]\n')
    result = project.runpytest_subprocess(*PLUGIN, "--gradaudit")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*GA901*"])


def test_a_missing_device_skips(project):
    result = project.runpytest_subprocess(*PLUGIN, "--gradaudit", "--gradaudit-device", "cuda:7", "-k", "fine")
    result.assert_outcomes(skipped=1)
