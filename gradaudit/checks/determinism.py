"""GA402: a backward that is not reentrant, and random forwards or backwards.

A second backward over the same graph (``retain_graph=True``) with the same grad_output and
the same RNG state must give the same gradient; when it does not, the backward changed
state it relies on, typically a tensor stashed on ctx and multiplied in place (fail).
Forwards and backwards that draw random numbers are reported as warn.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from ..engine.calling import describe_exception
from ..engine.messages import example_index, number
from ..engine.small_inputs import clause, forward_is_random, identical, known_grad_output, small_input, two_forwards
from ..engine.vjp import vjp
from ..model.report import Finding
from . import Check

if TYPE_CHECKING:
    from ..engine.context import AuditContext

FIX_REENTRANT = (
    "Leave what the forward saved untouched in backward: compute out of place "
    "(return grad_output * ctx.derivative, not ctx.derivative.mul_(grad_output)), and keep "
    "tensors in ctx.save_for_backward, which makes autograd raise on later in-place changes."
)
STOCHASTIC_NOTE = (
    "That is expected of stochastic activations such as nn.RReLU or dropout in training mode "
    "(audit module.eval() for the deterministic mode, or ignore GA402 for this target); "
    "otherwise the randomness is a bug: remove it or take a torch.Generator argument."
)


def _differences(first: torch.Tensor, second: torch.Tensor, x: torch.Tensor) -> tuple[int, str]:
    """How many elements differ, and the most readable one as words."""
    same = identical(first, second)
    count = int((~same).sum())
    if count == 0:
        return 0, ""
    if first.shape == x.shape:
        i = example_index(x.reshape(-1), ~same.reshape(-1))
        at = f" at x = {number(float(x.reshape(-1)[i]))}"
    else:
        i = int(torch.nonzero(~same.reshape(-1)).flatten()[0])
        at = f" at output element {i}"
    return count, (f"{number(float(first.reshape(-1)[i]))} then {number(float(second.reshape(-1)[i]))}{at}")


def _backward_findings(ctx: "AuditContext", values: torch.Tensor) -> Iterator[Finding]:
    location = ctx.target.source("backward")
    seed = ctx.options.seed
    leaf = values.clone().requires_grad_(True)
    with torch.enable_grad():
        out = ctx.call(leaf * 1.0)
        if not out.requires_grad:
            return
        grad_output = known_grad_output(out, seed)

        def backward() -> torch.Tensor:
            grad = vjp(out, leaf, grad_output.clone(), retain_graph=True)
            return torch.zeros_like(leaf) if grad is None else grad.detach().clone()

        torch.default_generator.manual_seed(seed)  # the CPU generator: torch.manual_seed formats a stack per call
        try:
            first = backward()
        except Exception:  # a failing backward is GA101's finding
            return
        torch.default_generator.manual_seed(seed)  # the CPU generator: torch.manual_seed formats a stack per call
        try:
            second = backward()
        except Exception as exc:
            yield DETERMINISM.finding("second-backward-raises", "fail", audit=ctx, reason=clause(describe_exception(exc)),
                                      dtype="float64", location=location)
            return
        count, example = _differences(first, second, values)
        if count:
            yield DETERMINISM.finding(
                "not-reentrant", "fail", audit=ctx, count=count, total=first.numel(), example=example,
                dtype="float64", location=location,
                details={"count": count, "checked": first.numel()})
            return
        third = backward()  # the RNG has moved on only if the backward drew from it
    count, example = _differences(first, third, values)
    if count:
        yield DETERMINISM.finding(
            "random-backward", "warn", audit=ctx, count=count, total=first.numel(), example=example,
            dtype="float64", location=location, details={"count": count, "checked": first.numel()})


def _forward_findings(ctx: "AuditContext", values: torch.Tensor) -> Iterator[Finding]:
    if not forward_is_random(ctx):
        return
    first, second = two_forwards(ctx)
    if first.shape != second.shape:
        count, example = first.numel(), f"shape {tuple(first.shape)} then {tuple(second.shape)}"
    else:
        count, example = _differences(first, second, values)
    yield DETERMINISM.finding(
        "random-forward", "warn", audit=ctx, count=count, total=first.numel(), example=example, dtype="float64",
        details={"count": count, "checked": first.numel()})


def run_determinism(ctx: "AuditContext") -> Iterator[Finding]:
    values = small_input(ctx, torch.float64)
    yield from _backward_findings(ctx, values)
    yield from _forward_findings(ctx, values)


DETERMINISM = Check(
    code="GA402",
    slug="determinism",
    status="fail / warn",
    summary="backward not reentrant (fail); forward or backward random (warn)",
    explanation=(
        "On a small float64 input the backward runs twice over the same graph with "
        "retain_graph=True, the same grad_output (values other than +-1) and the same RNG state: "
        "the gradients must be identical, or the backward is not reentrant (fail), as when it "
        "multiplies a tensor stashed on ctx in place. A third backward with the RNG moved on, and "
        "two forwards on the same input without reseeding, find random backwards and forwards "
        "(warn); stochastic activations such as RReLU in training mode are random by design."
    ),
    fixes={"custom op": "Leave what setup_context saved untouched in register_autograd's backward: compute out of "
                        "place (return grad * ctx.derivative, not ctx.derivative.mul_(grad)), and save tensors "
                        "with ctx.save_for_backward in setup_context, which makes autograd raise on later in-place "
                        "changes."},
    fix=FIX_REENTRANT,
    example="backward returns ctx.derivative.mul_(grad_output)",
    run=run_determinism,
    messages={
        "second-backward-raises": "the backward is not reentrant: a second backward over the same graph "
                                  "(retain_graph=True, same grad_output) raises {reason}. The first "
                                  "backward changed something the graph needs. {fix}",
        "not-reentrant": "the backward is not reentrant: a second backward over the same graph "
                         "(retain_graph=True, same grad_output, same RNG state) gives different gradients "
                         "at {count} of {total} float64 inputs (e.g. {example}). The first backward "
                         "changed state that the second relies on, typically a tensor kept on ctx and "
                         "modified in place; torch.autograd.grad(..., create_graph=True), gradient "
                         "penalties and retain_graph users get wrong results. {fix}",
        "random-backward": "the backward is random: over the same graph with the same grad_output it gives "
                           "different gradients when the global RNG state differs ({count} of {total} "
                           "float64 inputs, e.g. {example}). A gradient should be a function of the saved "
                           "forward state; save the random draws (the mask or noise) in forward and "
                           "reuse them.",
        "random-forward": "the forward is random: two calls on the same float64 input give different "
                          "outputs at {count} of {total} elements (e.g. {example}). " + STOCHASTIC_NOTE
                          + " gradaudit reseeds the global RNG before each call, so its other checks "
                          "compare like with like.",
    },
)

CHECKS = [DETERMINISM]
