"""GA407: a ``torch.library`` custom op that fails ``torch.library.opcheck``.

For a target that is a custom op (``Target.kind == "custom op"``: a ``CustomOpDef`` or an op of
``torch.ops`` outside PyTorch's namespaces) opcheck runs its default tests (schema, autograd
registration, fake tensor, aot_dispatch) on a few probe inputs of every audit dtype, inputs
that require grad. Each test that fails is one fail, with opcheck's reason, the dtype and the
input it failed on first. opcheck does not judge whether the gradient is right: GA101 does.
Any other target yields nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import torch

from ..engine.messages import number
from ..engine.options import dtype_name
from ..engine.small_inputs import clause, small_input
from ..model.report import Finding
from ..targets.types import custom_op_definition, is_custom_op
from . import Check

if TYPE_CHECKING:
    from ..engine.context import AuditContext

INPUT_VALUES = 12
"""Values per opcheck input: opcheck runs each test on the real op, so a few elements do."""
REASON_CHARACTERS = 400
TESTS = {
    "test_schema": ("schema", "the op's schema does not match what the implementation does",
                    "Declare every input the implementation writes to in mutates_args=(\"x\",) (or stop "
                    "writing to it: compute into a new tensor), and return new tensors, never an input "
                    "or a view of one."),
    "test_autograd_registration": ("autograd registration", "its autograd formula is not registered the "
                                   "way torch.library requires",
                                   "Register the backward with op.register_autograd(backward, "
                                   "setup_context=...), not with a DispatchKey-based registration."),
    "test_faketensor": ("fake tensor", "it has no fake (meta) implementation, or one whose output "
                        "metadata differs from the real op's",
                        "Add @op.register_fake returning empty tensors of the output's shape, dtype and "
                        "device (torch.empty_like(x)), with no data access."),
    "test_aot_dispatch_dynamic": ("aot_dispatch", "it does not work under torch.compile's tracing "
                                  "(AOTAutograd with dynamic shapes)",
                                  "Give it a fake implementation (register_fake) and a backward made "
                                  "of PyTorch operations or other custom ops (register_autograd), and "
                                  "declare the inputs it mutates in mutates_args."),
}
"""opcheck's default tests: (name in words, what a failure means, the fix)."""


def _op(obj: Any) -> Any:
    """What opcheck takes for ``obj``: its CustomOpDef or torch.ops op (partials unwrapped)."""
    while hasattr(obj, "func") and hasattr(obj, "keywords"):  # functools.partial
        obj = obj.func
    definition = custom_op_definition(obj)
    return definition if definition is not None else obj


def _inputs(ctx: "AuditContext", dtype: torch.dtype) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Arguments of a few probe values of ``dtype`` (-0.0 and +0.0 among them), 1-D (or the
    target's layout), 2-D and a 2-D transpose, requiring grad so that the autograd tests run; an op with several
    tensor inputs gets each (a partner the values in another order, a parameter-like input
    values around 1, constants as given)."""
    values = small_input(ctx, dtype, moderate=True)[:INPUT_VALUES]
    binding = ctx.binding
    if binding.layout is not None:
        xs = [binding.lay_out(values)]
    else:
        shapes = [ctx.layout] if ctx.layout is not None else [(INPUT_VALUES,), (3, INPUT_VALUES // 3)]
        xs = [values.reshape(shape) for shape in shapes]
        if ctx.layout is None:  # a transpose: a fake kernel must give the real op's strides too
            xs.append(values.reshape(INPUT_VALUES // 3, 3).t())
    return [binding.arguments(x.detach().clone().requires_grad_(True), binding.example(x)) for x in xs]


def _reason(error: BaseException) -> str:
    """opcheck's reason: the first paragraph of the test's exception, shortened."""
    text = str(error).strip().split("\n\n")[0].replace("\n", " ")
    text = text if len(text) <= REASON_CHARACTERS else text[:REASON_CHARACTERS - 3] + "..."
    return f"{type(error).__name__}: {clause(text)}"


def _describe(x: torch.Tensor) -> str:
    shown = ", ".join(number(float(v)) for v in x.detach().flatten()[:4])
    return f"a {dtype_name(x.dtype)} tensor of shape {tuple(x.shape)} ([{shown}, ...]) that requires grad"


def run(ctx: "AuditContext") -> Iterator[Finding]:
    if not is_custom_op(_op(ctx.target.obj)):
        return
    op = _op(ctx.target.obj)
    keywords = dict(getattr(ctx.target.obj, "keywords", None) or {})
    failed: dict[str, dict[str, Any]] = {}
    for dtype in ctx.options.dtypes:
        if ctx.evaluate(dtype).error is not None:
            continue  # the op does not run in this dtype at all: GA403 says so, opcheck's tests have no subject
        for args, extra_keywords in _inputs(ctx, dtype):
            x = args[0]
            pending = tuple(t for t in TESTS if t not in failed or dtype_name(dtype) not in failed[t]["dtypes"])
            if not pending:
                break
            torch.manual_seed(ctx.options.seed)
            results = torch.library.opcheck(op, args, {**keywords, **extra_keywords}, test_utils=pending,
                                            raise_exception=False)
            for test, result in results.items():
                if isinstance(result, BaseException):
                    first = failed.setdefault(test, {"dtypes": [], "error": result, "input": x})
                    if dtype_name(dtype) not in first["dtypes"]:
                        first["dtypes"].append(dtype_name(dtype))
    for test in TESTS:
        if test not in failed:
            continue
        name, meaning, advice = TESTS[test]
        first = failed[test]
        x = first["input"]
        location = ctx.target.source("backward" if test == "test_autograd_registration" else "forward")
        yield CUSTOM_OP.finding(
            "opcheck-fails", "fail", audit=ctx, test=test, name=name, meaning=meaning, reason=_reason(first["error"]),
            tensor=_describe(x), advice=advice, also=_also(first["dtypes"]), dtype=first["dtypes"][0],
            location=location, examples=[{"input": x.detach().flatten().tolist(), "shape": list(x.shape)}],
            details={"test": test, "dtypes": first["dtypes"], "reason": _reason(first["error"])})


def _also(dtypes: list[str]) -> str:
    return f" (also in {', '.join(dtypes[1:])})" if len(dtypes) > 1 else ""


CUSTOM_OP = Check(
    code="GA407",
    slug="custom-op",
    status="fail",
    summary="a torch.library custom op fails torch.library.opcheck (schema, autograd registration, "
            "fake tensor, aot_dispatch)",
    explanation=(
        "For a torch.library custom op, torch.library.opcheck runs its default tests on a few probe "
        "inputs of every audit dtype (requiring grad): test_schema (the schema matches what the "
        "implementation mutates and returns), test_autograd_registration (the backward is registered "
        "with register_autograd), test_faketensor (a fake implementation exists and gives the real "
        "op's metadata) and test_aot_dispatch_dynamic (it works under torch.compile's tracing). "
        "opcheck does not judge whether the gradient is right: GA101 does. Other targets are not "
        "custom ops and get no GA407 finding."
    ),
    fix="Register the op completely: mutates_args naming every input it writes to, register_fake, "
        "and register_autograd for its backward.",
    example="@torch.library.custom_op('mylib::relu', mutates_args=()) without register_fake",
    run=run,
    messages={
        "opcheck-fails": "torch.library.opcheck's {test} ({name}) fails in {dtype}{also}: {meaning}. On "
                         "{tensor} it raised {reason}. {advice}",
    },
)

CHECKS = [CUSTOM_OP]
