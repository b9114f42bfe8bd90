"""GA105: gradients with respect to a module's parameters.

GA101 judges the gradient with respect to the input; a module with parameters (nn.PReLU's
weight, a learnable beta) also needs correct gradients for them, or it trains wrongly
while every input gradient looks fine. In the module's float64 cast copy, the gradient of a
weighted sum of the outputs over a small moderate input is compared, parameter element by
element, with central differences.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

import torch

from ..engine.messages import number
from ..engine.numerics import ATOL, RTOL
from ..engine.small_inputs import known_grad_output, small_input
from ..engine.vjp import vjps
from ..model.report import Finding
from . import Check
from .gradient import surrogate_along_x

if TYPE_CHECKING:
    from ..engine.context import AuditContext

MAX_ELEMENTS = 16
"""Parameter elements checked per parameter (evenly spread), so large modules stay fast."""


def _elements(parameter: torch.Tensor) -> list[int]:
    n = parameter.numel()
    if n <= MAX_ELEMENTS:
        return list(range(n))
    return sorted(set(torch.linspace(0, n - 1, MAX_ELEMENTS).round().long().tolist()))


def run_parameter_gradient(ctx: "AuditContext") -> Iterator[Finding]:
    """A module's parameters, and a target's parameter-like (broadcast) inputs: the same kind of
    thing, a tensor whose gradient is the sum over every element of x it meets."""
    module = ctx.raw_callable_for(torch.float64)
    binding = ctx.binding
    has_parameters = isinstance(module, torch.nn.Module) and any(p.requires_grad for p in module.parameters())
    if (has_parameters or binding.broadcast) and surrogate_along_x(ctx):
        return  # a straight-through estimator's parameter gradients are surrogates (GA302 says so: LSQ, PACT)
    if has_parameters:
        parameters = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        x = small_input(ctx, torch.float64, moderate=True)
        yield from _judge(ctx, parameters, lambda: ctx.call(x.clone()), x, "parameter")
    for extra in binding.broadcast:
        x = binding.lay_out(small_input(ctx, torch.float64, moderate=True))
        value = extra.leaf(torch.float64)
        fn = ctx.raw_callable_for(torch.float64)

        def forward(extra=extra, value=value, x=x, fn=fn) -> torch.Tensor:
            torch.default_generator.manual_seed(ctx.options.seed)
            values = {e.name: value if e.name == extra.name else binding.fill(e, x) for e in binding.extras}
            return binding.call(fn, x.clone(), values)

        yield from _judge(ctx, [(extra.name, value)], forward, x, "input")


def _judge(ctx: "AuditContext", parameters: list[tuple[str, torch.Tensor]], forward: Callable[[], torch.Tensor],
           x: torch.Tensor, noun: str) -> Iterator[Finding]:
    """Each parameter's gradient of a weighted sum of ``forward()``'s outputs against central
    differences, element by element (up to :data:`MAX_ELEMENTS` each)."""
    try:
        with torch.enable_grad():
            out = forward()
            weights = known_grad_output(out, ctx.options.seed)
            loss = (out * weights).sum()
            if loss.requires_grad:
                grads = vjps([loss], [p for _, p in parameters], [torch.ones_like(loss)])
            else:  # the forward detaches every parameter
                grads = tuple(None for _ in parameters)
    except Exception:
        return  # the forward or the backward raises here: GA101 and GA404 report it on their own inputs

    def weighted_sum() -> float:
        with torch.no_grad():
            return float((forward() * weights).sum())

    base = float(loss.detach())
    for (name, parameter), grad in zip(parameters, grads):
        analytic = torch.zeros_like(parameter) if grad is None else grad.detach()
        if analytic.shape != parameter.shape:
            analytic = analytic.sum_to_size(parameter.shape) if analytic.dim() >= parameter.dim() else analytic
        wrong = []
        checked = 0
        flat = parameter.detach().view(-1)
        for i in _elements(parameter):
            original = float(flat[i])
            h = ctx.working_eps ** (1.0 / 3.0) * max(1.0, abs(original))
            values = {}
            for step in (h, -h, h / 2, -h / 2):
                flat[i] = original + step
                values[step] = weighted_sum()
            flat[i] = original
            central = (values[h] - values[-h]) / (2 * h)
            half = (values[h / 2] - values[-h / 2]) / h
            forward_difference, backward_difference = (values[h] - base) / h, (base - values[-h]) / h
            rounding = 8 * ctx.working_eps * max(abs(base), abs(values[h]), abs(values[-h]), abs(original)) / h
            smooth = (abs(forward_difference - backward_difference)
                      <= 0.05 * max(abs(forward_difference), abs(backward_difference)) + 1e-4 + 4 * rounding
                      and abs(central - half) <= 1e-3 * abs(half) + 1e-6 + 8 * rounding)
            if not smooth:
                continue
            checked += 1
            error = abs(float(analytic.reshape(-1)[i]) - central)
            if not error <= ATOL + RTOL * abs(central) + 16 * rounding:
                wrong.append((i, float(analytic.reshape(-1)[i]), central, original))
        if not wrong:
            continue
        i, got, want, value = wrong[0]
        element = f"{name}[{i}]" if parameter.numel() > 1 else name
        missing = " (no gradient reaches it: the backward returns None or the forward detaches it)" if grad is None else ""
        yield PARAMETER_GRADIENT.finding(
            "wrong" if noun == "parameter" else "input-wrong", "fail", audit=ctx, name=repr(name), missing=missing,
            count=len(wrong), checked=checked, element=element, value=number(value), gradient=number(got),
            numerical=number(want), **({"inputs": x.numel()} if noun == "parameter" else {"shape": tuple(x.shape)}), lo=number(float(x.min())),
            hi=number(float(x.max())), dtype="float64", input=None if noun == "parameter" else name,
            examples=[{noun: element, "value": value, "gradient": got, "numerical": want}],
            details={noun: name, "elements_checked": checked, "elements_wrong": len(wrong)})


PARAMETER_GRADIENT = Check(
    code="GA105",
    slug="parameter-gradient",
    status="fail",
    summary="gradient with respect to a module's parameters (or a broadcast input) disagrees with central "
            "differences in float64",
    explanation=(
        "For an nn.Module with parameters that require grad, the module's float64 cast copy is run "
        "on a small input of moderate values; the gradient of a weighted sum of its outputs with "
        "respect to each parameter (up to 16 elements each) is compared with central differences, "
        "where the one-sided differences agree. A parameter that receives no gradient although the "
        "output depends on it fails too. Declared surrogates are reported as info."
    ),
    fix="Fix the parameter's gradient in backward (it must be the sum over the batch of "
    "grad_output times the output's derivative with respect to the parameter), or declare "
    "surrogate=True (--surrogate) if it is deliberate.",
    example="a learnable leaky slope whose gradient sums grad_output * x over every x, not only x <= 0",
    run=run_parameter_gradient,
    location_role="backward",
    surrogate_kinds=("wrong", "input-wrong"),
    messages={
        "wrong": "the gradient with respect to parameter {name}{missing} disagrees with central "
                 "differences in float64 at {count} of {checked} checked elements; e.g. at {element} "
                 "= {value} the backward gives {gradient} and central differences give {numerical} "
                 "(for a weighted sum of the outputs over {inputs} inputs in [{lo}, {hi}]). The module "
                 "trains wrongly even though its input gradients are right. {fix}",
        "input-wrong": "the gradient with respect to the parameter-like input {name}{missing} disagrees with "
                       "central differences in float64 at {count} of {checked} checked elements; e.g. at "
                       "{element} = {value} the backward gives {gradient} and central differences give "
                       "{numerical} (for a weighted sum of the outputs over x of shape {shape} in [{lo}, {hi}]). "
                       "{fix}",
    },
)

CHECKS = [PARAMETER_GRADIENT]
