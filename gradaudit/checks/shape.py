"""GA404: 0-d, empty, non-contiguous, channels-last and batched inputs; outputs with fewer elements.

The probe set is one contiguous 1-D tensor; real inputs are not. A small input of each
audited dtype is laid out in every shape below. No layout may crash, forward or backward.
An elementwise target must give, element by element, the values and gradients of the
contiguous 1-D call, in the input's shape; other targets must give the same result for a
non-contiguous input as for its contiguous copy. Where the two differ by more than a few eps
of the size of the values involved (``|x|``; for other targets the largest ``|x|`` an element
depends on), they are judged against the float64 evaluation of the reference: fail only where
exactly one of them is off it by more than the dtype's tolerance (where both are, the dtype is
too coarse there, GA403's business). Zero signs that differ are info where the float64 value
is itself an exact zero (torch's vectorised and scalar kernels disagree on them); where it is
not, either zero is a rounding of it and no finding. Random forwards are only run; random
backwards have their gradients left uncompared. A target whose output has fewer elements
than its input is an info that says so (and how many input elements it ignores).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from ..engine.calling import CallError, describe_exception
from ..engine.numerics import float32_inside
from ..engine.options import dtype_name
from ..engine.small_inputs import (
    backward_is_random, clause, forward_is_random, identical, known_grad_output, small_input
)
from ..engine.vjp import vjp
from ..model.report import Finding
from . import Check, inputs_layouts
from .layouts_judge import Judge, dependency_scales, once
from .several import INPUT_MESSAGES, with_inputs

if TYPE_CHECKING:
    from ..engine.context import AuditContext

FIX = (
    "Use .reshape instead of .view (or call .contiguous() first), index with [..., i] rather than "
    "assuming a 1-D or row-major layout, create outputs with torch.empty_like(x) or out-of-place "
    "operations, and remember that grad_output can be non-contiguous too."
)


@dataclass(frozen=True)
class Layout:
    """A way of laying out the 1-D small input (120 values) as a real input; ``contiguous``
    layouts have no contiguous copy to compare a non-elementwise target with."""

    name: str
    make: Callable[[torch.Tensor], torch.Tensor]
    contiguous: bool


def _strided(t: torch.Tensor) -> torch.Tensor:
    buffer = torch.zeros(t.numel() * 2, dtype=t.dtype)
    buffer[::2] = t
    return buffer[::2]


LAYOUTS = (
    Layout("0-d", lambda t: t[0].clone(), True),
    Layout("empty (0,)", lambda t: t[:0].clone(), True),
    Layout("empty (3, 0)", lambda t: t[:0].reshape(3, 0).clone(), True),
    Layout("transposed 12x10 (non-contiguous)", lambda t: t.reshape(10, 12).t(), False),
    Layout("strided [::2] (non-contiguous)", _strided, False),
    Layout("channels_last 2x3x4x5", lambda t: t.reshape(2, 3, 4, 5).contiguous(memory_format=torch.channels_last), False),
    Layout("batched 4x5x6", lambda t: t.reshape(4, 5, 6).clone(), True),
)


def _forward_backward(ctx: "AuditContext", make: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor,
                      dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Input, output and gradient (grad_output of ones) with ``values`` laid out by ``make``.

    The input is a non-leaf that requires grad, as a network passes it (so in-place forwards
    behave as they do there); the gradient is taken with respect to the 1-D ``values``.
    """
    leaf = values.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        x = make(leaf * 1.0)
        out = ctx.call(x, dtype=dtype)
        grad = None
        if out.requires_grad:
            grad = vjp(out, leaf, torch.ones_like(out))
    return x.detach(), out.detach(), None if grad is None else grad.detach()


def _fails(ctx: "AuditContext", make: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor,
           dtype: torch.dtype) -> bool:
    try:
        _forward_backward(ctx, make, values, dtype)
    except Exception:
        return True
    return False


