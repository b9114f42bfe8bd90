"""Several-input targets as public packages write them: a required flag after the tensors
(Megatron's fp8_input_store), torch.jit.script functions (descript-audio-codec's snake), a bias
gradient reduced over dim 0 only (flash-attn's bias_gelu_back), and x laid out non-contiguously
or as an empty batch against a parameter-like input."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from conftest import ROOT

import gradaudit
from gradaudit.cli import main
from gradaudit.engine.calling import describe_exception
from gradaudit.engine.options import parse_input_role

FAST = ["float64", "float32"]


def problems(report) -> set[tuple[str, str, str | None]]:
    return {(f.code, f.status, f.input) for f in report.findings if f.status in ("warn", "fail", "error")}


@pytest.mark.parametrize("value, expected", [(False, False), (True, True), (None, None), ("false", False),
                                             ("True", True), ("none", None)])
def test_flags_are_constants(value, expected):
    role = parse_input_role("store", value)
    assert role.kind == "constant" and role.value is expected


class FlagBiasTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, keep_half):
        ctx.save_for_backward(x.half() if keep_half else x, bias)
        ctx.dtype = x.dtype
        return torch.tanh(x + bias)

    @staticmethod
    def backward(ctx, grad):
        x, bias = ctx.saved_tensors
        t = torch.tanh(x.to(ctx.dtype) + bias)
        d = grad * (1 - t * t)
        return d, d.sum_to_size(bias.shape), None


def test_an_undeclared_flag_is_a_clear_error_naming_it_and_a_flag_role_fixes_it():
    report = gradaudit.audit(FlagBiasTanh, inputs={"bias": (8,)}, dtypes=FAST)
    (error,) = report.findings
    assert (error.code, error.status) == ("GA901", "error")
    assert "'keep_half'" in error.message and "'bias'" not in error.message.split("raised")[-1]
    fixed = gradaudit.audit(FlagBiasTanh, inputs={"bias": (8,), "keep_half": False}, dtypes=FAST)
    assert fixed.status == "pass"


def test_cli_flag_role(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["check", "samples/several_inputs.py:_BiasSiLUStoreFlag", "--input", "bias=8",
                                       "--input", "store_half=false", "--dtype", "float64", "--format", "json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["results"]
    assert entry["status"] == "pass"


@torch.jit.script
def scripted_swish(x):
    return x * torch.sigmoid(x)


@torch.jit.script
def scripted_gate(x, gate):
    return x * torch.sigmoid(gate)


@torch.jit.script
def scripted_wrong_slope(x, slope: float):
    return torch.where(x > 0, x, x * slope)


def test_a_scripted_function_is_named_located_and_read_as_its_python_function():
    one = gradaudit.audit(scripted_swish, dtypes=FAST)
    assert one.status == "pass" and one.target.endswith(":scripted_swish")
    assert one.location is not None and one.location["path"].endswith("test_inputs_in_real_code.py")
    two = gradaudit.audit(scripted_gate, dtypes=FAST)
    assert two.status == "pass" and not any(f.code == "GA901" for f in two.findings)
    assert any(f.input == "gate" for f in two.findings)  # the gate was probed, not held
    constant = gradaudit.audit(scripted_wrong_slope, inputs={"slope": 8}, dtypes=FAST)  # slope: float
    assert constant.status != "error"


def test_an_error_inside_torchscript_is_described_by_its_own_line():
    @torch.jit.script
    def per_channel(x):
        return x.reshape(x.shape[0], x.shape[1], -1)

    with pytest.raises(RuntimeError) as raised:
        per_channel(torch.zeros(0, 4, 2))
    words = describe_exception(raised.value)
    assert "cannot reshape" in words and "TorchScript interpreter" not in words


class SumFirstDimBias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias):
        return x + bias

    @staticmethod
    def backward(ctx, grad):
        return grad, grad.sum(0)


def test_a_bias_gradient_summed_over_dim_0_is_ga106_on_a_three_dimensional_x():
    report = gradaudit.audit(SumFirstDimBias, inputs={"bias": (8,)}, dtypes=FAST)
    (finding,) = [f for f in report.findings if f.code == "GA106"]
    assert (finding.status, finding.input) == ("warn", "bias")
    assert finding.details["returned"] == [finding.details["x_shape"][1], 8]


def flat_bias_silu(x, bias):
    return F.silu(x.view(-1, x.shape[-1]) + bias).view(x.shape)


def flatten_channels(x, alpha):
    """Reshape with -1 from the batch size: ambiguous, and raising, on an empty batch."""
    shape = x.shape
    y = x.reshape(shape[0], shape[1], -1)
    return (y + torch.sin(alpha * y) ** 2 / alpha).reshape(shape)


def reshaped_bias_silu(x, bias):
    return F.silu(x.reshape(-1, x.shape[-1]) + bias).reshape(x.shape)


def test_x_layouts_against_a_parameter_like_input():
    view = gradaudit.audit(flat_bias_silu, inputs={"bias": (8,)}, dtypes=FAST)
    assert ("GA404", "fail", "bias") in problems(view)
    assert [f.kind for f in view.findings if f.code == "GA404" and f.status == "fail"] == ["x-layout"]
    empty = gradaudit.audit(flatten_channels, inputs={"alpha": (1, 4, 1)}, dtypes=FAST)
    assert ("GA404", "fail", "alpha") in problems(empty)
    assert gradaudit.audit(reshaped_bias_silu, inputs={"bias": (8,)}, dtypes=FAST).status == "pass"


class SwishBeta(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta):
        ctx.save_for_backward(x, beta)
        return x * torch.sigmoid(beta * x)

    @staticmethod
    def backward(ctx, grad):
        x, beta = ctx.saved_tensors
        s = torch.sigmoid(beta * x)
        return grad * (s + beta * x * s * (1 - s)), grad * x * x * s * (1 - s)  # beta's left full-size


def test_a_functions_apply_is_read_as_the_function():
    report = gradaudit.audit(SwishBeta.apply, inputs={"beta": (8,)}, dtypes=FAST)
    assert report.target.endswith(":SwishBeta")
    assert not any(f.code == "GA901" for f in report.findings)
    assert ("GA106", "warn", "beta") in problems(report)
