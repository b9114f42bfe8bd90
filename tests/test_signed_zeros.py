"""Issue 18, items 2 and 3: honest GA203/GA204 verdicts for step masks and shape-changing targets.

A -0.0 is spurious (warn) where the function is exactly zero around the point, in every input
element it depends on; a mask that steps to zero is not an underflow, and a gate that is
exactly zero is spurious whatever the shape of the target.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from conftest import sample
from gradaudit import audit

SIGNED = ["GA203", "GA204"]


def kinds(report, code: str) -> dict[str, set[str]]:
    """Finding kind -> dtypes, for one code."""
    found: dict[str, set[str]] = {}
    for f in report.findings:
        if f.code == code:
            found.setdefault(f.details["kind"], set()).add(f.dtype)
    return found


def warned(report) -> set[str]:
    return {f.code for f in report.findings if f.status == "warn"}


# -- item 2: a mask that steps to zero is not an underflow ------------------------------------
def test_mask_multiply_backward_stepping_to_zero_is_spurious():
    report = audit(sample("signed_zeros:HardSigmoid"), select=SIGNED)
    assert warned(report) == {"GA204"}
    (finding,) = [f for f in report.findings if f.code == "GA204" and f.status == "warn"]
    assert finding.details["kind"] == "spurious" and finding.details["grad_output"] == -1.0
    assert "underflow" not in kinds(report, "GA204")
    # every input outside [-3, 3], and nothing inside
    assert all(hi < -3 or lo > 3 for lo, hi in finding.details["intervals"])


def test_output_stepping_to_zero_is_spurious():
    report = audit(sample("signed_zeros:hardshrink_mask"), select=SIGNED)
    assert warned(report) == {"GA203", "GA204"}
    (finding,) = [f for f in report.findings if f.code == "GA203" and f.status == "warn"]
    assert all(-0.5 <= lo <= hi < 0 for lo, hi in finding.details["intervals"])
    assert "underflow" not in kinds(report, "GA203")


def test_gentle_decay_into_underflow_stays_info():
    """silu's tail and tanh's backward reach zero through tiny values: not spurious."""
    for fn in (F.silu, torch.tanh, torch.sigmoid, F.softsign):
        report = audit(fn, select=SIGNED)
        assert not warned(report), (fn, [f.message for f in report.findings if f.status == "warn"])


def test_edge_value_must_be_small():
    """The edge test itself: a step from 1/6 to 0 does not decay gently; an exponential tail does."""
    from gradaudit.checks.signed_zero import _edge_decays

    def step(points: torch.Tensor) -> torch.Tensor:
        return -((points >= -3) & (points <= 3)).to(torch.float64) / 6

    assert _edge_decays(step, -4.0, -3.0) is False
    assert _edge_decays(lambda p: F.silu(p.to(torch.float64)), -800.0, -700.0) is True


# -- item 3: shape-changing and non-elementwise targets are scanned ----------------------------
def test_glu_with_relu_gate_warns_spurious_negative_zero():
    report = audit(sample("signed_zeros:glu_relu"), select=SIGNED)
    assert "GA203" in warned(report)
    (finding,) = [f for f in report.findings if f.code == "GA203" and f.status == "warn"]
    assert finding.details["kind"] == "spurious" and finding.examples[0]["output"] == "-0.0"


def test_geglu_negative_zeros_are_not_spurious():
    report = audit(sample("signed_zeros:geglu"), select=SIGNED)
    assert not warned(report), [f.message for f in report.findings if f.status == "warn"]


def test_gelu_gate_at_positive_zero_carries_the_sign_of_the_product():
    """a * gelu(b) at a = +0.0, gelu(b) < 0: negative for a slightly positive (propagated)."""
    x = torch.tensor([0.0, 0.0, 1.0, 2.0, -1.0, -1.5, 1.0, 2.0], dtype=torch.float64)
    assert torch.signbit(sample("signed_zeros:geglu")(x)[:2]).all()
    report = audit(sample("signed_zeros:geglu"), select=["GA203"])
    assert "propagated" in kinds(report, "GA203") and "spurious" not in kinds(report, "GA203")


def test_builtin_glu_gets_no_signed_zero_warning():
    report = audit(F.glu, select=SIGNED)
    assert not warned(report)
    assert kinds(report, "GA204")  # scanned now: its -0.0 gradients are classified (info)


def test_softmin_gradient_zero_for_constant_grad_output_is_not_spurious():
    """softmin's vjp with a constant grad_output is exactly zero, but not for a perturbed one:
    the -0.0 is no mask's doing."""
    report = audit(torch.nn.Softmin(dim=-1), select=SIGNED)
    assert not warned(report)
    assert kinds(report, "GA204")
