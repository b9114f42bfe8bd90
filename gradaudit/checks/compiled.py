"""GA406 (opt-in): what ``torch.compile`` changes.

For every audit dtype and device the target is compiled once (``dynamic=False``, dynamo's
caches reset around it) and run forward and backward (grad_output +1 and -1) over the
dtype's probe, then compared with eager there:

- values or gradients outside the dtype's tolerance of eager's are judged against float64:
  fail where the compiled ones are farther from it, info where they are not (Inductor
  computes float16/bfloat16 math in float32);
- a zero of the other sign, or NaN on one side only, is warn, and the message says which
  side DESIGN.md's signed-zero rules call right;
- a compile that fails, a graph break, or a second call that compiles again is info, with
  dynamo's reason and the source line.

The compile and warm-call seconds go into every finding's details.
"""
from __future__ import annotations

import math
import traceback
from typing import TYPE_CHECKING, Any, Iterator

import torch

from ..engine.calling import describe_exception
from ..engine.compiling import (
    CompiledRun, ForwardBackward, backend_problem, forward_backward, fresh_dynamo, run_compiled
)
from ..engine.messages import describe_intervals, example_index, intervals, number
from ..engine.options import dtype_name
from ..engine.tracing import Site
from ..model.report import Finding
from ..targets.types import display_path
from . import ERROR, Check
from .device import TOLERANCES, compare, worse_than_cpu

if TYPE_CHECKING:
    from ..engine.context import AuditContext

SIGNS = (1.0, -1.0)


def _exception_site(exc: BaseException) -> Site | None:
    """The innermost frame of ``exc``'s traceback outside torch and gradaudit."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if "/torch/" not in name and "/gradaudit/" not in name and "<" not in name:
            found = Site(display_path(name), int(frame.lineno or 0), (frame.line or "").strip())
    return found


def _eager(ctx: "AuditContext", dtype: torch.dtype, device: str) -> tuple[torch.Tensor, ForwardBackward] | None:
    """Eager's probe input, output and gradients in ``dtype`` on ``device`` (None when eager fails)."""
    ev = ctx.evaluate(dtype)
    if ev.y is None:
        return None
    if device == "cpu":
        return ev.x, ForwardBackward(y=ev.y, grads=dict(ev.grads))
    run = forward_backward(ctx.callable_for(dtype, device), ev.x.to(device), SIGNS, ctx.options.seed, ctx.layout)
    if run.error is not None or run.y is None:
        return None  # GA405 reports a target that fails on the device
    return ev.x, ForwardBackward(y=run.y.cpu(), grads={s: g.cpu() for s, g in run.grads.items()})


def _costs(run: CompiledRun, device: str) -> dict[str, Any]:
    return {"device": device, "compile_seconds": round(run.seconds, 3),
            "warm_seconds": None if run.warm_seconds is None else round(run.warm_seconds, 5)}


def _zero_verdict(x: float | None, exact: float) -> str:
    """Which side DESIGN.md's signed-zero rules call right, for a zero that is -0.0 on one side
    only: ``x`` is the output's input (None for a gradient), ``exact`` the float64 value."""
    if x is not None and x == 0 and math.copysign(1.0, x) < 0:
        return "propagated"  # f(-0.0) == -0.0 keeps the input's sign
    if math.isnan(exact):
        return "unknown"
    if exact < 0:
        return "underflow"  # the true value is negative: -0.0 has the right sign
    return "spurious" if exact == 0 else "wrong-sign"


VERDICT_WORDS = {
    "propagated": "the -0.0 is right: it propagates the input's -0.0 as torch.relu(-0.0) does, and {plus} "
                  "drops that sign",
    "underflow": "the -0.0 is right: the float64 value is negative ({exact}), so {plus}'s +0.0 has the "
                 "wrong sign",
    "spurious": "the +0.0 is right: the exact value is zero, so the -0.0 that {minus} creates is spurious",
    "wrong-sign": "the +0.0 is right: the float64 value is positive ({exact})",
    "unknown": "the float64 value there is not a number, so neither sign is preferred",
}


