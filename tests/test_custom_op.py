"""torch.library custom ops as targets (GA407 custom-op): target strings, discovery, locations,
blame inside the implementing function, opcheck's failing tests, per-kind fixes, vmap noise."""
from __future__ import annotations

import os

import pytest
import torch
from torch import Tensor

from conftest import ROOT, sample
from gradaudit.core import audit
from gradaudit.model.check import Check
from gradaudit.targets.resolve import resolve
from gradaudit.targets.types import Target

FAST = {"dtypes": ["float64", "float32"], "size": 200}
SAMPLES = os.path.join(ROOT, "samples", "custom_ops.py")


@torch.library.custom_op("gradaudit_tests::mask_relu", mutates_args=())
def mask_relu(x: Tensor) -> Tensor:
    return x * (x > 0).to(x.dtype)  # -0.0 for x < 0, created on this line


@mask_relu.register_fake
def _mask_relu_fake(x):
    return torch.empty_like(x)


mask_relu.register_autograd(
    lambda ctx, grad: torch.where(ctx.saved_tensors[0] > 0, grad, torch.zeros_like(grad)),
    setup_context=lambda ctx, inputs, output: ctx.save_for_backward(inputs[0]))


def codes(report, statuses=("warn", "fail", "error")):
    return {f.code for f in report.findings if f.status in statuses}


def test_custom_op_is_a_target_of_kind_custom_op(in_root):
    (target,) = resolve("samples/custom_ops.py:relu")
    assert target.kind == "custom op"
    assert target.source("forward")["path"] == os.path.join("samples", "custom_ops.py")
    assert target.source("backward")["path"] == os.path.join("samples", "custom_ops.py")


@pytest.mark.parametrize("text", ["gradaudit_samples::relu", "torch.ops.gradaudit_samples.relu",
                                  "torch.ops.gradaudit_samples.relu.default"])
def test_op_strings_name_the_custom_op(in_root, text):
    op = sample("custom_ops:relu")
    (target,) = resolve(text)
    assert target.obj is op and target.kind == "custom op" and target.name == text


def test_unknown_op_string_is_a_target_error(in_root):
    from gradaudit.targets.spec import TargetError

    with pytest.raises(TargetError):
        resolve("gradaudit_samples::no_such_op")


def test_discovery_finds_custom_ops_in_files(in_root):
    names = [t.name for t in resolve("samples/custom_ops.py")]
    assert names == ["samples/custom_ops.py:relu", "samples/custom_ops.py:relu_without_fake",
                     "samples/custom_ops.py:relu_mutating_input"]


def test_correct_custom_op_passes_opcheck(in_root):
    report = audit(sample("custom_ops:relu"), select=["GA407"], **FAST)
    assert report.findings == [] and report.status == "pass"


@pytest.mark.parametrize("name, tests", [
    ("relu_without_fake", {"test_faketensor", "test_aot_dispatch_dynamic"}),
    ("relu_mutating_input", {"test_schema"}),
])
def test_opcheck_failures_are_ga407_fails(in_root, name, tests):
    report = audit(sample(f"custom_ops:{name}"), select=["GA407"], **FAST)
    found = [f for f in report.findings if f.code == "GA407"]
    assert found and all(f.status == "fail" for f in found)
    assert {f.details["test"] for f in found} == tests
    assert all(f.location["path"] == os.path.join("samples", "custom_ops.py") for f in found)
    assert all(f.examples and "input" in f.examples[0] for f in found)


def test_not_a_custom_op_yields_no_ga407(in_root):
    assert audit(torch.relu, select=["GA407"], **FAST).findings == []


def test_blame_descends_into_the_implementing_function(in_root):
    report = audit(mask_relu, select=["GA203"], **FAST)
    (warn,) = [f for f in report.findings if f.status == "warn"]
    here = os.path.relpath(os.path.abspath(__file__), ROOT)
    assert warn.location["path"] == here
    assert warn.details["blame"]["path"] == here


def test_vmap_without_rule_is_one_info_and_no_stderr_noise(in_root, capfd):
    report = audit(sample("custom_ops:relu"), select=["GA104"], **FAST)
    kinds = [f.kind for f in report.findings if f.code == "GA104" and f.details.get("transform") == "vmap"]
    assert kinds == ["no-vmap-rule"]
    assert "batching rule" not in capfd.readouterr().err


def test_per_kind_fix_replaces_the_default_fix():
    check = Check("GA999", "demo", "warn", "s", "e", fix="default fix", messages={"m": "{fix}"},
                  fixes={"custom op": "custom-op fix"})

    class Ctx:
        options = None
        target = Target("t", sample("custom_ops:relu"))

    assert check.finding("m", "warn", audit=Ctx).message == "custom-op fix"
    Ctx.target = Target("t", torch.relu)
    assert check.finding("m", "warn", audit=Ctx).message == "default fix"


def test_samples_through_the_cli(in_root):
    from click.testing import CliRunner

    from gradaudit.cli import main

    result = CliRunner().invoke(main, ["check", "samples/custom_ops.py:relu_without_fake", "--select", "GA407",
                                       "--dtype", "float32", "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 1
