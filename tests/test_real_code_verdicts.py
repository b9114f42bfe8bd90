"""Classes of real third-party code that got wrong verdicts (found auditing copies of
transformers, timm, Megatron-LM, flash-attn, snntorch and learnable-PReLU code): a kink on a
probe point past [-10, 10], a backward with too few gradients beside constant inputs, an
x-gradient right only at a parameter's value 1, a backward returning tuples, and NaN in a
shape-changing target."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import sample

import gradaudit

FAST = ["float64", "float32"]


def problems(report) -> set[tuple[str, str]]:
    return {(f.code, f.status) for f in report.findings if f.status in ("warn", "fail", "error")}


@pytest.mark.parametrize("fn, kink", [
    (lambda x: torch.clamp(x, -10, 10), 10.0),
    (lambda x: torch.clamp(x, max=12.0), 12.0),
    (lambda x: F.hardtanh(x, -10.0, 10.0), -10.0),
    (lambda x: torch.relu(x - 20.0), 20.0),
    (lambda x: torch.clamp(x, max=1e5), 1e5),
])
def test_a_kink_on_a_tail_probe_point_is_a_kink_not_a_wrong_gradient(fn, kink):
    report = gradaudit.audit(fn, dtypes=FAST)
    assert report.status == "pass", problems(report)
    assert kink in {f.details.get("location") for f in report.findings if f.code == "GA301"} or any(
        f.code == "GA301" and f.status == "info" and f.examples and f.examples[0].get("input") == kink
        for f in report.findings)


def test_rounding_noise_of_a_float32_formula_makes_no_tail_kinks():
    report = gradaudit.audit(lambda x: F.silu(x.float()).double() if x.dtype == torch.float64 else F.silu(x),
                             dtypes=["float64"], select=["GA301"])
    assert not [f for f in report.findings if f.code == "GA301"]


def test_a_wrong_tail_kink_gradient_still_fails():
    class ClampTwo(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(max=20.0)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * torch.where(x < 20, 1.0, torch.where(x == 20, 2.0, 0.0)).to(grad.dtype)

    assert ("GA301", "fail") in problems(gradaudit.audit(ClampTwo, dtypes=FAST))


def test_too_few_gradients_beside_constants_fails():
    report = gradaudit.audit(sample("real_code:_ScaledTanhMissingNone"), inputs={"slope": 2.0}, dtypes=FAST)
    assert report.status == "fail"
    assert ("GA101", "input-count") in {(f.code, f.kind) for f in report.findings}


class PReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return torch.where(x > 0, x, weight * x)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return torch.where(x > 0, grad, weight * grad), torch.where(x > 0, 0.0, x * grad).sum_to_size(weight.shape)


def test_x_gradient_is_checked_with_parameter_like_inputs_away_from_one():
    assert gradaudit.audit(PReLU, inputs={"weight": (8,)}, dtypes=FAST).status == "pass"
    wrong = gradaudit.audit(sample("real_code:_LearnedPReLUWrongX"), inputs={"weight": (8,)}, dtypes=FAST)
    assert ("GA101", "input-gradcheck", "fail") in {(f.code, f.kind, f.status) for f in wrong.findings}
    assert not any(f.code == "GA105" and f.status == "fail" for f in wrong.findings)  # the weight's own is right


class TupleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias):
        return x + bias

    @staticmethod
    def backward(ctx, grad):
        return (grad, grad), grad.sum(0)  # a tuple where a gradient belongs


def test_a_backward_returning_a_tuple_is_a_fail_not_a_gradaudit_crash():
    report = gradaudit.audit(TupleBackward, inputs={"bias": (8,)}, dtypes=FAST)
    assert report.status == "fail"
    assert not any(f.code == "GA901" for f in report.findings)


def log_glu(y):
    y_1, y_2 = torch.chunk(y, 2, -1)
    return y_1 * torch.exp(y_2) / torch.exp(y_2)  # inf / inf where exp overflows


def sqrt_glu(y):
    y_1, y_2 = torch.chunk(y, 2, -1)
    return torch.where(y_1 > 0, torch.sqrt(y_1), 0.0) * y_2


def test_shape_changing_targets_get_nonfinite_checks():
    forward = gradaudit.audit(log_glu, dtypes=FAST, select=["GA201"])
    assert {(f.code, f.kind, f.status) for f in forward.findings} >= {("GA201", "nonfinite-reshaped", "fail")}
    backward = gradaudit.audit(sqrt_glu, dtypes=["float64"], select=["GA202"])
    assert ("GA202", "nonfinite-reshaped", "fail") in {(f.code, f.kind, f.status) for f in backward.findings}
    assert gradaudit.audit(F.glu, dtypes=FAST, select=["GA201", "GA202"]).status == "pass"


class RoundSTE(torch.autograd.Function):
    """brevitas' round_ste: round forward, identity backward."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class FloorSTE(RoundSTE):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)


