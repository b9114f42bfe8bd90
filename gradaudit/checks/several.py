"""What the checks share about targets with several tensor inputs: the message templates of
their findings by check code (each check's ``messages`` includes its entry, so the kinds are
declared where the check is), and :func:`with_inputs`, which runs a check's several-input part
after its one-input run. Not a check module: it defines no ``CHECKS``."""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Iterator

POINT = "at {count} of {total} pairs of the two-dimensional probe of x and {partner!r} ({where}); e.g. at {at}"

INPUT_MESSAGES: dict[str, dict[str, str]] = {
    "GA101": {
        "grad-output-linearity": "the backward is not linear in grad_output: for a grad_output of random values "
                                 "and for twice it (x of shape {shape}, {dtype}), it {what}. It ignores or "
                                 "transforms grad_output's values (assumes all ones, clips or normalises them), "
                                 "so every caller but loss.backward() gets wrong gradients. Multiply by "
                                 "grad_output; declare surrogate=True if the transformation is deliberate.",
    },
    "GA201": {
        "input-output": "the output is {value} in {dtype} " + POINT + ", where the float64 value is "
                        "{exact} and fits in {dtype}. {fix}",
    },
    "GA202": {
        "input-gradient": "the gradient with respect to {name} is {value} in {dtype} " + POINT + ", where the "
                          "float64 gradient is {exact} and fits in {dtype}. {fix}",
    },
    "GA203": {
        "input-spurious": "the forward creates -0.0 in {dtype} " + POINT + " gives -0.0, where no input is "
                          "-0.0 and the function is exactly zero around that point in every input. -0.0 == 0.0, "
                          "so allclose and gradcheck cannot see it, but atan2, 1/x, copysign and sign tests can. "
                          "{fix}",
        "input-propagated": "the forward gives -0.0 in {dtype} " + POINT + ", where the function is not "
                            "exactly zero around that point (the sign of a vanishing product or an underflow). "
                            "Shown for information.",
    },
    "GA204": {
        "input-spurious": "the backward creates -0.0 in the gradient with respect to {name} in {dtype} "
                          "for grad_output {sign} " + POINT + " gives -0.0, where no input is -0.0 and that "
                          "gradient is exactly zero around the point. {fix}",
        "input-propagated": "the backward gives -0.0 in the gradient with respect to {name} in {dtype} for "
                            "grad_output {sign} " + POINT + ", where that gradient is not exactly zero around "
                            "the point (a vanishing product or an underflow). Shown for information.",
    },
    "GA403": {
        "input-gradient-dtype": "the gradient with respect to {name} is {got} for a {dtype} input: the backward "
                                "changes the dtype (a hard-coded .float() or a constant created without "
                                "dtype=), so the optimizer step and downstream layers run in another precision. "
                                "Return each gradient in its input's dtype: .to(input.dtype).",
    },
    "GA401": {
        "backward-mutates-input": "the backward modifies the target's inputs in place: after "
                                  "torch.autograd.grad on float64 inputs, {change}. A backward that writes its "
                                  "gradients into its saved inputs to reuse their memory overwrites the caller's "
                                  "activations (the version counter does not see a kernel's writes). Compute the "
                                  "gradients into new tensors, or clone the inputs before saving them.",
    },
    "GA404": {
        "grad-output-layout": "the backward {what} for {layout} (x of shape {shape}, {dtype}), against a "
                              "contiguous grad_output of the same values{difference}. autograd hands "
                              "backward expanded grad_outputs (from .sum() or a broadcast) and strided ones "
                              "(from a transpose or a slice). Use .reshape instead of .view, make no "
                              "assumption about strides (.contiguous() where a kernel needs it), and "
                              "multiply by grad_output rather than assuming it is all ones.",
        "x-layout": "with x {layout} and {name} of shape {input_shape} broadcast against it, {what} ({dtype}), "
                    "where a contiguous x of the same values works. {fix}",
        "broadcast-layout": "with x of shape {shape} and {name} of shape {input_shape} broadcast against it, "
                            "{what} ({dtype}), where the same values laid out as {flat} work. A reduction "
                            "written for 2-D input (.sum(0)) or a .view that assumes it breaks on (B, T, C). "
                            "Reduce over every broadcast dimension: grad.sum_to_size(bias.shape), or "
                            "grad.reshape(-1, C).sum(0).",
    },
}
"""Kinds by check code; ``{fix}`` is the check's own fix."""


def with_inputs(run: Callable[[Any], Iterable[Any]], several: Callable[[Any], Iterable[Any]]) -> Callable[[Any], Iterator[Any]]:
    """A check's run followed, for a target with several tensor inputs, by ``several``: what the
    check finds about each input (the findings of the one-input run are about the section along x)."""

    @functools.wraps(run)
    def run_all(ctx: Any) -> Iterator[Any]:
        yield from run(ctx)
        if ctx.binding.several:
            yield from several(ctx)

    return run_all
