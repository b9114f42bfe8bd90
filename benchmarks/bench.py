"""Benchmark: this checkout's gradaudit beside the last commit before the redesign.

Run from the repository root: ``python benchmarks/bench.py`` (``--quick`` for sizes up to
1e5 and fewer rounds; ``--smoke`` for a seconds-long run of this checkout alone, as the
tests do). The old commit (``--baseline``, default cd2ef79) is checked out with ``git
worktree add`` into a temporary directory, its optional C extension is built in place where
a compiler allows (what its users ran), and the worktree is removed afterwards. Each side is
measured in fresh processes with its checkout first on ``sys.path``, in alternating rounds,
and every figure is a ratio of times taken in the same process (or, for the CLI, in the
same round), so the load of a shared machine falls on both sides alike.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from tabulate import tabulate

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)  # bench_detect, also under python -m benchmarks.bench
BASELINE = "cd2ef79"
CLI_TARGETS = ("samples/seed_relu.py:MyReLU", "torch.nn.functional:silu")
TARGETS = {"marginal full audit": 30, "marginal GA101 alone": 15, "audit / gradcheck+gradgradcheck": 1.0,
           "CLI added": 0.4, "several inputs": 3.0}
"""The targets of issue 19 (passes, passes, worst ratio, seconds) and issue 20 (two inputs / one)."""


def side_env(root: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))


def measure_side(root: str, sizes: list[int], repeat: int, target_repeat: int) -> dict[str, Any]:
    """One fresh process of ``bench_measure.py`` for the gradaudit under ``root``."""
    command = [sys.executable, os.path.join(HERE, "bench_measure.py"), "--root", root,
               "--sizes", ",".join(map(str, sizes)), "--repeat", str(repeat), "--target-repeat", str(target_repeat)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, env=side_env(root))
    if done.returncode != 0:
        raise RuntimeError(f"measuring {root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_added(roots: dict[str, str], repeat: int) -> dict[str, dict[str, float]]:
    """Per side and target of :data:`CLI_TARGETS`: wall seconds of ``gradaudit check TARGET``
    minus those of ``python -c 'import torch'``, each the fastest of ``repeat``, the sides and
    commands taken in turns."""
    def wall(root: str, args: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(args, capture_output=True, cwd=root, env=side_env(root), check=False)
        return time.perf_counter() - started

    commands = {"import torch": ["-c", "import torch"]} | {t: ["-m", "gradaudit", "check", t] for t in CLI_TARGETS}
    best = {name: {key: float("inf") for key in commands} for name in roots}
    for _ in range(repeat):
        for name, root in roots.items():
            for key, args in commands.items():
                best[name][key] = min(best[name][key], wall(root, [sys.executable, *args]))
    return {name: {t: times[t] - times["import torch"] for t in CLI_TARGETS} | {"import torch": times["import torch"]}
            for name, times in best.items()}


@contextmanager
def baseline_worktree(commit: str) -> Iterator[tuple[str, str]]:
    """``(path, how GA101's screen was built)`` of ``commit`` checked out in a temporary
    worktree, its C extension built in place where possible; removed afterwards."""
    scratch = tempfile.mkdtemp(prefix="gradaudit-bench-")
    path = os.path.join(scratch, commit)
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, commit], check=True,
                   capture_output=True, text=True)
    try:
        built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=path,
                               capture_output=True, text=True)
        how = ("its C extension built with setup.py build_ext --inplace" if built.returncode == 0 else
               f"without its C extension (the build failed: {(built.stderr.strip().splitlines() or ['?'])[-1]})")
        yield path, how
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", path], capture_output=True)
        subprocess.run(["git", "-C", ROOT, "worktree", "prune"], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest time of each figure over the rounds of one side, and each per-target ratio's
    range over the rounds (each ratio from one process)."""
    best = rounds[0]
    for other in rounds[1:]:
        for name, row in other["targets"].items():
            for key in ("audit", "anchor", "audit_cpu", "anchor_cpu"):
                best["targets"][name][key] = min(best["targets"][name][key], row[key])
            for key, value in row["checks"].items():
                best["targets"][name]["checks"][key] = min(best["targets"][name]["checks"].get(key, value), value)
        for n, row in other["sizes"].items():
            for key, value in row.items():
                best["sizes"][n][key] = min(best["sizes"][n][key], value)
        for key in ("first", "second"):
            best["first_audit"][key] = min(best["first_audit"][key], other["first_audit"][key])
        if best.get("several") and other.get("several"):
            best["several"] = {key: min(value, other["several"][key]) for key, value in best["several"].items()}
    for name in best["targets"]:
        ratios = [r["targets"][name]["audit"] / r["targets"][name]["anchor"] for r in rounds]
        best["targets"][name]["ratio_range"] = (min(ratios), max(ratios))
    return best


def derived(side: dict[str, Any], cpu: bool = False) -> dict[str, float]:
    """The issue's figures from one side's wall-clock times (or CPU times)."""
    suffix = "_cpu" if cpu else ""
    sizes = sorted(side["sizes"], key=int)
    first, last = side["sizes"][sizes[0]], side["sizes"][sizes[-1]]
    figures = {"marginal full audit": (last["full" + suffix] - first["full" + suffix]) / last["pass32" + suffix],
               "marginal GA101 alone": (last["alone" + suffix] - first["alone" + suffix]) / last["pass32" + suffix],
               "audit / gradcheck+gradgradcheck": max(row["audit" + suffix] / row["anchor" + suffix]
                                                      for row in side["targets"].values())}
    if len(sizes) >= 2:
        a, b = side["sizes"][sizes[-2]], last
        figures["growth"] = b["full" + suffix] / a["full" + suffix]
        figures["growth_limit"] = int(sizes[-1]) / int(sizes[-2])
    return figures


def met(value: float, limit: float) -> str:
    return "met" if value <= limit else "NOT met"


def report(sides: dict[str, dict[str, Any]], cli: dict[str, dict[str, float]], notes: dict[str, str]) -> None:
    """Print every figure, one column per side."""
    names = list(sides)
    one = sides[names[0]]
    sizes = sorted(one["sizes"], key=int)
    print(f"torch {one['torch']}, {one['threads']} threads, {os.cpu_count()} CPUs")
    for name in names:
        print(f"  {name}: GA101's screen: {sides[name]['screen']}{notes.get(name, '')}")
    figures = {name: derived(side) for name, side in sides.items()}
    cpu_figures = {name: derived(side, cpu=True) for name, side in sides.items()}

    print(f"\nF.silu over sizes (fastest runs; yardstick: {one['sizes'][sizes[-1]].get('pass32', 0) * 1e3:.3f} ms, "
          f"a float32 forward+backward pass of F.silu at n = {int(sizes[-1]):.0e}, measured in each side's process):")
    rows = []
    for n in sizes:
        rows.append([f"{int(n):.0e}"] + [f"{sides[name]['sizes'][n][key] * 1e3:.2f}" for key in ("full", "alone")
                                         for name in names] + [f"{one['sizes'][n]['pass32'] * 1e3:.3f}"])
    print(tabulate(rows, headers=["n"] + [f"{what} ms ({name})" for what in ("audit", "GA101 alone")
                                          for name in names] + ["f32 pass ms"]))

    print("\nthe issue's figures (each from one side's own process; wall clock, and the same from the CPU time of "
          "the process, which waiting for a busy core does not inflate):")
    rows = []
    for key, limit, unit in (("marginal full audit", TARGETS["marginal full audit"], "passes"),
                             ("marginal GA101 alone", TARGETS["marginal GA101 alone"], "passes"),
                             ("audit / gradcheck+gradgradcheck", TARGETS["audit / gradcheck+gradgradcheck"], "x")):
        rows.append([f"{key} ({unit}, target <= {limit})"]
                    + [f"{figures[name][key]:.2f} ({met(figures[name][key], limit)}); CPU time {cpu_figures[name][key]:.2f}"
                       for name in names])
    if "growth" in figures[names[0]]:
        limit = figures[names[0]]["growth_limit"]
        rows.append([f"growth {int(sizes[-2]):.0e} -> {int(sizes[-1]):.0e} (x, target <= {limit:.0f})"]
                    + [f"{figures[name]['growth']:.2f} ({met(figures[name]['growth'], limit)}); CPU time "
                       f"{cpu_figures[name]['growth']:.2f}" for name in names])
    for target in CLI_TARGETS:
        if all(name in cli for name in names):
            rows.append([f"CLI added to import torch, {target} (s, target <= {TARGETS['CLI added']})"]
                        + [f"{cli[name][target]:.2f} ({met(cli[name][target], TARGETS['CLI added'])})" for name in names])
    if all(name in cli for name in names):
        rows.append(["python -c 'import torch' (s)"] + [f"{cli[name]['import torch']:.2f}" for name in names])
    rows.append(["first audit of F.silu in a fresh process (s)"]
                + [f"{sides[name]['first_audit']['first']:.2f} (then {sides[name]['first_audit']['second'] * 1e3:.0f} ms; "
                   f"torch._dynamo {'imported' if sides[name]['first_audit']['dynamo'] else 'not imported'})" for name in names])
    print(tabulate(rows, headers=["figure"] + names))

    print(f"\nthe default audit of one target / (gradcheck + gradgradcheck on {64} float64 inputs), "
          f"fastest of each, in turns in one process (range over rounds in brackets):")
    rows = []
    for target in one["targets"]:
        row = [target]
        for name in names:
            t = sides[name]["targets"][target]
            lo, hi = t["ratio_range"]
            row.append(f"{t['audit'] * 1e3:.1f} / {t['anchor'] * 1e3:.1f} ms = {t['audit'] / t['anchor']:.2f} "
                       f"[{lo:.2f}-{hi:.2f}]; CPU {t['audit_cpu'] / t['anchor_cpu']:.2f}; {t['status']}")
        rows.append(row)
    print(tabulate(rows, headers=["target"] + names))

    print("\nseveral inputs: the default audit of x * silu(gate) (two elementwise inputs) / the one-input "
          f"audit of x * silu(x), fastest of each, in turns (target <= {TARGETS['several inputs']:.0f}):")
    rows = []
    for name in names:
        several = sides[name].get("several")
        if several is None:
            rows.append([name, "- (one input only)"])
            continue
        ratio, ratio_cpu = several["two"] / several["one"], several["two_cpu"] / several["one_cpu"]
        rows.append([name, f"{several['two'] * 1e3:.1f} / {several['one'] * 1e3:.1f} ms = {ratio:.2f} "
                           f"({met(ratio, TARGETS['several inputs'])}); CPU {ratio_cpu:.2f}"])
    print(tabulate(rows, headers=["side", "two inputs / one input"]))

    print("\nwhere the default audit of F.silu spends its time (ms per check, fastest over the runs of each side):")
    checks = {name: sides[name]["targets"]["F.silu"]["checks"] for name in names}
    keys = sorted(set().union(*checks.values()), key=lambda k: -max(checks[name].get(k, 0) for name in names))
    rows = [[key] + [f"{checks[name][key] * 1e3:.2f}" if key in checks[name] else "-" for name in names]
            for key in keys if max(checks[name].get(key, 0) for name in names) >= 2e-4]
    print(tabulate(rows, headers=["check"] + names))


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def run_rounds(sides: dict[str, str], rounds: int, measure: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """``rounds`` measurements of every side, the sides alternating, combined per side."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for index in range(rounds):
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        for name in order:
            results[name].append(measure(sides[name]))
    return {name: combine(found) for name, found in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 1e5, two rounds")
    parser.add_argument("--smoke", action="store_true", help="seconds: this checkout alone, tiny sizes, no CLI")
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare with (default %(default)s)")
    parser.add_argument("--no-baseline", action="store_true", help="measure this checkout alone")
    args = parser.parse_args(argv)
    if args.smoke:
        sizes, repeat, target_repeat, rounds, cli_repeat = [1000, 2000], 1, 1, 1, 0
    elif args.quick:
        sizes, repeat, target_repeat, rounds, cli_repeat = [1000, 10000, 100000], 5, 7, 2, 2
    else:
        sizes, repeat, target_repeat, rounds, cli_repeat = [1000, 10000, 100000, 1000000], 7, 9, 3, 3
    print(f"gradaudit benchmark: {load()} at the start")
    started = time.perf_counter()
    this = "this checkout"
    sides = {this: ROOT}
    notes: dict[str, str] = {}
    with (baseline_worktree(args.baseline) if not (args.smoke or args.no_baseline) else _nothing()) as old:
        if old is not None:
            path, how = old
            name = f"{args.baseline} (before)"
            sides[name] = path
            notes[name] = f"; {how}"
        measured = run_rounds(sides, rounds, lambda root: measure_side(root, sizes, repeat, target_repeat))
        cli = cli_added(sides, cli_repeat) if cli_repeat else {}
    report(measured, cli, notes)
    if not args.smoke:
        from bench_detect import detection_rows

        seeds = 3 if args.quick else 5
        print(f"\ndetection by this checkout beside gradcheck, a SiLU backward off by 0.1 (detected / {seeds} seeds):")
        print(tabulate(detection_rows(sizes[:1] + sizes[-2:-1], seeds),
                       headers=["defect", "n", "gradaudit GA101", "gradcheck fast", "gradcheck slow"]))
    print(f"\n{load()} at the end; {time.perf_counter() - started:.0f} s in all")
    return 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    sys.exit(main())
