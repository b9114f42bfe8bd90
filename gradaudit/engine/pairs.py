"""The two-dimensional probe of a target with elementwise partners (``like`` inputs): pairs of
x and one partner, and the forward and every input's backward over them.

For each partner p the pairs are: x along a structured axis (every 1/8 over [-10, 10], the
tails, the dtype's tiny and huge magnitudes, ±0.0, the declared kinks) with p at each of
:data:`FIXED`; the same with the roles swapped; and seeded random pairs. The other partners
hold :data:`~gradaudit.engine.binding.DEFAULT_FILL`, parameter-like inputs too, constants
their value. Engine code: it knows values, inputs and gradients, no check code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .binding import Binding, Extra
from .calling import describe_exception
from .options import dtype_name
from .vjp import vjps

if TYPE_CHECKING:
    from .context import AuditContext

FIXED = (-3.0, -1.0, -0.0, 0.0, 1.0, 3.0)
"""Values one input holds while the other runs along the axis (a gate's kink at 0 and its
signed zeros, and values on either side)."""
RANDOM_PAIRS = 1024
TAILS = (12.0, 15.0, 20.0, 30.0, 50.0, 100.0, 1e3, 1e4, 1e6, 1e10, 1e20, 1e38, 1e100, 1e300)
SMALL = (1e-3, 1e-5, 1e-10, 1e-20, 1e-40, 1e-100, 1e-300)
FIRST = "x"
"""The key of the first input in :class:`PairEvaluation`'s dictionaries."""


def axis(dtype: torch.dtype, domain: tuple[float, float] | None, kinks: tuple[float, ...]) -> torch.Tensor:
    """The structured axis of one input in ``dtype`` (float64 values that ``dtype`` holds)."""
    info = torch.finfo(dtype)
    dense = np.arange(-80, 81, dtype=np.float64) / 8.0
    magnitudes = np.array([m for m in TAILS + SMALL if m < float(info.max) and m >= float(info.smallest_normal)]
                          + [float(info.max) * 0.5, float(info.smallest_normal), float(info.smallest_normal) * float(info.eps)])
    values = np.concatenate([dense, magnitudes, -magnitudes, np.array(kinks, dtype=np.float64), [0.0]])
    if domain is not None:
        values = values[(values >= domain[0]) & (values <= domain[1])]
    cast = torch.from_numpy(np.unique(values)).to(dtype).to(torch.float64)
    cast = cast[torch.isfinite(cast)]
    if domain is None or domain[0] <= 0.0 <= domain[1]:
        cast = torch.cat([cast, torch.tensor([-0.0], dtype=torch.float64)])
    return cast


def fixed_values(domain: tuple[float, float] | None) -> torch.Tensor:
    values = torch.tensor(FIXED, dtype=torch.float64)
    if domain is not None:
        values = values[(values >= domain[0]) & (values <= domain[1])]
        if not values.numel():
            values = torch.tensor([(domain[0] + domain[1]) / 2], dtype=torch.float64)
    return values


def pair_points(dtype: torch.dtype, domain: tuple[float, float] | None, kinks: tuple[float, ...],
                seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x values, partner values) of the pairs for one partner, float64 values ``dtype`` holds."""
    line = axis(dtype, domain, kinks)
    fixed = fixed_values(domain)
    along_x = (line.repeat(fixed.numel()), fixed.repeat_interleave(line.numel()))
    along_p = (fixed.repeat_interleave(line.numel()), line.repeat(fixed.numel()))
    generator = torch.Generator().manual_seed(seed + 4242)
    lo, hi = domain if domain is not None else (-10.0, 10.0)
    lo, hi = max(lo, -10.0), min(hi, 10.0)
    if lo >= hi:
        lo, hi = domain if domain is not None else (-10.0, 10.0)
    random = (lo + (hi - lo) * torch.rand(2, RANDOM_PAIRS, generator=generator, dtype=torch.float64)).to(dtype)
    xs = torch.cat([along_x[0], along_p[0], random[0].to(torch.float64)])
    ps = torch.cat([along_x[1], along_p[1], random[1].to(torch.float64)])
    return xs, ps


@dataclass
class PairEvaluation:
    """Forward and backward of the target over the pairs of one partner in one dtype."""

    partner: str
    dtype: torch.dtype
    inputs: dict[str, torch.Tensor]
    """Input values by name (:data:`FIRST` for x), flat, in ``dtype``."""
    output: torch.Tensor | None = None
    grads: dict[float, dict[str, torch.Tensor | None]] = field(default_factory=dict)
    """Per grad_output sign, each differentiable input's gradient (None: the backward gave none)."""
    error: str | None = None
    grad_error: str | None = None
    exception: BaseException | None = None

    @property
    def size(self) -> int:
        return self.inputs[FIRST].numel()