def _exact(ctx: "AuditContext", dtype: torch.dtype, sign: float | None, suspicious: torch.Tensor,
           inputs: int) -> torch.Tensor:
    """The float64 values of the output (``sign`` None) or gradient where ``suspicious`` holds
    (NaN elsewhere, and where none is known): at those inputs alone when there is one output
    per input, else the float64 evaluation of the whole probe."""
    exact = torch.full(suspicious.shape, float("nan"), dtype=torch.float64)
    if suspicious.numel() == inputs:
        found = ctx.exact_at(dtype, suspicious.reshape(-1))
        part = found.y if sign is None else found.grads.get(sign)
        if part is not None and part.numel() == int(suspicious.sum()):
            exact.reshape(-1)[suspicious.reshape(-1)] = part.to(torch.float64).reshape(-1)
        return exact
    whole = ctx.reference64(dtype)
    values = whole.y if sign is None else whole.grads.get(sign)
    if values is not None and values.shape == suspicious.shape:
        exact[suspicious] = values.to(torch.float64)[suspicious]
    return exact


def _compare_pair(ctx: "AuditContext", noun: str, extra: str, sign: float | None, x: torch.Tensor,
                  eager: torch.Tensor, comp: torch.Tensor, dtype: torch.dtype, costs: dict[str, Any],
                  device: str) -> Iterator[Finding]:
    """Findings for one output (``sign`` None) or gradient (grad_output ``sign``)."""
    name = dtype_name(dtype)
    where_on = "" if device == "cpu" else f" on {device}"
    if eager.shape != comp.shape:
        yield COMPILED.finding("shape-differs", "fail", noun=noun, shape=tuple(comp.shape), on=where_on,
                               eager_shape=tuple(eager.shape), dtype=name, audit=ctx, details=dict(costs))
        return
    comp = comp.detach().cpu()
    masks = compare(eager, comp, dtype)
    nan_eager, nan_comp = torch.isnan(eager), torch.isnan(comp)
    nan_differs = nan_eager != nan_comp
    values = masks["mismatch"] & ~nan_differs
    suspicious = values | nan_differs | masks["cpu_only"] | masks["other_only"]
    if not bool(suspicious.any()):
        return
    exact = _exact(ctx, dtype, sign, suspicious, x.numel())
    location = ctx.target.source("forward" if sign is None else "backward")
    flat = lambda t: t.reshape(-1)  # noqa: E731
    x_flat = flat(x) if x.numel() == eager.numel() else torch.arange(eager.numel(), dtype=torch.float64)

    def describe(mask: torch.Tensor) -> dict[str, Any]:
        m = flat(mask)
        i = example_index(x_flat, m)
        return {"i": i, "count": int(m.sum()), "where": describe_intervals(x_flat, m),
                "x": number(float(x_flat[i])), "eager": number(float(flat(eager)[i])),
                "compiled": number(float(flat(comp)[i])), "exact": number(float(flat(exact)[i])),
                "details": {**costs, "of": f"{noun}{extra}", "intervals": intervals(x_flat, m),
                            "count": int(m.sum())}}

    def example(d: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"input": float(x_flat[d["i"]]), "eager": d["eager"], "compiled": d["compiled"], "float64": d["exact"]}]

    if bool(values.any()) and sign != -1.0:  # the -1 gradient's values are the +1 one's negation
        worse = torch.zeros_like(values)
        worse[values] = worse_than_cpu(eager[values], comp[values], exact[values], dtype)
        rtol, atol = TOLERANCES[dtype]
        for mask, kind, status in ((worse, "values-differ", "fail"), (values & ~worse, "values-closer", "info")):
            if bool(mask.any()):
                d = describe(mask)
                yield COMPILED.finding(kind, status, noun=noun, on=where_on, count=d["count"], total=eager.numel(),
                                       where=d["where"], x=d["x"], compiled=d["compiled"], eager=d["eager"],
                                       exact=d["exact"], rtol=rtol, atol=atol, dtype=name, location=location,
                                       examples=example(d), details=d["details"])
    for nan_side, mask in (("compiled", nan_differs & nan_comp), ("eager", nan_differs & nan_eager)):
        if bool(mask.any()):
            d = describe(mask)
            right = (f"the float64 value is {d['exact']}, so the NaN is wrong"
                     if d["exact"] != "nan" else "the float64 value is NaN too, so the number is wrong")
            yield COMPILED.finding("nan-differs", "warn", noun=noun, extra=extra, on=where_on, nan_side=nan_side,
                                   other="eager" if nan_side == "compiled" else "compiled", count=d["count"],
                                   where=d["where"], x=d["x"], compiled=d["compiled"], eager=d["eager"],
                                   right=right, dtype=name, location=location, examples=example(d),
                                   details=d["details"])
    for key, minus, plus in (("cpu_only", "eager", "compiled"), ("other_only", "compiled", "eager")):
        mask = masks[key]
        if bool(mask.any()):
            d = describe(mask)
            exact_i = float(flat(exact)[d["i"]])
            verdict = _zero_verdict(float(x_flat[d["i"]]) if sign is None else None, exact_i)
            right = VERDICT_WORDS[verdict].format(plus=plus, minus=minus, exact=number(exact_i))
            yield COMPILED.finding("zero-sign-differs", "warn", minus=minus, plus=plus, noun=noun, extra=extra,
                                   on=where_on, count=d["count"], where=d["where"], x=d["x"], right=right,
                                   dtype=name, location=location, examples=example(d),
                                   details={**d["details"], "verdict": verdict})


