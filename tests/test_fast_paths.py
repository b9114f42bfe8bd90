"""The shortcuts that keep an audit linear and cheap change no verdict.

Each fast path is compared with the slow, obvious computation it replaces: the GA101 screen
with central differences at every point, the bit-pattern -0.0 test with signbit, the NumPy
scan with torch.isfinite, the cached probe with a fresh one.
"""
from __future__ import annotations

import functools
import inspect
import os
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, sample
from test_torch_builtins import TORCH, recorded, verdict

from gradaudit import audit
from gradaudit.checks import gradient
from gradaudit.core import build_options, engine_needs
from gradaudit.engine import inputs, scans, screen
from gradaudit.engine.context import AuditContext
from gradaudit.targets.types import source_location, target_from_object

sys.path.insert(0, ROOT)
from benchmarks.bench_detect import WrongSiLU  # noqa: E402  (the benchmark's planted defect)


class SlightlyWrongNearOne(torch.autograd.Function):
    """tanh whose backward is 0.3 % too large on (0.9, 1.1): just past GA101's tolerance."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        grad = g * (1 - torch.tanh(x) ** 2)
        return torch.where((x > 0.9) & (x < 1.1), grad * 1.003, grad)


def _wrong_at_one_probe_input(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``WrongSiLU``'s backward wrong at one input of the float64 probe of ``size``."""
    value = float(inputs.probe_values(torch.float64, size=size)[size // 3])
    monkeypatch.setattr(WrongSiLU, "mask", staticmethod(lambda x: x == value))


def _context(fn, size: int, **options) -> AuditContext:
    """The context a default audit of ``fn`` gets (what the selected checks need, as audit() gives it)."""
    options = build_options(size=size, **options)
    return AuditContext(target_from_object(fn), options, engine_needs(options.codes))


TARGETS = {
    "silu": F.silu,
    "relu": torch.relu,
    "hardswish": F.hardswish,
    "gelu": F.gelu,
    "softplus": F.softplus,
    "one element": WrongSiLU,
    "slightly wrong near 1": SlightlyWrongNearOne,
    "wrong above 3": sample("defects:HardswishWrongAbove3"),
    "softplus threshold bug": sample("defects:SoftplusThresholdBug"),
    "abs_softplus": sample("defects:abs_softplus"),
    "heaviside ste": sample("defects:HeavisideSTE"),
}


@pytest.mark.parametrize("size", [2048, 100_000])
@pytest.mark.parametrize("name", list(TARGETS))
def test_screen_never_passes_a_point_central_differences_would_fail(name, size, monkeypatch):
    _wrong_at_one_probe_input(size, monkeypatch)
    screened = gradient.compare(_context(TARGETS[name], size))
    monkeypatch.setattr(gradient, "screen", lambda x, *_, **__: torch.zeros(x.numel(), dtype=torch.bool))
    everywhere = gradient.compare(_context(TARGETS[name], size))
    assert torch.equal(screened["wrong"], everywhere["wrong"])
    # no point the screen passed is wrong by central differences
    passed = screened["smooth"].clone()
    passed[screened["checked_by_difference"]] = False
    assert not bool((everywhere["wrong"] & passed).any())


def test_screen_clears_most_of_a_dense_probe():
    result = gradient.compare(_context(F.silu, 200_000))
    assert result["checked_by_difference"].numel() < 0.01 * result["x"].numel()


@pytest.mark.parametrize("size", [2048, 300_000])
def test_single_wrong_element_fails_at_any_size(size, monkeypatch):
    _wrong_at_one_probe_input(size, monkeypatch)
    report = audit(WrongSiLU, size=size, select=["GA101"], dtypes=["float64"])
    (finding,) = [f for f in report.findings if f.code == "GA101"]
    assert finding.status == "fail" and finding.details["points_wrong"] == 1


def test_slightly_wrong_backward_fails_with_the_interval():
    report = audit(SlightlyWrongNearOne, size=200_000, select=["GA101"], dtypes=["float64"])
    (finding,) = [f for f in report.findings if f.code == "GA101"]
    assert finding.status == "fail"
    lo, hi = finding.details["intervals"][0]
    assert 0.9 <= lo and hi <= 1.1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_negative_zero_by_bit_pattern_matches_signbit(dtype):
    values = torch.tensor([-0.0, 0.0, -1.0, 1.0, float("-inf"), float("nan"), -1e-30, 5.0], dtype=dtype)
    values = torch.cat([values, -values])
    assert torch.equal(scans.negative_zero(values), (values == 0) & torch.signbit(values))
    strided = values[::2]  # not contiguous: the slow route
    assert torch.equal(scans.negative_zero(strided), (strided == 0) & torch.signbit(strided))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_nonfinite_scan_matches_torch(dtype):
    values = torch.tensor([0.0, -0.0, 1.0, float("inf"), float("-inf"), float("nan"), 65504.0], dtype=dtype)
    assert torch.equal(scans.nonfinite(values), ~torch.isfinite(values))
    assert torch.equal(scans.nonfinite(values[::2]), ~torch.isfinite(values[::2]))


SPECIAL = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), -float("nan"), 5e-324, -5e-324, 1e308,
           1 + 2**-21, -(1 + 2**-21)]  # the last two: a low 32-bit word 0x80000000, as -0.0's high word


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_flags_find_what_the_separate_scans_find(dtype):
    generator = torch.Generator().manual_seed(0)
    for size in (0, 11, 200_003):  # the large one spans several grains: split between threads
        values = torch.randn(size, generator=generator, dtype=torch.float64)
        where = torch.randint(0, max(size, 1), (min(size, 40),), generator=generator)
        values[where] = torch.tensor(SPECIAL * 4, dtype=torch.float64)[: where.numel()]
        values = values.to(dtype)
        for view in (values, values[::2]):
            nonfinite, negative_zero = scans.flags(view)
            assert torch.equal(nonfinite, scans.indices(~torch.isfinite(view)))
            assert torch.equal(negative_zero, scans.indices((view == 0) & torch.signbit(view)))


