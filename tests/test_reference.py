"""GA501 reference: values, gradients and zero signs compared with a given reference."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import sample
from gradaudit.core import audit

FAST = {"dtypes": ["float64", "float32"], "size": 200}


def ga501(report):
    return [f for f in report.findings if f.code == "GA501"]


def test_tanh_gelu_differs_from_the_exact_gelu_through_audit(in_root):
    report = audit(sample("reference:tanh_gelu"), reference="torch.nn.functional:gelu", **FAST)
    found = ga501(report)
    assert report.status == "fail"
    assert {(f.kind, f.status) for f in found} >= {("values-differ", "fail")}
    assert {f.details["noun"] for f in found if f.kind == "values-differ"} == {"output", "gradient"}
    for f in found:
        assert f.details["intervals"] and f.details["max_difference"] > 1e-4
        assert "input" in f.examples[0]


def test_tanh_gelu_differs_from_the_exact_gelu_through_the_cli(in_root):
    from click.testing import CliRunner

    from gradaudit.cli import main

    result = CliRunner().invoke(main, ["check", "samples/reference.py:tanh_gelu", "--reference",
                                       "torch.nn.functional:gelu", "--dtype", "float64", "--format", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 1
    (entry,) = json.loads(result.output)["results"]
    assert entry["status"] == "fail"
    assert any(f["code"] == "GA501" and f["status"] == "fail" for f in entry["findings"])


def test_no_reference_no_ga501(in_root):
    report = audit(sample("reference:tanh_gelu"), **FAST)
    assert ga501(report) == []


def test_same_function_as_reference_has_no_ga501():
    assert ga501(audit(torch.relu, reference=F.relu, **FAST)) == []


def _mask_relu(x):
    return x * (x > 0).to(x.dtype)


@pytest.mark.parametrize("target, reference, spurious", [
    (_mask_relu, torch.relu, "target"),
    (torch.relu, _mask_relu, "reference"),
])
def test_zero_signs_that_differ_are_warn_naming_the_spurious_side(target, reference, spurious):
    found = ga501(audit(target, reference=reference, select=["GA501"], **FAST))
    assert found and {(f.kind, f.status) for f in found} == {("zero-sign-differs", "warn")}
    assert {f.details["spurious"] for f in found} == {spurious}
