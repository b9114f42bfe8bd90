"""Blame: GA201-GA204 findings name the op and the source line that created the defect."""
from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from conftest import sample

import gradaudit
from gradaudit.engine.blame import defect_mask, offending_inputs, op_name
from gradaudit.render.json import render_json

FAST = {"dtypes": ["float64", "float32"], "size": 64, "select": ["GA2"]}


def blamed(report: gradaudit.Report, code: str) -> gradaudit.Finding:
    (finding,) = [f for f in report.findings if f.code == code and f.status in ("warn", "fail")]
    return finding


def line_of(spec: str, text: str) -> int:
    """The 1-based line of ``text`` in samples/<module>.py."""
    module = spec.split(":")[0]
    with open(f"samples/{module}.py", encoding="utf-8") as handle:
        (line,) = [i for i, source in enumerate(handle, 1) if text in source]
    return line


def test_no_back_output_blames_the_mask_multiplication(in_root):
    finding = blamed(gradaudit.audit(sample("seed_relu:no_back"), **FAST), "GA203")
    line = line_of("seed_relu", "return x * (x > 0).float()")
    assert finding.location == {"path": "samples/seed_relu.py", "line": line}
    assert finding.details["blame"]["op"] == "mul"
    assert finding.details["blame"]["phase"] == "forward"
    assert finding.details["blame"]["source"] == "return x * (x > 0).float()"


def test_neg_relu_blames_the_outer_neg(in_root):
    report = gradaudit.audit(sample("defects:neg_relu"), **FAST)
    line = line_of("defects", "return -torch.relu(-x)")
    for code in ("GA203", "GA204"):
        blame = blamed(report, code).details["blame"]
        assert (blame["op"], blame["line"]) == ("neg", line)


def test_custom_backward_line_is_blamed(in_root):
    finding = blamed(gradaudit.audit(sample("defects:MaskGradReLU"), **FAST), "GA204")
    line = line_of("defects", "return g * (x > 0).to(g.dtype)")
    assert finding.location == {"path": "samples/defects.py", "line": line}
    assert finding.details["blame"]["phase"] == "backward"
    assert finding.details["blame"]["op"] == "mul"
    assert finding.details["grad_output"] == -1.0  # only a negative grad_output makes g * 0 negative


def test_where_trap_names_where_and_sqrt(in_root):
    finding = blamed(gradaudit.audit(sample("defects:where_sqrt"), **FAST), "GA202")
    line = line_of("defects", "torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))")
    blame = finding.details["blame"]
    assert (blame["op"], blame["phase"], blame["line"]) == ("sqrt", "backward", line)
    assert blame["via"]["op"] == "where"
    assert finding.location["line"] == line


def test_overflow_blames_exp(in_root):
    report = gradaudit.audit(sample("defects:naive_softplus"), **FAST)
    finding = blamed(report, "GA201")
    assert finding.details["blame"]["op"] == "exp"
    assert finding.location["line"] == line_of("defects", "return torch.log(1 + torch.exp(x))")


def test_builtin_kernel_is_named_without_a_line():
    report = gradaudit.audit(F.hardswish, **FAST)
    finding = blamed(report, "GA203")
    assert finding.details["blame"]["op"] == "hardswish"
    assert "path" not in finding.details["blame"]


def test_builtin_called_from_user_code_points_at_the_caller():
    def scaled_hardswish(x):
        return F.hardswish(x) * 2.0

    finding = blamed(gradaudit.audit(scaled_hardswish, **FAST), "GA203")
    assert finding.details["blame"]["op"] == "hardswish"
    assert finding.location["path"].endswith("test_blame.py")
    assert finding.details["blame"]["source"] == "return F.hardswish(x) * 2.0"


def test_defect_masked_in_forward_is_not_blamed():
    """A NaN that torch.where throws away is not the overflow that reaches the output."""

    def masked_then_overflow(x):
        big = torch.exp(x)  # inf for large x, then thrown away
        safe = torch.where(torch.isinf(big), torch.zeros_like(big), big) * 0
        return safe + torch.log(1 + torch.exp(x))

    finding = blamed(gradaudit.audit(masked_then_overflow, dtypes=["float32"], size=64, select=["GA201"]), "GA201")
    assert finding.details["blame"]["op"] == "exp"
    assert finding.details["blame"]["source"] == "return safe + torch.log(1 + torch.exp(x))"


def test_blame_changes_no_verdict_and_reaches_json(in_root):
    target = sample("seed_relu:no_back")
    with_blame = gradaudit.audit(target, **FAST)
    without = gradaudit.audit(target, dtypes=["float64", "float32"], size=64, select=["GA203", "GA204"])
    assert [(f.code, f.status, f.details["count"]) for f in with_blame.findings] == \
        [(f.code, f.status, f.details["count"]) for f in without.findings]
    document = json.loads(render_json([with_blame]))
    locations = {f["code"]: f.get("location") for f in document["results"][0]["findings"] if f["status"] == "warn"}
    assert locations["GA203"]["path"] == "samples/seed_relu.py"


def test_clean_targets_get_no_blame():
    for target in (torch.relu, F.silu, sample("correct:where_relu")):
        report = gradaudit.audit(target, **FAST)
        assert not any("blame" in (f.details or {}) for f in report.findings)


def test_offending_inputs_are_few_and_include_the_example():
    x = torch.linspace(-5, 5, 1001)
    mask = x < 0
    picked = offending_inputs(x, mask, first=300)
    assert len(picked) == 8 and picked[0] == float(x[300]) and all(v < 0 for v in picked)


def test_defect_masks_and_op_names():
    t = torch.tensor([-0.0, 0.0, float("nan"), float("inf"), 1.0])
    assert defect_mask(t, "negative-zero").tolist() == [True, False, False, False, False]
    assert defect_mask(t, "nonfinite").tolist() == [False, False, True, True, False]
    assert op_name(torch.Tensor.__rmul__) == "mul"
    assert op_name(torch.ops.aten.sqrt.default) == "sqrt"