def _signs_and_specials(x: torch.Tensor) -> torch.Tensor:
    """x * mask (-0.0 for x < 0, and in the gradient for grad_output -1), plus a constant that
    is NaN above 1e3, inf below -1e3 and -0.0 elsewhere (which keeps every sign)."""
    special = torch.where(x > 1e3, float("nan"), torch.where(x < -1e3, float("inf"), -0.0)).detach()
    return x * (x > 0).to(x.dtype) + special


def test_an_evaluation_in_blocks_flags_what_its_stored_arrays_hold():
    ev = _context(_signs_and_specials, LARGE).evaluate(torch.float64)
    assert ev.x.numel() > 2 * screen.SCREEN_BLOCK and set(ev.found) == {"y", 1.0, -1.0}  # found per block
    for which, values in (("y", ev.y), (1.0, ev.grads[1.0]), (-1.0, ev.grads[-1.0])):
        nonfinite, negative_zero = ev.found[which]
        assert torch.equal(nonfinite, scans.indices(~torch.isfinite(values))), which
        assert torch.equal(negative_zero, scans.indices((values == 0) & torch.signbit(values))), which
    assert ev.found["y"][0].numel() and ev.found["y"][1].numel() and ev.found[-1.0][1].numel()


@pytest.mark.parametrize("values", [[], [False], [True], [False] * 99 + [True], [True, False] * 50])
def test_any_scan_matches_torch(values):
    mask = torch.tensor(values, dtype=torch.bool)
    assert scans.any_true(mask) == bool(mask.any())
    assert scans.any_true(mask[::3]) == bool(mask[::3].any())


@pytest.mark.parametrize("values", [[], [False], [True], [False] * 99 + [True], [True, False] * 50])
def test_index_and_count_scans_match_torch(values):
    mask = torch.tensor(values, dtype=torch.bool)
    for view in (mask, mask[::3]):
        assert torch.equal(scans.indices(view), torch.nonzero(view).flatten())
        assert scans.count(view) == int(torch.count_nonzero(view))