class ClampNegativesWrong(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad  # wrong for x < 0, where the forward is flat: not a staircase


@pytest.mark.parametrize("ste", [RoundSTE, FloorSTE])
def test_an_undeclared_round_ste_is_one_ga302_warn_not_a_ga101_fail(ste):
    report = gradaudit.audit(ste, dtypes=FAST)
    assert report.status == "warn"
    assert [(f.code, f.kind) for f in report.findings if f.code in ("GA101", "GA302") and f.status != "info"] == [
        ("GA302", "straight-through")]
    assert gradaudit.audit(ste, dtypes=FAST, surrogate=True, select=["GA101", "GA302"]).status == "pass"


def test_a_backward_wrong_where_the_forward_is_flat_is_still_ga101():
    assert ("GA101", "fail") in problems(gradaudit.audit(ClampNegativesWrong, dtypes=FAST))


@pytest.mark.parametrize("low", [0.1, -1e-6])
def test_a_kink_constant_rounded_in_float16_is_no_dtype_warning(low):
    report = gradaudit.audit(lambda x: x.clamp(min=low), select=["GA403"])
    assert report.status == "pass", [f.message for f in report.findings]


def test_a_spurious_zero_example_lies_inside_its_region():
    report = gradaudit.audit(F.hardswish, dtypes=["float32"], select=["GA203"])
    (finding,) = [f for f in report.findings if f.status == "warn"]
    assert finding.examples[0]["input"] < -3.0


class SinFunction(torch.autograd.Function):
    """SIREN's sine with a hand-written backward: exact."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(30 * x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 30 * torch.cos(30 * x)


def test_a_sine_is_unresolved_far_out_not_wrong():
    for target in (torch.sin, SinFunction):
        report = gradaudit.audit(target, dtypes=["float64"], select=["GA101"])
        assert report.status == "pass"
        assert [f.status for f in report.findings] == ["info"]  # the points float64 cannot resolve, counted


def tanh_in_float32(x):
    return torch.tanh(x.float()).to(x.dtype)


class TanhInFloat32WrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return tanh_in_float32(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (1 - tanh_in_float32(x))  # should be 1 - tanh**2


def test_float64_computed_in_float32_is_one_dtype_warning_not_a_wrong_gradient():
    report = gradaudit.audit(tanh_in_float32)
    assert report.status == "warn"
    assert {(f.code, f.kind) for f in report.findings if f.status != "info"} == {("GA403", "computed-in-float32")}
    wrong = gradaudit.audit(TanhInFloat32WrongBackward, dtypes=FAST)
    assert ("GA101", "fail") in problems(wrong)


@pytest.mark.parametrize("target", [torch.tanh, F.relu, torch.sign, torch.round, F.hardtanh])
def test_float64_targets_are_not_taken_for_float32_inside(target):
    report = gradaudit.audit(target, dtypes=["float64"], select=["GA403"])
    assert not [f for f in report.findings if f.kind == "computed-in-float32"]


class StarReLU(torch.nn.Module):
    """timm's StarReLU: scale * relu(x) ** 2 + bias, with parameters of shape (1,)."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0):
        super().__init__()
        self.scale = torch.nn.Parameter(scale_value * torch.ones(1))
        self.bias = torch.nn.Parameter(bias_value * torch.ones(1))

    def forward(self, x):
        return self.scale * torch.relu(x) ** 2 + self.bias


def test_a_one_element_parameter_turning_a_0d_input_into_shape_1_is_info():
    report = gradaudit.audit(StarReLU(), dtypes=FAST)
    assert report.status == "pass"
    assert ("GA404", "layout-info", "info") in {(f.code, f.kind, f.status) for f in report.findings}


@torch.library.custom_op("gradaudit_real_code::relu_strides", mutates_args=())
def relu_strides(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x)  # keeps x's strides


@relu_strides.register_fake
def _(x):
    return x.new_empty(x.shape)  # always contiguous: wrong for a transposed x


def _save_input(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _relu_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.where(x > 0, grad, torch.zeros_like(grad))


relu_strides.register_autograd(_relu_backward, setup_context=_save_input)


def test_a_fake_kernel_with_the_wrong_strides_fails_ga407():
    report = gradaudit.audit(relu_strides, dtypes=["float32"], select=["GA407"])
    assert report.status == "fail"


class DynamicTanh(torch.nn.Module):
    """DyT with per-channel weight and bias of shape (8,)."""

    def __init__(self):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.tensor(0.5))
        self.weight = torch.nn.Parameter(torch.ones(8))
        self.bias = torch.nn.Parameter(torch.zeros(8))

    def forward(self, x):
        return torch.tanh(self.alpha * x) * self.weight + self.bias


def test_per_channel_modules_get_double_backward_and_forward_ad_checked_in_their_layout():
    report = gradaudit.audit(DynamicTanh(), dtypes=["float64"], select=["GA102", "GA103"])
    assert report.status == "pass"
    assert not [f for f in report.findings if f.kind == "unsupported"]


class _BetaSwishFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta):
        ctx.save_for_backward(x, beta)
        return x * torch.sigmoid(beta * x)

    @staticmethod
    def backward(ctx, grad):
        x, beta = ctx.saved_tensors
        s = torch.sigmoid(beta * x)
        grad_beta = (grad * x * x * s * (1 - s)).sum()  # x * x overflows where s * (1 - s) is 0: NaN
        return grad * (s + beta * x * s * (1 - s)), grad_beta


