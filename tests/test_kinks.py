"""Kinks and jumps: discovery, the GA301 verdict at each kink, GA302 and surrogates."""
from __future__ import annotations

import functools
import math
import time

import pytest
import torch
import torch.nn.functional as F

from conftest import sample
from gradaudit import audit

BUILTINS = {
    "relu": (torch.relu, [0.0]),
    "relu6": (F.relu6, [0.0, 6.0]),
    "hardtanh": (F.hardtanh, [-1.0, 1.0]),
    "hardswish": (F.hardswish, [-3.0, 3.0]),
    "hardsigmoid": (F.hardsigmoid, [-3.0, 3.0]),
    "abs": (torch.abs, [0.0]),
    "leaky_relu": (F.leaky_relu, [0.0]),
    "elu": (F.elu, []),  # alpha = 1: the derivative is continuous
    "elu_half": (functools.partial(F.elu, alpha=0.5), [0.0]),
    "threshold": (functools.partial(F.threshold, threshold=1.0, value=0.0), [1.0]),
    "clamp": (functools.partial(torch.clamp, min=-2.0, max=0.5), [-2.0, 0.5]),
}


def kink_details(report):
    return [f.details for f in report.findings if f.code in ("GA301", "GA302") and f.details and "verdict" in f.details]


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_piecewise_functions_never_fail_and_kinks_are_found(name):
    fn, expected = BUILTINS[name]
    report = audit(fn, dtypes=["float64", "float32"])
    assert not {"GA101", "GA301"} & report.codes("fail"), report.to_dict()
    found = sorted(d["location"] for d in kink_details(report))
    assert found == pytest.approx(expected, abs=1e-9)


def test_kink_at_an_irrational_location_is_found_to_1e_9_relative():
    where = 1.0 / 3.0

    def bent(x):
        return torch.where(x > where, 2 * x - where, x)

    report = audit(bent, dtypes=["float64"])
    (details,) = kink_details(report)
    assert details["location"] == pytest.approx(where, rel=1e-9)
    assert details["left"] == pytest.approx(1.0, rel=1e-6) and details["right"] == pytest.approx(2.0, rel=1e-6)


def test_kink_details_describe_the_convention():
    (details,) = kink_details(audit(torch.relu, dtypes=["float64"]))
    assert details["left"] == pytest.approx(0.0, abs=1e-9) and details["right"] == pytest.approx(1.0)
    assert details["implemented"]["float64"]["alone"] == 0.0
    assert details["convention"] == "the left derivative"
    assert details["verdict"] == "pass"
    assert details["f(-0.0)"] == "-0.0" and details["f(+0.0)"] == "0.0"


def test_relu_with_gradient_two_at_zero_fails_ga301():
    report = audit(sample("defects:ReLUTwoAtZero"))
    assert "GA301" in report.codes("fail")
    assert "GA101" not in report.codes("fail")


def test_abs_dividing_by_abs_fails_at_zero():
    report = audit(sample("defects:AbsDivide"))
    assert {"GA301", "GA202"} & report.codes("fail")


def test_closed_range_hardswish_passes_and_differs_from_torch_by_convention():
    target = sample("kinks:HardswishClosedRange")
    report = audit(target)
    assert "GA301" not in report.codes("fail")
    gradients = {d["location"]: d["implemented"]["float64"]["alone"] for d in kink_details(report)}
    assert gradients == {-3.0: -0.5, 3.0: 1.5}
    with_reference = audit(target, reference=F.hardswish)
    conventions = [f for f in with_reference.findings if f.code == "GA301" and "reference" in (f.details or {})
                   and f.details["reference"] != f.details["implemented"]["float64"]["alone"]]
    assert len(conventions) == 2 and all(f.status == "info" for f in conventions)
    assert with_reference.status == report.status


def test_reference_with_the_same_convention_gives_no_convention_finding():
    report = audit(F.hardswish, reference=F.hardswish, dtypes=["float64"])
    assert not [f for f in report.findings if f.code == "GA301" and "reference" in (f.details or {})]


def test_heaviside_with_identity_backward_is_an_undeclared_surrogate():
    target = sample("defects:HeavisideSTE")
    report = audit(target)
    assert report.status == "warn"
    assert "GA302" in report.codes("warn")
    declared = audit(target, surrogate=True)
    assert declared.status == "pass"
    assert "GA302" in declared.codes("info")


def test_clamp_with_straight_through_backward_fails_until_declared():
    class ClampSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clamp(-1, 1)

        @staticmethod
        def backward(ctx, g):
            return g

    assert "GA101" in audit(ClampSTE, dtypes=["float64"]).codes("fail")
    declared = audit(ClampSTE, dtypes=["float64"], surrogate=True)
    assert declared.status == "pass" and "GA101" in declared.codes("info")


def test_declared_kinks_are_judged_even_if_not_discovered():
    # far outside the dense grid, where discovery does not look
    def far(x):
        return torch.where(x > 50, 3 * x - 100, x)

    report = audit(far, kinks=[50.0], dtypes=["float64"])
    (details,) = kink_details(report)
    assert details["location"] == 50.0 and details["declared"]
    assert not report.codes("fail")


