"""Issue 22, the workflow: configured targets and exclude, "nothing to audit", verbosity flags,
and `explain`/`list` without torch. Through CliRunner and a real process; exit codes, target
names and codes, never wording."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from conftest import ROOT
from gradaudit.cli import main

FAST = ["--dtype", "float64", "--dtype", "float32", "--select", "GA1,GA2"]

DEFECTIVE = textwrap.dedent('''
    import torch
    import gradaudit


    @gradaudit.activation
    def sqrt_relu(x):
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))  # NaN gradient for x <= 0
''')

PLAIN_FUNCTIONS = textwrap.dedent('''
    import torch


    def where_sqrt(x):  # not marked: only the configuration names it
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))


    def fine(x):
        return torch.tanh(x)
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A small project: src/pkg/acts.py (plain functions), marked.py (a marked defect),
    tests/test_x.py and scripts/s.py (marked defects that exclude leaves alone)."""
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "__init__.py").write_text("")
    (tmp_path / "src" / "pkg" / "acts.py").write_text(PLAIN_FUNCTIONS)
    (tmp_path / "marked.py").write_text(DEFECTIVE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(DEFECTIVE)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "s.py").write_text(DEFECTIVE)
    (tmp_path / "scripts" / "deep").mkdir()
    (tmp_path / "scripts" / "deep" / "d.py").write_text(DEFECTIVE)
    (tmp_path / "notorch.py").write_text("VALUE = 1\n")
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.gradaudit]
        targets = ["src/pkg/acts.py:where_sqrt", "src/pkg/acts.py:fine"]
        exclude = ["tests/**", "scripts/*.py"]
        dtypes = ["float64", "float32"]
        select = ["GA1", "GA2"]
    '''))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    return tmp_path


def check(*args):
    result = CliRunner().invoke(main, ["check", *args], catch_exceptions=False)
    return result


def json_results(result) -> dict[str, str]:
    return {r["target"]: r["status"] for r in json.loads(result.stdout)["results"]}


def test_bare_check_audits_the_configured_targets(project):
    result = check("--format", "json")
    assert result.exit_code == 1
    assert json_results(result) == {"src/pkg/acts.py:where_sqrt": "fail", "src/pkg/acts.py:fine": "pass"}


def test_bare_check_without_configured_targets_is_a_usage_error(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.gradaudit]\nstrict = true\n")
    monkeypatch.chdir(tmp_path)
    assert check().exit_code == 2


def test_dotted_configured_target_defined_in_a_changed_file_is_audited(project):
    (project / "pyproject.toml").write_text('[tool.gradaudit]\ntargets = ["pkg.acts:where_sqrt"]\n'
                                            'dtypes = ["float64", "float32"]\nselect = ["GA1", "GA2"]\n')
    result = check("src/pkg/acts.py", "--format", "json")  # as pre-commit passes a changed file
    assert result.exit_code == 1
    assert json_results(result) == {"src/pkg/acts.py:where_sqrt": "fail"}
    untouched = check("marked.py", "--format", "json")  # a change elsewhere: only what is in it
    assert json_results(untouched) == {"marked.py:sqrt_relu": "fail"}


def test_configured_and_discovered_target_is_audited_once(project):
    (project / "pyproject.toml").write_text('[tool.gradaudit]\ntargets = ["marked.py:sqrt_relu"]\n'
                                            'dtypes = ["float64"]\nselect = ["GA2"]\n')
    result = check("marked.py", "--format", "json")
    assert [r["target"] for r in json.loads(result.stdout)["results"]] == ["marked.py:sqrt_relu"]


def test_exclude_globs_are_respected_by_discovery(project):
    result = check(".", "--format", "json")
    names = set(json_results(result))
    assert "marked.py:sqrt_relu" in names and "scripts/deep/d.py:sqrt_relu" in names  # * stays in one folder
    assert not any(name.startswith(("tests/", "scripts/s.py")) for name in names)
    given = check("tests/test_x.py", "scripts/s.py", "--format", "json")  # pre-commit's changed files
    assert given.exit_code == 0 and json_results(given) == {}
    listed = CliRunner().invoke(main, ["list", "."])
    assert listed.exit_code == 0 and "tests/" not in listed.stdout and "marked.py:sqrt_relu" in listed.stdout


def test_nothing_to_audit_is_exit_zero_with_one_line_on_stderr(project):
    for args in (["notorch.py"], ["tests/test_x.py"], ["notorch.py", "--format", "json"]):
        result = check(*args)
        assert result.exit_code == 0, args
        assert len(result.stderr.strip().splitlines()) == 1, args
    listed = CliRunner().invoke(main, ["list", "notorch.py"])
    assert listed.exit_code == 0 and listed.stdout == "" and len(listed.stderr.strip().splitlines()) == 1


def test_an_explicit_attribute_that_does_not_exist_is_exit_two(project):
    assert check("src/pkg/acts.py:missing").exit_code == 2
    assert check("pkg.acts:missing").exit_code == 2
    (project / "pyproject.toml").write_text('[tool.gradaudit]\ntargets = ["pkg.acts:missing"]\n')
    assert check().exit_code == 2


def test_targets_list_and_overrides_tables_together(project):
    (project / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.gradaudit]
        targets = ["src/pkg/acts.py:where_sqrt"]
        dtypes = ["float64"]
        [tool.gradaudit.overrides."pkg.acts:where_sqrt"]
        ignore = ["GA1", "GA2", "GA3"]
    '''))
    result = check("--format", "json")
    assert result.exit_code == 0 and json_results(result) == {"src/pkg/acts.py:where_sqrt": "pass"}