class LearnableSwish(torch.nn.Module):
    def __init__(self, fused: bool = True):
        super().__init__()
        self.beta = torch.nn.Parameter(torch.tensor(1.0))
        self.fused = fused

    def forward(self, x):
        return _BetaSwishFunction.apply(x, self.beta) if self.fused else x * torch.sigmoid(self.beta * x)


def test_a_parameter_gradient_nan_in_a_low_dtype_fails_ga202():
    report = gradaudit.audit(LearnableSwish(), dtypes=FAST)
    assert ("GA202", "parameter", "fail") in {(f.code, f.kind, f.status) for f in report.findings}
    assert gradaudit.audit(LearnableSwish(fused=False), dtypes=FAST).status == "pass"


class SpikeWithThreshold(torch.autograd.Function):
    """A surrogate spike with a tensor threshold (as NeuroTorch's HeavisideSigmoidApprox)."""

    @staticmethod
    def forward(ctx, x, threshold):
        ctx.save_for_backward(x, threshold)
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, threshold = ctx.saved_tensors
        g = grad / (10 * torch.abs(x - threshold) + 1.0) ** 2
        return g, (-g).sum_to_size(threshold.shape)


@pytest.mark.parametrize("role", [(8,), "like"])
def test_an_undeclared_spike_with_a_threshold_input_is_one_ga302_warn(role):
    report = gradaudit.audit(SpikeWithThreshold, inputs={"threshold": role}, dtypes=FAST)
    assert report.status == "warn"
    assert [(f.code, f.kind) for f in report.findings if f.status != "info"] == [("GA302", "straight-through")]
    assert gradaudit.audit(SpikeWithThreshold, inputs={"threshold": role}, dtypes=FAST, surrogate=True).status == "pass"


def quantize_ste(x, step=0.05 + 1e-8):
    """LSQ-style fake quantization with a detach STE, a step that is no multiple of the probe's."""
    q = torch.clamp(torch.round(x / step), -128, 127) * step
    return x + (q - x).detach()


def test_a_quantizer_with_an_odd_step_is_a_straight_through_warn_without_dtype_warnings():
    report = gradaudit.audit(quantize_ste)
    assert report.status == "warn"
    assert {(f.code, f.kind) for f in report.findings if f.status != "info"} == {("GA302", "straight-through")}


