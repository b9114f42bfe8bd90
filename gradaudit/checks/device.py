"""GA405: tensors created on a fixed device; CPU-vs-GPU differences.

On every machine the target runs forward and backward on ``meta`` tensors under a
dispatch mode that watches every kernel: a non-scalar tensor that comes out on another
device (``torch.zeros(x.shape)``, ``torch.tensor([...])``, ``.cpu()``) is a tensor created
on a fixed device, which on a GPU raises or copies from the host on every call (warn). 0-dim
CPU tensors mix legally with any device and are not reported; a target that simply cannot
run on ``meta`` (a kernel without a meta implementation, ``.item()``, data-dependent
Python branches) is not reported either, since nothing is known about its devices.

For every CUDA device in ``Options.devices`` the probe inputs run there too: a crash is a
fail, values or gradients outside the dtype's tolerance of CPU's are a fail, and zeros
whose sign differs from CPU's are info.
"""
from __future__ import annotations

import contextlib
import re
import sys
import traceback
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..engine.blame import Site, op_name, user_site
from ..engine.calling import describe_exception
from ..engine.messages import describe_intervals, example_index, intervals, number
from ..engine.options import dtype_name
from ..engine.vjp import vjp
from ..model.report import Finding
from . import Check

if TYPE_CHECKING:
    from ..engine.context import AuditContext

META_SIZE = 8
"""Length of the meta probe: any non-scalar shape does; meta tensors hold no data."""
META_DTYPE = torch.float32
DEVICE_MISMATCH = re.compile(
    r"not on the expected device|same device|at least two devices|device type .* does not match|"
    r"expected device|Expected .* on device", re.IGNORECASE)
"""Messages of the errors that mixing devices raises (as opposed to a missing meta kernel)."""
TOLERANCES = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1.3e-6, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}
"""(rtol, atol) per dtype for CPU-vs-GPU values: torch.testing's defaults for float64/float32; for
float16/bfloat16 two epsilons, relative and absolute: formulas such as 1 - tanh(x)^2 round
O(1) intermediates, so results near 0.07 legitimately differ by about one epsilon (seen on an
H100: tanh's float16 gradient at x = -2.01 is 0.0688 on CUDA, 0.0691 on CPU, 0.0692 exact)."""
FIX_FIXED_DEVICE = (
    "Create tensors on the input's device: torch.zeros_like(x), x.new_zeros(shape), "
    "x.new_tensor(values) or device=x.device (0-dim constants such as torch.tensor(2.0) are fine)."
)


class _DeviceWatch(TorchDispatchMode):
    """Record the first kernel whose non-scalar output is not on ``expected``."""

    def __init__(self, expected: str) -> None:
        super().__init__()
        self.expected = expected
        self.culprit: tuple[str, Site | None, torch.Tensor] | None = None

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.culprit is None:
            for tensor in tree_flatten(out)[0]:
                if isinstance(tensor, torch.Tensor) and tensor.dim() > 0 and tensor.device.type != self.expected:
                    self.culprit = (op_name(func), user_site(sys._getframe(1)), tensor)
                    break
        return out


def _exception_site(exc: BaseException) -> Site | None:
    """The innermost frame of ``exc``'s traceback that is the user's code."""
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        site = user_site(frame)
        if site is not None:
            return site
    return None


def _meta_call(ctx: "AuditContext", watch: "_DeviceWatch | None") -> tuple[BaseException | None, bool]:
    """Forward and backward on a fresh meta copy of the target, optionally under ``watch``:
    the exception raised (if any) and whether the output and gradient stayed on meta."""
    fn = ctx.target.callable_for(META_DTYPE, "meta")  # a fresh copy, parameters on meta
    leaf = torch.empty(META_SIZE, dtype=META_DTYPE, device="meta", requires_grad=True)
    on_meta = True
    try:
        with torch.enable_grad(), (watch if watch is not None else contextlib.nullcontext()):
            out = fn(leaf.clone())
            if isinstance(out, torch.Tensor):
                on_meta = out.device.type == "meta"
                if out.requires_grad:
                    grad = vjp(out, leaf, torch.ones_like(out))
                    on_meta = on_meta and (grad is None or grad.device.type == "meta")
    except Exception as exc:  # the target's own error, judged by the caller
        return exc, False
    return None, on_meta