def _compile_notes(ctx: "AuditContext", runs: dict[tuple[str, torch.dtype], CompiledRun]) -> Iterator[Finding]:
    """Compile failures, graph breaks and recompiles: info, once per target."""
    backend = ctx.options.compile
    costs = {f"{device}/{dtype_name(dtype)}": _costs(run, device) for (device, dtype), run in runs.items()}
    failed = [(key, run) for key, run in runs.items() if run.error is not None]
    if failed:
        (device, dtype), run = failed[0]
        site = _exception_site(run.error)  # type: ignore[arg-type]
        yield COMPILED.finding(
            "compile-fails", "info", backend=backend, dtypes=", ".join(dtype_name(d) for (_, d), _ in failed),
            reason=describe_exception(run.error), at=f" at {site}" if site else "",  # type: ignore[arg-type]
            dtype=dtype_name(dtype), audit=ctx, location=site.location() if site else None,
            details={"costs": costs, "traceback": "".join(traceback.format_exception(run.error))})
    broken = next((run for run in runs.values() if run.breaks), None)
    if broken is not None:
        first = broken.breaks[0]
        site = Site(display_path(first.path), first.line or 0, first.source or "") if first.path else None
        yield COMPILED.finding(
            "graph-break", "info", backend=backend, count=len(broken.breaks), reason=first.reason,
            at=f" at {site}" if site else "", audit=ctx, location=site.location() if site else None,
            details={"costs": costs, "breaks": [vars(b) for b in broken.breaks]})
    recompiling = [(key, run) for key, run in runs.items() if run.recompiled]
    if recompiling:
        (device, dtype), run = recompiling[0]
        yield COMPILED.finding("recompiles", "info", backend=backend, frames=run.recompiled,
                               dtype=dtype_name(dtype), audit=ctx, details={"costs": costs})


def run(ctx: "AuditContext") -> Iterator[Finding]:
    backend = ctx.options.compile or "inductor"
    problem = backend_problem(backend)
    if problem is not None:  # a usage error: nothing was compared, so no pass
        yield ERROR.finding("message", "error", message=f"GA406 (compiled) cannot compile with backend "
                            f"{backend!r}: {problem}. Give --compile a backend name torch.compile knows.")
        return
    runs: dict[tuple[str, torch.dtype], CompiledRun] = {}
    findings: list[Finding] = []
    for device in ctx.options.devices:
        for dtype in ctx.options.dtypes:
            eager = _eager(ctx, dtype, device)
            if eager is None:
                continue
            x, reference = eager
            with fresh_dynamo():
                compiled = run_compiled(ctx.callable_for(dtype, device), x.to(device), SIGNS, ctx.options.seed,
                                        backend, ctx.layout)
            runs[(device, dtype)] = compiled
            if compiled.error is not None or compiled.y is None:
                continue
            costs = _costs(compiled, device)
            assert reference.y is not None
            findings += _compare_pair(ctx, "output", "", None, x, reference.y, compiled.y, dtype, costs, device)
            for sign in SIGNS:
                if sign in reference.grads and sign in compiled.grads:
                    findings += _compare_pair(ctx, "gradient", f" for grad_output {number(sign)}", sign, x,
                                              reference.grads[sign], compiled.grads[sign], dtype, costs, device)
    yield from _compile_notes(ctx, runs)
    yield from findings


