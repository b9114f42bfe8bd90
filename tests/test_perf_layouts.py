"""GA404 and GA203/GA204 do less work without changing a result (issue 19, "Performance stays").

GA404 judges layouts with NumPy twins of ``close`` and ``at_edge``; the signed-zero checks
remember float64 values and edge searches across dtypes. These tests hold the twins to the
torch originals on awkward values, and the memory to the search it replaces.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradaudit.checks.layouts_judge import as_float64, at_edge, at_edge64, close64
from gradaudit.engine.small_inputs import close
from gradaudit.engine.zero_regions import Remembered, edge_decays

AWKWARD = [0.0, -0.0, 1.0, -1.0, 1e-3, 3.5, -2.25, 1e-40, -1e-45, 6e4, -7e4, 3e38, -3.4e38, 1e300,
           float("inf"), float("-inf"), float("nan")]


def _pairs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    values = torch.tensor(AWKWARD, dtype=torch.float64)
    a, e = (t.reshape(-1) for t in torch.meshgrid(values, values, indexing="ij"))
    nudged = e * (1 + 2.0 ** -20)  # differences of a few eps of the low-precision dtypes
    a = torch.cat([a, nudged, e]).to(dtype)
    e = torch.cat([e, e, nudged]).to(dtype)
    x = torch.cat([a.to(torch.float64).flip(0)[: a.numel() // 2], e.to(torch.float64)[: a.numel() - a.numel() // 2]])
    return a, e, x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("signed_zeros", [True, False])
def test_close64_is_close(dtype: torch.dtype, signed_zeros: bool) -> None:
    a, e, x = _pairs(dtype)
    eps = torch.finfo(dtype).eps
    for factor in (4, 1e6):
        want = close(a, e, x, eps, factor, signed_zeros=signed_zeros)
        got = close64(as_float64(a), as_float64(e), as_float64(x), eps, factor, signed_zeros=signed_zeros)
        assert torch.equal(torch.from_numpy(got), want)


def test_close64_keeps_shape_and_layout_order() -> None:
    base = torch.randn(10, 12, generator=torch.Generator().manual_seed(3))
    a = base.t()  # non-contiguous
    e = (base * (1 + 1e-6)).t().contiguous()
    x = torch.linspace(-3, 3, 120).reshape(12, 10)
    want = close(a, e, x, torch.finfo(torch.float32).eps, 4)
    got = torch.from_numpy(close64(as_float64(a), as_float64(e), as_float64(x), torch.finfo(torch.float32).eps, 4))
    assert got.shape == want.shape and torch.equal(got.reshape(-1), want.reshape(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_at_edge64_is_at_edge(dtype: torch.dtype) -> None:
    x = torch.tensor(AWKWARD + [float(torch.finfo(dtype).max), -float(torch.finfo(dtype).max) / 3], dtype=torch.float64)
    assert np.array_equal(at_edge64(as_float64(x), dtype), at_edge(x, dtype).numpy())


def _tail(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x.to(torch.float64))


@pytest.mark.parametrize("fn", [_tail, lambda x: torch.where(x < -3, torch.zeros_like(x), x + 3)])
def test_remembered_search_is_the_search(fn) -> None:
    calls = []

    def counted(points: torch.Tensor) -> torch.Tensor:
        calls.append(points.numel())
        return fn(points)

    remembered = Remembered(counted)
    brackets = [(-750.0, -698.0), (-749.8942260742188, -697.83056640625), (-4.0, -2.5), (-750.0, -698.0)]
    for zero_x, other_x in brackets:
        assert edge_decays(remembered, zero_x, other_x) == edge_decays(fn, zero_x, other_x)
    once = len(calls)
    for zero_x, other_x in itertools.islice(itertools.cycle(brackets), 8):
        edge_decays(remembered, zero_x, other_x)
    assert len(calls) == once  # a bracket searched before costs no call of the target
    points = torch.linspace(-10, 10, 64, dtype=torch.float64)
    assert torch.equal(remembered(points), fn(points)) and torch.equal(remembered(points.clone()), fn(points))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ga403_compare_in_numpy_is_the_torch_formula(dtype: torch.dtype) -> None:
    from gradaudit.checks.dtype import TOLERANCE_UNITS, _compare
    from gradaudit.engine.numerics import HEADROOM

    a, e, x = _pairs(torch.float64)
    low, high = a.to(dtype), e.to(torch.float32)
    info = torch.finfo(dtype)
    judged = torch.isfinite(high) & (high.abs() <= info.max) & (x.abs() * HEADROOM < info.max)
    want_nonfinite = judged & ~torch.isfinite(low)
    want_far = judged & torch.isfinite(low) & ~close(low, high, x, info.eps, TOLERANCE_UNITS, signed_zeros=False)
    got = _compare(x, low, high, dtype)
    assert torch.equal(got["nonfinite"], want_nonfinite) and torch.equal(got["far"], want_far)
    assert bool(want_far.any()) and bool(want_nonfinite.any())  # the values exercise both masks
