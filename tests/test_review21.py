"""Review of issue 21 (GA406 compiled, GA407 custom-op, GA501 reference): the points the first
tests left unproven, and the gaps the review found.

- GA501 compared nothing where the output is not of the input's shape (a GLU, a slice):
  a target off by 0.01 everywhere passed against its reference;
- GA501 called the reference of a several-input target with x alone, so even the target itself
  as its reference was "could not be compared";
- GA102's unsupported finding gave a custom op autograd.Function advice (@once_differentiable),
  and GA103 said torch.func.jvp raises where it silently returns zero tangents;
- the opt-in ways (selecting GA406 by name, ``compile`` in [tool.gradaudit]) and the README's
  compile section had no test.
"""
from __future__ import annotations

import json
import os
import re

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import Tensor

from conftest import ROOT
from gradaudit import audit
from gradaudit.cli import main
from gradaudit.core import build_options

FAST = {"dtypes": ["float64", "float32"], "size": 200}


def found(report, code: str) -> list:
    return [f for f in report.findings if f.code == code]


# -- GA501: outputs of another shape than the input ------------------------------------------------
def _glu_offset(x):
    return F.glu(x) + 0.01


def _every_other_offset(x):
    return torch.tanh(x[::2]) + 0.01


def _every_other(x):
    return torch.tanh(x[::2])


@pytest.mark.parametrize("target, reference", [(_glu_offset, F.glu), (_every_other_offset, _every_other)])
def test_reference_compares_outputs_of_another_shape(target, reference):
    report = audit(target, reference=reference, select=["GA501"], **FAST)
    fails = [f for f in found(report, "GA501") if f.status == "fail"]
    assert report.status == "fail"
    assert {f.details["noun"] for f in fails} == {"output"}
    assert all(f.examples and f.details["max_difference"] > 5e-3 for f in fails)


def test_reference_equal_outputs_of_another_shape_pass():
    assert found(audit(F.glu, reference=lambda x: F.glu(x), select=["GA501"], **FAST), "GA501") == []


# -- GA501: several tensor inputs ---------------------------------------------------------------
def _gated(x, gate):
    return x * torch.sigmoid(gate)


def _gated_same(x, gate):
    return x * torch.sigmoid(gate)


def _gated_offset(x, gate):
    return x * torch.sigmoid(gate) + 0.01


def test_reference_of_a_several_input_target_gets_the_same_inputs():
    assert found(audit(_gated, reference=_gated_same, select=["GA501"], **FAST), "GA501") == []
    report = audit(_gated, reference=_gated_offset, select=["GA501"], **FAST)
    assert {(f.kind, f.status) for f in found(report, "GA501")} == {("values-differ", "fail")}


# -- custom-op advice --------------------------------------------------------------------------
@torch.library.custom_op("gradaudit_review21::tanh_derivative", mutates_args=())
def _tanh_derivative(x: Tensor) -> Tensor:
    return 1 - torch.tanh(x) ** 2


@_tanh_derivative.register_fake
def _tanh_derivative_fake(x):
    return torch.empty_like(x)


@torch.library.custom_op("gradaudit_review21::tanh", mutates_args=())
def custom_tanh(x: Tensor) -> Tensor:
    return torch.tanh(x)


@custom_tanh.register_fake
def _custom_tanh_fake(x):
    return torch.empty_like(x)


custom_tanh.register_autograd(  # the backward calls a custom op without autograd: no double backward
    lambda ctx, grad: grad * _tanh_derivative(ctx.saved_tensors[0]),
    setup_context=lambda ctx, inputs, output: ctx.save_for_backward(inputs[0]))

AUTOGRAD_FUNCTION_ADVICE = ("once_differentiable", "staticmethod", "ctx.mark_dirty", "save_for_forward")


def test_custom_op_without_double_backward_gets_custom_op_advice():
    report = audit(custom_tanh, select=["GA102"], **FAST)
    (info,) = [f for f in found(report, "GA102") if f.kind == "unsupported"]
    assert info.status == "info" and "register_autograd" in info.message
    assert not any(word in info.message for word in AUTOGRAD_FUNCTION_ADVICE)


def test_custom_op_forward_ad_info_does_not_say_jvp_raises():
    """torch.func.jvp returns zero tangents through a custom op: it raises nothing."""
    (info,) = found(audit(custom_tanh, select=["GA103"], **FAST), "GA103")
    assert info.status == "info" and info.kind == "unsupported"
    assert "jvp raises" not in info.message
    assert not any(word in info.message for word in AUTOGRAD_FUNCTION_ADVICE)


# -- GA406 opt-in ways without a compile -----------------------------------------------------------
@pytest.mark.parametrize("select", [["GA406"], ["compiled"], "GA406", ["GA101", "GA406"]])
def test_selecting_ga406_by_name_turns_it_on(select):
    options = build_options(select=select)
    assert "GA406" in options.codes and options.compile == "inductor"


@pytest.mark.parametrize("select", [["GA4"], ["GA101"], None])
def test_a_prefix_or_another_selection_leaves_it_off(select):
    options = build_options(select=select)
    assert "GA406" not in options.codes and options.compile is None


BREAKS = '''import torch


def breaks(x):
    y = torch.where(x > 0, x, torch.zeros_like(x))
    if y.sum().item() > -1:  # a data-dependent branch: dynamo breaks the graph
        return y * 2.0
    return y
'''


@pytest.mark.parametrize("value, runs", [("true", True), ('"eager"', True), ("false", False)])
def test_compile_in_the_config_file(tmp_path, monkeypatch, value, runs):
    from gradaudit.run.config import load_config

    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n[tool.gradaudit]\ncompile = {value}\n")
    (tmp_path / "acts.py").write_text(BREAKS)
    monkeypatch.chdir(tmp_path)
    assert load_config(start=str(tmp_path)).settings["compile"] == json.loads(value)
    if value == "true":  # inductor compiles for seconds: the eager backend shows the same plumbing
        return
    result = CliRunner().invoke(main, ["check", "acts.py:breaks", "--dtype", "float32", "--format", "json"],
                                catch_exceptions=False)
    (entry,) = json.loads(result.output)["results"]
    kinds = {f["kind"] for f in entry["findings"] if f["code"] == "GA406"}
    assert kinds == ({"graph-break"} if runs else set())


# -- the README's compile section -----------------------------------------------------------------
SECTION = "## What torch.compile changes in PyTorch's own activations"
ROW = re.compile(r"^\| `(?P<target>[^`]+)` \| (?P<status>\w+) \|")


def _section_rows() -> dict[str, str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    assert SECTION in text
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return {m["target"]: m["status"] for m in map(ROW.match, body.splitlines()) if m}


def test_readme_compile_section_covers_the_group():
    from gradaudit.targets.resolve import resolve

    assert set(_section_rows()) == {t.name for t in resolve("@torch-activations")}


@pytest.mark.parametrize("name", ["torch.nn.functional:relu6", "torch.nn.functional:relu"])
def test_readme_compile_section_agrees_with_a_compiled_run(name):
    """A handful of rows re-run (float64 and float32; the rows' float64 behaviour), not the group."""
    from gradaudit.core import audit_target_string

    (report,) = audit_target_string(name, build_options(compile=True, select=["GA406"], dtypes=["float32"]))
    status = max((f.status for f in found(report, "GA406") if f.status != "info"), default="pass",
                 key=["pass", "warn", "fail", "error"].index)
    assert status == _section_rows()[name]
