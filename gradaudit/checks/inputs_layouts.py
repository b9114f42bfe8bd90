"""GA404 beyond x's own layouts: a backward must give the same gradients for every layout of
grad_output (expanded with stride 0 as ``.sum()`` gives, partly expanded as a broadcast gives,
strided, and of random values rather than all ones), for every target; and a target with
parameter-like inputs must work when x has one more leading dimension ((B, T, C) with a bias
of shape (C,)), as a reduction written for 2-D input does not."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch

from ..engine.calling import describe_exception
from ..engine.messages import number
from ..engine.small_inputs import backward_is_random, forward_is_random, known_grad_output, small_input
from ..engine.vjp import vjps
from ..model.check import Check
from ..model.report import Finding

if TYPE_CHECKING:
    from ..engine.context import AuditContext

RTOL, ATOL = 1e-5, 1e-8
"""Layouts take other kernel paths (vectorised or scalar), and a target may compute in float32
inside: rounding differs, a misread grad_output does not by this little."""
SHAPE = (2, 4, 6)
"""x's shape for the grad_output layouts of a target without parameter-like inputs."""


def _leaves(ctx: "AuditContext", shape: tuple[int, ...] | None) -> dict[str, torch.Tensor]:
    """x (of ``shape``, or laid out against the parameter-like inputs) and each differentiable
    extra input, float64 leaves."""
    binding = ctx.binding
    count = math.prod(shape or SHAPE)
    values = small_input(ctx, torch.float64, moderate=True)
    values = values.repeat(count // max(values.numel(), 1) + 1)[:count]
    x = binding.lay_out(values) if shape is None and binding.layout is not None else values.reshape(shape or SHAPE)
    leaves = {"x": x.detach().clone().requires_grad_(True)}
    leaves.update((name, value) for name, value in binding.example(x).items()
                  if isinstance(value, torch.Tensor) and value.requires_grad)
    return leaves


def _forward(ctx: "AuditContext", leaves: dict[str, torch.Tensor]) -> torch.Tensor:
    binding = ctx.binding
    torch.default_generator.manual_seed(ctx.options.seed)
    if not binding.several:
        return ctx.raw_callable_for(torch.float64)(leaves["x"])
    x = leaves["x"]
    values = {e.name: leaves.get(e.name, binding.fill(e, x)) for e in binding.extras}
    return binding.call(ctx.raw_callable_for(torch.float64), x, values)


def _gradients(ctx: "AuditContext", leaves: dict[str, torch.Tensor],
               grad_output: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor | None]:
    with torch.enable_grad():
        out = _forward(ctx, leaves)
        grads = vjps([out], list(leaves.values()), [grad_output(out)])
    return {name: None if g is None else g.detach() for name, g in zip(leaves, grads)}


def _difference(got: dict[str, torch.Tensor | None], want: dict[str, torch.Tensor | None]) -> str | None:
    """Words for the first input whose gradient differs, or None."""
    for name, expected in want.items():
        actual = got.get(name)
        if expected is None or actual is None:
            if (expected is None) != (actual is None):
                return f"gives {'no' if actual is None else 'a'} gradient for {name} where the contiguous one gives {'one' if actual is None else 'none'}"
            continue
        if actual.shape != expected.shape:
            return f"gives a gradient of shape {tuple(actual.shape)} for {name}, not {tuple(expected.shape)}"
        same = ((actual == expected) | ((actual - expected).abs() <= ATOL + RTOL * expected.abs())
                | (actual.isnan() & expected.isnan()))
        if not bool(same.all()):
            i = int(torch.nonzero(~same.reshape(-1))[0])
            return (f"gives other gradients for {name} at {int((~same).sum())} of {same.numel()} elements "
                    f"(e.g. {number(float(actual.reshape(-1)[i]))} where the contiguous grad_output gives "
                    f"{number(float(expected.reshape(-1)[i]))})")
    return None


def _layouts(out: torch.Tensor) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]]:
    """(name, grad_output in that layout, the same values contiguous) for an output like ``out``."""
    def known(o: torch.Tensor) -> torch.Tensor:
        return known_grad_output(o, 5)

    def partly(o: torch.Tensor) -> torch.Tensor:
        if o.dim() < 2:
            return known(o[:1]).expand(o.shape)
        return known(o.narrow(1, 0, 1)).expand(o.shape)

    def strided(o: torch.Tensor) -> torch.Tensor:
        wide = known(o.new_empty(*o.shape[:-1], 2 * o.shape[-1])) if o.dim() else known(o.new_empty(2))
        return wide[..., ::2] if o.dim() else wide[0]

    return [
        ("an expanded grad_output of stride 0 (as .sum() gives)", lambda o: torch.ones((), dtype=o.dtype).expand(o.shape),
         lambda o: torch.ones_like(o, memory_format=torch.contiguous_format)),
        ("a partly expanded grad_output (as a broadcast gives)", partly, lambda o: partly(o).contiguous()),
        ("a strided, non-contiguous grad_output", strided, lambda o: strided(o).contiguous()),
    ]


