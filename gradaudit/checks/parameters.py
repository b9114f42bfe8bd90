"""GA105: gradients with respect to a module's parameters.

GA101 judges the gradient with respect to the input; a module with parameters (nn.PReLU's
weight, a learnable beta) also needs correct gradients for them, or it trains wrongly
while every input gradient looks fine. In the module's float64 cast copy, the gradient of a
weighted sum of the outputs over a small moderate input is compared, parameter element by
element, with central differences.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from ..engine.messages import number
from ..engine.numerics import ATOL, EPS64, RTOL, STEP
from ..engine.small_inputs import known_grad_output, small_input
from ..model.report import Finding
from . import Check

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
    module = ctx.callable_for(torch.float64)
    if not isinstance(module, torch.nn.Module):
        return
    parameters = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    if not parameters:
        return
    x = small_input(ctx, torch.float64, moderate=True)
    with torch.enable_grad():
        out = ctx.call(x.clone())
        weights = known_grad_output(out, ctx.options.seed)
        loss = (out * weights).sum()
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, [p for _, p in parameters], allow_unused=True)
        else:  # the forward detaches every parameter
            grads = tuple(None for _ in parameters)

    def weighted_sum() -> float:
        with torch.no_grad():
            return float((ctx.call(x.clone()) * weights).sum())

    base = float(loss.detach())
    for (name, parameter), grad in zip(parameters, grads):
        analytic = torch.zeros_like(parameter) if grad is None else grad.detach()
        wrong = []
        checked = 0
        flat = parameter.detach().view(-1)
        for i in _elements(parameter):
            original = float(flat[i])
            h = STEP * max(1.0, abs(original))
            values = {}
            for step in (h, -h, h / 2, -h / 2):
                flat[i] = original + step
                values[step] = weighted_sum()
            flat[i] = original
            central = (values[h] - values[-h]) / (2 * h)
            half = (values[h / 2] - values[-h / 2]) / h
            forward, backward = (values[h] - base) / h, (base - values[-h]) / h
            rounding = 8 * EPS64 * max(abs(base), abs(values[h]), abs(values[-h])) / h
            smooth = (abs(forward - backward) <= 0.05 * max(abs(forward), abs(backward)) + 1e-4 + 4 * rounding
                      and abs(central - half) <= 1e-3 * abs(half) + 1e-6 + 8 * rounding)
            if not smooth:
                continue
            checked += 1
            error = abs(float(analytic.view(-1)[i]) - central)
            if not error <= ATOL + RTOL * abs(central) + 16 * rounding:
                wrong.append((i, float(analytic.view(-1)[i]), central, original))
        if not wrong:
            continue
        i, got, want, value = wrong[0]
        element = f"{name}[{i}]" if parameter.numel() > 1 else name
        missing = " (no gradient reaches it: the backward returns None or the forward detaches it)" if grad is None else ""
        yield PARAMETER_GRADIENT.finding(
            "wrong", "fail", audit=ctx, name=repr(name), missing=missing, count=len(wrong), checked=checked,
            element=element, value=number(value), gradient=number(got), numerical=number(want),
            inputs=x.numel(), lo=number(float(x.min())), hi=number(float(x.max())), dtype="float64",
            examples=[{"parameter": element, "value": value, "gradient": got, "numerical": want}],
            details={"parameter": name, "elements_checked": checked, "elements_wrong": len(wrong)})


PARAMETER_GRADIENT = Check(
    code="GA105",
    slug="parameter-gradient",
    status="fail",
    summary="gradient with respect to a module's parameters disagrees with central differences in float64",
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
    surrogate_kinds=("wrong",),
    messages={
        "wrong": "the gradient with respect to parameter {name}{missing} disagrees with central "
                 "differences in float64 at {count} of {checked} checked elements; e.g. at {element} "
                 "= {value} the backward gives {gradient} and central differences give {numerical} "
                 "(for a weighted sum of the outputs over {inputs} inputs in [{lo}, {hi}]). The module "
                 "trains wrongly even though its input gradients are right. {fix}",
    },
)

CHECKS = [PARAMETER_GRADIENT]
