"""GA406 (compiled): torch.compile compared with eager, opt-in (issue 21).

Every compile costs seconds, so these audit float32 only (float64 is always added) and compile
a handful of targets: the two samples with inductor (through audit() and the CLI), and the
graph-break / recompile / bad-backend cases with the trace-only ``eager`` backend."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import sample

from gradaudit import audit
from gradaudit.cli import main
from gradaudit.core import audit_target_string, build_options

SAMPLES = "samples/compiled.py"
FAST = {"dtypes": ["float32"]}


def ga406(report) -> list:
    return [f for f in report.findings if f.code == "GA406"]


def cli_json(name: str, *extra: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["check", f"{SAMPLES}:{name}", "--dtype", "float32", "--format", "json",
                                       *extra], catch_exceptions=False)
    return result.exit_code, json.loads(result.output)


def test_off_by_default_and_dynamo_not_imported():
    """The default audit runs no GA406, and collecting the checks (CLI startup) does not import
    torch._dynamo: the check imports it inside its run only."""
    assert "GA406" not in build_options().codes
    assert "GA406" in build_options(compile=True).codes
    (report,) = audit_target_string(f"{SAMPLES}:relu6", build_options())
    assert report.status == "pass" and not ga406(report)
    code = ("import sys; from gradaudit.checks import catalogue; "
            "print('GA406' in catalogue(), 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]


def test_samples_pass_the_default_audit():
    for name in ("relu6", "clamp_relu", "approximate_when_compiled", "where_relu_compiled"):
        (report,) = audit_target_string(f"{SAMPLES}:{name}", build_options(**FAST))
        assert report.status == "pass", name


def test_relu6_compiled_zero_sign_warns_through_audit():
    report = audit(sample("compiled:relu6"), compile=True, **FAST)
    assert report.status == "warn"
    found = [f for f in ga406(report) if f.status == "warn"]
    assert found and {f.kind for f in found} == {"zero-sign-differs"}
    # which dtypes show it follows eager's vector path (eager clamps lose -0.0 on some): not asserted
    for f in found:
        assert [e["input"] for e in f.examples] == [0.0] and str(f.examples[0]["input"]) == "-0.0"
        assert f.details["verdict"] == "propagated" and f.details["compile_seconds"] > 0


def test_approximate_branch_fails_through_audit():
    report = audit(sample("compiled:approximate_when_compiled"), compile=True, **FAST)
    assert report.status == "fail"
    fails = {(f.kind, f.dtype) for f in ga406(report) if f.status == "fail"}
    assert ("values-differ", "float32") in fails and ("values-differ", "float64") in fails


def test_cli_compile_verdicts():
    code, doc = cli_json("relu6", "--compile")
    (result,) = doc["results"]
    assert code == 0 and result["status"] == "warn"
    assert {(f["code"], f["status"]) for f in result["findings"] if f["status"] != "info"} == {("GA406", "warn")}
    code, doc = cli_json("approximate_when_compiled", "--compile")
    (result,) = doc["results"]
    assert code == 1 and result["status"] == "fail"
    assert {f["code"] for f in result["findings"] if f["status"] == "fail"} == {"GA406"}


def _breaks(x):
    y = torch.where(x > 0, x, torch.zeros_like(x))
    if y.sum().item() > -1:  # a data-dependent branch: dynamo breaks the graph here
        return y * 2.0
    return y


_calls = [0]


def _recompiles(x):
    _calls[0] += 1  # a global that changes on every call: the guard on it fails every time
    return torch.where(x > 0, x, torch.zeros_like(x)) * (1.0 + 0.0 * _calls[0])


def test_graph_break_and_recompile_are_info_with_the_line():
    report = audit(_breaks, compile="eager", **FAST)
    assert report.status == "pass"
    (found,) = [f for f in ga406(report) if f.kind == "graph-break"]
    assert found.status == "info" and found.location["line"] == _breaks.__code__.co_firstlineno + 2
    report = audit(_recompiles, compile="eager", **FAST)
    assert {(f.kind, f.status) for f in ga406(report)} == {("recompiles", "info")}


def test_unknown_backend_is_an_error_not_a_pass():
    with pytest.raises(ValueError, match="no_such_backend"):
        audit(_breaks, compile="no_such_backend", **FAST)
    result = CliRunner().invoke(main, ["check", "torch.nn.functional:relu", "--compile", "no_such_backend"])
    assert result.exit_code == 2


def test_dynamo_caches_reset_after_the_audit():
    """Targets share no graphs: nothing compiled for one target is left behind for the next."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from gradaudit.engine import compiling

    (code,) = [c for c in compiling.run_compiled.__code__.co_consts if getattr(c, "co_name", "") == "compiled_target"]
    audit(_recompiles, compile="eager", **FAST)
    assert _debug_get_cache_entry_list(code) == []


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_compile_flag_before_a_target_takes_no_target_as_its_backend():
    from gradaudit.cli import compile_and_targets

    assert compile_and_targets("samples/compiled.py:relu6", ()) == (("samples/compiled.py:relu6",), "inductor")
    assert compile_and_targets("aot_eager", ("m:f",)) == (("m:f",), "aot_eager")
    assert compile_and_targets(None, ("m:f",)) == (("m:f",), None)
