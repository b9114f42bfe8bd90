"""Benchmark: gradaudit against torch.autograd.gradcheck and a plain forward+backward pass.

Run ``python -m gradaudit.bench`` (``--quick`` for a smaller run). Everything is measured on
one machine, in this process and (the marginal costs again) in a fresh one whose allocator
keeps freed memory, and reported as ratios, so the numbers compare across machines.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from tabulate import tabulate

from .core import audit


def best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs, in seconds (the least disturbed by other work)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def minor_page_faults() -> int:
    """This process's minor page faults so far (fresh memory touched); 0 where ``resource``
    is missing (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def best_time_and_faults(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """:func:`best_time`, and the minor page faults per run."""
    before = minor_page_faults()
    best = best_time(fn, repeat=repeat)
    return best, (minor_page_faults() - before) / repeat


class AuditTimes(NamedTuple):
    """The fastest seconds of the full audit and of GA101 alone at one size, and the minor
    page faults per run of each."""

    full: float
    alone: float
    full_faults: float
    alone_faults: float


def best_audit_times(n: int, repeat: int = 21) -> AuditTimes:
    """:class:`AuditTimes` over ``repeat`` runs at ``n``, taken one size at a time as a run of
    gradaudit would (every target of a run shares the size, so the probes and the recycled
    buffers of that size are warm)."""
    full, full_faults = best_time_and_faults(lambda: audit(F.silu, size=n), repeat)
    alone, alone_faults = best_time_and_faults(lambda: audit(F.silu, size=n, select=["GA101"]), repeat)
    return AuditTimes(full, alone, full_faults, alone_faults)


def pass_time(n: int, dtype: torch.dtype) -> float:
    """One forward and backward of F.silu at ``n`` elements: the fastest of 30 after a
    warm-up, so the yardstick is as small as this machine makes it."""
    x = torch.randn(n, dtype=dtype).requires_grad_(True)

    def once() -> None:
        y = F.silu(x)
        torch.autograd.grad(y, x, torch.ones_like(y))

    for _ in range(5):
        once()
    return best_time(once, repeat=30)


def check_profile(n: int, repeat: int = 5) -> dict[str, float]:
    """Median seconds per check (``Report.timings``) of ``audit(F.silu, size=n)``."""
    runs = [audit(F.silu, size=n).timings for _ in range(repeat)]
    return {key: sorted(run[key] for run in runs)[repeat // 2] for key in runs[0]}


def pytorch_screen_marginal(first: int, last: int) -> float | None:
    """GA101 alone's marginal cost from ``first`` to ``last`` in seconds with GA101's screen
    in PyTorch operations, as an install without a C compiler runs it; None when that is
    what runs anyway."""
    from .checks import gradient

    if gradient._fused is None:
        return None
    fused, gradient._fused = gradient._fused, None
    try:
        times = [best_time(lambda: audit(F.silu, size=n, select=["GA101"]), repeat=21) for n in (first, last)]
    finally:
        gradient._fused = fused
    return times[1] - times[0]


def cold_audit_time(n: int) -> float:
    """``audit(F.silu, size=n)`` with the probe caches emptied first: what the first target of
    a run pays on top (drawing the samples and building the probes)."""
    from . import inputs

    def cold() -> None:
        inputs.clear_caches()
        audit(F.silu, size=n)

    return best_time(cold, repeat=3)


class WrongSiLU(torch.autograd.Function):
    """SiLU whose backward is off by 0.1 × grad_output where ``WrongSiLU.mask(x)`` holds."""

    mask: Callable[[torch.Tensor], torch.Tensor] = staticmethod(lambda x: torch.zeros_like(x, dtype=torch.bool))

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.silu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        grad = g * s * (1 + x * (1 - s))
        return torch.where(WrongSiLU.mask(x), grad + 0.1 * g, grad)


Defect = Callable[[int, torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]
"""``(seed, the inputs the tool will evaluate) -> mask`` of the inputs where the backward is wrong."""


def wrong_single_element(seed: int, inputs: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A backward wrong at one of the tool's inputs, chosen by ``seed``. Chosen by value, not
    by position, so it stays one input however the tool splits its evaluation."""
    value = float(inputs.reshape(-1)[(seed * 7919) % inputs.numel()])
    return lambda x: x == value


def wrong_above_three(seed: int, inputs: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x > 3


DEFECTS: dict[str, Defect] = {"wrong at one element": wrong_single_element, "wrong only for x > 3": wrong_above_three}


def gradaudit_detects(defect: Defect, n: int, seed: int) -> bool:
    from .inputs import probe_values

    WrongSiLU.mask = staticmethod(defect(seed, probe_values(torch.float64, size=n, seed=seed)))
    report = audit(WrongSiLU, size=n, seed=seed, select=["GA101"], dtypes=["float64"])
    return "GA101" in report.codes("fail")


def gradcheck_detects(defect: Defect, n: int, seed: int, fast: bool) -> bool:
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    WrongSiLU.mask = staticmethod(defect(seed, x.detach()))
    return not torch.autograd.gradcheck(WrongSiLU.apply, (x,), fast_mode=fast, raise_exception=False)


def gradcheck_time(n: int, fast: bool) -> float:
    x = torch.randn(n, dtype=torch.float64, requires_grad=True)
    return best_time(lambda: torch.autograd.gradcheck(F.silu, (x,), fast_mode=fast), repeat=1 if not fast else 3)


PEAK_RSS_CODE = """
import torch, torch.nn.functional as F, gradaudit

def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":"))

gradaudit.audit(F.silu, size=1000)              # imports and warm-up
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")                           # reset the peak (VmHWM) to the current RSS
base = status("VmRSS")
gradaudit.audit(F.silu, size={n})
print(base, status("VmHWM"))
"""


def peak_rss_ratio(n: int) -> tuple[float, float]:
    """Extra peak RSS of ``audit(F.silu, size=n)`` over the RSS just before it (after imports
    and a warm-up audit), in MiB and as a multiple of one float64 input of ``n`` elements.
    Measured in a fresh process through /proc (Linux)."""
    out = subprocess.run([sys.executable, "-c", PEAK_RSS_CODE.format(n=n)], capture_output=True, text=True,
                         check=True, env=_env()).stdout.split()
    extra_mib = (int(out[1]) - int(out[0])) / 1024.0
    return extra_mib, extra_mib * 2**20 / (8 * n)


MARGINAL_CODE = """
import torch, torch.nn.functional as F
from gradaudit import audit
from gradaudit.bench import best_audit_times, pass_time
audit(F.silu)
p = pass_time({last}, torch.float32)
small, large = best_audit_times({first}), best_audit_times({last})
print((large.full - small.full) / p, (large.alone - small.alone) / p, p, pass_time({last}, torch.float64),
      large.full_faults, large.alone_faults)
"""

KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}
"""glibc settings that serve large blocks from a heap that is never trimmed, as a caching
allocator would: freed probe-sized tensors are reused instead of being fresh, faulting pages."""


class FreshProcess(NamedTuple):
    """What :func:`marginal_with_kept_memory` measured: the marginal costs in float32 passes,
    the passes themselves (seconds), and the page faults per audit at the largest size."""

    full: float
    alone: float
    pass32: float
    pass64: float
    full_faults: float
    alone_faults: float


def marginal_with_kept_memory(first: int, last: int) -> FreshProcess | None:
    """The marginal costs from ``first`` to ``last`` measured in a fresh process whose glibc
    keeps freed memory: what page faults add to the in-process numbers."""
    if not sys.platform.startswith("linux"):
        return None
    out = subprocess.run([sys.executable, "-c", MARGINAL_CODE.format(first=first, last=last)], capture_output=True,
                         text=True, check=True, env={**_env(), **KEEP_FREED_MEMORY}).stdout.split()
    return FreshProcess(*(float(value) for value in out))


def _env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))


def cli_overhead(target: str) -> tuple[float, float]:
    """Wall time of ``gradaudit check TARGET`` and of ``python -c 'import torch'``."""
    def wall(args: list[str]) -> float:
        return best_time(lambda: subprocess.run(args, capture_output=True, env=_env(), check=False), repeat=3)

    cli = wall([sys.executable, "-m", "gradaudit", "check", target])
    bare = wall([sys.executable, "-c", "import torch"])
    return cli, bare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer seeds")
    args = parser.parse_args(argv)
    sizes = [1000, 10000, 100000] if args.quick else [1000, 10000, 100000, 1000000]
    seeds = range(3 if args.quick else 10)
    torch.manual_seed(0)
    audit(F.silu)  # warm-up: imports, allocator, kernels

    from .checks import gradient

    screen = (f"fused (the C extension gradaudit/_fused.c) on {gradient._fused.threads(gradient.SCREEN_BLOCK)} "
              f"thread(s) of torch's OpenMP team" if gradient._fused is not None else
              "PyTorch operations (the optional C extension gradaudit/_fused.c is not built)")
    print(f"gradaudit benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, F.silu; "
          f"GA101's screen: {screen}\n")
    rows, times, passes32 = [], {}, {}
    for n in sizes:
        times[n] = best_audit_times(n)
        full, grad_only = times[n].full, times[n].alone
        p32, p64 = pass_time(n, torch.float32), pass_time(n, torch.float64)
        passes32[n] = p32
        rows.append([f"{n:.0e}", f"{full:.3f}", f"{grad_only:.3f}", f"{p32 * 1e3:.3f}", f"{p64 * 1e3:.3f}",
                     f"{full / p32:.0f}", f"{grad_only / p32:.0f}"])
    print(tabulate(rows, headers=["n", "audit s", "GA101 only s", "f32 pass ms", "f64 pass ms",
                                  "audit / f32 pass", "GA101 / f32 pass"]))
    first, last = sizes[0], sizes[-1]
    p_last = passes32[last]
    marginal = (times[last].full - times[first].full) / p_last
    marginal_grad = (times[last].alone - times[first].alone) / p_last
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    kept = marginal_with_kept_memory(first, last)
    print(f"\nfixed cost (audit at n = {first:.0e}): {times[first].full:.3f} s  (target <= 1 s: "
          f"{verdict(times[first].full <= 1)})")
    print(f"marginal cost {first:.0e} -> {last:.0e}, in float32 passes of n = {last:.0e}; a target is met when it "
          f"holds both in this process and in a fresh one whose allocator keeps freed memory "
          f"({', '.join(KEEP_FREED_MEMORY)}: no page faults on fresh probe-sized tensors, on either side of the ratio):")
    print(f"  the float32 pass: {p_last * 1e3:.3f} ms here" + (f", {kept.pass32 * 1e3:.3f} ms in the fresh process "
                                                               f"(float64 there: {kept.pass64 * 1e3:.3f} ms)" if kept else ""))
    if kept and p_last > 2 * kept.pass32:
        print("  (the float32 pass here paid page faults, so the ratios here are too kind: read the fresh process's)")
    for label, ours, theirs, target in (("full audit", marginal, kept.full if kept else None, 30),
                                        ("GA101 alone", marginal_grad, kept.alone if kept else None, 10)):
        both = [ours] + ([theirs] if theirs is not None else [])
        other = f", {theirs:.1f} in the fresh process" if theirs is not None else ""
        print(f"  {label}: {ours:.1f} passes here{other} (target <= {target}: {verdict(max(both) <= target)})")
    plain = pytorch_screen_marginal(first, last)
    if plain is not None:
        print(f"  GA101 alone with its screen in PyTorch operations (an install without a C compiler): "
              f"{plain / p_last:.1f} passes here")
    if len(sizes) >= 3:
        a, b = sizes[-2], sizes[-1]
        growth = times[b].full / times[a].full
        marginal_a, marginal_b = times[a].full - times[first].full, times[b].full - times[first].full
        ratio = f"x{marginal_b / marginal_a:.1f}" if marginal_a > 0 else "the smaller one is within the timing noise"
        print(f"growth {a:.0e} -> {b:.0e} (x{b // a} inputs): the audit's time x{growth:.1f} (target <= x{b // a}: "
              f"{verdict(growth <= b // a)}); its marginal cost {marginal_a * 1e3:.2f} -> {marginal_b * 1e3:.2f} ms "
              f"({ratio})")
    print(f"page faults per audit at n = {last:.0e} (fresh memory; one float64 input is {8 * last // 4096} pages): "
          f"full {times[last].full_faults:.0f}, GA101 alone {times[last].alone_faults:.0f} here"
          + (f"; full {kept.full_faults:.0f}, GA101 alone {kept.alone_faults:.0f} in the fresh process" if kept else ""))
    cold = cold_audit_time(last)
    print(f"first audit of a run at n = {last:.0e} (probe caches empty): {cold:.3f} s, "
          f"{(cold - times[last].full) / p_last:.0f} passes more than a further target")

    print("\nwhere the time goes (median seconds per check; 'float64 evaluation' is the probe's forward"
          " and both backwards, and each check's first use of a cached evaluation counts to it):")
    small, large = check_profile(first), check_profile(last)
    rows = [[key, f"{small[key] * 1e3:.2f}", f"{large[key] * 1e3:.2f}", f"{(large[key] - small[key]) / p_last:.1f}"]
            for key in sorted(large, key=lambda k: small.get(k, 0.0) - large[k])]
    print(tabulate(rows, headers=["check", f"ms at {first:.0e}", f"ms at {last:.0e}", "marginal passes"]))

    print("\ngradcheck on the same function (float64):")
    rows = []
    for n in [1000, 4000] + [m for m in sizes if m > 4000]:
        slow = gradcheck_time(n, fast=False) if n <= 4000 else None
        fast = gradcheck_time(n, fast=True)
        ours = best_time(lambda: audit(F.silu, size=n, select=["GA101"], dtypes=["float64"]), repeat=3)
        rows.append([f"{n:.0e}", f"{ours:.3f}", f"{slow:.3f}" if slow else "-", f"{slow / ours:.1f}" if slow else "-",
                     f"{fast:.4f}", f"{fast / ours:.2f}"])
    print(tabulate(rows, headers=["n", "gradaudit GA101 s", "gradcheck slow s", "slow / gradaudit",
                                  "gradcheck fast s", "fast / gradaudit"]))

    print(f"\ndetection over {len(seeds)} seeds (detected / runs):")
    rows = []
    for name, defect in DEFECTS.items():
        for n in sizes:
            ours = sum(gradaudit_detects(defect, n, s) for s in seeds)
            fast = sum(gradcheck_detects(defect, n, s, fast=True) for s in seeds) if n <= 100000 else None
            slow = sum(gradcheck_detects(defect, n, s, fast=False) for s in seeds) if n <= 1000 else None
            rows.append([name, f"{n:.0e}", f"{ours}/{len(seeds)}",
                         f"{fast}/{len(seeds)}" if fast is not None else "-",
                         f"{slow}/{len(seeds)}" if slow is not None else "-"])
    print(tabulate(rows, headers=["defect", "n", "gradaudit", "gradcheck fast", "gradcheck slow"]))

    cli, bare = cli_overhead("samples/seed_relu.py:MyReLU")
    print(f"\nCLI: gradaudit check samples/seed_relu.py:MyReLU {cli:.2f} s; python -c 'import torch' {bare:.2f} s; "
          f"added {cli - bare:.2f} s (target <= 1 s)")
    if os.path.exists("/proc/self/clear_refs"):
        for n in (sizes[-2], last):
            extra, multiple = peak_rss_ratio(n)
            print(f"memory: peak RSS of audit(F.silu, size={n:.0e}) is {extra:.0f} MiB above the RSS before it, "
                  f"{multiple:.0f}x one float64 input of that size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