def test_bad_targets_or_exclude_value_is_a_usage_error(project):
    (project / "pyproject.toml").write_text('[tool.gradaudit]\ntargets = [1, 2]\n')
    assert check().exit_code == 2
    (project / "pyproject.toml").write_text('[tool.gradaudit]\nexclude = {a = 1}\n')
    assert check("marked.py").exit_code == 2


def test_verbosity_flags_reach_the_renderer(in_root, monkeypatch):
    import gradaudit.render as render

    seen = {}

    def fake(name):
        def render_it(reports, **keywords):
            seen.update(keywords)
            return ""
        return render_it

    monkeypatch.setattr(render, "renderer", fake)
    target = ["samples/seed_relu.py:MyReLU", *FAST]
    for flags, verbosity, verbose in (([], 0, False), (["-q"], -1, False), (["--quiet"], -1, False),
                                      (["-v"], 1, True)):
        seen.clear()
        assert check(*target, *flags).exit_code == 0
        assert seen["verbosity"] == verbosity and seen["verbose"] is verbose and seen["show_suppressed"] is False
    assert check(*target, "--show-suppressed").exit_code == 0 and seen["show_suppressed"] is True
    assert check(*target, "-q", "-v").exit_code == 2


@pytest.mark.parametrize("args", [["explain", "GA203"], ["explain"], ["explain", "signed-zero-output"]])
def test_explain_does_not_import_torch(args):
    code = ("import sys, runpy\nsys.argv = ['gradaudit', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('gradaudit', run_name='__main__')\nexcept SystemExit as e:\n"
            "    code = e.code\nsys.stderr.write('TORCH=%s CODE=%s' % ('torch' in sys.modules, code))\n")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "TORCH=False CODE=None" in done.stderr or "TORCH=False CODE=0" in done.stderr, done.stderr
    assert "GA203" in done.stdout


def test_list_of_files_without_torch_does_not_import_torch(tmp_path):
    (tmp_path / "plain.py").write_text("VALUE = 1\n")
    code = ("import sys, runpy\nsys.argv = ['gradaudit', 'list', 'plain.py']\n"
            "try:\n    runpy.run_module('gradaudit', run_name='__main__')\nexcept SystemExit as e:\n"
            "    code = e.code\nsys.stderr.write('TORCH=%s CODE=%s' % ('torch' in sys.modules, code))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "TORCH=False CODE=0" in done.stderr, done.stderr


def test_explain_table_matches_the_check_registry():
    from gradaudit.run.check_table import registry_rows, static_rows

    assert static_rows() == registry_rows(), "run: python -m gradaudit.run.check_table"


def test_bare_check_in_a_real_process(project):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(project / "src"), ROOT]))
    done = subprocess.run([sys.executable, "-m", "gradaudit", "check", "--format", "json"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert {r["target"] for r in json.loads(done.stdout)["results"]} == {"src/pkg/acts.py:where_sqrt",
                                                                         "src/pkg/acts.py:fine"}
