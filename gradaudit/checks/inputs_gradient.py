"""GA101 for every differentiable input of a target with elementwise partners, over the
two-dimensional probe (:mod:`gradaudit.engine.pairs`), with aliasing (``f(t, t)``); and
GA106 ``gradient-shape``: a backward that returns a gradient of another shape than its input's,
which autograd reduces silently (gradcheck passes every such target)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from ..engine.messages import number
from ..engine.numerics import ATOL, RTOL, gradcheck_tolerances, numerical_derivative, smooth
from ..engine.pairs import FIRST, describe_point, evaluate_at, example, pair_evaluation, values_at
from ..engine.sections import elementwise_partners
from ..engine.vjp import vjps
from ..model.report import Finding
from ..targets.types import applied_function
from . import Check

if TYPE_CHECKING:
    from ..engine.context import AuditContext

MODERATE = 1e4
"""Pairs with an input beyond this are left to the one-input audit along x (its ladder of
shorter steps resolves derivatives in the tails)."""
ALIAS_RTOL, ALIAS_ATOL = 1e-9, 1e-12
ALIAS_GRAD_OUTPUT = 0.75
"""grad_output of the aliasing test: not 1, whose powers hide a gradient computed twice."""


def _label(name: str) -> str | None:
    return None if name == FIRST else name


def _differences(ctx: "AuditContext", values: dict[str, torch.Tensor], name: str,
                 y: torch.Tensor) -> dict[str, np.ndarray]:
    """:func:`gradaudit.engine.numerics.numerical_derivative` of the float64 forward along input
    ``name`` (the other inputs held at the pairs' values), and where it looks smooth."""

    def along(points: torch.Tensor) -> torch.Tensor:  # the four steps of every pair, stacked
        return values_at(ctx, {key: points if key == name else v.repeat(4) for key, v in values.items()})

    numeric = numerical_derivative(ctx, values[name], y, along)
    return {**{key: value.numpy() for key, value in numeric.items()}, "smooth": smooth(numeric).numpy()}


def run_input_gradients(ctx: "AuditContext", gradient: Check) -> Iterator[Finding]:
    """GA101 findings about each input over each partner's pairs (float64), and aliasing."""
    location = ctx.target.source("backward")
    pairs = elementwise_partners(ctx)
    if len(pairs) < len(ctx.binding.partners):
        yield from _gradcheck_all(ctx, gradient, location)
    elif ctx.binding.broadcast:  # x's gradient with parameter-like inputs away from 1 (their own are GA105's)
        yield from _gradcheck_all(ctx, gradient, location, only_x=True)
    for partner in pairs:
        ev = pair_evaluation(ctx, partner, torch.float64)
        if ev.error is not None:
            yield gradient.finding("input-raised", "fail", audit=ctx, reason=ev.error, input=partner.name,
                                   dtype="float64", location=location)
            continue
        if ev.grad_error is not None:
            kind = "input-count" if "number of gradients" in ev.grad_error else "input-raised"
            yield gradient.finding(kind, "fail", audit=ctx, reason=ev.grad_error, input=partner.name,
                                   dtype="float64", location=location)
            yield from _aliasing(ctx, gradient, partner.name, location)
            continue
        moderate = torch.ones(ev.size, dtype=torch.bool)
        for v in ev.inputs.values():
            moderate &= v.abs() <= MODERATE
        keep = torch.nonzero(moderate).flatten()
        values = {name: v[keep] for name, v in ev.inputs.items()}
        y = ev.output[keep]
        grads = ev.grads[1.0]
        for name in (FIRST, partner.name):
            grad = grads.get(name)
            grad = grad[keep] if grad is not None and grad.numel() == ev.size else grad
            yield from _judge_input(ctx, gradient, values, y, name, grad, partner.name, location)
        yield from _aliasing(ctx, gradient, partner.name, location)


def _gradcheck_all(ctx: "AuditContext", gradient: Check, location: Any, only_x: bool = False) -> Iterator[Finding]:
    """Where the two-dimensional probe does not hold (a partner the output is not elementwise
    in): torch.autograd.gradcheck over every differentiable input at once, on small seeded
    inputs of moderate size. ``only_x``: over x alone, with parameter-like inputs at their spread
    values (every other check holds them at 1, where a PReLU's slope or a scale hides a wrong
    formula for x; their own gradients are GA105's)."""
    from torch.autograd.gradcheck import GradcheckError

    binding = ctx.binding
    generator = torch.Generator().manual_seed(ctx.options.seed)
    x = binding.lay_out(torch.randn(24, generator=generator, dtype=torch.float64) * 2)
    if ctx.options.domain is not None:
        x = x.clamp(*ctx.options.domain)
    values: dict[str, Any] = {}
    for extra in binding.extras:
        if extra.role.kind == "like":
            values[extra.name] = (torch.rand(x.shape, generator=generator, dtype=torch.float64) - 0.5).requires_grad_(True)
        elif extra.broadcast:
            values[extra.name] = extra.leaf(torch.float64)
        else:
            values[extra.name] = binding.fill(extra, x)
    names = ["x"] + [name for name, v in values.items() if isinstance(v, torch.Tensor) and v.requires_grad and not only_x]
    held = "".join(f", {e.name!r} spread over [0.5, 1.5]" for e in binding.broadcast if only_x)
    fn = ctx.raw_callable_for(torch.float64)

    def call(*tensors: torch.Tensor) -> torch.Tensor:
        given = dict(values)
        given.update(zip(names[1:], tensors[1:]))
        torch.default_generator.manual_seed(ctx.options.seed)
        return binding.call(fn, tensors[0], given)

    inputs = (x.requires_grad_(True), *[values[name] for name in names[1:]])
    try:
        torch.autograd.gradcheck(call, inputs, **gradcheck_tolerances(ctx))
    except GradcheckError as exc:
        yield gradient.finding("input-gradcheck", "fail", audit=ctx, names=", ".join(names), held=held,
                               reason=str(exc).strip().splitlines()[0], dtype="float64", location=location)
    except Exception as exc:
        text = str(exc).strip()
        yield gradient.finding("input-raised", "fail", audit=ctx, dtype="float64", location=location,
                               reason=f"torch.autograd.gradcheck over {', '.join(names)} raised {type(exc).__name__}: "
                                      f"{text.splitlines()[0] if text else ''}")


def _judge_input(ctx: "AuditContext", gradient: Check, values: dict[str, torch.Tensor], y: torch.Tensor,
                 name: str, grad: torch.Tensor | None, partner: str, location: Any) -> Iterator[Finding]:
    numeric = _differences(ctx, values, name, y)
    smooth, central = numeric["smooth"], numeric["central"]
    if grad is None:
        depends = smooth & (np.abs(central) > ATOL)
        if depends.any():
            i = int(np.flatnonzero(depends)[0])
            yield gradient.finding(
                "input-missing", "fail", audit=ctx, input=_label(name), name=_shown(name), count=int(depends.sum()),
                total=int(smooth.sum()), at=describe_point(values, i, number), numerical=number(float(central[i])),
                dtype="float64", location=location, examples=[{**example(values, i), "numerical": float(central[i])}])
        return
    analytic = grad.to(torch.float64).numpy() if grad.numel() == y.numel() else None
    if analytic is None:
        return  # a gradient of another shape: GA106's
    with np.errstate(all="ignore"):
        error = np.abs(analytic - central)
        tolerance = ATOL + RTOL * np.abs(central) + 16 * numeric["rounding"] + 0.01 * np.abs(numeric["forward"] - numeric["backward"])
    wrong = smooth & (error > tolerance) & np.isfinite(analytic) | (smooth & ~np.isfinite(analytic))
    if not wrong.any():
        return
    relative = np.where(wrong, error / (1 + np.abs(central)), 0)
    i = int(np.argmax(relative))
    yield gradient.finding(
        "input-wrong", "fail", audit=ctx, input=_label(name), name=_shown(name), partner=partner,
        count=int(wrong.sum()), total=int(smooth.sum()), at=describe_point(values, i, number),
        gradient=number(float(analytic[i])), numerical=number(float(central[i])), error=float(error[i]),
        dtype="float64", location=location,
        examples=[{**example(values, j), "gradient": float(analytic[j]), "numerical": float(central[j])}
                  for j in dict.fromkeys([i, *np.flatnonzero(wrong)[:2].tolist()])],
        details={"points_checked": int(smooth.sum()), "points_wrong": int(wrong.sum())})


def _shown(name: str) -> str:
    return "x (the first input)" if name == FIRST else repr(name)


def _aliasing(ctx: "AuditContext", gradient: Check, partner: str, location: Any) -> Iterator[Finding]:
    """``f(t, t)``: the same tensor in x's and the partner's slots gets the sum of both partial
    derivatives."""
    t = torch.linspace(-6.0, 6.0, 97, dtype=torch.float64)
    t = t[t != 0]
    if ctx.options.domain is not None:
        t = t.clamp(*ctx.options.domain)
    scale = ALIAS_GRAD_OUTPUT
    apart = evaluate_at(ctx, torch.float64, {FIRST: t, partner: t.clone()}, (scale,), partner)
    if apart.error or apart.grad_error or apart.grads[scale].get(FIRST) is None:
        return
    binding = ctx.binding
    fn = ctx.raw_callable_for(torch.float64)
    leaf = t.clone().requires_grad_(True)
    torch.default_generator.manual_seed(ctx.options.seed)
    try:
        with torch.enable_grad():
            laid = binding.lay_out(leaf)
            arguments = {e.name: laid if e.name == partner else binding.fill(e, laid) for e in binding.extras}
            out = binding.call(fn, laid, arguments)
            (shared,) = vjps([out], [leaf], [torch.full_like(out, scale)])
    except Exception as exc:
        yield gradient.finding("aliasing-raised", "fail", audit=ctx, input=partner, partner=partner,
                               exception=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                               dtype="float64", location=location)
        return
    other = apart.grads[scale].get(partner)
    expected = apart.grads[scale][FIRST] + (other if other is not None else 0.0)
    got = shared if shared is not None else torch.zeros_like(t)
    got = got.reshape(-1)[: t.numel()]
    bad = ~(((got - expected).abs() <= ALIAS_ATOL + ALIAS_RTOL * expected.abs()) | (got.isnan() & expected.isnan()))
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        yield gradient.finding(
            "aliasing", "fail", audit=ctx, input=partner, partner=partner, count=int(bad.sum()), total=t.numel(),
            t=number(float(t[i])), gradient=number(float(got[i])), expected=number(float(expected[i])),
            dtype="float64", location=location,
            examples=[{"input": float(t[i]), partner: float(t[i]), "gradient": float(got[i]), "expected": float(expected[i])}])


# -- GA106 -------------------------------------------------------------------------------------------
def run_gradient_shape(ctx: "AuditContext") -> Iterator[Finding]:
    """The raw gradients of an autograd.Function's backward against its inputs' shapes, for x in
    its usual layout and, against a (C,) input, with one more leading dimension: ``.sum(0)`` gives
    a (C,) gradient on a (B, C) x and a (T, C) one, which autograd reduces, on (B, T, C)."""
    target = applied_function(ctx.target.obj) or ctx.target.obj  # MyFn.apply is MyFn
    if not (isinstance(target, type) and issubclass(target, torch.autograd.Function)):
        return
    binding = ctx.binding
    x = torch.linspace(-3.0, 3.0, 48, dtype=torch.float64)
    layouts = [x.reshape(2, 3, 8) if binding.layout is None else binding.lay_out(x)]
    if binding.layout is not None and len(binding.layout) == 2:
        layouts.append(layouts[0].reshape((2, -1) + tuple(layouts[0].shape[1:])))
    reported: set[str] = set()
    for laid in layouts:
        for name, returned, expected in _raw_gradient_shapes(ctx, target, laid):
            if name not in reported:
                reported.add(name)
                yield GRADIENT_SHAPE.finding(
                    "shape", "warn", audit=ctx, input=_label(name), name=_shown(name), returned=returned,
                    expected=expected, x_shape=tuple(laid.shape), dtype="float64",
                    details={"returned": list(returned), "expected": list(expected), "x_shape": list(laid.shape)})


def _raw_gradient_shapes(ctx: "AuditContext", target: type, laid: torch.Tensor) -> Iterator[tuple[str, tuple, tuple]]:
    """(input, the shape of the gradient backward returns for it, its own shape) where they differ,
    with x laid out as ``laid``; nothing where the call or the backward raises (the calling checks
    and GA404 report that)."""
    binding = ctx.binding
    values = {e.name: binding.fill(e, laid) for e in binding.extras}
    for extra in binding.differentiable:
        values[extra.name] = values[extra.name].clone().requires_grad_(True)
    args, keywords = binding.arguments(laid.clone().requires_grad_(True), values)
    with torch.enable_grad():
        try:
            out = target.apply(*args, **keywords)
        except Exception:
            return
        node = getattr(out, "grad_fn", None)
        if node is None or not hasattr(node, "_forward_cls"):
            return
        try:
            raw = node.apply(torch.ones_like(out))
        except Exception:
            return
    names = {id(v): name for name, v in values.items()}
    for given, grad in zip(args, raw if isinstance(raw, tuple) else (raw,)):  # backward's outputs follow apply's arguments
        if isinstance(grad, torch.Tensor) and isinstance(given, torch.Tensor) and tuple(grad.shape) != tuple(given.shape):
            yield names.get(id(given), FIRST), tuple(grad.shape), tuple(given.shape)


GRADIENT_SHAPE = Check(
    code="GA106",
    slug="gradient-shape",
    status="warn",
    summary="the backward returns, for some input, a gradient of another shape than that input's "
            "(autograd reduces it silently)",
    explanation=(
        "An autograd.Function is called on a (2, 3, 8) float64 x (or x laid out against its "
        "parameter-like inputs, and with one more leading dimension against a (C,) input) and its "
        "backward is called directly with a grad_output of ones; each "
        "gradient it returns must have its input's shape. Autograd sums a gradient that broadcasts to "
        "the input's shape without a word, so a bias gradient left unreduced, or reduced over the "
        "wrong axes, works by accident; torch.autograd.gradcheck passes every such target."
    ),
    fix="Reduce the gradient to the input's shape in backward, over every broadcast dimension, e.g. "
        "grad_bias = grad.sum(dim=tuple(range(grad.dim() - bias.dim()))) (keepdim where bias has size-1 "
        "dimensions), or torch.sum_to_size(grad, bias.shape).",
    example="a bias-GELU Function whose backward returns grad_output * gelu'(x + bias) as the bias gradient",
    run=run_gradient_shape,
    location_role="backward",
    messages={
        "shape": "the backward returns a gradient of shape {returned} for {name}, whose shape is {expected} "
                 "(x of shape {x_shape}, float64). Autograd reduces it silently, so it works only by "
                 "accident and costs a full-size tensor. {fix}",
    },
)

CHECKS = [GRADIENT_SHAPE]