def _run(ctx: "AuditContext", make: Callable[[torch.Tensor], torch.Tensor], values: torch.Tensor,
         dtype: torch.dtype) -> tuple[str, str] | tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`_forward_backward`, or ``("fail", words)`` when it raises."""
    try:
        return _forward_backward(ctx, make, values, dtype)
    except CallError as exc:
        return "fail", f"the forward raises {clause(describe_exception(exc.__cause__ or exc))}"
    except Exception as exc:
        return "fail", f"the backward raises {clause(describe_exception(exc))}"


def _problem(ctx: "AuditContext", layout: Layout, values: torch.Tensor, dtype: torch.dtype,
             reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None,
             compare_values: bool) -> tuple[str, str] | None:
    """``(status, words)`` for what goes wrong with ``layout`` in ``dtype``, or None.

    ``reference`` is the contiguous 1-D call for elementwise targets; otherwise the result
    is compared with the same input made contiguous. Random forwards are only run; random
    backwards have their outputs compared, not their gradients.
    """
    contiguous_copy = lambda t: layout.make(t).contiguous()  # noqa: E731
    result = _run(ctx, layout.make, values, dtype)
    if isinstance(result[0], str):
        if reference is None and _fails(ctx, contiguous_copy, values, dtype):
            return None  # the shape itself is unsupported (glu needs an even last dimension)
        return result  # type: ignore[return-value]
    x, out, grad = result  # type: ignore[misc]
    if not compare_values:
        return None
    values64 = values.detach().to(torch.float64)
    if reference is None:
        try:
            _, expected_out, expected_grad = _forward_backward(ctx, contiguous_copy, values, dtype)
        except Exception:
            return None
        where = None
        against = "the same input made contiguous"
        truth = lambda: _forward_backward(ctx, contiguous_copy, values64, torch.float64)[1:]  # noqa: E731
        scales = lambda: dependency_scales(ctx, layout, values)  # noqa: E731
    else:
        expected_out, expected_grad = _laid_out(layout, values, reference[1], reference[2])
        where = x
        against = "the contiguous 1-D call"
        truth = lambda: _laid_out(layout, values64, *_truth64(ctx, values64, dtype))  # noqa: E731
        scales = None  # |x| of the output's and of the gradient's own element, as mismatch() is given
    if out.shape != expected_out.shape:
        words = f"the output has shape {tuple(out.shape)} instead of {tuple(expected_out.shape)}"
        parameter = _one_element_parameter(ctx) if x.dim() == 0 and tuple(out.shape) == (1,) else None
        if parameter is not None:
            return "info", (f"{words}: it broadcasts against the parameter {parameter!r} of shape (1,) "
                            f"(torch.ones(1), as timm's StarReLU); a 0-d parameter, torch.tensor(1.0), keeps "
                            f"a 0-d input 0-d")
        return "fail", words
    inside = torch.float32 if dtype == torch.float64 and float32_inside(ctx) else out.dtype
    judge = Judge(dtype, inside, against, once(truth), scales if scales is None else once(scales))
    problems = [judge.mismatch("output", out, expected_out, x if reference is not None else torch.ones_like(out), where)]
    if expected_grad is not None:
        if grad is None:
            return "fail", "the input receives no gradient"
        problem = judge.mismatch("gradient", grad, expected_grad, values, values)
        if problem is not None and not backward_is_random(ctx):
            problems.append(problem)
    found = [p for p in problems if p is not None]
    found.sort(key=lambda p: p[0] != "fail")
    return found[0] if found else None


def _one_element_parameter(ctx: "AuditContext") -> str | None:
    """The name of a module target's parameter of shape (1,), if it has one."""
    module = ctx.raw_callable_for(torch.float64)
    if isinstance(module, torch.nn.Module):
        return next((name for name, p in module.named_parameters() if tuple(p.shape) == (1,)), None)
    return None


