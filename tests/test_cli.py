"""End-to-end CLI behaviour: exit codes, formats, errors, through CliRunner and a real process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import ROOT
from gradaudit.cli import main

SEED = ["samples/seed_relu.py:MyReLU", "samples/seed_relu.py:no_back"]
FAST = ["--dtype", "float64", "--dtype", "float32"]


def run(args, in_root):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_seed_pair_exits_zero_and_reports_statuses(in_root):
    result = run(["check", *SEED, "--format", "json"], in_root)
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["tool"] == "gradaudit" and data["status"] == "warn"
    statuses = {r["target"]: r["status"] for r in data["results"]}
    assert statuses == {SEED[0]: "pass", SEED[1]: "warn"}
    warn = [f for f in data["results"][1]["findings"] if f["status"] == "warn"]
    assert "GA203" in {f["code"] for f in warn}
    ga203 = [f for f in warn if f["code"] == "GA203"][0]
    assert ga203["check"] == "signed-zero-output" and ga203["location"]["path"] == "samples/seed_relu.py"
    assert ga203["examples"][0]["output"] == "-0.0"


def test_strict_turns_warn_into_exit_one(in_root):
    assert run(["check", *SEED, "--strict", *FAST], in_root).exit_code == 1


def test_table_output_names_targets_and_codes(in_root):
    result = run(["check", *SEED, *FAST], in_root)
    assert result.exit_code == 0
    assert "no_back" in result.output and "GA203" in result.output and "signed-zero-output" in result.output


def test_fail_exits_one(in_root):
    assert run(["check", "samples/defects.py:where_sqrt", *FAST], in_root).exit_code == 1


@pytest.mark.parametrize(
    "bad",
    ["nosuchmodule:fn", "samples/defects.py:nope", "samples/broken.py:NOT_CALLABLE",
     "samples/broken.py:raises", "samples/broken.py:returns_tuple", "samples/missing.py:fn"],
)
def test_bad_targets_are_errors_and_others_still_run(bad, in_root):
    result = run(["check", bad, "samples/seed_relu.py:MyReLU", "--format", "json", *FAST], in_root)
    assert result.exit_code == 2
    data = json.loads(result.output)
    statuses = {r["target"]: r["status"] for r in data["results"]}
    assert statuses == {bad: "error", "samples/seed_relu.py:MyReLU": "pass"}
    (finding,) = data["results"][0]["findings"]
    assert finding["code"] == "GA901" and bad in finding["message"]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("option", [["--dtype", "int8"], ["--size", "-3"], ["--select", "GA999"], ["--domain", "1", "0"], ["--format", "xml"]])
def test_bad_options_are_usage_errors(option, in_root):
    result = CliRunner().invoke(main, ["check", "samples/seed_relu.py:MyReLU", *option])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_verbose_shows_the_traceback_of_a_raising_target(in_root):
    result = run(["check", "samples/broken.py:raises", "-v", "--format", "json", *FAST], in_root)
    finding = json.loads(result.output)["results"][0]["findings"][0]
    assert "Traceback" in finding["details"]["traceback"]


def test_kink_table_and_options(in_root):
    result = run(["check", "torch.nn.functional:relu6", *FAST], in_root)
    assert result.exit_code == 0
    lines = [line.split() for line in result.output.splitlines()]
    assert ["0", "kink"] in [line[:2] for line in lines] and ["6", "kink"] in [line[:2] for line in lines]
    surrogate = run(["check", "samples/defects.py:HeavisideSTE", "--surrogate", "--strict", *FAST], in_root)
    assert surrogate.exit_code == 0
    declared = run(["check", "torch.nn.functional:relu", "--kink", "0", "--format", "json", *FAST], in_root)
    kink = [f for f in json.loads(declared.output)["results"][0]["findings"] if f["code"] == "GA301"][0]
    assert kink["details"]["declared"] is True


def test_reference_option(in_root):
    result = run(["check", "samples/kinks.py:HardswishClosedRange", "--reference", "torch.nn.functional:hardswish",
                  "--format", "json", *FAST], in_root)
    findings = json.loads(result.output)["results"][0]["findings"]
    assert any(f["code"] == "GA301" and "reference" in f.get("details", {}) for f in findings)
    bad = CliRunner().invoke(main, ["check", "samples/seed_relu.py:MyReLU", "--reference", "nosuch:thing"])
    assert bad.exit_code == 2


def test_explain(in_root):
    result = run(["explain", "GA203"], in_root)
    assert result.exit_code == 0 and "signed-zero-output" in result.output
    assert run(["explain", "kink"], in_root).exit_code == 0
    assert CliRunner().invoke(main, ["explain", "GA000"]).exit_code == 2


def test_output_file(tmp_path, in_root):
    out = tmp_path / "report.json"
    result = run(["check", SEED[1], "--format", "json", "-o", str(out), *FAST], in_root)
    assert result.exit_code == 0
    assert json.loads(out.read_text())["status"] == "warn"


def test_real_subprocess_python_m_gradaudit():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    completed = subprocess.run(
        [sys.executable, "-m", "gradaudit", "check", *SEED, "--format", "json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["status"] == "warn"
    strict = subprocess.run(
        [sys.executable, "-m", "gradaudit", "check", *SEED, "--strict", *FAST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert strict.returncode == 1


def test_target_strings_can_bind_keyword_arguments(in_root):
    result = run(["check", "torch.nn.functional:softmax(dim=-1)", "--format", "json", *FAST], in_root)
    assert result.exit_code == 0
    assert json.loads(result.output)["results"][0]["status"] == "pass"
    bad = run(["check", "torch.nn.functional:softmax(1)", "--format", "json", *FAST], in_root)
    assert bad.exit_code == 2
    assert json.loads(bad.output)["results"][0]["findings"][0]["code"] == "GA901"
