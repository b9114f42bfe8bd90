"""GA104: usable under ``torch.func.vmap`` and ``torch.func.grad``.

On a small float64 input: vmap over a batch of 4 rows must match calling the target row by
row, and ``torch.func.grad`` of a weighted sum must match ``torch.autograd.grad``. What
is missing when they are not usable (setup_context, a vmap staticmethod or
generate_vmap_rule) is named.

A ``torch.library`` custom op with no batching rule (no ``register_vmap``, no
CompositeImplicitAutograd kernel) is one info, and vmap is not run on it: torch would loop over
the batch and print a C++ "batching rule not implemented" warning on stderr.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from ..engine.small_inputs import clause, close, describe_mismatch, known_grad_output, small_input
from ..engine.vjp import vjp
from ..model.report import Finding
from ..targets.types import is_custom_op, op_qualname
from . import Check
from .forward_ad import own_method, transform_error

if TYPE_CHECKING:
    from ..engine.context import AuditContext

BATCH = 4
TOLERANCE_UNITS = 4
SAVED_TENSORS_HOOKS_MESSAGE = ("torch.func.{grad, vjp, jacrev, hessian} don't yet support saved tensor hooks. "
                               "Please open an issue with your use case.")
"""What torch.func.grad says when saved-tensor hooks are active (its own text)."""


def _grad_steps() -> tuple[Callable, ...] | None:
    """The pieces torch.func.grad is made of (torch._functorch.eager_transforms), or None
    where this torch does not have them under these names."""
    try:
        from torch._functorch import eager_transforms as steps

        return (steps.grad_increment_nesting, steps._wrap_all_tensors, steps._create_differentiable,
                steps._undo_create_differentiable)
    except (ImportError, AttributeError):  # pragma: no cover - another torch
        return None


def func_grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``torch.func.grad(fn)(x)``, without importing ``torch._dynamo`` where nothing has yet.

    torch.func.grad runs its backward inside ``torch._dynamo.compiled_autograd._disable()``,
    and that attribute access imports torch._dynamo: about 1 s, most of the first audit of a
    run. Compiled autograd can only be switched on through torch._dynamo, so while that
    module was never imported the guard has nothing to disable; the steps of torch.func.grad
    (``grad_and_value_impl``: a grad level, the input wrapped and made differentiable, the
    function called, ``torch.autograd.grad`` with create_graph, the result unwrapped) run
    here without it. Once torch._dynamo is loaded, or where this torch's internals are not
    the ones expected, torch.func.grad itself runs.
    """
    steps = None if "torch._dynamo" in sys.modules else _grad_steps()
    if steps is None:
        return torch.func.grad(fn)(x)
    nesting, wrap, make_differentiable, unwrap = steps
    with torch.autograd.graph.disable_saved_tensors_hooks(SAVED_TENSORS_HOOKS_MESSAGE):
        with nesting() as level, torch.enable_grad():
            (inner,) = wrap((x,), level)
            make_differentiable(inner, level)
            output = fn(inner)
            if not isinstance(output, torch.Tensor) or output.dim() != 0:
                return torch.func.grad(fn)(x)  # torch's own error (fn is a sum here: never taken)
            grad = None
            if output.requires_grad:
                (grad,) = torch.autograd.grad((output,), (inner,), None, retain_graph=False,
                                              create_graph=True, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(inner)
            return unwrap(grad, level)


CUSTOM_OP_GRAD = ("torch.library custom ops run their register_autograd formula inside an autograd.Function "
                  "without setup_context, which torch.func.grad, jacrev and hessian do not support in this "
                  "torch: nothing registered on the op can change that (torch.autograd.grad works). Where "
                  "torch.func must differentiate through it, call the PyTorch operations the op computes "
                  "instead of the op.")


def has_no_vmap_rule(obj: object) -> bool:
    """Whether ``obj`` is a custom op that vmap could batch only through torch's slow fallback
    (no register_vmap rule, no CompositeImplicitAutograd kernel to decompose into)."""
    if not is_custom_op(obj):
        return False
    qualname = op_qualname(obj)
    try:
        return not any(torch._C._dispatch_has_kernel_for_dispatch_key(qualname, key)
                       for key in ("FuncTorchBatched", "CompositeImplicitAutograd"))
    except RuntimeError:  # not registered with the dispatcher under that name
        return False


def missing_piece(ctx: "AuditContext", transform: str, error: str) -> tuple[str, list[str]]:
    """What to add so that ``transform`` works, in words and as names (``setup_context``,
    ``vmap``: a vmap staticmethod or generate_vmap_rule), from the target's class and the error."""
    obj = ctx.target.obj
    if ctx.target.kind == "custom op":
        if transform == "vmap":
            return ("Register a batching rule with op.register_vmap(...)."), ["register_vmap"]
        return CUSTOM_OP_GRAD, []
    is_function = isinstance(obj, type) and issubclass(obj, torch.autograd.Function)
    if (is_function and own_method(obj, "setup_context") is None) or "setup_context" in error:
        return ("Add a setup_context staticmethod: forward(x) without ctx, and "
                "setup_context(ctx, inputs, output) saving what backward needs; torch.func "
                "transforms require it."), ["setup_context"]
    if transform == "vmap" and (is_function or "vmap staticmethod" in error or "generate_vmap_rule" in error):
        return ("Set generate_vmap_rule = True on the autograd.Function (when forward, setup_context "
                "and backward use only PyTorch operations), or write a vmap staticmethod."), ["vmap"]
    if "random" in error:
        return ("The target draws random numbers; pass randomness='different' (or 'same') to "
                "torch.func.vmap, or make it deterministic."), []
    return ("An operation inside has no batching rule or is data-dependent (.item(), Python "
            "control flow on values, in-place writes into an unbatched tensor); express it with "
            "batched tensor operations."), []


def _agree(actual: torch.Tensor, expected: torch.Tensor, x: torch.Tensor | None,
           computed_in: torch.dtype) -> torch.Tensor | None:
    """Elementwise agreement within a few eps of ``computed_in``, the target's output dtype
    (kernels may take another path under vmap); None when the shapes differ."""
    if actual.shape != expected.shape:
        return None
    scale = x if x is not None and x.shape == actual.shape else torch.ones_like(expected)
    eps = torch.finfo(computed_in).eps if computed_in.is_floating_point else 0.0
    return close(actual, expected, scale, eps, TOLERANCE_UNITS, signed_zeros=False)


def run_vmap(ctx: "AuditContext") -> Iterator[Finding]:
    location = ctx.target.source("forward")
    values = small_input(ctx, torch.float64)
    rows = values.reshape(BATCH, -1)
    if has_no_vmap_rule(ctx.target.obj):
        yield VMAP.finding("no-vmap-rule", "info", audit=ctx, op=op_qualname(ctx.target.obj), dtype="float64",
                           location=location, details={"transform": "vmap", "missing": ["register_vmap"]})
        yield from _func_grad(ctx, values, location)
        return
    with torch.no_grad():
        expected = torch.stack([ctx.call(row.clone()) for row in rows])
    try:
        batched = torch.func.vmap(lambda t: ctx.call(t))(rows.clone())
    except Exception as exc:
        error = transform_error(exc)
        advice, missing = missing_piece(ctx, "vmap", error)
        yield VMAP.finding("vmap-raises", "info", audit=ctx, reason=clause(error), advice=advice, dtype="float64",
                           location=location, details={"transform": "vmap", "missing": missing})
    else:
        agree = _agree(batched.detach(), expected, rows, expected.dtype)
        if agree is None or not bool(agree.all()):
            how = (f"shape {tuple(batched.shape)} instead of {tuple(expected.shape)}" if agree is None
                   else describe_mismatch(batched.detach(), expected, rows if ctx.elementwise else None, agree))
            yield VMAP.finding("vmap-differs", "info", audit=ctx, rows=BATCH, how=how, dtype="float64", location=location,
                               details={"transform": "vmap", "missing": []})
    yield from _func_grad(ctx, values, location)


def _func_grad(ctx: "AuditContext", values: torch.Tensor, location: dict | None) -> Iterator[Finding]:
    """``torch.func.grad`` of a weighted sum against ``torch.autograd.grad``."""
    leaf = values.clone().requires_grad_(True)
    with torch.enable_grad():
        out = ctx.call(leaf.clone())
        if not out.requires_grad:
            return
        weights = known_grad_output(out, ctx.options.seed)
        try:
            expected = vjp(out, leaf, weights)
        except Exception:  # a failing backward is GA101's finding
            return
    if expected is None:
        return
    try:
        got = func_grad(lambda t: (ctx.call(t) * weights).sum(), values.clone())
    except Exception as exc:
        error = transform_error(exc)
        advice, missing = missing_piece(ctx, "grad", error)
        yield VMAP.finding("grad-raises", "info", audit=ctx, reason=clause(error), advice=advice, dtype="float64",
                           location=location, details={"transform": "grad", "missing": missing})
        return
    agree = _agree(got.detach(), expected, values, out.dtype)
    if agree is None or not bool(agree.all()):
        how = "a different shape" if agree is None else describe_mismatch(got.detach(), expected, values, agree)
        yield VMAP.finding("grad-differs", "info", audit=ctx, how=how, dtype="float64", location=ctx.target.source("backward"),
                      details={"transform": "grad", "missing": []})


VMAP = Check(
    code="GA104",
    slug="vmap",
    status="info",
    summary="not usable under torch.func.vmap / torch.func.grad",
    explanation=(
        "On a small float64 input, torch.func.vmap over a batch of 4 rows must equal calling the "
        "target row by row, and torch.func.grad of a weighted sum must equal torch.autograd.grad. "
        "An autograd.Function needs a setup_context staticmethod for any torch.func transform, "
        "and generate_vmap_rule = True or a vmap staticmethod for vmap; the finding names the "
        "missing piece."
    ),
    fix="Give the autograd.Function setup_context and generate_vmap_rule = True (or a vmap "
    "staticmethod).",
    example="class F(Function): forward(ctx, x) ... -> needs setup_context for torch.func",
    run=run_vmap,
    fixes={"custom op": "Register a batching rule with op.register_vmap(...); torch.func.grad cannot "
                        "differentiate a torch.library custom op in this torch."},
    messages={
        "no-vmap-rule": "the custom op {op} has no batching rule: under torch.func.vmap torch falls back "
                        "to a slow loop over the batch (and prints a \"batching rule not implemented\" "
                        "warning). {fix}",
        "vmap-raises": "not usable under torch.func.vmap: it raises {reason}. Per-sample gradients, "
                       "ensembling and jacrev need vmap. {advice}",
        "vmap-differs": "torch.func.vmap over a batch of {rows} rows gives different outputs from calling "
                        "the target row by row ({how}): the batching rule (a vmap staticmethod, or a "
                        "forward that mixes rows) is wrong. Make vmap(f)(x)[i] equal f(x[i]).",
        "grad-raises": "not usable under torch.func.grad: it raises {reason}. {advice}",
        "grad-differs": "torch.func.grad gives different gradients from torch.autograd.grad ({how}). The "
                        "backward behaves differently under torch.func (it may read global state or "
                        "detach through .data); make it a pure function of its saved tensors and "
                        "grad_output.",
    },
)

CHECKS = [VMAP]
