"""The pytest plugin: the gradaudit fixture, assert_audit, options and config, loaded cheaply."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

pytest_plugins = ["pytester"]

# "-p no:gradaudit" keeps an installed entry point from registering the module a second time
PLUGIN = ["-p", "no:gradaudit", "-p", "gradaudit.pytest_plugin"]

ACTIVATIONS = textwrap.dedent('''
    import torch
    import gradaudit


    def where_sqrt(x):
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))


    def no_back(x):
        return x * (x > 0).float()


    @gradaudit.activation(kinks=[0.0])
    def where_relu(x):
        return torch.where(x > 0, x, torch.zeros_like(x))
''')


@pytest.fixture
def project(pytester, monkeypatch):
    """A project with activations and a config. Its tests run in a subprocess: pytester's
    in-process runs restore sys.modules afterwards, and torch cannot be imported twice."""
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makepyfile(activations=ACTIVATIONS)
    pytester.makefile(".toml", pyproject='[tool.gradaudit]\ndtypes = ["float64", "float32"]\n')
    return pytester


def test_fixture_passes_a_correct_activation_and_fails_a_defective_one_with_the_table(project):
    project.makepyfile(test_acts='''
        from activations import where_relu, where_sqrt

        def test_correct(gradaudit):
            report = gradaudit.assert_audit(where_relu)
            assert report.status == "pass"

        def test_defective(gradaudit):
            gradaudit.assert_audit(where_sqrt)
    ''')
    result = project.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=1, failed=1)
    failure = result.stdout.str()
    # the failure message is the findings table: summary row, finding code, no Python traceback
    result.stdout.fnmatch_lines(["*activations:where_sqrt*fail*", "*GA202 nonfinite-gradient fail*"])
    assert "Traceback" not in failure and "raise_for_status" not in failure


def test_ignore_and_strict_keywords(project):
    project.makepyfile(test_acts='''
        from gradaudit.pytest_plugin import assert_audit
        from activations import no_back, where_sqrt

        def test_warn_passes_unless_strict(gradaudit):
            gradaudit.assert_audit(no_back)

        def test_warn_fails_when_strict(gradaudit):
            gradaudit.assert_audit(no_back, strict=True)

        def test_ignored_checks(gradaudit):
            gradaudit.assert_audit(where_sqrt, ignore=["GA202", "kink"])
            gradaudit(no_back, ignore=["signed-zero-output", "GA204"], strict=True)

        def test_without_the_fixture():
            assert_audit(no_back, ignore=["GA2"], strict=True, dtypes=["float64"])
    ''')
    result = project.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_warn_fails_when_strict*"])
    result.stdout.fnmatch_lines(["*GA203 signed-zero-output warn*"])


def test_pyproject_config_and_command_line_options(project):
    project.makefile(".toml", pyproject=textwrap.dedent('''
        [tool.gradaudit]
        dtypes = ["float64", "float32"]
        strict = true

        [tool.gradaudit.targets."activations:no_back"]
        ignore = ["GA203"]
    '''))
    project.makepyfile(test_acts='''
        from activations import no_back

        def test_no_back(gradaudit):
            gradaudit.assert_audit(no_back)
    ''')
    # strict from the config; the per-target table removes GA203 but GA204 still warns
    result = project.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(failed=1)
    assert "GA204" in result.stdout.str() and "GA203 signed" not in result.stdout.str()
    # the --gradaudit-* options come from the same settings table as the CLI's
    project.runpytest_subprocess(*PLUGIN, "--gradaudit-ignore", "GA204").assert_outcomes(passed=1)


def test_unknown_config_key_errors_the_test(project):
    project.makefile(".toml", pyproject='[tool.gradaudit]\nstrickt = true\n')
    project.makepyfile(test_acts='''
        from activations import where_relu

        def test_it(gradaudit):
            gradaudit.assert_audit(where_relu)
    ''')
    result = project.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown key 'strickt'*"])


def test_help_lists_the_options(pytester):
    result = pytester.runpytest(*PLUGIN, "--help")
    result.stdout.fnmatch_lines(["*gradaudit*", "*--gradaudit-dtype=DTYPE*", "*--gradaudit-strict*"])


def test_loading_the_plugin_does_not_import_torch(tmp_path):
    (tmp_path / "test_light.py").write_text(textwrap.dedent('''
        import sys

        def test_torch_not_loaded(request):
            assert request.config.pluginmanager.has_plugin("gradaudit.pytest_plugin")
            assert "torch" not in sys.modules
    '''))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PLUGIN,
                                "test_light.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_registered_with_the_pytest11_entry_point():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    entries = dict(line.split("=", 1) for line in parser["options.entry_points"]["pytest11"].strip().splitlines())
    assert {k.strip(): v.strip() for k, v in entries.items()} == {"gradaudit": "gradaudit.pytest_plugin"}
