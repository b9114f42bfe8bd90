"""Gradients judged against the float64 forward's own slopes (issue 18, items 1 and 7): an
infinite backward where the function is smooth fails GA202, real poles stay information, and
a point where float64 cannot resolve the derivative is skipped and counted, never failed."""
from __future__ import annotations

import os

import pytest
import torch

from conftest import SAMPLES
from gradaudit import audit
from gradaudit.core import audit_target_string, build_options

SAMPLE = os.path.join(SAMPLES, "gradient_honesty.py")


def _audit(name: str, **options):
    (report,) = audit_target_string(f"{SAMPLE}:{name}", build_options(**options))
    return report


def _statuses(report, code: str, dtype: str | None = None) -> set[str]:
    return {f.status for f in report.findings if f.code == code and (dtype is None or f.dtype == dtype)}


@pytest.mark.parametrize("name", ["SqrtReluInfBackward", "sqrt_relu_inf_backward_on_negatives"])
def test_infinite_backward_where_the_function_is_flat_fails_in_float64(name):
    report = _audit(name, dtypes=["float64"])
    assert report.status == "fail"
    assert "fail" in _statuses(report, "GA202", "float64")
    (finding,) = [f for f in report.findings if f.code == "GA202" and f.status == "fail"]
    assert all(example["input"] < 0 for example in finding.examples)
    assert finding.details["count"] > 100


def test_infinite_backward_fails_under_a_domain_given_on_the_command_line():
    report = _audit("SqrtReluInfBackward", dtypes=["float64"], domain=(-5.0, -0.1))
    assert report.status == "fail" and report.codes("fail") == {"GA202"}


def test_infinite_backward_is_one_fail_when_float64_is_audited_too():
    report = _audit("SqrtReluInfBackward", dtypes=["float64", "float32"])
    assert [f.dtype for f in report.findings if f.code == "GA202" and f.status == "fail"] == ["float64"]


@pytest.mark.parametrize("name", ["reciprocal", "log_on_nonnegatives"])
def test_real_poles_stay_information(name):
    report = _audit(name)
    assert report.status == "pass"
    assert _statuses(report, "GA202") == {"info"}
    assert "fail" not in _statuses(report, "GA201")


class OverflowNearMaxBackward(torch.autograd.Function):
    """The identity whose backward scales x up first and keeps an overflow: inf for
    |x| > max / 16 (a formula without headroom), 1 elsewhere."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        scaled = x.abs() * 16
        return g * torch.where(torch.isinf(scaled), scaled, torch.ones_like(x))


def test_an_overflow_near_the_dtypes_max_stays_information():
    report = audit(OverflowNearMaxBackward.apply, dtypes=["float64"])
    assert _statuses(report, "GA202") == {"info"}
    assert report.status == "pass"


def test_an_infinite_gradient_at_negative_zero_alone_is_not_a_pole():
    report = _audit("NegativeZeroInfBackward", dtypes=["float64"])
    (finding,) = [f for f in report.findings if f.code == "GA202" and f.status == "fail"]
    assert finding.details["count"] == 1
    (example,) = finding.examples
    assert example["input"] == 0 and str(example["input"]) == "-0.0"


def test_snake_passes_and_counts_the_points_float64_cannot_resolve():
    report = _audit("snake")
    assert report.status == "pass"
    assert _statuses(report, "GA101") == {"info"}
    (finding,) = [f for f in report.findings if f.code == "GA101"]
    assert finding.details["points_unresolved"] > 0
    assert all(abs(example["input"]) >= 1e6 for example in finding.examples)


def test_snake_passes_on_a_large_probe_with_ga101_alone():
    report = audit(lambda x: x + torch.sin(x) ** 2, size=300_000, select=["GA101"], dtypes=["float64"])
    assert report.status == "pass" and report.codes("fail") == set()


class SnakeWrongPhaseAtLargeX(torch.autograd.Function):
    """Snake whose backward uses cos for sin above |x| = 1e6: wrong exactly where the first
    step is longer than the period, but resolvable with shorter ones."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x + torch.sin(x) ** 2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.where(x.abs() > 1e6, 1 + torch.cos(2 * x), 1 + torch.sin(2 * x))


class HalfGradientBeyond(torch.autograd.Function):
    """The identity whose backward halves above |x| = 1e7: smooth, wrong, never unresolvable."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.where(x.abs() > 1e7, 0.5, 1.0)


@pytest.mark.parametrize("fn, lowest", [(SnakeWrongPhaseAtLargeX.apply, 1e6), (HalfGradientBeyond.apply, 1e7)],
                         ids=["snake with a wrong phase", "identity halved"])
def test_wrong_backwards_at_large_inputs_still_fail(fn, lowest):
    report = audit(fn, dtypes=["float64"], select=["GA101"])
    (finding,) = [f for f in report.findings if f.code == "GA101" and f.status == "fail"]
    assert finding.details["points_wrong"] > 10
    assert all(abs(example["input"]) > lowest for example in finding.examples)