FIX = ("Where a zero's sign matters, write the zero explicitly (torch.where(mask, x, torch.zeros_like(x)), "
       "or + 0.0 to turn -0.0 into +0.0) so that eager and compiled agree; never branch on "
       "torch.compiler.is_compiling() to compute something else.")

COMPILED = Check(
    code="GA406",
    slug="compiled",
    status="fail / warn / info",
    summary="opt-in (--compile): under torch.compile values or gradients differ and are farther from "
            "float64 (fail); zero signs or NaN differ (warn); compile fails, graph breaks, or the "
            "compiled ones are closer to float64 (info)",
    explanation=(
        "With --compile [BACKEND] (or compile=True, or --select GA406) the target is compiled with "
        "torch.compile (inductor by default, dynamic=False) once per dtype and device, and its "
        "output and gradients (grad_output +1 and -1) over the probe are compared with eager. "
        "Differences beyond the dtype's tolerance are judged against float64: a compiled result "
        "farther from it fails, one at least as close is info (Inductor computes float16/bfloat16 "
        "in float32). Zeros of the other sign (Inductor turns relu6(-0.0), clamp(-0.0, min=0) into "
        "+0.0) and NaN on one side only are warn. A compile that fails, a graph break, or a "
        "recompile on every call is info. Dynamo's caches are reset before and after."
    ),
    fix=FIX,
    example="torch.compile(F.relu6)(torch.tensor([-0.0]))  # +0.0; eager gives -0.0",
    run=run,
    negative_grad_output=True,
    messages={
        "values-differ": "the compiled {noun}{on} differs from eager in {dtype} at {count} of {total} inputs "
                         "({where}) and is farther from the float64 value: e.g. x = {x} gives {compiled} "
                         "compiled, {eager} eager, {exact} in float64 (tolerance rtol={rtol:g}, atol={atol:g}). "
                         "Look for code that behaves differently under compilation (torch.compiler."
                         "is_compiling(), data-dependent branches) or an approximation the compiler "
                         "substitutes; never branch on torch.compiler.is_compiling() to compute something else.",
        "values-closer": "the compiled {noun}{on} differs from eager in {dtype} at {count} of {total} inputs "
                         "({where}) but is no farther from the float64 value: e.g. x = {x} gives {compiled} "
                         "compiled, {eager} eager, {exact} in float64 (tolerance rtol={rtol:g}, "
                         "atol={atol:g}); the compiler computes in higher precision. Expect such small "
                         "differences when switching between eager and compiled.",
        "nan-differs": "the {noun}{extra}{on} in {dtype} is NaN {nan_side} but a number {other} at {count} "
                       "inputs ({where}): e.g. x = {x} gives {compiled} compiled, {eager} eager; {right}. "
                       "Guard the operation that overflows or divides by zero (torch.where on the input "
                       "before the operation, not after it).",
        "zero-sign-differs": "{minus} returns -0.0 where {plus} returns +0.0: the {noun}{extra}{on} in {dtype} "
                             "at {count} inputs ({where}), e.g. x = {x}. Under the signed-zero rules {right}. "
                             "Values compare equal; only sign-sensitive code (atan2, 1/x, copysign, "
                             "signbit) sees it. {fix}",
        "shape-differs": "the compiled {noun}{on} has shape {shape} in {dtype} but eager's has {eager_shape}.",
        "compile-fails": "torch.compile (backend {backend}) fails for this target in {dtypes}{at}: {reason}. "
                         "Eager works, so the target runs uncompiled; rewrite the failing line with "
                         "torch operations dynamo can trace, or keep it out of compiled regions "
                         "(torch.compiler.disable).",
        "graph-break": "torch.compile (backend {backend}) breaks the graph {count} time(s){at}: {reason}. "
                       "The code around the break runs in eager, so a compiled model loses fusion there; "
                       "replace the Python-side operation with a torch operation.",
        "recompiles": "torch.compile (backend {backend}) compiles {frames} frame(s) again when called a "
                      "second time with the same {dtype} input: a guard fails on every call (a global "
                      "that changes, a Python number that differs per call), so every call pays a "
                      "compile. Keep such state out of the function or pass it as a tensor.",
    },
)

CHECKS = [COMPILED]