FACTORY_NAMES = frozenset({
    "tensor", "as_tensor", "from_numpy", "scalar_tensor", "zeros", "ones", "empty", "full", "arange",
    "linspace", "logspace", "eye", "rand", "randn", "randint", "randperm", "normal", "Tensor",
    "FloatTensor", "DoubleTensor", "cpu", "cuda", "numpy", "device",
})
"""Names whose presence in a target's code can create a tensor on a fixed device."""


def _code_objects(obj: Any) -> list[Any]:
    """The Python code a target runs directly: a function's, or forward/backward/... methods'."""
    import functools

    while isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, torch.nn.Module):
        obj = type(obj)
    owners = [getattr(obj, name, None) for name in ("forward", "backward", "setup_context", "jvp", "vmap")] \
        if isinstance(obj, type) else [obj]
    return [getattr(o, "__code__", None) for o in owners if getattr(o, "__code__", None) is not None]


def may_create_fixed_device_tensors(obj: Any, depth: int = 3) -> bool:
    """Whether the target's code (and the Python functions it calls, a few levels deep) names a
    tensor factory or reads a module-level non-scalar tensor. Built-ins have no Python code and
    never do. The meta probe runs only then: executing on meta imports ~1 s of torch internals."""
    seen: set[int] = set()
    functions = [obj]
    for _ in range(depth):
        found = []
        for function in functions:
            for code in _code_objects(function):
                stack = [code]
                while stack:
                    current = stack.pop()
                    if id(current) in seen:
                        continue
                    seen.add(id(current))
                    if FACTORY_NAMES & set(current.co_names):
                        return True
                    stack.extend(c for c in current.co_consts if hasattr(c, "co_names"))
                    namespace = getattr(function, "__globals__", None) or vars(sys.modules.get(
                        getattr(function, "__module__", ""), object()))
                    for name in current.co_names:
                        value = namespace.get(name) if isinstance(namespace, dict) else None
                        if isinstance(value, torch.Tensor) and value.dim() > 0:
                            return True
                        if callable(value) and hasattr(value, "__code__") and not name.startswith("__"):
                            found.append(value)
        functions = found
    return False


def run_meta(ctx: "AuditContext") -> Iterator[Finding]:
    """Forward and backward on meta tensors; report a non-scalar tensor on another device."""
    if not may_create_fixed_device_tensors(ctx.target.obj):
        return
    # A plain run first: a dispatch mode costs more imports on first use, so the watching run
    # (which names the op and line) is made only when the plain one shows a defect.
    error, on_meta = _meta_call(ctx, None)
    if error is None and on_meta:
        return
    watch = _DeviceWatch("meta")
    error, _ = _meta_call(ctx, watch)
    mismatch = error is not None and bool(DEVICE_MISMATCH.search(str(error)))
    if watch.culprit is None and not mismatch:
        return  # no device defect seen (or meta is simply unsupported: nothing is known)
    raised = f" (the call then raised {describe_exception(error)})" if error is not None else ""
    if watch.culprit is not None:
        op, site, tensor = watch.culprit
        what = f"`{site.source}` at {site.path}:{site.line}" if site else f"the op {op}"
        kind = "fixed-device"
        values = {"what": what, "device": tensor.device.type, "shape": tuple(tensor.shape), "op": op, "raised": raised}
    else:
        site = _exception_site(error)  # type: ignore[arg-type]
        what = f"`{site.source}` at {site.path}:{site.line}" if site else "the target"
        raised_text = describe_exception(error).rstrip("!.")  # type: ignore[arg-type]
        kind, values = "mixes-devices", {"what": what, "raised": raised_text}
    location = site.location() if site else ctx.target.source("forward")
    yield DEVICE.finding(kind, "warn", **values, dtype=dtype_name(META_DTYPE), location=location,
                  details={"device": "meta", **({"source": site.source} if site else {})})


