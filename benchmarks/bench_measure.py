"""The measurements of one side of the benchmark, for the ``gradaudit`` first on ``sys.path``.

Run by ``benchmarks/bench.py`` in a fresh process per side and round, with the side's
checkout first on ``sys.path`` (this code, or the last commit before the redesign in a
temporary worktree); prints one JSON object. It only uses what both sides have:
``gradaudit.audit`` and ``Report.timings``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

YARDSTICK = "a float32 forward+backward pass of F.silu at the same n"
GRADCHECK_INPUTS = 64


def best_times(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """The fastest of ``repeat`` runs in seconds, wall clock and CPU time of this process (all
    its threads): the run least disturbed by other work, and the work itself, which waiting
    for a busy core does not add to."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - started), min(cpu, time.process_time() - started_cpu)
    return wall, cpu


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """The fastest wall-clock seconds of ``repeat`` runs."""
    return best_times(fn, repeat)[0]


def pass_time(n: int) -> tuple[float, float]:
    """The yardstick: one forward and backward of F.silu in float32 at ``n`` elements (fastest
    of 30 after a warm-up; wall and CPU seconds)."""
    x = torch.randn(n, dtype=torch.float32).requires_grad_(True)

    def once() -> None:
        y = F.silu(x)
        torch.autograd.grad(y, x, torch.ones_like(y))

    for _ in range(5):
        once()
    return best_times(once, 30)


class SiLUFunction(torch.autograd.Function):
    """A custom autograd.Function as users write them (forward with ctx, hand-written backward)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return F.silu(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad * s * (1 + x * (1 - s))


TARGETS: dict[str, tuple[Any, Callable[[torch.Tensor], torch.Tensor]]] = {
    "F.silu": (F.silu, F.silu),
    "nn.GELU()": (torch.nn.GELU(), torch.nn.GELU()),
    "custom autograd.Function": (SiLUFunction, SiLUFunction.apply),
    "F.hardswish": (F.hardswish, F.hardswish),
}
"""Name -> (what gradaudit audits, what gradcheck differentiates)."""


def first_audit() -> dict[str, Any]:
    """The first ``audit(F.silu)`` of this fresh process (what the CLI pays once) and the
    second, with the slowest checks of the first."""
    from gradaudit import audit

    started = time.perf_counter()
    report = audit(F.silu)
    first = time.perf_counter() - started
    started = time.perf_counter()
    audit(F.silu)
    second = time.perf_counter() - started
    slowest = sorted(report.timings.items(), key=lambda item: -item[1])[:4]
    return {"first": first, "second": second, "slowest": slowest,
            "dynamo": "torch._dynamo" in sys.modules}


def target_ratios(repeat: int) -> dict[str, dict[str, float]]:
    """Per target: the default audit and gradcheck + gradgradcheck on 64 float64 inputs,
    each the fastest of ``repeat`` runs (wall and CPU), taken in turns so both see the same
    load, and the fastest seconds of each check over the audit's runs."""
    from gradaudit import audit

    results = {}
    for name, (target, differentiable) in TARGETS.items():
        x = torch.randn(GRADCHECK_INPUTS, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                        requires_grad=True)

        def anchor() -> None:
            torch.autograd.gradcheck(differentiable, (x,))
            torch.autograd.gradgradcheck(differentiable, (x,))

        audit(target)
        anchor()  # warm-ups
        ours = theirs = ours_cpu = theirs_cpu = float("inf")
        checks: dict[str, float] = {}
        for _ in range(repeat):
            started, started_cpu = time.perf_counter(), time.process_time()
            report = audit(target)
            ours, ours_cpu = min(ours, time.perf_counter() - started), min(ours_cpu, time.process_time() - started_cpu)
            checks = {key: min(value, checks.get(key, float("inf"))) for key, value in report.timings.items()}
            wall, cpu = best_times(anchor, 1)
            theirs, theirs_cpu = min(theirs, wall), min(theirs_cpu, cpu)
        results[name] = {"audit": ours, "anchor": theirs, "audit_cpu": ours_cpu, "anchor_cpu": theirs_cpu,
                         "status": report.status, "checks": checks}
    return results


def _swiglu(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    return x * F.silu(gate)


def _swiglu_tied(x: torch.Tensor) -> torch.Tensor:
    return x * F.silu(x)


def several_inputs_ratio(repeat: int) -> dict[str, float] | None:
    """The default audit of a two-input elementwise target, ``x * silu(gate)``, against the
    one-input audit of the same formula (``x * silu(x)``), fastest of ``repeat`` each, in
    turns; None where gradaudit audits one input only (the commit before issue 20)."""
    from gradaudit import audit

    if audit(_swiglu, select=["GA101"]).status == "error":
        return None
    audit(_swiglu), audit(_swiglu_tied)  # warm-ups
    two = one = two_cpu = one_cpu = float("inf")
    for _ in range(repeat):
        wall, cpu = best_times(lambda: audit(_swiglu), 1)
        two, two_cpu = min(two, wall), min(two_cpu, cpu)
        wall, cpu = best_times(lambda: audit(_swiglu_tied), 1)
        one, one_cpu = min(one, wall), min(one_cpu, cpu)
    return {"two": two, "one": one, "two_cpu": two_cpu, "one_cpu": one_cpu}


def size_sweep(sizes: list[int], repeat: int) -> dict[str, dict[str, float]]:
    """Per size: the full audit and GA101 alone of F.silu (fastest of ``repeat``) and the
    yardstick pass, sizes taken one at a time as a run of gradaudit takes them."""
    from gradaudit import audit

    results = {}
    for n in sizes:
        runs = repeat if n >= 1000000 else 2 * repeat  # the small sizes are cheap: more tries at a quiet moment
        full, full_cpu = best_times(lambda: audit(F.silu, size=n), runs)
        alone, alone_cpu = best_times(lambda: audit(F.silu, size=n, select=["GA101"]), runs)
        pass32, pass32_cpu = pass_time(n)
        results[str(n)] = {"full": full, "alone": alone, "pass32": pass32, "full_cpu": full_cpu,
                           "alone_cpu": alone_cpu, "pass32_cpu": pass32_cpu}
    return results


def screen_kind() -> str:
    """How GA101's screen runs on this side: the optional C extension or PyTorch operations."""
    import importlib

    for module in ("gradaudit.scans", "gradaudit.checks.gradient"):  # the old layout: the C extension predates engine/
        try:
            fused = getattr(importlib.import_module(module), "_fused", None)
        except ImportError:
            continue
        if fused is not None:
            return "C extension gradaudit/_fused (built in place)"
    return "PyTorch operations (no C extension)"


def measure(root: str, sizes: list[int], repeat: int, target_repeat: int) -> dict[str, Any]:
    """Every figure of one side, for the ``gradaudit`` under ``root``."""
    import gradaudit

    where = os.path.dirname(os.path.dirname(os.path.abspath(gradaudit.__file__)))
    if os.path.realpath(where) != os.path.realpath(root):
        raise SystemExit(f"imported gradaudit from {where}, not {root}")
    torch.manual_seed(0)
    first = first_audit()
    return {"first_audit": first, "targets": target_ratios(target_repeat), "sizes": size_sweep(sizes, repeat),
            "several": several_inputs_ratio(target_repeat),
            "screen": screen_kind(), "threads": torch.get_num_threads(), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the checkout whose gradaudit is measured")
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--target-repeat", type=int, default=9)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    print(json.dumps(measure(args.root, sizes, args.repeat, args.target_repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
