"""Verdicts of the core checks (GA101, GA201-GA204, GA901) on samples of known verdict."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from conftest import sample
from gradaudit import AuditFailure, Report, audit


def codes(report: Report, status: str) -> set[str]:
    return report.codes(status)


@pytest.mark.parametrize("fn", [torch.relu, F.silu, torch.tanh], ids=["relu", "silu", "tanh"])
def test_builtin_smooth_and_relu_pass(fn):
    report = audit(fn)
    assert report.status == "pass", report.to_dict()


def test_hardswish_warns_about_spurious_negative_zero_below_minus_three():
    report = audit(F.hardswish)
    assert report.status == "warn"
    (finding,) = [f for f in report.findings if f.code == "GA203" and f.status == "warn"]
    lo, hi = finding.details["intervals"][0]
    assert hi == -3.0 and lo < -1e30
    assert finding.details["kind"] == "spurious"


def test_silu_negative_zero_is_an_underflow_not_a_warning():
    report = audit(F.silu)
    kinds = {f.details["kind"] for f in report.findings if f.code == "GA203"}
    assert "underflow" in kinds and "spurious" not in kinds


def test_seed_relu_pair():
    assert audit(sample("seed_relu:MyReLU")).status == "pass"
    report = audit(sample("seed_relu:no_back"))
    assert report.status == "warn"
    (finding,) = [f for f in report.findings if f.code == "GA203" and f.status == "warn"]
    # every negative probe input, and nothing else
    assert all(hi < 0 for _, hi in finding.details["intervals"])
    assert finding.examples[0]["output"] == "-0.0" and finding.examples[0]["input"] < 0


def test_relu_propagates_negative_zero_as_info():
    report = audit(torch.relu)
    assert any(f.code == "GA203" and f.details["kind"] == "propagated" for f in report.findings)


@pytest.mark.parametrize("name, threshold", [("HardswishWrongAbove3", 3.0), ("SoftplusThresholdBug", 20.0)])
def test_backward_wrong_only_in_the_tail_fails_gradient(name, threshold):
    report = audit(sample(f"defects:{name}"))
    (finding,) = [f for f in report.findings if f.code == "GA101"]
    assert finding.status == "fail"
    lo, _ = finding.details["intervals"][0]
    assert threshold < lo <= threshold + 1.0
    assert all(example["input"] > threshold for example in finding.examples)


def test_gradcheck_misses_the_tail_defect_that_gradaudit_catches():
    fn = sample("defects:SoftplusThresholdBug").apply
    x = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))
    assert audit(sample("defects:SoftplusThresholdBug")).status == "fail"


def test_where_sqrt_nan_gradient_fails_ga202():
    report = audit(sample("defects:where_sqrt"))
    assert "GA202" in codes(report, "fail")
    (finding,) = [f for f in report.findings if f.code == "GA202" and f.status == "fail"]
    assert finding.details["intervals"][-1][1] == 0.0


def test_float32_overflow_fails_ga201_only_below_float64():
    report = audit(sample("defects:naive_softplus"))
    failing = {d for f in report.findings if f.code == "GA201" and f.status == "fail" for d in f.all_dtypes}
    assert {"float32", "float16"} <= failing and "float64" not in failing


def test_mask_multiplying_backward_warns_ga204():
    report = audit(sample("defects:MaskGradReLU"))
    assert codes(report, "warn") == {"GA204"}


def test_neg_relu_warns_ga203_for_positive_inputs():
    report = audit(sample("defects:neg_relu"))
    (finding,) = [f for f in report.findings if f.code == "GA203" and f.status == "warn"]
    assert all(lo >= 0 for lo, _ in finding.details["intervals"])


def test_smooth_function_with_exact_zero_gradient_point_is_not_flagged():
    # derivative of hardswish is exactly 0 at -1.5: an isolated root, sign meaningless
    report = audit(F.hardswish)
    assert not any(f.code == "GA204" and f.status == "warn" for f in report.findings)


def test_abs_softplus_wrong_gradient_at_zero_is_found():
    report = audit(sample("defects:abs_softplus"))
    (finding,) = [f for f in report.findings if f.code == "GA101"]
    assert finding.status == "fail"
    assert finding.details["intervals"] == [[-0.0, 0.0]]


@pytest.mark.parametrize("name", ["SiLUFunction", "where_relu", "stable_softplus", "safe_sqrt_relu", "Swish", "leaky"])
def test_correct_samples_pass(name):
    assert audit(sample(f"correct:{name}")).status == "pass"


def test_non_elementwise_target_falls_back_to_gradcheck():
    report = audit(functools.partial(F.softmax, dim=-1), dtypes=["float64", "float32"])
    assert report.status == "pass", report.to_dict()

    class Broken(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.softmax(x, -1)

        @staticmethod
        def backward(ctx, g):
            return g

    report = audit(Broken, dtypes=["float64"])
    assert "GA101" in report.codes("fail")


@pytest.mark.parametrize(
    "target",
    ["broken:raises", "broken:returns_tuple", "broken:NOT_CALLABLE"],
)
def test_unauditable_targets_are_errors(target):
    report = audit(sample(target))
    assert report.status == "error"
    assert report.codes() == {"GA901"}


def test_raise_for_status():
    audit(torch.relu).raise_for_status(strict=True)
    warned = audit(sample("seed_relu:no_back"))
    warned.raise_for_status()
    with pytest.raises(AuditFailure) as info:
        warned.raise_for_status(strict=True)
    assert isinstance(info.value, AssertionError)
    assert "GA203" in str(info.value)
    with pytest.raises(AuditFailure):
        audit(sample("defects:where_sqrt")).raise_for_status()


def test_report_dict_matches_design_shape(in_root):
    data = audit(sample("seed_relu:no_back"), name="samples/seed_relu.py:no_back").to_dict()
    assert data["tool"] == "gradaudit" and data["status"] == "warn"
    (result,) = data["results"]
    assert result["target"] == "samples/seed_relu.py:no_back"
    for finding in result["findings"]:
        assert {"status", "code", "check", "message"} <= set(finding)
    ga203 = [f for f in result["findings"] if f["code"] == "GA203" and f["status"] == "warn"][0]
    assert ga203["check"] == "signed-zero-output"
    assert ga203["location"]["path"] == "samples/seed_relu.py"
    assert isinstance(ga203["location"]["line"], int)


def test_select_and_ignore():
    report = audit(sample("seed_relu:no_back"), select=["GA2"], ignore=["signed-zero-gradient"])
    assert report.codes() <= {"GA201", "GA202", "GA203"}
    assert "GA203" in report.codes()


@pytest.mark.parametrize(
    "kwargs",
    [{"dtypes": ["int8"]}, {"size": -1}, {"domain": (1, 0)}, {"select": ["GA999"]}, {"kinks": ["a"]}, {"device": "tpu"}],
)
def test_bad_options_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        audit(torch.relu, **kwargs)


def test_domain_restricts_inputs():
    report = audit(torch.sqrt, domain=(0, float("inf")))
    assert "GA202" not in report.codes("fail") and "GA201" not in report.codes("fail")
    assert audit(torch.sqrt).status == "fail"  # NaN for negative inputs without a domain


def test_audit_leaves_torch_state_as_found():
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    before = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.is_anomaly_enabled(),
              torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    with torch.no_grad():
        audit(F.rrelu, dtypes=["float64", "float32"])  # a random target, called with grad
        assert not torch.is_grad_enabled()
    torch.set_default_dtype(torch.float64)
    try:
        audit(torch.relu, dtypes=["float64"])
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
    assert torch.equal(torch.get_rng_state(), rng)
    after = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.is_anomaly_enabled(),
             torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    assert before == after


@pytest.mark.filterwarnings("ignore:Error detected")
def test_audit_restores_flags_changed_by_the_target():
    def meddling(x):
        torch.set_default_dtype(torch.float64)
        torch.autograd.set_detect_anomaly(True)
        torch.manual_seed(99)
        return torch.relu(x)

    rng = torch.get_rng_state()
    audit(meddling, dtypes=["float64"])
    assert torch.get_default_dtype() == torch.float32
    assert not torch.is_anomaly_enabled()
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_nan_input_that_comes_out_as_a_number_is_information():
    def nan_to_zero_relu(x):
        return torch.nan_to_num(torch.relu(x), nan=0.0)

    report = audit(nan_to_zero_relu, dtypes=["float64"])
    (finding,) = [f for f in report.findings if f.code == "GA201" and "special" in (f.details or {})]
    assert finding.status == "info" and finding.details["special"]["nan"] == "0.0"
    assert report.status == "pass"
    assert not [f for f in audit(torch.relu, dtypes=["float64"]).findings if "special" in (f.details or {})]
