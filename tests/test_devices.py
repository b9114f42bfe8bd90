"""GA405: the meta probe (runs everywhere) and the CPU-vs-CUDA comparison (marked cuda)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import sample

import gradaudit
from gradaudit.checks.device import compare

BUILTINS = ["relu", "relu6", "elu", "selu", "celu", "gelu", "silu", "mish", "hardswish", "hardsigmoid",
            "hardtanh", "leaky_relu", "logsigmoid", "softplus", "softsign", "tanhshrink", "hardshrink",
            "softshrink", "sigmoid", "tanh"]
META = {"select": ["GA405"], "dtypes": ["float64"], "size": 16}

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def line_of(text: str) -> int:
    with open("samples/devices.py", encoding="utf-8") as handle:
        (line,) = [i for i, source in enumerate(handle, 1) if text in source]
    return line


def test_hard_coded_zeros_warns_with_its_line(in_root):
    report = gradaudit.audit(sample("devices:hard_coded_zeros"), **META)
    (finding,) = report.findings
    assert (finding.code, finding.status) == ("GA405", "warn")
    assert finding.location == {"path": "samples/devices.py",
                                "line": line_of("torch.where(x > 0, x, torch.zeros(x.shape))")}


def test_fixed_device_in_custom_backward_is_found(in_root):
    (finding,) = gradaudit.audit(sample("devices:HardCodedMaskBackward"), **META).findings
    assert finding.status == "warn"
    assert finding.location["line"] == line_of("ones = torch.ones(x.shape, dtype=g.dtype)")


def test_tensor_made_outside_the_call_warns_at_the_mixing_line(in_root):
    (finding,) = gradaudit.audit(sample("devices:global_shift"), **META).findings
    assert (finding.code, finding.status) == ("GA405", "warn")
    assert finding.location["line"] == line_of("return torch.nn.functional.softplus(x) - SHIFT")


@pytest.mark.parametrize("name", ["devices:zeros_like_relu", "devices:scalar_constant", "seed_relu:MyReLU",
                                  "seed_relu:no_back", "correct:Swish", "defects:where_sqrt"])
def test_device_agnostic_targets_pass(name):
    assert gradaudit.audit(sample(name), **META).findings == []


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_activations_get_no_ga405(name):
    assert "GA405" not in gradaudit.audit(getattr(F, name), **META).codes()


def test_target_without_meta_support_is_not_reported():
    def needs_data(x):
        if bool((x > 0).any()):  # data-dependent: cannot run on meta, nothing to do with devices
            return x * 2
        return x

    assert gradaudit.audit(needs_data, **META).findings == []


def test_compare_separates_mismatches_from_zero_signs():
    cpu = torch.tensor([1.0, -0.0, 0.0, float("nan"), float("inf"), 2.0])
    gpu = torch.tensor([1.0 + 1e-7, 0.0, 0.0, float("nan"), float("inf"), 2.1])
    masks = compare(cpu, gpu, torch.float32)
    assert masks["mismatch"].tolist() == [False, False, False, False, False, True]
    assert masks["cpu_only"].tolist() == [False, True, False, False, False, False]
    assert not masks["other_only"].any()
    assert compare(torch.tensor([1.0]), torch.tensor([float("nan")]), torch.float32)["mismatch"].all()


def test_cuda_is_refused_where_unavailable():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError):
        gradaudit.audit(torch.relu, device="cuda", **META)


# -- on a GPU (tests/gpu/run.sh) ------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.cuda
@requires_cuda
def test_builtins_pass_on_cuda(name):
    report = gradaudit.audit(getattr(F, name), select=["GA405"], device="cuda")
    assert "GA405" not in report.codes("fail") and "GA405" not in report.codes("warn"), report.findings


@pytest.mark.cuda
@requires_cuda
def test_hard_coded_sample_fails_on_cuda():
    report = gradaudit.audit(sample("devices:hard_coded_zeros"), select=["GA405"], device="cuda")
    assert "GA405" in report.codes("fail")
    assert report.status == "fail"


@pytest.mark.cuda
@requires_cuda
def test_zeros_like_sample_passes_on_cuda():
    report = gradaudit.audit(sample("devices:zeros_like_relu"), select=["GA405"], device="cuda")
    assert report.codes("fail") == set() and report.codes("warn") == set(), report.findings


@pytest.mark.cuda
@requires_cuda
def test_zero_sign_differences_are_at_most_info_on_cuda():
    report = gradaudit.audit(torch.relu, select=["GA405"], device="cuda")
    assert all(f.status == "info" for f in report.findings), report.findings


def test_device_results_are_judged_against_float64_not_against_cpu_alone():
    from gradaudit.checks.device import worse_than_cpu

    exact = torch.tensor([0.0706508, 3.3e38, 1.0], dtype=torch.float64)
    # float16 tanh' at x = -2: both roundings are a few ulps off, the GPU's is even closer
    cpu16, gpu16 = torch.tensor([0.0709839], dtype=torch.float16), torch.tensor([0.0708008], dtype=torch.float16)
    assert not bool(worse_than_cpu(cpu16, gpu16, exact[:1], torch.float16).any())
    # seen on an H100 (torch 2.11): a few ulps of cancellation in float16, not a defect
    h100 = torch.tensor([0.0692], dtype=torch.float64)
    assert not bool(worse_than_cpu(torch.tensor([0.0690918], dtype=torch.float16),
                                   torch.tensor([0.0688477], dtype=torch.float16), h100, torch.float16).any())
    assert not bool(worse_than_cpu(torch.tensor([0.0688477], dtype=torch.bfloat16),
                                   torch.tensor([0.0703125], dtype=torch.bfloat16), h100, torch.bfloat16).any())
    # CPU overflows where the device does not: not the device's defect
    assert not bool(worse_than_cpu(torch.tensor([float("inf")]), torch.tensor([3e38]), exact[1:2], torch.float32).any())
    # the device is plainly wrong
    assert bool(worse_than_cpu(torch.tensor([1.0]), torch.tensor([1.5]), exact[2:], torch.float32).all())
    assert bool(worse_than_cpu(torch.tensor([1.0]), torch.tensor([float("nan")]), exact[2:], torch.float32).all())
