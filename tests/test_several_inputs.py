"""Targets with several tensor inputs (issue 20): roles, per-input findings, the robust backward,
and the same verdicts through audit(), the CLI and the pytest plugin."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from conftest import ROOT

import gradaudit
from gradaudit.cli import main

pytest_plugins = ["pytester"]
SAMPLES = os.path.join(ROOT, "samples", "several_inputs.py")
FAST = ["float64", "float32"]


def spec(name: str) -> str:
    return f"{SAMPLES}:{name}"


def problems(report) -> set[tuple[str, str, str | None]]:
    """(code, status, input) of the warn/fail/error findings."""
    return {(f.code, f.status, f.input) for f in report.findings if f.status in ("warn", "fail", "error")}


def sample(name: str):
    from gradaudit.targets.resolve import resolve

    (target,) = resolve(spec(name))
    return target


def run(name: str, **options):
    from gradaudit.core import audit_resolved, build_options

    return audit_resolved(sample(name), build_options(**options))


# -- verdicts of the samples, through audit() ----------------------------------------------------------
@pytest.mark.parametrize("name, status, expected", [
    ("swiglu", "pass", set()),
    ("SwiGLUWrongGate", "fail", {("GA101", "fail", "gate")}),
    ("BiasGELUFull", "warn", {("GA106", "warn", "bias")}),
    ("BiasGELUSum0", "fail", {("GA404", "fail", "bias")}),
    ("snake", "pass", set()),
    ("SnakeWrongAlpha", "fail", {("GA105", "fail", "alpha")}),
    ("ViewGradOutput", "fail", {("GA404", "fail", None)}),
    ("SurrogateSpike", "pass", set()),
    ("GatedModule", "pass", set()),
    ("gated_mask", "warn", {("GA203", "warn", "gate"), ("GA204", "warn", None)}),  # the mask-multiplied gradient is x's
    ("gelu_gated", "pass", set()),
    ("BiasGELUSumFirstDim", "warn", {("GA106", "warn", "bias")}),
    ("flat_view_bias_relu", "fail", {("GA404", "fail", "bias")}),
    ("scripted_snake", "pass", set()),
    ("BiasSiLUStoreFlag", "pass", set()),
])
def test_sample_verdicts(name, status, expected):
    report = run(name)
    assert report.status == status
    assert problems(report) == expected


def test_a_backward_writing_into_its_saved_inputs_fails_ga401():
    report = run("SavedInputsReused")
    kinds = {(f.code, f.kind) for f in report.findings if f.status == "fail"}
    assert ("GA401", "backward-mutates-input") in kinds


def test_a_two_operand_custom_op_gets_both_operands():
    report = run("mul_sigmoid", dtypes=FAST, ignore=["GA103"])  # custom ops have no forward-mode AD
    assert report.status == "pass", problems(report)


def test_a_kink_in_the_gate_is_found_along_the_gate():
    report = run("relu_gate", dtypes=FAST)
    along_gate = [f for f in report.findings if f.code == "GA301" and f.input == "gate"]
    assert along_gate and all(f.details["input"] == "gate" and "x" in f.details["others"] for f in along_gate)
    assert {f.details["location"] for f in along_gate} == {0.0}


# -- roles and bad specs ------------------------------------------------------------------------------
def test_roles_given_to_audit_override_the_signature_default():
    def bias_gelu(x, bias):
        return F.gelu(x + bias)

    report = gradaudit.audit(bias_gelu, inputs={"bias": (8,)}, dtypes=FAST)
    assert report.status == "pass"


def test_a_role_naming_no_parameter_is_an_error_naming_it():
    def bias_gelu(x, bias):
        return F.gelu(x + bias)

    report = gradaudit.audit(bias_gelu, inputs={"bais": (8,)}, dtypes=FAST)
    assert report.status == "error"
    (finding,) = report.findings
    assert finding.code == "GA901" and "bais" in finding.message and "bias" in finding.message


def test_shapes_that_do_not_broadcast_are_an_error():
    def two(x, a, b):
        return x * a + b

    report = gradaudit.audit(two, inputs={"a": (8,), "b": (16,)}, dtypes=FAST)
    assert report.status == "error" and "'b'" in report.findings[0].message


def test_a_bad_role_is_an_option_error():
    with pytest.raises(ValueError):
        gradaudit.audit(lambda x, g: x * g, inputs={"g": object()})


def test_a_constant_is_passed_as_given_and_not_differentiated():
    seen = []

    def scaled(x, scale):
        seen.append(scale)
        return x * scale

    report = gradaudit.audit(scaled, inputs={"scale": 2.5}, dtypes=FAST, select=["GA101"])
    assert report.status == "pass" and seen and all(s == 2.5 for s in seen)


def test_a_missing_gradient_for_an_input_the_output_depends_on_fails():
    class NoGateGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gate):
            ctx.save_for_backward(gate)
            return x * torch.sigmoid(gate)

        @staticmethod
        def backward(ctx, grad):
            (gate,) = ctx.saved_tensors
            return grad * torch.sigmoid(gate), None

    report = gradaudit.audit(NoGateGradient, dtypes=FAST, select=["GA101"])
    assert ("GA101", "input-missing", "gate") in {(f.code, f.kind, f.input) for f in report.findings}


def test_a_wrong_number_of_gradients_is_said_clearly():
    class OneGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gate):
            return x * gate

        @staticmethod
        def backward(ctx, grad):
            return grad

    report = gradaudit.audit(OneGradient, dtypes=FAST)
    assert problems(report) == {("GA101", "fail", "gate")}
    assert {f.kind for f in report.findings if f.status == "fail"} == {"input-count"}


class GateMemoryReused(torch.autograd.Function):
    """Its backward computes dx into the saved gate's memory before reading x: right for two
    tensors, wrong when x and gate are one tensor (f(t, t))."""

    @staticmethod
    def forward(ctx, x, gate):
        ctx.save_for_backward(x, gate)
        return x * gate

    @staticmethod
    def backward(ctx, grad):
        x, gate = ctx.saved_tensors
        dx = gate.mul_(grad)
        return dx, grad * x


def test_aliasing_gets_the_sum_of_both_partial_derivatives():
    report = gradaudit.audit(GateMemoryReused, dtypes=FAST, select=["GA101"])
    assert ("GA101", "aliasing", "gate") in {(f.code, f.kind, f.input) for f in report.findings}

    def plain(x, gate):
        return x * gate

    assert gradaudit.audit(plain, dtypes=FAST, select=["GA101"]).status == "pass"


def test_gradient_shape_is_judged_for_functions_only_and_names_both_shapes():
    report = run("BiasGELUFull", dtypes=FAST)
    (finding,) = [f for f in report.findings if f.code == "GA106"]
    assert finding.details == {"returned": [6, 8], "expected": [8], "x_shape": [6, 8]}


def test_gradient_shape_follows_apply_arguments_past_a_skipped_default():
    class ScaledBias(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale=1.0, bias=None):
            return x * scale + bias

        @staticmethod
        def backward(ctx, grad):
            return grad, None, grad  # the bias gradient left full-size

    report = gradaudit.audit(ScaledBias, inputs={"bias": (8,)}, dtypes=["float64"], select=["GA106"])
    assert [(f.input, f.details) for f in report.findings] == [("bias", {"returned": [6, 8], "expected": [8], "x_shape": [6, 8]})]


def test_one_input_targets_get_the_grad_output_layouts_too():
    report = run("ViewGradOutput", dtypes=FAST)
    assert any(f.code == "GA404" and f.kind == "grad-output-layout" for f in report.findings)
    assert gradaudit.audit(torch.tanh, dtypes=FAST).status == "pass"


def test_a_backward_ignoring_grad_output_fails_ga101():
    class IgnoresGradOutput(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x  # forgets grad_output: right for ones only

    report = gradaudit.audit(IgnoresGradOutput, dtypes=FAST)
    assert ("GA101", "grad-output-linearity", "fail") in {(f.code, f.kind, f.status) for f in report.findings}
    surrogate = gradaudit.audit(IgnoresGradOutput, dtypes=FAST, surrogate=True, select=["GA101"])
    assert {(f.kind, f.status) for f in surrogate.findings} == {("grad-output-linearity", "info")}


# -- the CLI -------------------------------------------------------------------------------------------
def test_cli_input_roles_and_the_json_input_key():
    result = CliRunner().invoke(main, ["check", spec("SwiGLUWrongGate"), "--dtype", "float64", "--format", "json",
                                       "--input", "gate=like"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.output)
    inputs = {f.get("input") for r in document["results"] for f in r["findings"] if f["status"] == "fail"}
    assert inputs == {"gate"}


def test_cli_constant_slope_and_bad_input_spec():
    ok = CliRunner().invoke(main, ["check", spec("SurrogateSpike"), "--dtype", "float64", "--input", "slope=25"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(main, ["check", spec("swiglu"), "--dtype", "float64", "--input", "gaet=like"])
    assert bad.exit_code == 2
    malformed = CliRunner().invoke(main, ["check", spec("swiglu"), "--input", "gate"])
    assert malformed.exit_code == 2


def test_cli_shape_role_in_a_real_subprocess(tmp_path):
    module = tmp_path / "acts.py"
    module.write_text(textwrap.dedent('''
        import torch
        import torch.nn.functional as F

        class BiasGELUSum0(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, bias):
                ctx.save_for_backward(x, bias)
                return F.gelu(x + bias)

            @staticmethod
            def backward(ctx, grad):
                x, bias = ctx.saved_tensors
                z = x + bias
                d = grad * (0.5 * (1 + torch.erf(z / 2 ** 0.5)) + z * torch.exp(-0.5 * z * z) / (2 * torch.pi) ** 0.5)
                return d, d.sum(0).view(bias.shape)
    '''))
    env = {**os.environ, "PYTHONPATH": ROOT}
    command = [sys.executable, "-m", "gradaudit", "check", f"{module}:BiasGELUSum0", "--dtype", "float64",
               "--input", "bias=8", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)["results"][0]["findings"]
    assert {(f["code"], f.get("input")) for f in findings if f["status"] == "fail"} == {("GA404", "bias")}


def _rows():
    """(target, verdict, codes) of samples/README.md's several_inputs rows."""
    from test_samples import table

    return [(target.split(":")[1], status, codes) for target, status, codes in table()
            if target.startswith("several_inputs.py:")]


