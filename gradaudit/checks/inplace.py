"""GA401: the forward mutates its input, or the backward mutates grad_output.

Both are invisible to gradcheck, which never looks at its inputs or grad_outputs again
(pytorch/pytorch#81417). Each is found with one pass over a small input.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch

from ..engine.messages import example_index, number
from ..engine.small_inputs import identical, known_grad_output, small_input
from ..engine.vjp import vjps
from ..model.report import Finding
from . import Check
from .several import INPUT_MESSAGES

if TYPE_CHECKING:
    from ..engine.context import AuditContext

FIX_FORWARD = (
    "Compute out of place (torch.relu(x) or x.clamp(min=0) instead of x.relu_(), or clone "
    "first: x = x.clone()). In an autograd.Function that must work in place, call "
    "ctx.mark_dirty(x) and return x, so autograd knows; if mutating the caller's tensor is "
    "deliberate (nn.ReLU(inplace=True)), ignore GA401 for this target."
)
CUSTOM_OP_FORWARD = (
    "Compute out of place (x.clamp(min=0), not x.clamp_(min=0)), or declare the input the op writes to in "
    "mutates_args=(\"x\",) and return a new tensor (a custom op may not return its input or a view of it)."
)
FIX_BACKWARD = (
    "Do not write into grad_output: start from grad_output.clone(), or compute out of place, "
    "e.g. torch.where(mask, grad_output, torch.zeros_like(grad_output)). autograd may hand the "
    "same grad_output to other backward functions, and callers of torch.autograd.grad keep "
    "using the tensor they passed."
)


def _change(before: torch.Tensor, after: torch.Tensor, version_before: int, version_after: int, noun: str) -> str | None:
    """Words for how ``after`` differs from ``before``, or None when it does not."""
    same = identical(before, after.detach())
    changed = int((~same).sum())
    if changed == 0 and version_after == version_before:
        return None
    words = f"{noun}._version went from {version_before} to {version_after}"
    if changed:
        i = example_index(before.reshape(-1), ~same.reshape(-1))
        words += (f" and {changed} of {same.numel()} values changed (e.g. {number(float(before.reshape(-1)[i]))} "
                  f"became {number(float(after.detach().reshape(-1)[i]))})")
    else:
        words += " (the values happen to be unchanged, but autograd now rejects every saved use of it)"
    return words


def _inputs(ctx: "AuditContext", values: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Leaves and the non-leaf tensors the target is given (as a network passes activations):
    x, and each differentiable extra input of a target with several (a partner gets x's values
    in another order, a parameter-like input values around 1)."""
    binding = ctx.binding
    leaves = {"x": values.clone().requires_grad_(True)}
    leaves.update((name, value) for name, value in binding.example(values).items()
                  if isinstance(value, torch.Tensor) and value.requires_grad)
    given = {name: leaf * 1.0 for name, leaf in leaves.items()}
    if binding.several:
        given["x"] = binding.lay_out(given["x"])
        for extra in binding.partners:
            given[extra.name] = binding.lay_out(given[extra.name])
    return leaves, given


def _call(ctx: "AuditContext", given: dict[str, torch.Tensor]) -> torch.Tensor:
    binding = ctx.binding
    if not binding.several:
        return ctx.call(given["x"])
    x = given["x"]
    values = {e.name: given.get(e.name, binding.fill(e, x)) for e in binding.extras}
    return binding.call(ctx.raw_callable_for(torch.float64), x, values)


def _label(name: str) -> str | None:
    return None if name == "x" else name


def run_inplace(ctx: "AuditContext") -> Iterator[Finding]:
    values = small_input(ctx, torch.float64)
    with torch.enable_grad():
        leaves, given = _inputs(ctx, values)
        before = {name: (t.detach().clone(), t._version) for name, t in given.items()}
        out = _call(ctx, given)
        for name, tensor in given.items():
            change = _change(before[name][0], tensor, before[name][1], tensor._version, name)
            if change is not None:
                yield INPLACE.finding(
                    "forward-mutates-input", "fail", audit=ctx, change=change, dtype="float64", input=_label(name),
                    advice=CUSTOM_OP_FORWARD if ctx.target.kind == "custom op" else FIX_FORWARD,
                    details={"version_before": before[name][1], "version_after": tensor._version},
                )
                return
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return
        grad_output = known_grad_output(out, ctx.options.seed)
        g_before, g_version = grad_output.clone(), grad_output._version
        after_forward = {name: (t.detach().clone(), t._version) for name, t in given.items()}
        try:
            vjps([out], list(leaves.values()), [grad_output])
        except Exception:  # a failing backward is GA101's finding
            return
    change = _change(g_before, grad_output, g_version, grad_output._version, "grad_output")
    if change is not None:
        yield INPLACE.finding(
            "backward-mutates-grad-output", "fail", audit=ctx, change=change, dtype="float64",
            location=ctx.target.source("backward"),
            details={"version_before": g_version, "version_after": grad_output._version},
        )
    for name, tensor in given.items():
        change = _change(after_forward[name][0], tensor, after_forward[name][1], tensor._version, name)
        if change is not None:
            yield INPLACE.finding(
                "backward-mutates-input", "fail", audit=ctx, change=change, dtype="float64", input=_label(name),
                location=ctx.target.source("backward"),
                details={"version_before": after_forward[name][1], "version_after": tensor._version},
            )


INPLACE = Check(
    code="GA401",
    slug="inplace",
    status="fail",
    summary="the forward mutates its input, or the backward mutates grad_output or its inputs",
    explanation=(
        "The target is called on a non-leaf float64 tensor that requires grad, as a network "
        "passes activations; its values and its _version counter must be unchanged afterwards. "
        "Then a known grad_output (values of both signs, not +-1) is passed through "
        "torch.autograd.grad; it too must be unchanged. gradcheck never looks at either again, "
        "so it misses both (pytorch/pytorch#81417). After the backward every input the target was "
        "given must still hold its values too (compared by value: a kernel's writes do not bump the "
        "version counter). Targets with several inputs get each of them as a non-leaf tensor."
    ),
    fixes={"custom op": CUSTOM_OP_FORWARD + " " + FIX_BACKWARD},
    fix=FIX_FORWARD + " " + FIX_BACKWARD,
    example="forward calls x.relu_(); backward does grad_output[x < 0] = 0",
    run=run_inplace,
    messages={
        "forward-mutates-input": "the forward modifies its input in place: called on a float64 tensor "
                                 "that requires grad (a non-leaf, as in a network), {change}. The "
                                 "caller's tensor is overwritten, and anything else that saved it for "
                                 "backward computes wrong gradients or raises. {advice}",
        "backward-mutates-grad-output": "the backward modifies grad_output in place: after "
                                        "torch.autograd.grad(y, x, grad_output) on a float64 input, "
                                        "{change}. " + FIX_BACKWARD,
        **INPUT_MESSAGES["GA401"],
    },
)

CHECKS = [INPLACE]