def test_spacing_is_the_reciprocal_of_the_gaps_and_of_the_shorter_one():
    x = torch.tensor([-1.0, -0.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    inverse_step, inverse_shorter = inputs.spacing(x)
    assert torch.equal(inverse_step, torch.tensor([1.0, float("inf"), 2.0, 1 / 1.5], dtype=torch.float64))
    assert torch.equal(inverse_shorter, torch.tensor([float("inf"), float("inf"), 2.0], dtype=torch.float64))
    cached = inputs.probe_spacing(torch.float64, size=5000)
    assert cached is inputs.probe_spacing(torch.float64, size=5000)
    for a, b in zip(cached, inputs.spacing(inputs.probe_values(torch.float64, size=5000))):
        assert torch.equal(a, b)


@pytest.mark.parametrize("size", [2048, 300_000])
def test_a_later_backward_cannot_change_the_gradient_already_taken(size):
    """A backward that keeps state (here: multiplies a stashed tensor in place and returns
    it) changes what it returned before on the next call. The +1 gradient is taken before
    the -1 backward runs, so GA101 sees the true one, with or without GA204 and blocks."""
    stashed = sample("hygiene:StashedDerivativeSiLU")
    for select in (["GA101"], ["GA101", "GA204"]):
        assert "GA101" not in audit(stashed, size=size, select=select).codes("fail")


def test_lower_precision_probes_take_a_bounded_share_of_the_samples():
    size = 4 * inputs.LOWER_PRECISION_SAMPLES
    full = inputs.probe_values(torch.float64, size=size)
    reduced = inputs.probe_values(torch.float32, size=size)
    assert full.numel() >= size
    assert reduced.numel() <= inputs.LOWER_PRECISION_SAMPLES + 4096
    # below the cap, every dtype sees every sample, as before
    small = inputs.probe_values(torch.float32, size=4096)
    assert small.numel() >= 4096


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_probe_is_sorted_unique_finite_even_with_both_zeros(dtype):
    probe = inputs.probe_values(dtype, size=50_000, kinks=(3.0,)).to(torch.float64)
    assert bool(torch.isfinite(probe).all()) and probe.numel() % 2 == 0
    assert bool((probe[1:] >= probe[:-1]).all())
    zeros = torch.nonzero(probe == 0).flatten().tolist()
    assert len(zeros) == 2 and torch.signbit(probe[zeros[0]]) and not torch.signbit(probe[zeros[1]])
    nonzero = probe[probe != 0]
    assert bool((nonzero[1:] > nonzero[:-1]).all())  # no duplicates


def test_audits_leave_the_shared_probe_untouched():
    for target in (F.silu, sample("defects:where_sqrt"), sample("seed_relu:no_back"), sample("defects:MaskGradReLU")):
        audit(target, size=5000)
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        cached = inputs.probe_values(dtype, size=5000)
        fresh = inputs._build_probe(dtype, None, 5000, 0, (), inputs.sample_count(dtype, 5000))
        assert torch.equal(cached, fresh) and torch.equal(torch.signbit(cached), torch.signbit(fresh))


def _every_elementwise_target() -> list:
    from conftest import SAMPLES

    from gradaudit.targets.discovery import discover
    from gradaudit.targets.groups import torch_activations

    return [t for t in discover(SAMPLES) + torch_activations() if "broken" not in t.name]


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")  # nn.Softmax() and friends, called directly
def test_screen_changes_no_gradient_verdict_on_any_sample_or_builtin(monkeypatch):
    from gradaudit.engine.options import Options

    results = {}
    for target in _every_elementwise_target():
        context = AuditContext(target, Options())
        try:
            if not context.elementwise:
                continue
            results[target.name] = gradient.compare(context)
        except Exception:  # targets that cannot be evaluated are GA901's business
            continue
    assert len(results) > 60
    monkeypatch.setattr(gradient, "screen", lambda x, *_, **__: torch.zeros(x.numel(), dtype=torch.bool))
    for target in _every_elementwise_target():
        if target.name not in results or results[target.name] is None:
            continue
        everywhere = gradient.compare(AuditContext(target, Options()))
        assert torch.equal(results[target.name]["wrong"], everywhere["wrong"]), target.name


def test_in_place_targets_leave_the_shared_probe_untouched():
    for size in (5000, 300_000):
        audit(torch.nn.ReLU(inplace=True), size=size)
        audit(torch.relu_, size=size)
        for samples in (None, 2048):
            cached = inputs.probe_values(torch.float64, size=size, samples=samples)
            fresh = inputs._build_probe(torch.float64, None, size, 0, (), inputs.sample_count(torch.float64, size, samples))
            assert torch.equal(cached, fresh) and torch.equal(torch.signbit(cached), torch.signbit(fresh))


def test_backward_with_negative_grad_output_runs_only_for_ga204():
    full = _context(F.silu, 2048)
    assert set(full.evaluate(torch.float64).grads) == {1.0, -1.0}
    gradient_only = _context(F.silu, 2048, select=["GA101"])
    assert set(gradient_only.evaluate(torch.float64).grads) == {1.0}
    assert set(AuditContext(target_from_object(F.silu), build_options()).evaluate(torch.float64).grads) == {1.0}
    # GA204 alone still sees the -0.0 that a mask-multiplying backward creates for grad_output -1
    report = audit(sample("defects:MaskGradReLU"), select=["GA204"])
    assert report.status == "warn" and report.codes("warn") == {"GA204"}


LARGE = 300_000
"""Past every cap: lower precisions take 16384 samples, structural checks the base probe, and
the float64 evaluation and the GA101 screen run in blocks."""


def test_sample_verdicts_hold_at_a_large_size():
    import os

    from conftest import SAMPLES
    from test_samples import table

    from gradaudit.core import audit_target_string

    for target, status, codes in table():
        (report,) = audit_target_string(os.path.join(SAMPLES, target), build_options(size=LARGE))
        found = {f.code for f in report.findings if f.status in ("warn", "fail", "error") and not f.suppressed}
        assert (report.status, found) == (status, codes), target


@pytest.mark.skipif(recorded()["torch"] != TORCH, reason="verdicts recorded with another torch")
@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
def test_builtin_verdicts_hold_at_a_large_size():
    from gradaudit.core import run_audit
    from gradaudit.targets.groups import torch_activations

    expected = recorded()["verdicts"]
    for target in torch_activations():
        assert verdict(run_audit(target, build_options(size=LARGE))) == expected[target.name], target.name


class SignBlindSiLU(WrongSiLU):
    """SiLU whose backward uses |grad_output| for x > 2: not linear in grad_output, so its
    -1 gradient is not the negation of its +1 gradient there."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return torch.where(x > 2, g.abs(), g) * (s * (1 + x * (1 - s)))


@pytest.mark.parametrize("fn", [F.silu, torch.relu, F.hardswish, sample("defects:where_sqrt"),
                                sample("hygiene:float32_silu"), sample("defects:MaskGradReLU"), SignBlindSiLU.apply],
                         ids=["silu", "relu", "hardswish", "where_sqrt", "float32_silu", "mask_grad_relu",
                              "sign_blind"])
def test_evaluation_in_blocks_equals_the_whole(fn, monkeypatch):
    """Blocks give the whole evaluation's values for both grad_output signs, signs of zeros
    included."""
    from gradaudit.engine import blocks

    blocked = _context(fn, LARGE)
    assert blocked.evaluate(torch.float64).x.numel() > 2 * blocks.EVALUATION_BLOCK
    monkeypatch.setattr(blocks, "EVALUATION_BLOCK", 1 << 40)
    whole = _context(fn, LARGE)
    a, b = blocked.evaluate(torch.float64), whole.evaluate(torch.float64)
    assert a.y.dtype == b.y.dtype and set(a.grads) == set(b.grads)
    for u, v in [(a.y, b.y)] + [(a.grads[s], b.grads[s]) for s in a.grads]:
        assert torch.equal(u.isnan(), v.isnan()) and torch.equal(torch.signbit(u), torch.signbit(v))
        assert torch.allclose(u, v, rtol=1e-12, atol=0.0, equal_nan=True)


def test_closed_audits_hand_their_buffers_on_and_open_ones_keep_theirs():
    first = _context(F.silu, LARGE)
    y = first.evaluate(torch.float64).y
    second = _context(F.silu, LARGE)  # while the first is open: its own buffers
    assert second.evaluate(torch.float64).y.data_ptr() != y.data_ptr()
    pointer = y.data_ptr()
    first.close()
    third = _context(F.silu, LARGE)
    assert pointer in {third.evaluate(torch.float64).y.data_ptr()} | {g.data_ptr() for g in third.evaluate(torch.float64).grads.values()}
    assert torch.equal(third.evaluate(torch.float64).y, second.evaluate(torch.float64).y)
    second.close()
    third.close()


@pytest.mark.parametrize("size", [1000, 50_000])
def test_cached_positions_match_a_search_of_the_probe(size):
    full = inputs.probe_values(torch.float64, size=size)
    base = inputs.probe_values(torch.float64, size=size, samples=2048)
    at = inputs.base_positions(domain=None, size=size, seed=0, kinks=(), base_samples=2048)
    assert bool((torch.diff(at) > 0).all())
    assert bool(torch.isin(full[at], base).all())
    assert at.numel() >= base.numel() - 1  # only the parity point may be missing
    grid = torch.from_numpy(inputs.dense_grid())
    dense = inputs.dense_points(domain=None, size=size, seed=0, kinks=())
    assert torch.equal(dense, grid) and bool(torch.isin(dense, full).all())
    assert not bool(torch.signbit(dense[grid == 0]).any())  # +0.0, not -0.0


@pytest.mark.parametrize("fn, zero_x, other_x, gentle", [
    (F.silu, -800.0, -700.0, True),                 # exp(x) decays into underflow
    (torch.nn.GELU(), -8.375, -8.359375, True),     # 1 + erf(x) cancels to zero, value by value
    (F.hardswish, -3.5, -2.5, False),               # exactly zero up to a root with a non-zero slope
])
def test_edge_search_finds_how_values_reach_a_zero_region(fn, zero_x, other_x, gentle):
    """The batched edge search (SEARCH_POINTS per call) classifies the edge of a zero region
    as the one-point bisection it replaced did, in about ten calls of the target."""
    from gradaudit.checks.signed_zero import _edge_decays

    calls = []

    def values(points: torch.Tensor) -> torch.Tensor:
        calls.append(points.numel())
        with torch.no_grad():
            return fn(points.to(torch.float64))

    assert _edge_decays(values, zero_x, other_x) is gentle
    assert len(calls) <= 16


def _decorated(fn):
    return functools.wraps(fn)(lambda *args: fn(*args))


@_decorated
def _decorated_silu(x):
    return F.silu(x)


@pytest.mark.parametrize("obj", [F.silu, _decorated_silu, SlightlyWrongNearOne, SlightlyWrongNearOne.backward,
                                 torch.nn.GELU, torch.nn.GELU().forward, sample("correct:Swish"), sample("defects:neg_relu")])
def test_source_lines_from_code_objects_match_inspect(obj):
    """The code object's first line is the line inspect.getsourcelines gives (decorators included)."""
    unwrapped = inspect.unwrap(obj)
    location = source_location(obj)
    assert location is not None
    assert location["line"] == inspect.getsourcelines(unwrapped)[1]
    assert os.path.samefile(location["path"], inspect.getsourcefile(unwrapped))


def test_built_ins_have_no_source_line():
    assert source_location(torch.relu) is None
    assert source_location(torch.sigmoid) is None


def test_gradient_check_alone_streams_a_large_probe_without_storing_it(monkeypatch):
    from gradaudit.engine.cache import EvaluationCache

    def stored(self, dtype):
        raise AssertionError("the float64 probe was evaluated whole")

    monkeypatch.setattr(EvaluationCache, "evaluate", stored)
    report = audit(F.silu, size=LARGE, select=["GA101"])
    assert report.status == "pass" and report.codes("fail") == set()


@pytest.mark.parametrize("name", list(TARGETS))
def test_streamed_gradient_check_reports_what_the_stored_one_does(name, monkeypatch):
    _wrong_at_one_probe_input(LARGE, monkeypatch)
    alone = audit(TARGETS[name], size=LARGE, select=["GA101"], dtypes=["float64"])
    full = audit(TARGETS[name], size=LARGE, dtypes=["float64"])

    def gradient_findings(report):
        return [(f.status, f.details.get("points_wrong"), f.message) for f in report.findings if f.code == "GA101"]

    assert gradient_findings(alone) == gradient_findings(full)


def test_streamed_gradient_check_agrees_with_the_full_audit_on_every_sample():
    from conftest import SAMPLES
    from test_samples import table

    from gradaudit.core import audit_target_string

    def gradient_findings(options):
        (report,) = audit_target_string(os.path.join(SAMPLES, target), options)
        return [(f.status, f.message) for f in report.findings
                if f.code == "GA101" or (f.code == "GA901" and (f.details or {}).get("during") in (None, "GA101"))]

    for target, _, _ in table():
        full = gradient_findings(build_options(size=LARGE, dtypes=["float64"]))
        alone = gradient_findings(build_options(size=LARGE, dtypes=["float64"], select=["GA101"]))
        assert alone == full, target


def _silu_on_small_tensors(x):
    if x.numel() > 100_000:
        raise ValueError("at most 100000 elements")
    return F.silu(x)


def _detached_silu(x):
    return F.silu(x).detach()


@pytest.mark.parametrize("fn, status, code", [(_silu_on_small_tensors, "error", "GA901"),
                                              (_detached_silu, "fail", "GA101")])
def test_a_target_that_fails_only_on_the_large_probe_is_reported_when_streamed(fn, status, code):
    """The streamed audit evaluates nothing up front, so a failure on the large probe alone
    surfaces in GA101, with the verdict the stored audit gives."""
    for select in (["GA101"], None):
        report = audit(fn, size=LARGE, select=select, dtypes=["float64"])
        assert report.status == status and code in report.codes(status), select


def _autograd_grad_or_error(outputs, inputs, grad_outputs, **kwargs):
    try:
        return torch.autograd.grad(outputs, inputs, grad_outputs, allow_unused=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception is what is compared
        return type(exc)


@pytest.mark.parametrize("case", ["silu", "unused", "no_grad_output_graph", "double", "non_contiguous", "function"])
def test_engine_vjp_is_autograd_grad(case):
    """The engine's vector-Jacobian product (no first-use sympy import) gives what
    torch.autograd.grad gives, values, Nones and exception types alike."""
    from gradaudit.engine.vjp import vjps

    def build():
        x = torch.linspace(-3, 3, 24, dtype=torch.float64).requires_grad_(True)
        unused = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        if case == "function":
            out = SlightlyWrongNearOne.apply(x)
        elif case == "no_grad_output_graph":
            out = F.silu(x).detach()
        elif case == "non_contiguous":
            out = F.silu(x.reshape(4, 6)).t()
        else:
            out = F.silu(x)
        g = torch.full_like(out, -1.5)
        if case == "non_contiguous":
            g = torch.full((6, 4), -1.5, dtype=torch.float64).t().contiguous().t()
        return x, unused, out, g

    for create_graph in (False, True):
        x1, unused, out, g = build()
        inputs = (x1, unused) if case == "unused" else (x1,)
        expected = _autograd_grad_or_error((out,), inputs, (g,), create_graph=create_graph)
        x, unused, out, g = build()
        inputs = (x, unused) if case == "unused" else (x,)
        try:
            got = vjps((out,), inputs, (g,), create_graph=create_graph)
        except Exception as exc:  # noqa: BLE001
            got = type(exc)
        if isinstance(expected, type):
            assert got is expected
            continue
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.equal(a, b) and a.requires_grad == b.requires_grad
        if case == "double" and create_graph:
            (second,) = vjps(got, (x,), (torch.ones_like(got[0]),))
            assert torch.equal(second, torch.autograd.grad(expected, x1, torch.ones_like(expected[0]))[0])


def test_engine_evaluations_do_not_import_sympy():
    """The engine's backwards skip autograd.grad's shape check, whose first use imports
    torch.fx.experimental.symbolic_shapes and sympy (about 0.25 s, more than an audit)."""
    import subprocess

    script = """
import sys, torch, torch.nn.functional as F
from gradaudit.core import build_options
from gradaudit.engine.context import AuditContext
from gradaudit.engine.options import Needs
from gradaudit.targets.types import target_from_object
context = AuditContext(target_from_object(F.silu), build_options(), Needs(grad_output_signs=(1.0, -1.0)))
for dtype in (torch.float64, torch.float32):
    assert set(context.evaluate(dtype).grads) == {1.0, -1.0}
context.grads64(torch.linspace(-1, 1, 5, dtype=torch.float64))
assert context.kinks == []
print(sorted(m for m in sys.modules if m == "sympy" or m.endswith("symbolic_shapes")))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_default_size_audits_run_on_one_thread_and_restore_the_callers_count():
    """Parallel regions cost more than the work on the default probe; large probes keep
    torch's threads; the caller's count is left as found either way."""
    seen = []

    def recording_silu(x):
        seen.append(torch.get_num_threads())
        return F.silu(x)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        audit(recording_silu, dtypes=["float64"], select=["GA101", "GA201"])
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        audit(recording_silu, dtypes=["float64"], select=["GA101"], size=5000)
        assert seen and set(seen) == {2} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
