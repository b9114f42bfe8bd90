"""GA404's judgment of a layout's result against its reference: tolerances that scale with the
size of the values involved, and the float64 evaluation that says which of two differing
results is wrong (see :mod:`gradaudit.checks.shape`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ..engine import scans
from ..engine.numerics import HEADROOM
from ..engine.options import dtype_name
from ..engine.small_inputs import describe_mismatch

if TYPE_CHECKING:
    from ..engine.context import AuditContext
    from .shape import Layout

TOLERANCE_UNITS = 4
"""Vectorised and scalar CPU kernels of the same function differ by a few eps (gelu's tails):
values are compared within this many eps of the value plus the size of the inputs involved."""


def at_edge(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inputs so close to the dtype's max that formulas may overflow on one kernel path and not
    on another (gelu's vectorised float32 kernel at 3e38): GA201's business, not a layout's."""
    return x.to(torch.float64).abs() * HEADROOM >= torch.finfo(dtype).max


class Judge:
    """Compares one layout's result with its reference in one dtype, judging differences
    against the float64 evaluation of the reference (computed only when something differs).

    ``truth`` gives the float64 ``(output, gradient)`` as the reference would be in this layout;
    ``scales`` the magnitudes each output and gradient element's rounding scales with, or None
    where those are the ``x`` given to :meth:`mismatch` (elementwise targets: ``|x|``)."""

    def __init__(self, dtype: torch.dtype, computed_in: torch.dtype, against: str,
                 truth: Callable[[], tuple[torch.Tensor, torch.Tensor | None]],
                 scales: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        eps = torch.finfo(dtype).eps
        if computed_in.is_floating_point:
            eps = max(eps, torch.finfo(computed_in).eps)
        self.dtype, self.eps, self.against = dtype, eps, against
        self._truth, self._scales = truth, scales

    def mismatch(self, noun: str, actual: torch.Tensor, expected: torch.Tensor, x: torch.Tensor,
                 where: torch.Tensor | None) -> tuple[str, str] | None:
        """``(status, words)`` when ``actual`` and ``expected`` disagree, or None.

        Fail where ``actual`` (the layout's result) is off the float64 value by more than the
        dtype's tolerance and ``expected`` (the contiguous reference) is not. Where both are off,
        the dtype itself is too coarse (GA403's business); where only the reference is, the layout
        took a more accurate kernel path (a float32 erf near -1 on one path and not the other),
        which is no defect of the target's layout handling; info where
        only the sign of a zero (or of an infinity) differs and the float64 value is itself zero
        or infinite (an underflowed value's zero sign is GA203/GA204's business, and either sign
        is within tolerance of it). The elementwise work is done by NumPy in float64 (see
        :func:`close64`)."""
        if bitwise_equal(actual, expected) and not scans.any_true(torch.isnan(x)):
            return None  # the usual case; close() would find every element close (a NaN x it would not)
        a, e, magnitude = as_float64(actual), as_float64(expected), as_float64(x)
        differs = np.asarray(~(close64(a, e, magnitude, self.eps, TOLERANCE_UNITS) | at_edge64(magnitude, self.dtype)))
        if self.eps > torch.finfo(self.dtype).eps:  # computed in a narrower dtype inside: an overflow there
            differs &= np.isfinite(a) | np.isfinite(e)  # is inf on one kernel path and NaN on the other (GA201's)
        if not differs.any():
            return None
        index = 0 if noun == "output" else 1
        if self._scales is None:
            scale = magnitude  # what the comparison above already scaled with
        else:
            scale = as_float64(self._scales()[index].reshape(actual.shape))
            differs &= ~close64(a, e, scale, self.eps, TOLERANCE_UNITS)
            if not differs.any():
                return None
        try:
            truth = self._truth()[index]
        except Exception:  # no float64 value to judge by: every difference counts
            truth = None
        same_magnitude = np.abs(a) == np.abs(e)
        if truth is None or truth.shape != actual.shape:
            values_differ = np.asarray(differs & ~same_magnitude)
            if values_differ.any():
                return ("fail", f"the {noun} differs from {self.against} at {int(values_differ.sum())} of "
                                f"{differs.size} elements, {describe_mismatch(actual, expected, where, _agree(values_differ))}")
            return None
        exact = as_float64(truth)
        right = [close64(t, exact, scale, self.eps, TOLERANCE_UNITS, signed_zeros=False) for t in (a, e)]
        wrong = np.asarray(differs & ~same_magnitude & ~right[0] & right[1])  # 0-d layouts give NumPy scalars
        count = int(wrong.sum())
        if count:
            return ("fail", f"the {noun} differs from {self.against} at {count} of {wrong.size} elements, "
                            f"{describe_mismatch(actual, expected, where, _agree(wrong))}, where float64 gives "
                            f"{float64_value(truth, torch.from_numpy(wrong))} (this layout is off it by more than "
                            f"{TOLERANCE_UNITS} eps of {dtype_name(self.dtype)}, {self.against} is not)")
        signs = np.asarray(differs & same_magnitude & ((exact == 0) | np.isinf(exact)))
        if not signs.any():
            return None
        return ("info", f"the {noun} differs from {self.against} only in the sign of zero (or of an infinity "
                        f"from 1/+-0) at {int(signs.sum())} of {signs.size} elements, "
                        f"{describe_mismatch(actual, expected, where, _agree(signs))}, where the float64 value is "
                        f"exactly {float64_value(truth, torch.from_numpy(signs))}: the vectorised and scalar kernels disagree, "
                        f"so the sign depends on the memory layout")


def as_float64(t: torch.Tensor) -> np.ndarray:
    """``t`` as a float64 NumPy array of its shape (exact for every real floating dtype)."""
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def close64(actual: np.ndarray, expected: np.ndarray, x: np.ndarray, eps: float, factor: float,
            signed_zeros: bool = True) -> np.ndarray:
    """:func:`gradaudit.engine.small_inputs.close` on float64 arrays, the same operations in
    NumPy: on GA404's hundred-element inputs a torch operation costs several times a NumPy
    one, and a layout's judgment takes some thirty of them (identical results:
    tests/test_perf_layouts.py)."""
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.maximum(np.abs(x), 1.0)  # NaN stays NaN, as torch.clamp(min=1.0) keeps it
        tolerance = factor * eps * (np.abs(expected) + scale)
        near = np.abs(actual - expected) <= tolerance
        if signed_zeros:
            both_zero = (actual == 0) & (expected == 0)
            near = np.where(both_zero, np.signbit(actual) == np.signbit(expected), near)
        same_nonfinite = (np.isnan(actual) & np.isnan(expected)) | (np.isinf(actual) & (actual == expected))
        return (near & np.isfinite(actual) & np.isfinite(expected)) | same_nonfinite


def at_edge64(x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """:func:`at_edge` of the float64 array ``x``."""
    with np.errstate(over="ignore"):
        return np.abs(x) * HEADROOM >= torch.finfo(dtype).max


def _agree(disagree: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(~disagree))  # a 0-d comparison gives a NumPy scalar


_SAME_SIZE_INTS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` have the same shape, dtype and bits (so zero signs match and NaNs
    with the same payload count as equal): one cheap comparison before the elementwise judgment."""
    if a.shape != b.shape or a.dtype != b.dtype or a.is_complex():
        return False
    if a.dtype.is_floating_point:
        bits = _SAME_SIZE_INTS.get(a.element_size())
        if bits is None:
            return False
        a, b = a.contiguous().view(bits), b.contiguous().view(bits)
    return torch.equal(a, b)


def float64_value(truth: torch.Tensor, mask: torch.Tensor) -> str:
    from ..engine.messages import number

    index = int(torch.nonzero(mask.reshape(-1)).flatten()[0])
    return number(float(truth.reshape(-1)[index]))


def dependency_scales(ctx: "AuditContext", layout: "Layout", values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output element, the largest ``max(1, |x|)`` over the input elements it depends on;
    per gradient element, the largest of those over the outputs it feeds. That is the size of
    the values a non-elementwise target multiplies (GLU's gate times the other half), which its
    rounding scales with, as ``|x|`` does for an elementwise ``x * g(x)``.

    The dependencies are the nonzero entries of the float64 Jacobian of the contiguous copy at
    seeded moderate inputs (cached per layout); where it cannot be taken, each output element
    is judged relative to its own value only."""
    magnitude = values.detach().to(torch.float64).abs().clamp(min=1.0)

    def pattern() -> torch.Tensor | None:
        generator = torch.Generator().manual_seed(ctx.options.seed + 5)
        point = torch.randn(values.shape, generator=generator, dtype=torch.float64)
        if ctx.options.domain is not None:
            point = point.clamp(*ctx.options.domain)
        try:
            jacobian = torch.autograd.functional.jacobian(
                lambda t: ctx.call(layout.make(t).contiguous(), dtype=torch.float64), point)
        except Exception:
            return None
        return jacobian.reshape(-1, values.numel()) != 0

    depends = ctx.memo(f"shape.dependencies.{layout.name}.{values.numel()}", pattern)
    if depends is None:
        return torch.ones(()), magnitude
    out_scale = torch.where(depends, magnitude, torch.zeros_like(magnitude)).amax(dim=1).clamp(min=1.0)
    grad_scale = torch.where(depends, out_scale[:, None], torch.zeros_like(out_scale[:, None])).amax(dim=0)
    return out_scale, torch.maximum(grad_scale, magnitude)


def once(compute: Callable[[], object]) -> Callable[[], object]:
    """``compute``, called at most once."""
    cache: list[object] = []

    def cached() -> object:
        if not cache:
            cache.append(compute())
        return cache[0]

    return cached