# -- CUDA ----------------------------------------------------------------------------------------
def compare(cpu: torch.Tensor, other: torch.Tensor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Masks over the elements: ``mismatch`` (outside tolerance, or a different NaN/inf
    pattern), ``cpu_only`` / ``other_only`` (that device alone returns -0.0 where both are zero)."""
    rtol, atol = TOLERANCES[dtype]
    a, b = cpu.to(torch.float64), other.detach().cpu().to(torch.float64)
    both_finite = torch.isfinite(a) & torch.isfinite(b)
    close = (a - b).abs() <= atol + rtol * a.abs()
    same_special = (torch.isnan(a) & torch.isnan(b)) | (torch.isinf(a) & (a == b))
    mismatch = ~torch.where(both_finite, close, same_special)
    zeros = (a == 0) & (b == 0)
    return {"mismatch": mismatch,
            "cpu_only": zeros & torch.signbit(a) & ~torch.signbit(b),
            "other_only": zeros & torch.signbit(b) & ~torch.signbit(a)}


def worse_than_cpu(cpu: torch.Tensor, other: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Where the device's result is further from the float64 value than CPU's, beyond the
    dtype's tolerance. Two roundings of an ill-conditioned formula (1 - tanh(x)^2 in float16)
    differ by many ulps; only a device that is clearly *worse* than CPU is a defect."""
    rtol, atol = TOLERANCES[dtype]
    a, b = cpu.to(torch.float64), other.detach().cpu().to(torch.float64)
    exact = exact.to(torch.float64)
    fits = torch.isfinite(exact) & (exact.abs() <= torch.finfo(dtype).max)
    error_cpu = torch.where(torch.isfinite(a), (a - exact).abs(), torch.full_like(a, float("inf")))
    error_other = torch.where(torch.isfinite(b), (b - exact).abs(), torch.full_like(b, float("inf")))
    worse = error_other > 2 * error_cpu + atol + rtol * exact.abs()
    return torch.where(fits, worse, torch.zeros_like(worse))


def _run_on(ctx: "AuditContext", device: str, x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    """Forward and both-sign backward of the target on ``device`` (raises what the target raises)."""
    fn = ctx.callable_for(dtype, device)
    leaf = x.to(device).detach().clone().requires_grad_(True)
    torch.manual_seed(ctx.options.seed)
    with torch.enable_grad():
        out = fn(leaf.clone())
        grads: dict[float, torch.Tensor] = {}
        if isinstance(out, torch.Tensor) and out.requires_grad:
            for sign in (1.0, -1.0):
                grad = vjp(out, leaf, torch.full_like(out, sign), retain_graph=sign > 0)
                if grad is not None:
                    grads[sign] = grad
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"it returned {type(out).__name__} on {device}")
    return out.detach(), grads


def _differences(ctx: "AuditContext", device: str, dtype: torch.dtype) -> Iterator[Finding]:
    cpu = ctx.evaluate(dtype)
    if cpu.y is None:
        return
    name = dtype_name(dtype)
    try:
        y, grads = _run_on(ctx, device, cpu.x, dtype)
    except Exception as exc:
        site = _exception_site(exc)
        at = f" at {site}" if site else ""
        yield DEVICE.finding("crash", "fail", device=device, at=at, exception=describe_exception(exc),
                             dtype=name, location=site.location() if site else ctx.target.source("forward"),
                      details={"device": device, "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))})
        return
    # values are judged on the output and the +1 gradient (the -1 one is its negation);
    # zero signs on both gradients, since a mask times a negative grad_output makes -0.0
    pairs = [("output", cpu.y, y, "", True)]
    pairs += [("gradient", cpu.grads[s], grads[s], f" for grad_output {number(s)}", s > 0)
              for s in (1.0, -1.0) if s in cpu.grads and s in grads]
    for noun, on_cpu, on_device, extra, judge_values in pairs:
        if on_cpu.shape != on_device.shape:
            yield DEVICE.finding("shape-differs", "fail", noun=noun, shape=tuple(on_device.shape), device=device,
                                 cpu_shape=tuple(on_cpu.shape), dtype=name, details={"device": device})
            continue
        masks = compare(on_cpu, on_device, dtype)
        x = cpu.x
        candidates = masks["mismatch"]
        mask = torch.zeros_like(candidates)
        if judge_values and bool(candidates.any()):
            reference = ctx.exact_at(dtype, candidates)
            exact = reference.y if noun == "output" else reference.grads.get(1.0)
            if exact is not None:
                mask[candidates] = worse_than_cpu(on_cpu[candidates], on_device.detach().cpu()[candidates], exact, dtype)
        if bool(mask.any()):
            i = example_index(x, mask)
            rtol, atol = TOLERANCES[dtype]
            yield DEVICE.finding(
                "values-differ", "fail", noun=noun, device=device, count=int(mask.sum()), total=x.numel(),
                where=describe_intervals(x, mask), x=number(float(x[i])), got=number(float(on_device[i])),
                cpu=number(float(on_cpu[i])), rtol=rtol, atol=atol,
                dtype=name, location=ctx.target.source("forward" if noun == "output" else "backward"),
                examples=[{"input": float(x[i]), "cpu": number(float(on_cpu[i])), device: number(float(on_device[i]))}],
                details={"device": device, "intervals": intervals(x, mask), "count": int(mask.sum())})
        for key, creator, other in (("cpu_only", "CPU", device), ("other_only", device, "CPU")):
            mask = masks[key]
            if not bool(mask.any()):
                continue
            i = example_index(x, mask)
            yield DEVICE.finding(
                "zero-sign-differs", "info", creator=creator, other=other, noun=noun, extra=extra,
                count=int(mask.sum()), where=describe_intervals(x, mask), x=number(float(x[i])),
                dtype=name, examples=[{"input": float(x[i]), "cpu": number(float(on_cpu[i])),
                                       device: number(float(on_device[i]))}],
                details={"device": device, "intervals": intervals(x, mask), "count": int(mask.sum())})


def run(ctx: "AuditContext") -> Iterator[Finding]:
    yield from run_meta(ctx)
    for device in ctx.options.devices:
        if device == "cpu":
            continue
        for dtype in ctx.options.dtypes:
            yield from _differences(ctx, device, dtype)


DEVICE = Check(
    code="GA405",
    slug="device",
    status="warn / fail",
    summary="creates tensors on a fixed device (meta probe: warn); on a GPU crashes or differs from CPU (fail)",
    explanation=(
        "Every audit runs the target forward and backward on meta tensors: a non-scalar tensor "
        "that comes out on another device was created without device= (torch.zeros(x.shape), "
        "torch.tensor([...])) and on a GPU raises or copies from the host on every call (warn). "
        "0-dim constants mix legally with any device and targets without meta kernels are not "
        "judged. With --device cuda (or auto) the probe inputs also run on the GPU: a crash or "
        "values/gradients outside the dtype's tolerance of CPU's fail; zeros whose sign differs "
        "from CPU's (relu(-0.0), clamp) are info."
    ),
    fix=FIX_FIXED_DEVICE,
    example="torch.where(x > 0, x, torch.zeros(x.shape))",
    run=run,
    messages={
        "fixed-device": "{what} creates a {device} tensor of shape {shape} (op {op}) while the input is on "
                        "meta{raised}. It has no device=, so on a GPU it raises or copies from the host "
                        "on every call. {fix}",
        "mixes-devices": "{what} mixes devices: with a meta input it raised {raised}. It uses a non-scalar "
                         "tensor that lives on a fixed device (made outside the call, e.g. at import "
                         "time): move it to the input's device (.to(x.device)) or register it as a buffer "
                         "of the module. {fix}",
        "crash": "the target runs on CPU but crashes on {device} in {dtype}{at}: {exception}. A tensor "
                 "created on a fixed device or a CPU-only operation is the usual cause. {fix}",
        "shape-differs": "the {noun} has shape {shape} on {device} but {cpu_shape} on CPU in {dtype}.",
        "values-differ": "the {noun} on {device} differs from CPU in {dtype} at {count} of {total} inputs "
                         "({where}): e.g. x = {x} gives {got} on {device} and {cpu} on CPU, further from "
                         "the float64 value than CPU by more than rtol={rtol:g}, atol={atol:g}. Look for "
                         "device-dependent code paths, precision or unguarded overflow.",
        "zero-sign-differs": "{creator} creates -0.0 and {other} does not: the {noun}{extra} in {dtype} is "
                             "-0.0 on {creator} and +0.0 on {other} at {count} inputs ({where}), e.g. x = "
                             "{x}. Values compare equal; only sign-sensitive code (atan2, 1/x, copysign) "
                             "sees it.",
    },
)

CHECKS = [DEVICE]
