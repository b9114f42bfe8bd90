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


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs in seconds: the run least disturbed by other work."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def pass_time(n: int) -> float:
    """The yardstick: one forward and backward of F.silu in float32 at ``n`` elements (fastest
    of 30 after a warm-up)."""
    x = torch.randn(n, dtype=torch.float32).requires_grad_(True)

    def once() -> None:
        y = F.silu(x)
        torch.autograd.grad(y, x, torch.ones_like(y))

    for _ in range(5):
        once()
    return best_time(once, 30)


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
    each the fastest of ``repeat`` runs, taken in turns so both see the same load."""
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
        ours, theirs = float("inf"), float("inf")
        for _ in range(repeat):
            ours = min(ours, best_time(lambda: audit(target), 1))
            theirs = min(theirs, best_time(anchor, 1))
        report = audit(target)
        results[name] = {"audit": ours, "anchor": theirs, "status": report.status,
                         "checks": dict(report.timings)}
    return results


def size_sweep(sizes: list[int], repeat: int) -> dict[str, dict[str, float]]:
    """Per size: the full audit and GA101 alone of F.silu (fastest of ``repeat``) and the
    yardstick pass, sizes taken one at a time as a run of gradaudit takes them."""
    from gradaudit import audit

    results = {}
    for n in sizes:
        full = best_time(lambda: audit(F.silu, size=n), repeat)
        alone = best_time(lambda: audit(F.silu, size=n, select=["GA101"]), repeat)
        results[str(n)] = {"full": full, "alone": alone, "pass32": pass_time(n)}
    return results


def screen_kind() -> str:
    """How GA101's screen runs on this side: the optional C extension or PyTorch operations."""
    import importlib

    for module in ("gradaudit.scans", "gradaudit.checks.gradient"):
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
