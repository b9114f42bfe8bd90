"""Small inputs and comparisons shared by the hygiene checks (higher order, forward AD,
transforms, parameters, mutation, determinism, dtypes, layouts).

Checks that need extra passes over the target (mutation, reentrancy, layouts, transforms)
run them on a few dozen probe values instead of the whole probe set, so their cost does not
grow with ``size``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .vjp import vjp

if TYPE_CHECKING:
    from .context import AuditContext

SMALL_COUNT = 120
"""Elements of the small input: 2*3*4*5, so it reshapes to every layout the layout check tests."""
MODERATE = 20.0
"""Probe values up to this magnitude make the moderate small input (finite differences)."""


def _spread(x: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` values evenly spread over the sorted ``x``, always holding both zeros; a probe
    with fewer values (a narrow domain) is repeated to ``count``, so every layout can be built.
    An empty probe (a domain the dtype cannot represent) stays empty."""
    if x.numel() <= count:
        picked = x.repeat(-(-count // x.numel()))[:count].clone() if x.numel() else x.clone()
    else:
        index = torch.linspace(0, x.numel() - 1, count).round().long()
        picked = x.index_select(0, index)
        zeros = x[x == 0]
        if zeros.numel():  # replace the values nearest the middle by -0.0 and +0.0
            middle = count // 2
            picked[middle - zeros.numel() + 1 : middle + 1] = zeros
    return picked


def small_input(ctx: "AuditContext", dtype: torch.dtype, moderate: bool = False) -> torch.Tensor:
    """``SMALL_COUNT`` probe values of ``dtype`` in a seeded order (cached per audit).

    The values come from the base probe (so they respect ``domain`` and do not depend on
    ``size``) and include -0.0 and +0.0; the order is shuffled so that every reshaped layout
    mixes signs and magnitudes. ``moderate`` keeps magnitudes up to ``MODERATE``, for finite
    differences.
    """

    def build() -> torch.Tensor:
        x = ctx.base_probe(dtype)
        if moderate:
            inside = x[x.abs() <= MODERATE]
            x = inside if inside.numel() >= 8 else x
        picked = _spread(x, SMALL_COUNT)
        generator = torch.Generator().manual_seed(ctx.options.seed + 7)
        return picked.index_select(0, torch.randperm(picked.numel(), generator=generator)).contiguous()

    return ctx.memo(f"small_input.{dtype}.{moderate}", build)


def known_grad_output(like: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded grad_output of both signs and magnitudes in [0.5, 2), never +-1.

    Values other than +-1 make a backward that multiplies a stashed tensor in place, or
    writes into grad_output, give visibly different results on a second pass.
    """
    generator = torch.Generator().manual_seed(seed + 11)
    magnitude = 0.5 + 1.5 * torch.rand(like.shape, generator=generator, dtype=torch.float64)
    sign = torch.where(torch.rand(like.shape, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
    values = torch.where(magnitude == 1.0, torch.full_like(magnitude, 1.25), magnitude) * sign
    return values.to(device=like.device, dtype=like.dtype)


def identical(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise: equal values with equal zero signs, or both NaN."""
    same = (a == b) & (torch.signbit(a) == torch.signbit(b))
    return same | (torch.isnan(a) & torch.isnan(b))


def close(actual: torch.Tensor, expected: torch.Tensor, x: torch.Tensor, eps: float, factor: float,
          signed_zeros: bool = True) -> torch.Tensor:
    """Elementwise agreement within ``factor`` units of ``eps``, relative to the value and,
    absolutely, to the input's magnitude (the error of ``x * g(x)`` formulas scales with
    ``|x|``); both non-finite alike, and (with ``signed_zeros``) zeros with the same sign.

    All tensors are compared in float64; ``x`` has the shape of ``actual``.
    """
    a, e = actual.to(torch.float64), expected.to(torch.float64)
    scale = torch.clamp(x.to(torch.float64).abs(), min=1.0)
    tolerance = factor * eps * (e.abs() + scale)
    near = (a - e).abs() <= tolerance
    both_zero = (a == 0) & (e == 0)
    if signed_zeros:
        near = torch.where(both_zero, torch.signbit(a) == torch.signbit(e), near)
    same_nonfinite = (torch.isnan(a) & torch.isnan(e)) | (torch.isinf(a) & (a == e))
    return (near & torch.isfinite(a) & torch.isfinite(e)) | same_nonfinite


def describe_mismatch(actual: torch.Tensor, expected: torch.Tensor, x: torch.Tensor | None, agree: torch.Tensor) -> str:
    """``"at x = X: A instead of E"`` for the first element where ``agree`` is False (``x`` the
    inputs of an elementwise target, or None to name the output element instead)."""
    from .messages import number

    index = int(torch.nonzero(~agree.reshape(-1)).flatten()[0])
    got = number(float(actual.reshape(-1)[index]))
    want = number(float(expected.reshape(-1)[index]))
    at = f"x = {number(float(x.reshape(-1)[index]))}" if x is not None else f"output element {index}"
    return f"at {at}: {got} instead of {want}"


def small_matrix(ctx: "AuditContext") -> torch.Tensor:
    """A seeded 4x6 float64 input for targets that are not elementwise (as torch's gradcheck takes),
    or of the target's own layout where it rejects other shapes ((3, 8) against a (8,) parameter)."""
    generator = torch.Generator().manual_seed(ctx.options.seed)
    layout = ctx.layout
    shape = (4, 6) if layout is None else tuple(3 if size == -1 else size for size in layout)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 2
    if ctx.options.domain is not None:
        x = x.clamp(*ctx.options.domain)
    return x


def two_forwards(ctx: "AuditContext") -> tuple[torch.Tensor, torch.Tensor]:
    """Two calls on the small float64 input without reseeding in between (cached): on the whole
    small input, or where those agree, on its moderate values (gumbel_softmax's noise is lost
    next to inputs of 1e308)."""

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        for moderate in (False, True):  # softmax over huge values is one-hot: noise shows only on moderate ones
            values = small_input(ctx, torch.float64, moderate=moderate)
            with torch.no_grad():
                first, second = ctx.call(values.clone(), reseed=False), ctx.call(values.clone(), reseed=False)
            if first.shape != second.shape or not bool(identical(first, second).all()):
                break
        return first, second

    return ctx.memo("small_inputs.two_forwards", run)


def backward_is_random(ctx: "AuditContext") -> bool:
    """Whether the backward draws random numbers (cached): over one graph of the small float64
    input, two backwards with the same RNG state agree and a third with another state does not.
    A backward that is not reentrant (the first two differ) is reported as such, not as random here."""

    def run() -> bool:
        values = small_input(ctx, torch.float64)
        leaf = values.clone().requires_grad_(True)
        try:
            with torch.enable_grad():
                out = ctx.call(leaf * 1.0)
                if not out.requires_grad:
                    return False
                grad_output = known_grad_output(out, ctx.options.seed)
                grads = []
                for seed in (ctx.options.seed, ctx.options.seed, ctx.options.seed + 1):
                    torch.default_generator.manual_seed(seed)
                    grad = vjp(out, leaf, grad_output, retain_graph=True)
                    grads.append(torch.zeros_like(leaf) if grad is None else grad.detach())
        except Exception:
            return False
        first, second, third = grads
        return bool(identical(first, second).all()) and not bool(identical(first, third).all())

    return ctx.memo("small_inputs.backward_is_random", run)


def forward_is_random(ctx: "AuditContext") -> bool:
    """Whether the two calls of :func:`two_forwards` differ: the forward draws random numbers."""
    first, second = two_forwards(ctx)
    return first.shape != second.shape or not bool(identical(first, second).all())


def clause(text: str) -> str:
    """``text`` without trailing punctuation, to embed in a sentence (exception messages end in
    '.' or ',')."""
    return text.rstrip().rstrip(".,:;")
