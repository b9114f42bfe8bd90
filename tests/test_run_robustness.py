"""Issue 18 items 9, 10, 14, 15 (audit() half) and 17; issue 19's model layer.

An audit gives the same verdict whatever mode or flag the caller left torch in, a target
that exits or crashes is a GA901 for that target (never the end of the run, never "a
gradaudit bug"), and bad per-target options are a GA901 naming the option.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import gradaudit
from gradaudit.engine import inputs
from gradaudit.core import OptionError, audit_target_string, build_options

FAST = {"dtypes": ("float64", "float32"), "size": 64}


def verdict(report):
    return report.status, sorted(report.codes("warn") | report.codes("fail") | report.codes("error"))


def internal_errors(report):
    """GA901 findings that blame gradaudit (no location in the target's code)."""
    return [f for f in report.findings if f.code == "GA901" and f.location is None]


def flush_denormal_is_on() -> bool:
    tiny = 5e-324
    return tiny * 1.0 == 0.0


# -- item 9: inference mode -----------------------------------------------------------------
def test_inference_mode_gives_the_same_verdict_and_leaves_the_cache_usable():
    seed = 918_009  # options no other test used: the probe cache is built inside inference mode
    with torch.inference_mode():
        inside = gradaudit.audit(F.silu, seed=seed, **FAST)
        assert torch.is_inference_mode_enabled()  # the caller's mode is restored
    after = gradaudit.audit(F.silu, seed=seed, **FAST)
    assert verdict(inside) == verdict(after) == ("pass", [])
    assert not inputs.probe_values(torch.float64, seed=seed, size=64).is_inference()


# -- item 10: flush-to-zero ----------------------------------------------------------------
def test_flush_denormal_audits_and_is_restored():
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    seed = 918_010
    try:
        assert flush_denormal_is_on()
        flushed = gradaudit.audit(F.silu, seed=seed, **FAST)
        assert flush_denormal_is_on()  # the caller's flag, restored
    finally:
        torch.set_flush_denormal(False)
    assert verdict(flushed) == verdict(gradaudit.audit(F.silu, seed=seed, **FAST)) == ("pass", [])
    probe = inputs.probe_values(torch.float64, seed=seed, size=64)
    assert bool((probe == 5e-324).any())  # the cached probe holds the subnormals


def test_flush_denormal_off_stays_off():
    gradaudit.audit(torch.tanh, select=["GA201"], **FAST)
    assert not flush_denormal_is_on()


# -- item 14: SystemExit, GeneratorExit, KeyboardInterrupt ----------------------------------
def exits_always(x):
    raise SystemExit(0)


def exits_on_small_inputs(x):
    if x.numel() < 16:  # only inside checks (shape, vmap rows, in-place ...)
        sys.exit(0)
    return torch.tanh(x)


def closes_generator(x):
    raise GeneratorExit


class ExitingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        raise SystemExit(3)


@pytest.mark.parametrize("target", [exits_always, exits_on_small_inputs, closes_generator, ExitingBackward])
def test_exiting_target_is_ga901_not_the_end_of_the_run(target):
    report = gradaudit.audit(target, **FAST)
    assert report.status == "error"
    assert "GA901" in report.codes("error")
    assert torch.is_grad_enabled()


def test_keyboard_interrupt_stops_the_audit_and_restores_state():
    def interrupted(x):
        raise KeyboardInterrupt

    with torch.no_grad(), pytest.raises(KeyboardInterrupt):
        gradaudit.audit(interrupted, **FAST)
    assert torch.is_grad_enabled()


def test_cli_run_with_an_exiting_target_exits_2_and_audits_the_rest(tmp_path, monkeypatch):
    (tmp_path / "acts.py").write_text(textwrap.dedent("""
        import sys, torch
        def quits(x):
            sys.exit(0)
        def fine(x):
            return torch.tanh(x)
    """))
    monkeypatch.chdir(tmp_path)
    from gradaudit.cli import main

    result = CliRunner().invoke(main, ["check", "acts.py:quits", "acts.py:fine", "--format", "json",
                                       "--dtype", "float64", "--size", "64"], catch_exceptions=False)
    assert result.exit_code == 2
    import json

    statuses = {r["target"]: r["status"] for r in json.loads(result.output)["results"]}
    assert statuses == {"acts.py:quits": "error", "acts.py:fine": "pass"}


# -- item 17: crashes in the target's own code and odd outputs ------------------------------
def as_int(x):
    return (x * 3).long()


def as_complex(x):
    return torch.polar(torch.ones_like(x), x)


def empty_output(x):
    return x[:0] * 2


@pytest.mark.parametrize("target", [as_int, as_complex, empty_output])
def test_unauditable_outputs_are_a_clear_ga901(target):
    report = gradaudit.audit(target, **FAST)
    assert report.status == "error"
    assert [f.code for f in report.findings] == ["GA901"]
    assert not internal_errors(report)


def detached(x):
    return torch.tanh(x).detach()


def test_detached_output_is_reported_without_a_gradaudit_bug():
    report = gradaudit.audit(detached, **FAST)
    assert report.status in ("fail", "error")
    assert not internal_errors(report)


def raising_line(function) -> int:
    lines, start = inspect.getsourcelines(function)
    return start + next(i for i, line in enumerate(lines) if line.lstrip().startswith("raise "))


def test_crash_in_the_users_backward_names_the_users_line():
    from conftest import sample

    report = gradaudit.audit(sample("run_robustness:float32_backward_raises"), **FAST)
    errors = [f for f in report.findings if f.code == "GA901"]
    assert report.status == "error" and errors
    assert not internal_errors(report)
    for finding in errors:
        assert os.path.basename(finding.location["path"]) == "run_robustness.py"
        assert finding.location["line"] == raising_line(sample("run_robustness:_Float32BackwardRaises").backward)


def test_a_gradaudit_crash_is_still_blamed_on_gradaudit(monkeypatch):
    import functools

    from gradaudit.checks import catalogue

    check = catalogue()["GA203"]
    # a check that crashes in torch with no frame of the target's: gradaudit's own bad call
    broken = functools.partial(torch.add, torch.zeros(2), torch.zeros(3))
    monkeypatch.setitem(catalogue(), "GA203", type(check)(**{**check.__dict__, "run": broken}))
    report = gradaudit.audit(torch.tanh, select=["GA203"], **FAST)
    assert len(internal_errors(report)) == 1


# -- item 15: bad per-target options ---------------------------------------------------------
BAD_OPTIONS = {
    "domain": {"domain": (5.0, 1.0)},
    "nan domain": {"domain": (float("nan"), 1.0)},
    "ignore": {"ignore": ["GA999"]},
    "reference": {"reference": "no_such_module_xyz:f"},
    "kinks": {"kinks": ["left"]},
}


@pytest.mark.parametrize("declared", BAD_OPTIONS.values(), ids=list(BAD_OPTIONS))
def test_bad_declared_options_are_ga901_for_that_target_only(tmp_path, monkeypatch, declared):
    (tmp_path / "acts.py").write_text(textwrap.dedent(f"""
        import torch, gradaudit
        @gradaudit.activation(**{declared!r})
        def bad(x):
            return torch.tanh(x)
        @gradaudit.activation
        def good(x):
            return torch.tanh(x)
    """).replace("nan", "float('nan')"))
    monkeypatch.chdir(tmp_path)
    reports = audit_target_string("acts.py", build_options(dtypes=["float64"], size=64))
    by_name = {r.target: r for r in reports}
    bad, good = by_name["acts.py:bad"], by_name["acts.py:good"]
    assert bad.status == "error" and [f.code for f in bad.findings] == ["GA901"]
    assert bad.findings[0].details["option"] == next(iter(declared))
    assert good.status == "pass"


def test_bad_config_table_option_is_ga901_naming_it(tmp_path, monkeypatch):
    (tmp_path / "acts.py").write_text("import torch\ndef f(x):\n    return torch.tanh(x)\n")
    monkeypatch.chdir(tmp_path)
    overrides = lambda name, declared: {**declared, "kinks": [0.0, "x"]}  # noqa: E731
    (report,) = audit_target_string("acts.py:f", build_options(dtypes=["float64"], size=64), overrides)
    assert report.status == "error" and report.findings[0].details["option"] == "kinks"


@pytest.mark.parametrize("option, value", [("domain", (5, 1)), ("kinks", ["x"]), ("ignore", ["GA999"])])
def test_direct_audit_raises_value_error_naming_target_and_option(option, value):
    with pytest.raises(ValueError) as raised:
        gradaudit.audit(torch.tanh, name="my_tanh", **{option: value})
    assert isinstance(raised.value, OptionError)
    assert (raised.value.option, raised.value.target) == (option, "my_tanh")


# -- issue 19: the model imports nothing upward ----------------------------------------------
def test_report_module_imports_neither_torch_nor_checks_nor_render():
    code = ("import sys, gradaudit.model.report; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('gradaudit.checks', "
            "'gradaudit.render'))))")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_code_to_slug_table_agrees_with_the_registry():
    """The table names hand-built findings (GA901 of the runner, findings of old JSON); a check
    names its own findings, so a new check needs no row here, but a row never contradicts it."""
    from gradaudit.checks import catalogue
    from gradaudit.model.codes import SLUGS

    registry = {code: check.slug for code, check in catalogue().items()}
    assert {code: slug for code, slug in SLUGS.items() if code in registry} == \
        {code: slug for code, slug in registry.items() if code in SLUGS}
    assert SLUGS["GA901"] == registry["GA901"]


def test_finding_carries_its_slug_and_to_dict_is_unchanged():
    from gradaudit.model.report import Finding, Report

    finding = Finding("GA203", "warn", "m")
    assert finding.check == "signed-zero-output"
    assert finding.to_dict() == {"code": "GA203", "check": "signed-zero-output", "status": "warn", "message": "m"}
    report = Report(target="t", findings=[finding])
    assert report.to_dict()["results"][0]["findings"][0]["check"] == "signed-zero-output"
    with pytest.raises(AssertionError):
        report.raise_for_status(strict=True)


def test_an_error_while_a_check_runs_names_that_check() -> None:
    from conftest import sample

    report = gradaudit.audit(sample("run_robustness:exits_on_small_inputs"), dtypes=["float64"])
    errors = [f for f in report.findings if f.code == "GA901"]
    assert errors and all(f.details["during"] in report.timings for f in errors)