def test_every_sample_verdict_through_the_cli():
    result = CliRunner().invoke(main, ["check", *(spec(name) for name, _, _ in _rows()), "--format", "json"])
    results = {r["target"].rsplit(":", 1)[1]: r for r in json.loads(result.stdout)["results"]}
    for name, status, codes in _rows():
        found = {f["code"] for f in results[name]["findings"] if f["status"] in ("warn", "fail", "error")}
        assert (results[name]["status"], found) == (status, codes), name
    assert result.exit_code == 1


# -- the pytest plugin ---------------------------------------------------------------------------------
def test_every_sample_verdict_through_the_plugin(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    expected = {name: status for name, status, _ in _rows()}
    pytester.makepyfile(test_all=f'''
        import sys
        import pytest
        sys.path.insert(0, {os.path.dirname(SAMPLES)!r})
        import several_inputs

        EXPECTED = {expected!r}

        @pytest.mark.parametrize("name", sorted(EXPECTED))
        def test_sample(gradaudit, name):
            report = gradaudit.audit(getattr(several_inputs, name))
            assert report.status == EXPECTED[name]
            if EXPECTED[name] == "pass":
                gradaudit.assert_audit(getattr(several_inputs, name))
    ''')
    result = pytester.runpytest_subprocess("-p", "no:gradaudit", "-p", "gradaudit.pytest_plugin")
    result.assert_outcomes(passed=len(expected))



def test_plugin_audits_several_inputs(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makepyfile(test_acts=f'''
        import sys
        sys.path.insert(0, {os.path.dirname(SAMPLES)!r})
        from several_inputs import swiglu, SwiGLUWrongGate

        def test_swiglu(gradaudit):
            gradaudit.assert_audit(swiglu, dtypes=["float64"])

        def test_wrong_gate(gradaudit):
            gradaudit.assert_audit(SwiGLUWrongGate, dtypes=["float64"], inputs={{"gate": "like"}})
    ''')
    result = pytester.runpytest_subprocess("-p", "no:gradaudit", "-p", "gradaudit.pytest_plugin")
    result.assert_outcomes(passed=1, failed=1)


# -- the plot ------------------------------------------------------------------------------------------
def test_plot_of_a_two_input_target_shows_a_section_along_each_input(tmp_path):
    pytest.importorskip("matplotlib")
    from gradaudit.core import build_options
    from gradaudit.plot import plot_target

    drawn = plot_target(sample("relu_gate"), build_options(dtypes=["float64"]), str(tmp_path / "plot.png"))
    assert drawn["sections"] == ["x (others = 1)", "gate (x = 1)"]
    assert drawn["section_kinks"] == [[0.0]]  # relu's kink in the gate
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_a_non_tensor_parameter_gets_advice_and_a_constant_role_fixes_it():
    def softmax(x, dim):
        return torch.softmax(x, dim)

    report = gradaudit.audit(softmax, dtypes=FAST)
    assert report.status == "error" and "'dim'" in report.findings[0].message
    assert gradaudit.audit(softmax, dtypes=FAST, inputs={"dim": -1}).status == "pass"
    result = CliRunner().invoke(main, ["check", "torch.nn.functional:softmax", "--dtype", "float64", "--input", "dim=-1"])
    assert result.exit_code == 0, result.output


def test_a_saturating_sigmoid_gate_is_an_underflow_not_a_mask():
    """sigmoid(25 (x + b)) * gate: its backward's -0.0 where 1 - sigmoid rounds to 0 is reached
    gently along x, as the one-input audit judges it (info, not a spurious warn)."""
    def gated_sigmoid(x, bias, slope, gate):
        return torch.sigmoid(slope * (x + bias)) * gate

    report = gradaudit.audit(gated_sigmoid, inputs={"bias": (8,), "slope": 25.0}, dtypes=["float64"])
    assert report.status == "pass", problems(report)


def test_a_partner_the_output_is_not_elementwise_in_gets_gradcheck_over_every_input():
    class ZeroGateGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gate):
            ctx.save_for_backward(x, gate)
            return x * torch.sigmoid(gate.sum())

        @staticmethod
        def backward(ctx, grad):
            x, gate = ctx.saved_tensors
            return grad * torch.sigmoid(gate.sum()), torch.zeros_like(gate)

    report = gradaudit.audit(ZeroGateGradient, dtypes=["float64"], select=["GA101"])
    assert {(f.code, f.kind) for f in report.findings} == {("GA101", "input-gradcheck")}

    def right(x, gate):
        return x * torch.sigmoid(gate.sum())

    assert gradaudit.audit(right, dtypes=["float64"], select=["GA101"]).status == "pass"
    assert gradaudit.audit(right, dtypes=FAST).status == "pass"  # no layouts of a shape-dependent section


def test_a_constant_tensor_that_requires_grad_is_differentiated_like_a_parameter():
    alpha = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)

    class WrongScale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, alpha):
            ctx.save_for_backward(x, alpha)
            return x * alpha

        @staticmethod
        def backward(ctx, grad):
            x, alpha = ctx.saved_tensors
            return grad * alpha, 2 * (grad * x).sum(0)  # twice the right gradient

    report = gradaudit.audit(WrongScale, inputs={"alpha": alpha}, dtypes=["float64"])
    assert ("GA105", "fail", "alpha") in problems(report)
    assert gradaudit.audit(lambda x, alpha: x * alpha, inputs={"alpha": alpha}, dtypes=["float64"]).status == "pass"
    assert alpha.grad is None  # the caller's tensor is not touched


def test_roles_from_the_config_file(tmp_path, monkeypatch):
    """A (C,) bias role from the per-target table: only then is the full-size bias gradient a
    shape mismatch (GA106); a role naming no parameter is an error for that target."""
    (tmp_path / "acts.py").write_text(textwrap.dedent('''
        import torch


        class BiasFull(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, bias):
                return x + bias

            @staticmethod
            def backward(ctx, grad):
                return grad, grad
    '''))
    table = '[tool.gradaudit]\ndtypes = ["float64"]\n\n[tool.gradaudit.overrides."acts.py:BiasFull"]\n'
    (tmp_path / "pyproject.toml").write_text(table + "inputs = {bias = [8]}\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "acts.py:BiasFull", "--format", "json"])
    codes = {(f["code"], f.get("input")) for f in json.loads(result.stdout)["results"][0]["findings"] if f["status"] == "warn"}
    assert ("GA106", "bias") in codes, result.output
    (tmp_path / "pyproject.toml").write_text(table + "inputs = {bais = [8]}\n")
    assert CliRunner().invoke(main, ["check", "acts.py:BiasFull"]).exit_code == 2