def evaluate_at(ctx: "AuditContext", dtype: torch.dtype, values: dict[str, torch.Tensor],
                signs: tuple[float, ...], partner: str = "") -> PairEvaluation:
    """The target in ``dtype`` at flat input ``values`` (x under :data:`FIRST`, partners by name;
    inputs not given hold their section values), with the backward for each grad_output sign
    (over one graph; a backward that cannot run twice gets a fresh forward per sign)."""
    n = values[FIRST].numel()
    leaves = {name: v.detach().to(dtype).clone().requires_grad_(True) for name, v in values.items()}
    result = PairEvaluation(partner, dtype, {name: leaf.detach() for name, leaf in leaves.items()})
    def forward() -> bool:
        nonlocal out, wrt
        fresh = {name: leaf.detach().clone().requires_grad_(True) for name, leaf in leaves.items()}
        try:
            out, wrt = _forward(ctx, dtype, fresh)
        except Exception as exc:
            result.error = f"calling it with {', '.join(sorted(values))} in {dtype_name(dtype)} raised {describe_exception(exc)}"
            result.exception = exc
            return False
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            result.error = f"it returned {type(out).__name__} for several inputs"
            return False
        result.output = out.detach().reshape(-1)[:n]
        return True

    out: Any = None
    wrt: list[tuple[str, torch.Tensor]] = []
    with torch.enable_grad():
        if not forward():
            return result
        for k, sign in enumerate(signs):
            if not out.requires_grad:
                result.grads[sign] = {name: None for name, _ in wrt}
                continue
            for attempt in (0, 1):
                try:
                    grads = vjps([out], [t for _, t in wrt], [torch.full_like(out, sign)], retain_graph=True)
                    break
                except Exception as exc:
                    if k == 0 or attempt == 1 or not forward():  # a backward that cannot run twice: a fresh graph
                        result.grad_error, result.exception = describe_exception(exc), exc
                        return result
            result.grads[sign] = {name: (None if g is None else g.detach().reshape(-1)[:n] if name in leaves
                                         else g.detach()) for (name, t), g in zip(wrt, grads)}
    return result


def _forward(ctx: "AuditContext", dtype: torch.dtype, leaves: dict[str, torch.Tensor]
             ) -> tuple[Any, list[tuple[str, torch.Tensor]]]:
    """The forward on ``leaves`` (laid out for parameter-like inputs, which are differentiated
    too), and the tensors to differentiate by name."""
    binding: Binding = ctx.binding
    fn = ctx.raw_callable_for(dtype)
    torch.default_generator.manual_seed(ctx.options.seed)
    laid = {name: binding.lay_out(leaf) for name, leaf in leaves.items()}  # leaves are 1-D: no view unless laid out
    x = laid[FIRST]
    arguments = {e.name: laid[e.name] if e.name in laid else binding.fill(e, x) for e in binding.extras}
    for extra in binding.broadcast:  # held at one value, so that every pair meets the same function
        if extra.name not in laid and extra.role.kind == "shape":
            arguments[extra.name] = binding.fill(extra, x).requires_grad_(True)
    out = binding.call(fn, x, arguments)
    wrt = list(leaves.items()) + [(e.name, arguments[e.name]) for e in binding.broadcast
                                  if e.name not in leaves and e.role.kind == "shape"]
    return out, wrt


def pair_evaluation(ctx: "AuditContext", partner: Extra, dtype: torch.dtype,
                    signs: tuple[float, ...] = (1.0, -1.0)) -> PairEvaluation:
    """The pairs of ``partner`` evaluated in ``dtype`` (cached per audit)."""

    def build() -> PairEvaluation:
        xs, ps = pair_points(dtype, ctx.options.domain, ctx.options.kinks, ctx.options.seed)
        return evaluate_at(ctx, dtype, {FIRST: xs.to(dtype), partner.name: ps.to(dtype)}, signs, partner.name)

    return ctx.memo(f"pairs.{partner.name}.{dtype}.{signs}", build)


def reference_at(ctx: "AuditContext", ev: PairEvaluation, signs: tuple[float, ...] = (1.0, -1.0)) -> PairEvaluation:
    """The float64 target at the inputs of ``ev`` (cached per audit)."""
    if ev.dtype == torch.float64:
        return ev
    return ctx.memo(f"pairs.{ev.partner}.{ev.dtype}.{signs}.float64", lambda: evaluate_at(
        ctx, torch.float64, {name: v.to(torch.float64) for name, v in ev.inputs.items()}, signs, ev.partner))


def values_at(ctx: "AuditContext", values: dict[str, torch.Tensor]) -> torch.Tensor:
    """The float64 forward at flat input ``values`` (NaN where it raised)."""
    ev = evaluate_at(ctx, torch.float64, values, ())
    if ev.output is None:
        return torch.full_like(values[FIRST], float("nan"), dtype=torch.float64)
    return ev.output.to(torch.float64)


def example(values: dict[str, torch.Tensor], i: int) -> dict[str, Any]:
    """The inputs of pair ``i`` as an example (``input`` is x, the others by name)."""
    return {("input" if name == FIRST else name): float(v[i]) for name, v in values.items()}


def describe_point(values: dict[str, torch.Tensor], i: int, number: Any) -> str:
    """``x = 1.5, gate = -0.0`` for pair ``i``."""
    return ", ".join(f"{name} = {number(float(v[i]))}" for name, v in values.items())
