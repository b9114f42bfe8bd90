"""GA103: forward-mode AD (``torch.func.jvp``) against the backward.

For an elementwise target the Jacobian is diagonal, so the jvp with a tangent of ones and
the vjp with a grad_output of ones are the same vector: they are compared at every float64
probe point except exactly at kinks, where conventions may legitimately differ. Other
targets compare J v from jvp with the Jacobian built by backward on a small input.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch

from ..engine.calling import CallError, describe_exception
from ..engine.messages import describe_intervals, example_index, intervals, number
from ..engine.small_inputs import clause, small_matrix
from ..model.report import Finding
from . import Check

if TYPE_CHECKING:
    from ..engine.context import AuditContext

RTOL, ATOL = 1e-6, 1e-9
"""Two analytic derivatives of the same float64 formula: they agree to rounding."""


def own_method(obj: Any, name: str) -> Any:
    """``obj.name`` when an ``autograd.Function`` subclass defines it, not torch's base class."""
    if not (isinstance(obj, type) and issubclass(obj, torch.autograd.Function)):
        return None
    for klass in obj.__mro__:
        if klass in (torch.autograd.Function,) or klass.__module__.startswith("torch."):
            return None
        if name in vars(klass):
            return getattr(obj, name)
    return None


def at_base(ctx: "AuditContext", *tensors: torch.Tensor) -> list[torch.Tensor]:
    """``tensors`` (probe-long, float64 probe order) at :meth:`AuditContext.base_indices`.

    At the default size the base probe is the whole probe, so nothing is copied; otherwise
    ``index_select``, which stays on one thread at these sizes where advanced indexing
    (``t[index]``) starts a parallel region: on a busy machine each such region can wait
    milliseconds for its second thread, more than the whole check computes.
    """
    chosen = ctx.base_indices()
    if all(chosen.numel() == t.numel() for t in tensors):
        return list(tensors)  # the base probe is a subset of the probe: same size, same points
    return [t.index_select(0, chosen) for t in tensors]


def functorch_refusal(ctx: "AuditContext") -> str | None:
    """The error every torch.func transform raises on entering an ``autograd.Function`` without
    a setup_context staticmethod, or None when the target is not such a Function.

    torch refuses those Functions in ``Function.apply`` whichever transform is active, with
    one message. It is learnt here under ``torch.func.vmap`` on two points, which costs
    nothing, where ``torch.func.jvp`` would first load torch's forward-AD decompositions
    (TorchScript-compiled on first use: 0.2 to 0.4 s of a first audit) only to raise the same.
    """
    obj = ctx.target.obj
    if not (isinstance(obj, type) and issubclass(obj, torch.autograd.Function)) or own_method(obj, "setup_context"):
        return None

    def learn() -> str | None:
        try:
            torch.func.vmap(lambda t: ctx.call(t))(torch.zeros(2, 1, dtype=torch.float64))
        except Exception as exc:
            error = transform_error(exc)
            return error if "setup_context" in error else None
        return None

    return ctx.memo("forward_ad.functorch_refusal", learn)


def transform_error(exc: BaseException) -> str:
    """The exception a torch.func transform raised, without gradaudit's call wrapper."""
    if isinstance(exc, CallError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return describe_exception(exc)


def run_forward_ad(ctx: "AuditContext") -> Iterator[Finding]:
    ev = ctx.evaluate(torch.float64)
    if ev.grad is None or ev.y is None or ev.y.dtype != torch.float64:
        return  # no usable backward to compare with (GA101 says why), or not float64 (GA403)
    location = ctx.target.source("forward")
    if ctx.target.kind == "custom op":
        yield _unsupported(ctx, "torch.library custom ops have no forward-mode AD formula (torch.func.jvp "
                                "silently returns zero tangents through them)", location, raised=False)
        return
    refusal = functorch_refusal(ctx)
    if refusal is not None:
        yield _unsupported(ctx, refusal, location)
        return
    call: Callable[[torch.Tensor], torch.Tensor] = lambda t: ctx.call(t)
    if ctx.elementwise:
        # a wrong jvp formula is wrong over intervals: the base probe finds it at a fixed cost
        x, backward = at_base(ctx, ev.x, ev.grad)
        try:
            _, tangent = torch.func.jvp(call, (x.clone(),), (torch.ones_like(x),))  # in-place targets
        except Exception as exc:
            yield _unsupported(ctx, transform_error(exc), location)
            return
        at_kink = ctx.near_kink(x, torch.zeros_like(x))
    else:
        x = small_matrix(ctx)
        direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(ctx.options.seed + 3),
                                dtype=torch.float64)
        try:
            _, tangent = torch.func.jvp(call, (x.clone(),), (direction,))
        except Exception as exc:
            yield _unsupported(ctx, transform_error(exc), location)
            return
        jacobian = torch.autograd.functional.jacobian(call, x)
        backward = (jacobian.reshape(tangent.numel(), x.numel()) @ direction.reshape(-1)).reshape(tangent.shape)
        at_kink = torch.zeros_like(tangent, dtype=torch.bool)
    tangent = tangent.detach()
    judged = torch.isfinite(tangent) & torch.isfinite(backward) & ~at_kink
    scale = ctx.working_eps / torch.finfo(torch.float64).eps  # float32 inside: float32's rounding, not float64's
    wrong = judged & ((tangent - backward).abs() > scale * (ATOL + RTOL * backward.abs()))
    count = int(wrong.sum())
    if count == 0:
        return
    jvp_location = ctx.target.source("jvp") if own_method(ctx.target.obj, "jvp") else location
    if ctx.elementwise:
        i = example_index(x, wrong)
        where = describe_intervals(x[judged], wrong[judged])
        example = (f"at x = {number(float(x[i]))} jvp gives {number(float(tangent[i]))} and backward "
                   f"{number(float(backward[i]))}")
        examples = [{"input": float(x[i]), "jvp": float(tangent[i]), "backward": float(backward[i])}]
        extra = {"intervals": intervals(x[judged], wrong[judged])}
    else:
        i = int(torch.nonzero(wrong.reshape(-1)).flatten()[0])
        where = f"on a seeded {'x'.join(map(str, x.shape))} input with a random tangent"
        example = (f"output element {i}: jvp gives {number(float(tangent.reshape(-1)[i]))} and the Jacobian "
                   f"from backward {number(float(backward.reshape(-1)[i]))}")
        examples = [{"element": i, "jvp": float(tangent.reshape(-1)[i]), "backward": float(backward.reshape(-1)[i])}]
        extra = {}
    yield FORWARD_AD.finding(
        "wrong", "fail", audit=ctx, count=count, total=int(judged.sum()), where=where, example=example,
        dtype="float64", location=jvp_location, examples=examples,
        details={"points_checked": int(judged.sum()), "points_wrong": count, **extra})