def bias_dropout_add(x, bias, residual):
    return residual + F.dropout(x + bias, p=0.1, training=True)


def test_a_random_target_gets_no_layout_fail_against_a_parameter_like_input():
    report = gradaudit.audit(bias_dropout_add, inputs={"bias": (8,)}, dtypes=FAST)
    assert not any(f.code == "GA404" and f.status == "fail" for f in report.findings)
    assert ("GA402", "warn") in problems(report)


def rms_gate_in_float32(x, weight):
    """An RMS-normalised gate written for bf16: reduces over rows, in float32 inside."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + 1e-6) * weight.float()).to(x.dtype)


def test_float32_inside_is_found_for_targets_that_are_not_elementwise():
    report = gradaudit.audit(rms_gate_in_float32, inputs={"weight": (8,)}, dtypes=["float64"],
                             select=["GA101", "GA105", "GA403"])
    assert {(f.code, f.kind) for f in report.findings if f.status != "info"} == {("GA403", "computed-in-float32")}


def test_an_inplace_module_is_a_ga401_fail_not_an_error():
    report = gradaudit.audit(torch.nn.Hardswish(inplace=True), dtypes=FAST)
    assert report.status == "fail"
    assert ("GA401", "fail") in problems(report) and not any(f.code == "GA901" for f in report.findings)


def hand_rrelu(x):
    """RReLU written by hand: a random slope per element (training mode)."""
    slope = torch.empty_like(x).uniform_(1 / 8, 1 / 3)
    return torch.where(x >= 0, x, x * slope)


def test_random_targets_are_random_not_imprecise():
    report = gradaudit.audit(hand_rrelu)
    assert ("GA402", "warn") in problems(report) and not any(f.code == "GA403" for f in report.findings)
    soft = gradaudit.audit(lambda x: F.gumbel_softmax(x, tau=1.0, hard=False), dtypes=FAST, select=["GA402"])
    assert ("GA402", "warn") in problems(soft)


class GatedProjection(torch.nn.Module):
    """A module class with random initial weights (diffusers' GEGLU with a Linear(1, 2))."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(1, 2)

    def forward(self, x):
        hidden, gate = self.proj(x.unsqueeze(-1)).unbind(-1)
        return hidden * torch.sigmoid(gate)


def test_a_module_class_is_built_once_so_every_dtype_audits_one_function():
    state = torch.random.get_rng_state()
    report = gradaudit.audit(GatedProjection, select=["GA201", "GA403"])
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's generator as it was
    assert not any(f.code == "GA201" and f.status == "fail" for f in report.findings)


def silu_in_float32(x):
    return F.silu(x.float()).to(x.dtype)


def test_float64_past_float32s_range_inside_a_float32_target_is_the_downcasts_info():
    report = gradaudit.audit(silu_in_float32)
    assert report.status == "warn"
    assert {(f.code, f.kind) for f in report.findings if f.status != "info"} == {("GA403", "computed-in-float32")}
    assert any(f.code == "GA201" and f.status == "info" for f in report.findings)


class LearnedStepQuantizer(torch.nn.Module):
    """LSQ-style quantizer with a learned step and a detach STE, undeclared."""

    def __init__(self):
        super().__init__()
        self.step = torch.nn.Parameter(torch.tensor(0.05))

    def forward(self, x):
        q = torch.clamp(torch.round(x / self.step), -128, 127) * self.step
        return x + (q - x).detach()


def test_an_undeclared_quantizer_module_is_a_ga302_warn_without_ga105():
    report = gradaudit.audit(LearnedStepQuantizer(), dtypes=FAST)
    assert ("GA302", "warn") in problems(report) and not any(f.code == "GA105" for f in report.findings)


def test_a_snake_of_another_frequency_has_no_second_order_warning():
    report = gradaudit.audit(lambda x: x + torch.sin(3 * x) ** 2 / 3, dtypes=["float64"], select=["GA101", "GA102"])
    assert report.status == "pass"
    assert ("GA102", "warn") in problems(gradaudit.audit(sample("hygiene:DetachedSiLU"), dtypes=["float64"],
                                                         select=["GA102"]))