def test_smooth_functions_have_no_kinks():
    for fn in (F.silu, F.gelu, torch.tanh, F.softplus, F.mish, F.elu):
        assert kink_details(audit(fn, dtypes=["float64"])) == []


def _counting_context(fn, **options):
    """An audit context for ``fn`` whose float64 point evaluations are recorded (their sizes)."""
    from gradaudit.engine.context import AuditContext
    from gradaudit.core import build_options
    from gradaudit.targets.types import target_from_object

    context = AuditContext(target_from_object(fn), build_options(**options))
    calls = []
    original = context.values64

    def counting(points):
        calls.append(points.numel())
        return original(points)

    context.values64 = counting  # type: ignore[method-assign]
    return context, calls


def test_discovery_cost_is_linear_in_the_grid():
    from gradaudit.engine.kinks import candidate_brackets

    from gradaudit.engine.inputs import dense_grid

    context, calls = _counting_context(F.hardswish)
    kinks = context.kinks
    assert [k.location for k in kinks] == [-3.0, 3.0]
    # one call over the dense grid, then a fixed number of small batched calls for the
    # bisection, independent of the grid size (and of the probe's), and one fixed call of
    # one-sided differences at the structured tail points (a second at the few that look like kinks)
    assert calls[0] == dense_grid().size
    tail = max(calls[1:])
    assert tail < 20000 and calls.count(tail) == 1
    assert len(calls) <= 72 and sorted(calls[1:])[-2] <= 5 * 8
    x = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    started = time.perf_counter()
    candidate_brackets(x, F.hardswish(x))
    assert time.perf_counter() - started < 1.0


def _discovery(fn):
    """(kinks, bisection brackets kept, calls of the float64 forward) for ``fn``'s discovery."""
    from gradaudit.engine.kinks import _bisect, _dense_section, candidate_brackets

    context, calls = _counting_context(fn, dtypes=["float64"])
    brackets = candidate_brackets(*_dense_section(context))
    return context.kinks, brackets, _bisect(context, brackets) if brackets else [], len(calls)


def test_a_smooth_candidate_is_dropped_after_a_few_bisection_steps():
    """silu's slope crosses zero near -1.28, which flags a candidate; the excess of its
    changes of slope over their median shrinks with the bracket, so bisection gives it up
    long before convergence."""
    kinks, brackets, kept, calls = _discovery(F.silu)
    assert brackets and kept == [] and kinks == []
    assert calls < 2 * 20  # twice (find_kinks, then _bisect here); converging takes about 40 each


@pytest.mark.parametrize("size", [1.5e-3, 1e-2])
def test_a_kink_just_above_the_reported_size_survives_the_drop(size):
    """x^2 + size * relu(x): a change of slope of ``size`` at 0, on a curved background,
    just above the 1e-3 * (1 + |L| + |R|) that GA301 reports."""
    kinks, _, kept, _ = _discovery(lambda x: x * x + size * torch.relu(x))
    assert [k.location for k in kinks] == [0.0]
    assert kinks[0].right - kinks[0].left == pytest.approx(size, rel=1e-3)
    assert len(kept) == 1


@pytest.mark.parametrize("fn, where, size", [
    (lambda x: -x * x + 0.01 * torch.relu(x), 0.0, 0.01),
    (lambda x: -x * x + 2e-3 * torch.relu(x), 0.0, 2e-3),
    (lambda x: torch.sin(3 * x) + 0.1 * torch.relu(x - 0.3), 0.3, 0.1),
    (lambda x: torch.sin(3 * x) + 0.03 * torch.relu(x - 0.3), 0.3, 0.03),
], ids=["-x^2+0.01relu", "-x^2+0.002relu", "sin3x+0.1relu", "sin3x+0.03relu"])
def test_a_small_kink_against_the_curvature_is_found(fn, where, size):
    """The curvature's share of the secant changes outweighs the kink in the first brackets;
    the kink still stands out from their median."""
    kinks, _, kept, _ = _discovery(fn)
    assert [k.location for k in kinks] == [pytest.approx(where, abs=1e-9)]
    assert kinks[0].right - kinks[0].left == pytest.approx(size, rel=1e-3)


def test_float32_noise_is_not_a_kink():
    """silu computed in float32: rounding steps of 1e-7 on the grid are not changes of slope."""
    kinks, _, _, _ = _discovery(lambda x: F.silu(x.float()).double())
    assert kinks == []


def test_a_nan_gradient_at_a_kink_is_not_called_position_dependent():
    """NaN != NaN: fifteen NaN gradients inside a tensor are one value, not fifteen."""
    from gradaudit.checks.kink import gradients_at

    context, _ = _counting_context(sample("defects:where_sqrt"))
    measured = gradients_at(context, 0.0, torch.float64)
    assert math.isnan(measured["alone"]) and math.isnan(measured["in_tensor"])
    assert "in_tensor_values" not in measured


def test_a_jump_to_infinity_is_followed_by_the_search():
    """A change of slope next to an infinite value is not finite: the search closes in on it
    instead of on the median of the others."""
    kinks, _, _, _ = _discovery(lambda x: torch.where(x > 1.3, torch.full_like(x, math.inf), x))
    assert [(k.location, k.kind) for k in kinks] == [(1.3, "jump")]
