"""GA404 layouts judged against float64, dropped elements, random backwards, and domains outside
a dtype's range (issue 18 items 4, 5, 6, 8 and 19)."""
from __future__ import annotations

import torch

import gradaudit
from conftest import sample

FAST = ["float64", "float32"]


def findings(report: gradaudit.Report, code: str, status: str | None = None) -> list[gradaudit.Finding]:
    return [f for f in report.findings if f.code == code and (status is None or f.status == status)]


# -- item 4: an output that silently drops elements ----------------------------------------------
def test_output_that_drops_elements_is_not_a_silent_pass() -> None:
    report = gradaudit.audit(sample("layouts:first_ten"), select=["GA404"], dtypes=FAST)
    (finding,) = findings(report, "GA404")
    assert finding.status == "info"
    assert finding.details["output_elements"] == 10
    assert finding.details["input_elements"] > 10
    assert finding.details["ignored_inputs"] == finding.details["input_elements"] - 10


def test_output_that_pairs_elements_gets_the_info_without_ignored_inputs() -> None:
    report = gradaudit.audit(torch.nn.functional.glu, select=["GA404"], dtypes=FAST)
    (finding,) = findings(report, "GA404")
    assert finding.status == "info"
    assert finding.details["output_elements"] * 2 == finding.details["input_elements"]
    assert finding.details["ignored_inputs"] == 0


def test_same_sized_output_gets_no_dropped_elements_info() -> None:
    report = gradaudit.audit(lambda x: torch.softmax(x, -1), select=["GA404"], dtypes=FAST)
    assert findings(report, "GA404") == []


# -- item 5: non-elementwise layouts judged against float64 --------------------------------------
def test_glu_whose_layouts_differ_by_rounding_passes() -> None:
    report = gradaudit.audit(sample("layouts:sigmoid_gate"), select=["GA404"])
    assert findings(report, "GA404", "fail") == []


def test_glu_rounding_passes_for_other_seeds_and_domains() -> None:
    target = sample("layouts:sigmoid_gate")
    for seed, domain in ((1, None), (2, None), (0, (-100.0, 100.0)), (1, (-100.0, 100.0)), (2, (-1e4, 1e4))):
        report = gradaudit.audit(target, select=["GA404"], seed=seed, domain=domain)
        assert findings(report, "GA404", "fail") == [], (seed, domain)


def _storage_order(x: torch.Tensor) -> torch.Tensor:
    """Reads x's storage as if x were contiguous: wrong for every non-contiguous layout."""
    strides = torch.empty(x.shape).stride()
    return torch.softmax(torch.as_strided(x, x.shape, strides), dim=-1)


def test_non_elementwise_layout_bug_still_fails_in_every_dtype() -> None:
    for dtypes in (["float64"], ["float32"], ["float16"]):
        report = gradaudit.audit(_storage_order, select=["GA404"], dtypes=dtypes)
        assert {f.status for f in findings(report, "GA404")} >= {"fail"}, dtypes


def _coarse_when_contiguous(x: torch.Tensor) -> torch.Tensor:
    """A GLU whose float32 kernel is coarser on contiguous memory (as a vectorised erf near -1
    can be): each layout's value is the target's, and the strided one is the closer to float64."""
    a, b = x.chunk(2, -1)
    gate = torch.sigmoid(b)
    if x.dtype == torch.float32 and x.is_contiguous():
        gate = gate.to(torch.bfloat16).to(torch.float32)
    return a * gate


def test_layout_closer_to_float64_than_the_contiguous_call_is_no_fail() -> None:
    report = gradaudit.audit(_coarse_when_contiguous, select=["GA404"], dtypes=FAST)
    assert findings(report, "GA404", "fail") == []


def _coarse_when_strided(x: torch.Tensor) -> torch.Tensor:
    """The converse: the float32 gate is coarse on non-contiguous memory only."""
    a, b = x.chunk(2, -1)
    gate = torch.sigmoid(b)
    if x.dtype == torch.float32 and not x.is_contiguous():
        gate = gate.to(torch.bfloat16).to(torch.float32)
    return a * gate


def test_layout_farther_from_float64_than_the_contiguous_call_fails() -> None:
    report = gradaudit.audit(_coarse_when_strided, select=["GA404"], dtypes=FAST)
    assert {f.dtype for f in findings(report, "GA404", "fail")} == {"float32"}


# -- item 6: random backwards are not compared across layouts ------------------------------------
def test_random_backward_warns_ga402_and_gets_no_ga404() -> None:
    report = gradaudit.audit(sample("layouts:DitheredGradReLU"), select=["GA402", "GA404"])
    assert {f.status for f in findings(report, "GA402")} == {"warn"}
    assert findings(report, "GA404") == []


def test_random_backward_keeps_its_forward_layout_check() -> None:
    class DitheredFlatView(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view(-1).clamp(min=0).view(x.shape)

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output * (1 + 1e-4 * torch.rand_like(grad_output))

    report = gradaudit.audit(DitheredFlatView, select=["GA404"], dtypes=["float64"])
    assert {f.status for f in findings(report, "GA404")} == {"fail"}


# -- item 8: a domain far outside a dtype's range ------------------------------------------------
def test_domain_outside_float16_is_one_info_and_no_ga404_fail() -> None:
    report = gradaudit.audit(torch.tanh, domain=(1e5, 1e6))
    assert findings(report, "GA404", "fail") == []
    range_infos = [f for f in findings(report, "GA403", "info") if "representable" in f.details]
    assert [f.dtype for f in range_infos] == ["float16"]
    assert range_infos[0].details["representable"] is None


def test_domain_partly_outside_float16_audits_what_float16_can() -> None:
    report = gradaudit.audit(torch.tanh, domain=(1e4, 1e6), select=["GA403", "GA404"])
    assert findings(report, "GA404", "fail") == []
    range_infos = [f for f in findings(report, "GA403", "info") if "representable" in f.details]
    assert [f.dtype for f in range_infos] == ["float16"]
    assert range_infos[0].details["representable"] == [1e4, 65504.0]


def test_narrow_domain_with_few_values_is_laid_out_without_crashing() -> None:
    report = gradaudit.audit(torch.tanh, domain=(1.0, 1.03125), select=["GA404"])
    assert findings(report, "GA404", "fail") == []


# -- item 19: no finding depends on which kernel a layout takes ---------------------------------
def _underflow_sign_by_layout(x: torch.Tensor) -> torch.Tensor:
    """-exp(-x*x): a tiny negative value that underflows to -0.0 in float32 for |x| > 10.2; on
    non-contiguous inputs + 0.0 turns that into +0.0, as torch's scalar kernels sometimes do."""
    y = -torch.exp(-x * x)
    return y if x.is_contiguous() else y + 0.0


def test_zero_sign_difference_of_a_nonzero_float64_value_is_no_finding() -> None:
    report = gradaudit.audit(_underflow_sign_by_layout, select=["GA404"], dtypes=["float32"], domain=(-20.0, 20.0))
    assert findings(report, "GA404") == []


def test_zero_sign_difference_of_an_exact_zero_is_still_an_info() -> None:
    def exact_zero_sign_by_layout(x: torch.Tensor) -> torch.Tensor:
        y = x * (x > 0).to(x.dtype)  # -0.0 for x < 0, where the value is exactly 0
        return y if x.is_contiguous() else y + 0.0

    report = gradaudit.audit(exact_zero_sign_by_layout, select=["GA404"], dtypes=["float32"])
    assert {f.status for f in findings(report, "GA404")} == {"info"}