CUSTOM_OP_JVP = ("torch.library has no register_jvp, so nothing registered on the op can add it: where "
                 "jacfwd or jvp must see through it, call the PyTorch operations the op computes instead of "
                 "the op (reverse mode, register_autograd's backward, is unaffected).")


def _unsupported(ctx: "AuditContext", error: str, location: dict | None, raised: bool = True) -> Finding:
    """GA103's info: ``error`` is what torch.func.jvp raised, or (``raised`` False) why the
    target has no forward-mode AD although nothing raises."""
    obj = ctx.target.obj
    missing: list[str] = []
    if isinstance(obj, type) and issubclass(obj, torch.autograd.Function):
        if own_method(obj, "setup_context") is None:
            missing = ["setup_context", "jvp"] if own_method(obj, "jvp") is None else ["setup_context"]
            advice = ("Add a setup_context staticmethod (forward without ctx; save tensors in "
                      "setup_context) and a jvp staticmethod that returns the derivative applied to "
                      "the tangent, with what it needs saved by ctx.save_for_forward.")
        elif own_method(obj, "jvp") is None:
            missing = ["jvp"]
            advice = ("Add a jvp staticmethod that returns the derivative applied to the tangent, "
                      "with what it needs saved by ctx.save_for_forward in setup_context.")
        else:
            advice = ("Fix the jvp staticmethod: tensors it needs must be saved with "
                      "ctx.save_for_forward (ctx.saved_tensors is for backward only).")
    elif ctx.target.kind == "custom op":
        advice = CUSTOM_OP_JVP
    else:
        advice = ("An operation inside has no forward-AD formula; build the target from operations "
                  "that support it, or wrap the custom part in an autograd.Function with a jvp.")
    reason = f"torch.func.jvp raises {clause(error)}" if raised else clause(error)
    return FORWARD_AD.finding("unsupported", "info", audit=ctx, reason=reason, advice=advice, dtype="float64",
                              location=location, details={"missing": missing})


FORWARD_AD = Check(
    code="GA103",
    slug="forward-ad",
    status="fail / info",
    summary="jvp disagrees with backward (fail); unsupported (info)",
    explanation=(
        "torch.func.jvp with a tangent of ones is compared with the backward (vector-Jacobian "
        "product with ones) at every float64 probe point of an elementwise target, except exactly "
        "at kinks; other targets compare J v with the Jacobian built by backward on a small input. "
        "An autograd.Function without setup_context and a jvp staticmethod cannot be used under "
        "forward-mode AD: info, naming what to add."
    ),
    fixes={"custom op": "torch.library custom ops have no forward-mode AD formula (there is no register_jvp), "
                        "and torch.func.jvp silently returns zero tangents through them. " + CUSTOM_OP_JVP},
    fix="Give the autograd.Function a setup_context and a jvp staticmethod (saving with "
    "ctx.save_for_forward), and make jvp agree with backward.",
    example="a jvp that returns tangent * sigmoid(x) for silu, forgetting the x * s * (1 - s) term",
    run=run_forward_ad,
    messages={
        "wrong": "forward-mode AD disagrees with the backward at {count} of {total} float64 points "
                 "({where}); e.g. {example}. torch.func.jvp, jacfwd and torch.autograd.forward_ad users "
                 "get these derivatives. Fix the jvp formula (it must equal the backward's derivative "
                 "applied to the tangent), or the backward if that one is wrong (see GA101).",
        "unsupported": "forward-mode AD is not supported: {reason}. jacfwd, jvp and "
                       "torch.autograd.forward_ad users cannot use this target. {advice}",
    },
)

CHECKS = [FORWARD_AD]
