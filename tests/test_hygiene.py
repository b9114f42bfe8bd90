"""Autograd hygiene checks: GA102-GA105 and GA401-GA404 on samples of known verdict."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gradaudit
from conftest import sample

HYGIENE = ["GA102", "GA103", "GA104", "GA105", "GA401", "GA402", "GA403", "GA404"]
FAST = ["float64", "float32"]


def statuses(report: gradaudit.Report, code: str) -> set[str]:
    return {f.status for f in report.findings if f.code == code}


def findings(report: gradaudit.Report, code: str) -> list[gradaudit.Finding]:
    return [f for f in report.findings if f.code == code]


# -- GA401 inplace -------------------------------------------------------------------------------
def test_backward_that_writes_into_grad_output_fails_ga401() -> None:
    report = gradaudit.audit(sample("hygiene:GradOutputMaskReLU"), select=["GA401"], dtypes=["float64"])
    assert statuses(report, "GA401") == {"fail"}
    (finding,) = findings(report, "GA401")
    assert finding.location is not None and finding.location["path"].endswith("hygiene.py")
    assert finding.details["version_after"] > finding.details["version_before"]


@pytest.mark.parametrize("target", [sample("hygiene:relu_inplace"), nn.ReLU(inplace=True)],
                         ids=["relu_", "nn.ReLU(inplace=True)"])
def test_forward_that_modifies_its_input_fails_ga401(target: object) -> None:
    report = gradaudit.audit(target, select=["GA401"], dtypes=["float64"])
    assert statuses(report, "GA401") == {"fail"}


def test_in_place_forward_does_not_corrupt_the_other_checks() -> None:
    report = gradaudit.audit(sample("hygiene:relu_inplace"), dtypes=FAST)
    assert "GA901" not in report.codes()
    assert report.codes("fail") == {"GA401"}


def test_clone_before_masking_passes_ga401() -> None:
    report = gradaudit.audit(sample("seed_relu:MyReLU"), select=["GA401"], dtypes=["float64"])
    assert report.findings == []


# -- GA402 determinism ---------------------------------------------------------------------------
def test_ctx_stashed_derivative_multiplied_in_place_fails_ga402() -> None:
    report = gradaudit.audit(sample("hygiene:StashedDerivativeSiLU"), select=["GA402"], dtypes=["float64"])
    assert statuses(report, "GA402") == {"fail"}


def test_random_forward_warns_ga402_and_eval_mode_passes() -> None:
    training = gradaudit.audit(nn.RReLU(), select=["GA402"], dtypes=["float64"])
    assert statuses(training, "GA402") == {"warn"}
    evaluating = gradaudit.audit(nn.RReLU().eval(), select=["GA402"], dtypes=["float64"])
    assert findings(evaluating, "GA402") == []


def test_random_target_leaves_the_callers_rng_as_found() -> None:
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    gradaudit.audit(nn.RReLU(), select=["GA402", "GA404"], dtypes=FAST)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.is_autocast_enabled("cpu")


# -- GA403 dtype ---------------------------------------------------------------------------------
def test_float32_output_for_float64_and_float16_inputs_warns_ga403() -> None:
    report = gradaudit.audit(sample("hygiene:float32_silu"), select=["GA403"],
                             dtypes=["float64", "float32", "float16"])
    assert statuses(report, "GA403") == {"warn"}
    assert {d for f in findings(report, "GA403") for d in f.all_dtypes} == {"float64", "float16"}


def test_exp_overflow_silu_warns_ga403_in_float16() -> None:
    report = gradaudit.audit(sample("hygiene:exp_silu"), select=["GA403"], dtypes=["float32", "float16"])
    warned = findings(report, "GA403")
    assert {f.status for f in warned} == {"warn"}
    assert {f.dtype for f in warned} == {"float16"}
    assert warned[0].details["nonfinite"] > 0


def test_stable_silu_passes_ga403_in_low_precision() -> None:
    report = gradaudit.audit(F.silu, select=["GA403"])
    assert findings(report, "GA403") == []


def test_target_that_fails_in_bfloat16_warns_ga403() -> None:
    report = gradaudit.audit(sample("hygiene:numpy_tanh"), select=["GA403"], dtypes=["float32", "bfloat16"])
    assert {(f.status, f.dtype) for f in findings(report, "GA403")} == {("warn", "bfloat16")}


def test_failure_under_cpu_autocast_warns_ga403() -> None:
    report = gradaudit.audit(sample("hygiene:autocast_index_put"), select=["GA403"], dtypes=["float32", "bfloat16"])
    autocast = [f for f in findings(report, "GA403") if (f.details or {}).get("autocast") == "bfloat16"]
    assert [f.status for f in autocast] == ["warn"]
    plain = gradaudit.audit(sample("hygiene:autocast_index_put"), select=["GA403"], dtypes=["float32"])
    assert findings(plain, "GA403") == []


def test_probe_length_is_not_mistaken_for_a_dtype_failure() -> None:
    """glu needs an even length; the float16 probe set happens to have an odd one."""
    report = gradaudit.audit(F.glu, select=["GA403"])
    assert findings(report, "GA403") == []


# -- GA102 second-order --------------------------------------------------------------------------
def test_detached_double_backward_warns_ga102() -> None:
    report = gradaudit.audit(sample("hygiene:DetachedSiLU"), select=["GA102"], dtypes=["float64"])
    (finding,) = findings(report, "GA102")
    assert finding.status == "warn"
    assert finding.details["detached"] is True


def test_detached_double_backward_of_non_elementwise_target_warns_ga102() -> None:
    report = gradaudit.audit(sample("hygiene:DetachedSoftmax"), select=["GA102"], dtypes=["float64"])
    assert statuses(report, "GA102") == {"warn"}


@pytest.mark.parametrize("target", [sample("hygiene:OnceDifferentiableSiLU"), F.hardsigmoid],
                         ids=["once_differentiable", "F.hardsigmoid"])
def test_double_backward_that_raises_is_info_ga102(target: object) -> None:
    report = gradaudit.audit(target, select=["GA102"], dtypes=["float64"])
    assert statuses(report, "GA102") == {"info"}


def test_correct_double_backward_passes_ga102() -> None:
    for target in (F.silu, sample("correct:SiLUFunction"), torch.tanh):
        assert findings(gradaudit.audit(target, select=["GA102"], dtypes=["float64"]), "GA102") == []


# -- GA103 forward-ad ----------------------------------------------------------------------------
def test_jvp_that_disagrees_with_backward_fails_ga103() -> None:
    report = gradaudit.audit(sample("hygiene:WrongJvpSiLU"), select=["GA103"], dtypes=["float64"])
    assert statuses(report, "GA103") == {"fail"}


@pytest.mark.parametrize(("name", "missing"), [("seed_relu:MyReLU", ["setup_context", "jvp"]),
                                                ("hygiene:SetupContextNoVmap", [])])
def test_missing_forward_ad_support_is_info_naming_what_to_add(name: str, missing: list[str]) -> None:
    report = gradaudit.audit(sample(name), select=["GA103"], dtypes=["float64"])
    if not missing:  # SetupContextNoVmap inherits ModernReLU's jvp: supported
        assert findings(report, "GA103") == []
        return
    (finding,) = findings(report, "GA103")
    assert finding.status == "info"
    assert finding.details["missing"] == missing


# -- GA104 vmap ----------------------------------------------------------------------------------
def test_old_style_function_is_info_naming_setup_context_ga104() -> None:
    report = gradaudit.audit(sample("seed_relu:MyReLU"), select=["GA104"], dtypes=["float64"])
    assert {f.status for f in findings(report, "GA104")} == {"info"}
    assert {f.details["transform"] for f in findings(report, "GA104")} == {"vmap", "grad"}
    assert all(f.details["missing"] == ["setup_context"] for f in findings(report, "GA104"))


def test_function_without_vmap_rule_is_info_naming_it_ga104() -> None:
    report = gradaudit.audit(sample("hygiene:SetupContextNoVmap"), select=["GA104"], dtypes=["float64"])
    (finding,) = findings(report, "GA104")
    assert (finding.status, finding.details["transform"], finding.details["missing"]) == ("info", "vmap", ["vmap"])


def test_torch_func_ready_function_passes_ga103_and_ga104() -> None:
    report = gradaudit.audit(sample("hygiene:ModernReLU"), select=["GA103", "GA104"], dtypes=["float64"])
    assert report.findings == []


# -- GA404 shape ---------------------------------------------------------------------------------
def test_view_on_non_contiguous_input_fails_ga404() -> None:
    report = gradaudit.audit(sample("hygiene:FlatViewReLU"), select=["GA404"], dtypes=FAST)
    assert statuses(report, "GA404") == {"fail"}
    layouts = {f.details["layout"] for f in findings(report, "GA404")}
    assert any(layout.startswith("transposed") for layout in layouts)
    assert any(layout.startswith("channels_last") for layout in layouts)


def test_shape_changing_elementwise_target_fails_ga404() -> None:
    report = gradaudit.audit(lambda x: torch.relu(x).reshape(-1), select=["GA404"], dtypes=["float64"])
    assert statuses(report, "GA404") == {"fail"}


def test_random_target_is_only_run_by_ga404() -> None:
    report = gradaudit.audit(nn.Dropout(0.5), select=["GA404"], dtypes=["float64"])
    assert findings(report, "GA404") == []


# -- GA105 parameter-gradient --------------------------------------------------------------------
def test_wrong_parameter_gradient_fails_ga105() -> None:
    report = gradaudit.audit(sample("hygiene:WrongWeightGradPReLU"), select=["GA105"], dtypes=["float64"])
    (finding,) = findings(report, "GA105")
    assert (finding.status, finding.details["parameter"]) == ("fail", "weight")


def test_parameter_without_any_gradient_fails_ga105() -> None:
    class DetachedScale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(2.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale.detach()

    report = gradaudit.audit(DetachedScale(), select=["GA105"], dtypes=["float64"])
    assert statuses(report, "GA105") == {"fail"}


@pytest.mark.parametrize("target", [nn.PReLU(), sample("correct:Swish"), nn.PReLU(num_parameters=1, init=-0.5)],
                         ids=["nn.PReLU()", "Swish", "PReLU(init=-0.5)"])
def test_correct_parameter_gradients_pass_ga105(target: object) -> None:
    report = gradaudit.audit(target, select=["GA105"], dtypes=["float64"])
    assert findings(report, "GA105") == []


def test_parameter_check_leaves_the_module_unchanged() -> None:
    module = nn.PReLU()
    before = module.weight.detach().clone()
    gradaudit.audit(module, select=["GA105"], dtypes=["float64"])
    assert torch.equal(module.weight.detach(), before) and module.weight.grad is None


# -- targets that must stay clean ----------------------------------------------------------------
CLEAN = {
    "torch.relu": torch.relu,
    "F.gelu": F.gelu,
    "F.silu": F.silu,
    "F.hardsigmoid": F.hardsigmoid,
    "nn.PReLU()": nn.PReLU(),
    "softmax(dim=-1)": functools.partial(F.softmax, dim=-1),
    "F.glu": F.glu,
}


@pytest.mark.parametrize("name", list(CLEAN))
def test_builtin_activations_get_no_hygiene_warn_or_fail(name: str) -> None:
    report = gradaudit.audit(CLEAN[name], select=HYGIENE)
    assert report.status == "pass", [(f.code, f.status, f.message) for f in report.findings]


@pytest.mark.parametrize("name", [n for n in CLEAN if n != "F.glu"])
def test_builtin_activations_still_pass_the_full_audit(name: str) -> None:
    assert gradaudit.audit(CLEAN[name]).status == "pass"


@pytest.mark.parametrize(("spec", "expected"), [
    ("seed_relu:MyReLU", "pass"), ("seed_relu:no_back", "warn"),
    ("correct:SiLUFunction", "pass"), ("correct:where_relu", "pass"), ("correct:stable_softplus", "pass"),
    ("correct:safe_sqrt_relu", "pass"), ("correct:Swish", "pass"), ("correct:leaky", "pass"),
])
def test_sample_verdicts_are_unchanged(spec: str, expected: str) -> None:
    assert gradaudit.audit(sample(spec)).status == expected


@pytest.mark.parametrize(("target", "expected"), [(F.hardswish, "warn"), (torch.relu, "pass"),
                                                  (F.silu, "pass"), (torch.tanh, "pass")],
                         ids=["F.hardswish", "torch.relu", "F.silu", "torch.tanh"])
def test_builtin_verdicts_are_unchanged(target: object, expected: str) -> None:
    assert gradaudit.audit(target).status == expected
