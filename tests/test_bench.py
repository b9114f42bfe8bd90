"""Performance work of issue 19 that tests can hold without timing anything: what a first
audit imports, that GA104's torch.func.grad without torch._dynamo equals torch.func.grad,
that GA102/GA103 read the base probe out of a larger probe, and that the benchmark runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import gradaudit
from conftest import ROOT, sample

FIRST_AUDIT_IMPORTS = """
import json, sys, torch, torch.nn.functional as F
from gradaudit.core import audit_target_string, build_options
seen = {}
for spec in sys.argv[1:]:
    (report,) = audit_target_string(spec, build_options())
    seen[spec] = {"status": report.status,
                  "ga103": sorted(f.status for f in report.findings if f.code == "GA103"),
                  "dynamo": "torch._dynamo" in sys.modules,
                  "sympy": "sympy" in sys.modules,
                  "jvp_decompositions": "torch._decomp.decompositions_for_jvp" in sys.modules}
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def first_audits() -> dict[str, dict]:
    """What one fresh process has imported after auditing each target in turn (and the GA103
    statuses): MyReLU first, so that F.silu's forward AD has not loaded anything yet."""
    specs = ["samples/seed_relu.py:MyReLU", "torch.nn.functional:silu"]
    out = subprocess.run([sys.executable, "-c", FIRST_AUDIT_IMPORTS, *specs], capture_output=True, text=True,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), check=True, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_first_audit_of_a_function_does_not_import_dynamo(first_audits: dict[str, dict]) -> None:
    # torch.func.grad imports torch._dynamo (about 1 s); GA104 learns the same without it
    seen = first_audits["torch.nn.functional:silu"]
    assert seen["status"] == "pass"
    assert not seen["dynamo"]


def test_a_default_audit_does_not_import_sympy(first_audits: dict[str, dict]) -> None:
    # torch.autograd.grad with a tensor grad_output imports sympy on first use (about 0.3 s);
    # every backward of a default audit goes through the engine's vjp instead
    assert not first_audits["torch.nn.functional:silu"]["sympy"]


def test_first_audit_of_a_function_without_setup_context_skips_forward_ad_setup(
        first_audits: dict[str, dict]) -> None:
    # torch.func.jvp would load (TorchScript-compile) the forward-AD decompositions only to
    # raise the setup_context error; GA103 still reports that error (info)
    seen = first_audits["samples/seed_relu.py:MyReLU"]
    assert seen["ga103"] == ["info"]
    assert not seen["jvp_decompositions"]


def _outcome(run, fn, x: torch.Tensor):
    try:
        return "ok", run(fn, x)
    except Exception as exc:  # the exception is the outcome
        return "raises", type(exc).__name__, str(exc).splitlines()[0]


@pytest.mark.parametrize("name", ["silu", "data", "item", "numpy", "ModernReLU", "MyReLU", "relu_inplace"])
def test_func_grad_without_dynamo_equals_torch_func_grad(name: str) -> None:
    from gradaudit.checks.vmap import func_grad

    import numpy as np

    targets = {
        "silu": F.silu,
        "data": lambda x: x.data * x,
        "item": lambda x: x * x.sum().item(),
        "numpy": lambda x: torch.from_numpy(np.tanh(x.numpy())),
        "ModernReLU": sample("hygiene:ModernReLU").apply,
        "MyReLU": sample("seed_relu:MyReLU").apply,
        "relu_inplace": sample("hygiene:relu_inplace"),
    }
    target = targets[name]
    x = torch.linspace(-3, 3, 24, dtype=torch.float64)
    weights = torch.linspace(-2, 2, 24, dtype=torch.float64)
    fn = lambda t: (target(t) * weights).sum()  # noqa: E731
    ours = _outcome(func_grad, fn, x.clone())
    theirs = _outcome(lambda f, v: torch.func.grad(f)(v), fn, x.clone())
    assert ours[0] == theirs[0]
    if ours[0] == "ok":
        assert torch.equal(ours[1], theirs[1])
    else:
        assert ours[1:] == theirs[1:]


@pytest.mark.parametrize("spec, code, status", [("hygiene:WrongJvpSiLU", "GA103", "fail"),
                                                ("hygiene:DetachedSiLU", "GA102", "warn")])
def test_second_order_and_forward_ad_on_a_probe_larger_than_the_base(spec: str, code: str, status: str) -> None:
    # size above the base probe's samples: the checks pick the base points out of the probe
    report = gradaudit.audit(sample(spec), select=[code], dtypes=["float64"], size=20000)
    assert {f.status for f in report.findings if f.code == code} == {status}
    assert report.findings[0].details["points_checked"] > 1000


def test_benchmark_runs_in_its_smoke_mode() -> None:
    # the benchmark is not in the package; its smoke mode skips the old commit's worktree
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--smoke"],
                         capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "gradcheck + gradgradcheck" in out.stdout