Backward = Callable[[torch.Tensor], dict[str, "torch.Tensor | None"]]


def _graph(ctx: "AuditContext") -> tuple[torch.Tensor, tuple[int, ...], Backward] | None:
    """One forward on a 3-D x (laid out against parameter-like inputs), and a backward over its
    graph for any grad_output; None where the target rejects this shape (GA404's own layouts
    say so) or its output carries no gradient."""
    leaves = _leaves(ctx, None)
    try:
        with torch.enable_grad():
            out = _forward(ctx, leaves)
    except Exception:
        return None
    if not isinstance(out, torch.Tensor) or not out.requires_grad or out.dim() == 0:
        return None
    inputs = list(leaves.values())

    def backward(grad_output: torch.Tensor) -> dict[str, torch.Tensor | None]:
        torch.default_generator.manual_seed(ctx.options.seed)
        with torch.enable_grad():
            grads = vjps([out], inputs, [grad_output], retain_graph=True)
        return {name: None if g is None else g.detach().clone() for name, g in zip(leaves, grads)}  # a backward may hand out its own state

    return out.detach(), tuple(leaves["x"].shape), backward


def _reentrant(out: torch.Tensor, backward: Backward, seed: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The gradients for a random grad_output and for twice it, or None where the backward
    raises or a second backward differs from the first (GA101's and GA402's findings)."""
    try:
        known = known_grad_output(out, seed)
        once, twice, again = backward(known.clone()), backward(2 * known), backward(known.clone())
    except Exception:
        return None
    return None if _difference(again, once) is not None else (once, twice)


def _backwards(ctx: "AuditContext") -> dict[str, Any] | None:
    """Every backward GA101's linearity and GA404's grad_output layouts compare, run once per
    audit over one graph (and kept: a later check may change a module's parameters in place,
    which would spoil a graph kept for later): None where there is nothing to compare."""

    def build() -> dict[str, Any] | None:
        graph = _graph(ctx)
        if graph is None:
            return None
        out, shape, backward = graph
        reentrant = _reentrant(out, backward, 7)
        if reentrant is None:
            return None
        layouts = []
        for layout, given, contiguous in _layouts(out):
            want = backward(contiguous(out))
            grad_output = given(out)
            before = grad_output.clone()
            try:
                got: Any = backward(grad_output)
            except Exception as exc:
                layouts.append((layout, want, exc, False))
                break
            mutated = not bool(((grad_output == before) | (grad_output.isnan() & before.isnan())).all())
            layouts.append((layout, want, got, mutated))
            if mutated:
                break
        return {"shape": shape, "once": reentrant[0], "twice": reentrant[1], "layouts": layouts}

    return ctx.memo("grad_output.backwards", build)


def run_grad_output_layouts(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    """GA404: the backward with each grad_output layout against a contiguous one."""
    results = _backwards(ctx)
    if results is None:
        return
    shape, location = results["shape"], ctx.target.source("backward")
    for layout, want, got, mutated in results["layouts"]:
        if isinstance(got, Exception):
            yield check.finding("grad-output-layout", "fail", audit=ctx, what=f"raises {describe_exception(got)}",
                                layout=layout, shape=shape, difference="", dtype="float64", location=location)
            return
        if mutated:
            return  # the backward writes into grad_output: GA401's finding
        difference = _difference(got, want)
        if difference is not None:
            yield check.finding("grad-output-layout", "fail", audit=ctx, what=difference, layout=layout,
                                shape=shape, difference="", dtype="float64", location=location)
            return


def run_linearity(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    """GA101: the backward is a vector-Jacobian product, linear in grad_output: twice a random
    grad_output gives twice the gradient (a backward that assumes ones, or clips, does not)."""
    results = _backwards(ctx)
    if results is None:
        return
    once, twice = results["once"], results["twice"]
    difference = _difference(twice, {name: None if g is None else 2 * g for name, g in once.items()})
    if difference is not None:
        yield check.finding(
            "grad-output-linearity", "fail", audit=ctx,
            what=difference.replace("the contiguous grad_output gives", "twice the gradient of half of it is"),
            shape=results["shape"], dtype="float64", location=ctx.target.source("backward"))


def run_broadcast_layouts(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    """x against parameter-like inputs, in float64: stored non-contiguously and as an empty batch in
    its usual layout ((6, C) for a bias of shape (C,)), and with one more leading dimension
    ((2, 3, C), contiguous and not); each against the same values laid out contiguously as usual."""
    binding = ctx.binding
    if binding.layout is None:
        return
    shape = (6,) + tuple(binding.layout[1:])
    leaves = _leaves(ctx, shape)
    try:
        want = _gradients(ctx, leaves, torch.ones_like)
    except Exception:
        return  # the usual layout fails already: reported elsewhere
    if len(binding.layout) == 2 and not (forward_is_random(ctx) or backward_is_random(ctx)):  # (B, T, C) for (C,)
        deeper = list(_deeper(ctx, check))
        if deeper:
            yield from deeper
            return
    name, input_shape = binding.broadcast[0].name, binding.broadcast[0].shape
    along_x = {"x"} | {e.name for e in binding.extras if e.role.kind == "like"}  # elementwise partners: laid out as x
    random = forward_is_random(ctx) or backward_is_random(ctx)  # dropout draws its mask in memory order
    for layout, make in _x_layouts(shape, deeper=len(binding.layout) == 2):
        laid = {key: (make(t) if key in along_x else t).detach().requires_grad_(True) for key, t in leaves.items()}
        what = _compared(ctx, laid, None if laid["x"].numel() == 0 or random else want, shape)
        if what is not None:
            yield check.finding("x-layout", "fail", audit=ctx, layout=layout, name=repr(name), input_shape=input_shape,
                                what=what, dtype="float64", input=name, location=ctx.target.source("backward"))
            return


def _x_layouts(shape: tuple[int, ...], deeper: bool) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """(words, x in that layout) for x of the usual ``shape``: the same values in another storage
    (and, ``deeper``, as (2, 3, C) stored as the transpose of a (3, 2, C) tensor, as a sequence-first
    activation gives)."""
    dims = tuple(reversed(range(len(shape))))

    def strided(t: torch.Tensor) -> torch.Tensor:
        wide = t.new_zeros(*shape[:-1], 2 * shape[-1])
        wide[..., ::2] = t
        return wide[..., ::2]

    layouts = [
        (f"of shape {shape} stored with reversed strides (non-contiguous, as a transpose gives)",
         lambda t: t.detach().permute(dims).contiguous().permute(dims)),
        (f"of shape {shape} strided [..., ::2] (non-contiguous, as a slice gives)", lambda t: strided(t.detach())),
        (f"as an empty batch of shape {(0,) + shape[1:]}", lambda t: t.detach()[:0].clone()),
    ]
    if deeper:
        deep = (2, shape[0] // 2) + shape[1:]
        layouts.append((f"of shape {deep} transposed from {(deep[1], deep[0]) + deep[2:]} (non-contiguous)",
                        lambda t: t.detach().reshape(deep).transpose(0, 1).contiguous().transpose(0, 1)))
    return layouts


def _compared(ctx: "AuditContext", leaves: dict[str, torch.Tensor], want: dict[str, torch.Tensor | None] | None,
              shape: tuple[int, ...]) -> str | None:
    """Words for how the target fails on ``leaves``: it raises, or (``want`` given) gives other
    gradients (those of x and its partners read in x's usual ``shape``)."""
    try:
        got = _gradients(ctx, leaves, torch.ones_like)
    except Exception as exc:
        return f"the target raises {describe_exception(exc)}"
    if want is None:
        return None
    x_shape = leaves["x"].shape
    got = {key: g.reshape(shape) if g is not None and g.shape == x_shape and x_shape != shape else g
           for key, g in got.items()}
    difference = _difference(got, want)
    return None if difference is None else "the backward " + difference.replace("the contiguous grad_output", "a contiguous x")


def _deeper(ctx: "AuditContext", check: Check) -> Iterator[Finding]:
    """x of shape (2, 3, C) against the same values as (6, C)."""
    binding = ctx.binding
    inner = tuple(binding.layout[1:])
    deeper, flat = (2, 3) + inner, (6,) + inner
    leaves = _leaves(ctx, deeper)
    flat_leaves = {name: (t.detach().reshape(flat) if name == "x" else t.detach()).clone().requires_grad_(True)
                   for name, t in leaves.items()}
    name = binding.broadcast[0].name
    try:
        want = _gradients(ctx, flat_leaves, torch.ones_like)
    except Exception:
        return  # the usual layout fails already: reported elsewhere
    try:
        got = _gradients(ctx, leaves, torch.ones_like)
    except Exception as exc:
        yield check.finding("broadcast-layout", "fail", audit=ctx, shape=deeper, name=repr(name),
                            input_shape=binding.broadcast[0].shape, what=f"the target raises {describe_exception(exc)}",
                            flat=flat, dtype="float64", input=name, location=ctx.target.source("backward"))
        return
    if "x" in got and got["x"] is not None:
        got["x"] = got["x"].reshape(flat)
    difference = _difference(got, want)
    if difference is not None:
        yield check.finding("broadcast-layout", "fail", audit=ctx, shape=deeper, name=repr(name),
                            input_shape=binding.broadcast[0].shape,
                            what="the backward " + difference.replace("the contiguous grad_output", "the usual layout"),
                            flat=flat, dtype="float64", input=name, location=ctx.target.source("backward"))