def _truth64(ctx: "AuditContext", values64: torch.Tensor,
             dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The float64 output and gradient of the contiguous 1-D call at ``dtype``'s small input
    (``values64``), for an elementwise target: the same for every layout (computed once)."""
    return ctx.memo(f"shape.truth64.{dtype}", lambda: _forward_backward(ctx, lambda t: t, values64, torch.float64)[1:])


def _laid_out(layout: Layout, values: torch.Tensor, out: torch.Tensor,
              grad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What an elementwise target must give in ``layout``, from its contiguous 1-D ``out`` and
    ``grad``: the layout's elements of ``out``, and ``grad`` where the layout uses the element
    (+0.0 elsewhere), which is what pulling ``layout.make(grad)`` back through the layout gives
    (each element is used at most once, so nothing is summed), without a backward."""
    if grad is None:
        return layout.make(out), None
    used = _used_elements(layout, values.numel())
    return layout.make(out), torch.where(used, grad, torch.zeros((), dtype=grad.dtype))


_USED: dict[tuple[str, int], torch.Tensor] = {}


def _used_elements(layout: Layout, count: int) -> torch.Tensor:
    """Mask of the elements of a 1-D input of ``count`` values that ``layout`` places (cached)."""
    key = (layout.name, count)
    if key not in _USED:
        index = layout.make(torch.arange(count)).reshape(-1)
        if index.unique().numel() != index.numel():
            raise AssertionError(f"layout {layout.name} uses an element twice")
        _USED[key] = torch.zeros(count, dtype=torch.bool).index_fill_(0, index, True)
    return _USED[key]


def _dropped_elements(ctx: "AuditContext") -> Finding | None:
    """GA404 info when the output has fewer elements than the input (on the small float64 input):
    those checks that compare output i with input i cannot judge the target, and input elements
    that affect no output are not audited at all."""
    dtype = torch.float64 if torch.float64 in ctx.options.dtypes else ctx.options.dtypes[0]
    values = small_input(ctx, dtype)
    if not values.numel():
        return None
    leaf = values.detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = ctx.call(leaf * 1.0, dtype=dtype)
            if out.numel() >= values.numel():
                return None
            candidates = torch.ones_like(values, dtype=torch.bool)
            if out.requires_grad:
                weights = known_grad_output(out, ctx.options.seed).abs()
                grad = vjp(out, leaf, weights)
                if grad is not None:
                    candidates = grad == 0
        with torch.no_grad():
            moved = values.detach().clone()
            moved[candidates] = moved[candidates] * 0.75 + 0.3
            if ctx.options.domain is not None:
                moved = moved.clamp(*ctx.options.domain)
            unchanged = ctx.call(moved, dtype=dtype)
    except Exception:
        return None  # a failing target is another check's finding
    ignored = int(candidates.sum()) if unchanged.shape == out.shape and bool(identical(unchanged, out.detach()).all()) else 0
    total, kept = values.numel(), out.numel()
    if ignored:
        first = int(torch.nonzero(candidates).flatten()[0])
        effect = (f"{ignored} of the input elements (e.g. element {first}) affect no output element: the target "
                  f"drops them silently, and no check can audit what it never returns")
    else:
        effect = "every input element affects the output (a pairing or a reduction, as glu's halves)"
    return SHAPE.finding(
        "fewer-outputs", "info", audit=ctx, kept=kept, total=total, shape=tuple(values.shape),
        out_shape=tuple(out.shape), effect=effect, dtype=dtype_name(dtype),
        details={"input_elements": total, "output_elements": kept, "ignored_inputs": ignored})


def run_shape(ctx: "AuditContext") -> Iterator[Finding]:
    elementwise = ctx.elementwise
    compare_values = not forward_is_random(ctx)
    problems: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for dtype in ctx.options.dtypes:
        evaluated = ctx.evaluate(dtype)
        if evaluated.error is not None or (evaluated.grad_error or "").startswith("backward raised"):
            continue  # the dtype itself fails (GA403), or its backward does on the plain probe (GA101)
        values = small_input(ctx, dtype)
        if not values.numel():
            continue  # the dtype cannot represent the domain: GA403 says so
        reference = None
        if elementwise:
            reference = _forward_backward(ctx, lambda t: t, values, dtype)
        for layout in LAYOUTS:
            if not elementwise and layout.contiguous:
                continue
            problem = _problem(ctx, layout, values, dtype, reference, compare_values)
            if problem is not None:
                status, words = problem
                problems.setdefault((layout.name, status), []).append((dtype_name(dtype), words))
    for (name, status), found in problems.items():
        first_dtype, words = found[0]
        others = [d for d, _ in found[1:]]
        also = f" (also in {', '.join(others)})" if others else ""
        yield SHAPE.finding(
            "layout" if status == "fail" else "layout-info", status, audit=ctx, layout=name, also=also,
            problem=words, dtype=first_dtype,
            details={"layout": name, "dtypes": [d for d, _ in found]})
    if not elementwise:
        dropped = _dropped_elements(ctx)
        if dropped is not None:
            yield dropped



def _run_shape_and_grad_outputs(ctx: "AuditContext") -> Iterator[Finding]:
    """x's layouts, then grad_output's (every target: the backward must take any layout). x's
    layouts are skipped where a partner input is not elementwise (``x * gate.sum()``): the
    section along x, which holds the partner at ones of x's shape, is another function on each
    shape, so layouts of it would differ without a defect; and where x is laid out against
    parameter-like inputs, the section would flatten them (the layouts of that x are the
    several-input run's)."""
    from ..engine.sections import elementwise_partners

    binding = ctx.binding
    if binding.layout is None and (not binding.partners or not ctx.elementwise
                                   or len(elementwise_partners(ctx)) == len(binding.partners)):
        yield from run_shape(ctx)  # against parameter-like inputs, x's layouts are run_broadcast_layouts
    yield from inputs_layouts.run_grad_output_layouts(ctx, SHAPE)


SHAPE = Check(
    code="GA404",
    slug="shape",
    status="fail / info",
    summary="crashes or differs on 0-d, empty, non-contiguous, channels-last or batched inputs",
    explanation=(
        "A small input of each audited dtype is laid out as a 0-d tensor, empty tensors, a "
        "transposed and a strided (non-contiguous) tensor, a channels_last 4-D tensor and a "
        "batched 3-D tensor, and run forward and backward. Nothing may crash. An elementwise "
        "target must return the input's shape and, element by element, the values and gradients "
        "of the contiguous 1-D call; other targets must give the same result as on the contiguous "
        "copy. Differences beyond a few eps of the values involved are judged against float64: "
        "they fail only where one of the two results is off the float64 value by more than the "
        "dtype's tolerance and the other is not. Zero signs that differ where the float64 value is "
        "an exact zero are info (torch's vectorised and scalar kernels disagree on them); random "
        "forwards are only run, random backwards' gradients not compared. An output with fewer "
        "elements than the input is info, with the number of input elements no output depends on."
    ),
    fix=FIX,
    example="x.view(-1) in forward crashes on a transposed input",
    run=with_inputs(_run_shape_and_grad_outputs, lambda ctx: inputs_layouts.run_broadcast_layouts(ctx, SHAPE)),
    messages={
        **INPUT_MESSAGES["GA404"],
        "layout": "on a {layout} {dtype} input{also}, {problem}. Real inputs come in every layout. {fix}",
        "layout-info": "on a {layout} {dtype} input{also}, {problem}. Shown for information.",
        "fewer-outputs": "the output has {kept} elements for an input of {total} ({dtype}, shape {shape} to "
                         "{out_shape}): {effect}. Checks that relate output element i to input element i "
                         "(kinks, intervals of inputs) judge such a target as a whole. Shown for "
                         "information; if the target is not meant to drop or combine elements, return a "
                         "tensor of the input's shape.",
    },
)

CHECKS = [SHAPE]
