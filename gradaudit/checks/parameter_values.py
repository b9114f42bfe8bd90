"""GA202 for a module's parameters: a parameter's gradient that is NaN or inf in a dtype where the
float64 gradient at the same inputs is finite and fits (x * x overflowing in float16 inside a
learnable Swish's beta gradient, then multiplied by a saturated s * (1 - s) = 0). Each input
element's share of the gradient is read apart where the module allows it: the parameter is
broadcast to x's shape and passed through ``torch.func.functional_call``. Where it does not (a
backward that sums the parameter's gradient itself), the summed gradient over the probe is judged,
and halving the probe finds an input that makes it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from ..engine.messages import describe_intervals, example_index, flagged, number
from ..engine.numerics import HEADROOM
from ..engine.options import dtype_name
from ..model.check import Check
from ..model.report import Finding

if TYPE_CHECKING:
    from ..engine.context import AuditContext


def _gradients(ctx: "AuditContext", dtype: torch.dtype, x: torch.Tensor, per_element: bool) -> dict[str, torch.Tensor]:
    """Each parameter's gradient of the summed output at ``x`` (laid out as the target takes it),
    in ``dtype``: per element of x (the parameter broadcast to x's shape; those that do not
    broadcast left out), or summed."""
    module = ctx.raw_callable_for(dtype)
    laid = x.to(dtype).reshape(ctx.layout) if ctx.layout is not None else x.to(dtype)
    given = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if not per_element:
            given[name] = p.detach().clone().requires_grad_(True)
        elif torch.broadcast_shapes(p.shape, laid.shape) == laid.shape:
            given[name] = p.detach().expand(laid.shape).clone().requires_grad_(True)
    if not given:
        return {}
    with torch.enable_grad():
        torch.manual_seed(ctx.options.seed)
        out = torch.func.functional_call(module, given, (laid,))
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return {}
        grads = torch.autograd.grad(out, list(given.values()), torch.ones_like(out), allow_unused=True)
    return {name: g.detach().reshape(-1) for name, g in zip(given, grads) if g is not None}


def _defects(grad: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Non-finite where float64 is finite and within HEADROOM of the dtype's max (x * x before a
    factor 0.5 may overflow on the way to a value that fits)."""
    return ~torch.isfinite(grad) & torch.isfinite(want) & (want.abs() * HEADROOM <= torch.finfo(dtype).max)


def run_parameter_gradients(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    """Per dtype below float64, each parameter's gradient against float64's at the same inputs."""
    module = ctx.raw_callable_for(torch.float64)
    if not isinstance(module, torch.nn.Module) or not any(p.requires_grad for p in module.parameters()):
        return
    if not ctx.elementwise:
        return
    for dtype in ctx.options.dtypes:
        if dtype == torch.float64:
            continue
        x = ctx.base_probe(dtype)
        block = 1 if ctx.layout is None else int(torch.tensor([s for s in ctx.layout if s > 0]).prod())
        x = x[: x.numel() - x.numel() % block]
        x = x[x.to(torch.float64).abs() * HEADROOM < torch.finfo(dtype).max]  # no formula has room there
        x = x[: x.numel() - x.numel() % block]
        try:
            yield from _per_element(ctx, check, dtype, x)
        except Exception:
            try:
                yield from _summed(ctx, check, dtype, x, block)
            except Exception:
                return  # the module cannot be called with its parameters replaced: GA105 judges them


def _per_element(ctx: "AuditContext", check: Check, dtype: torch.dtype, x: torch.Tensor) -> Iterator[Finding]:
    low, exact = _gradients(ctx, dtype, x, True), _gradients(ctx, torch.float64, x, True)
    x64 = x.to(torch.float64).reshape(-1)
    for name, grad in low.items():
        want = exact.get(name)
        if want is None or want.shape != grad.shape:
            continue
        bad = _defects(grad, want, dtype)
        count = flagged(bad).numel()
        if count:
            i = example_index(x64, bad)
            yield _finding(ctx, check, name, dtype, float(grad[i]), float(want[i]), float(x64[i]), count,
                           describe_intervals(x64, bad))


def _summed(ctx: "AuditContext", check: Check, dtype: torch.dtype, x: torch.Tensor, block: int) -> Iterator[Finding]:
    low, exact = _gradients(ctx, dtype, x, False), _gradients(ctx, torch.float64, x, False)
    for name, grad in low.items():
        want = exact.get(name)
        if want is None or want.shape != grad.shape or not bool(_defects(grad, want, dtype).any()):
            continue
        part = x
        while part.numel() > block:  # halve the probe towards one block that makes it
            half = part[: (part.numel() // (2 * block)) * block] if part.numel() >= 2 * block else part[:block]
            rest = part[half.numel():]
            chosen = next((p for p in (half, rest) if p.numel() and _still(ctx, dtype, p, name)), None)
            if chosen is None or chosen.numel() == part.numel():
                break
            part = chosen
        at = float(part.to(torch.float64).reshape(-1)[0])
        yield _finding(ctx, check, name, dtype, float(grad.reshape(-1)[0]), float(want.reshape(-1)[0]), at,
                       part.numel(), f"summed over the probe; one block of inputs that makes it: x in "
                                     f"[{number(float(part.min()))}, {number(float(part.max()))}]")


def _still(ctx: "AuditContext", dtype: torch.dtype, x: torch.Tensor, name: str) -> bool:
    low, exact = _gradients(ctx, dtype, x, False), _gradients(ctx, torch.float64, x, False)
    return name in low and name in exact and bool(_defects(low[name], exact[name], dtype).any())


def _finding(ctx: "AuditContext", check: Check, name: str, dtype: torch.dtype, value: float, exact: float,
             x: float, count: int, where: str) -> Finding:
    return check.finding("parameter", "fail", audit=ctx, name=repr(name), value=number(value), dtype=dtype_name(dtype),
                         count=count, where=where, x=number(x), exact=number(exact),
                         location=ctx.target.source("backward"),
                         examples=[{"input": x, "parameter": name, "gradient": number(value)}],
                         details={"parameter": name, "count": count})
