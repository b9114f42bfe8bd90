"""Issue 19, "checks as data": every check declares its message templates by kind, and every
finding is built through the one constructor, :meth:`gradaudit.model.check.Check.finding`,
which fills the template, applies the surrogate rule and gives the finding its kind and slug.
Also the false GA101 fail for a function whose true gradient is 0 (a constant, a step)."""
from __future__ import annotations

import ast
import os
import string
from types import SimpleNamespace

import pytest

from conftest import ROOT, SAMPLES, sample
from gradaudit import audit
from gradaudit.core import audit_target_string, build_options
from gradaudit.model.check import SURROGATE_EXPECTED, Check, placeholders
from gradaudit.model.report import Finding
from test_samples import table

BUILDERS = [os.path.join(ROOT, "gradaudit", "checks", name)
            for name in sorted(os.listdir(os.path.join(ROOT, "gradaudit", "checks"))) if name.endswith(".py")]
BUILDERS.append(os.path.join(ROOT, "gradaudit", "failures.py"))


def _catalogue() -> dict[str, Check]:
    from gradaudit.checks import catalogue

    return catalogue()


@pytest.mark.parametrize("path", BUILDERS, ids=[os.path.relpath(p, ROOT) for p in BUILDERS])
def test_checks_build_findings_only_through_the_constructor(path):
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    direct = [node.lineno for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
              and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) == "Finding"]
    assert not direct, f"{os.path.relpath(path, ROOT)} builds Finding(...) by hand at lines {direct}"


def test_every_check_declares_well_formed_templates():
    for code, check in _catalogue().items():
        assert check.messages, f"{code} declares no message templates"
        for kind, template in check.messages.items():
            assert kind and kind == kind.lower() and " " not in kind, (code, kind)
            fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
            assert all(name.isidentifier() for name in fields), (code, kind, fields)  # no {} or {0}
            specs = {name: spec for _, name, spec, _ in string.Formatter().parse(template) if name}
            template.format(**{name: 1.5 if spec else "v" for name, spec in specs.items()})  # well-formed
        assert set(check.surrogate_kinds) <= set(check.messages), code


CONSTRUCTOR_ARGUMENTS = {"audit", "location", "dtype", "examples", "details", "input"}


def _module_checks(path: str) -> dict[str, Check]:
    """The checks of one builder module, by the names it gives them (``GRADIENT``, ``ERROR``)."""
    import importlib

    name = "gradaudit." + os.path.relpath(path, os.path.join(ROOT, "gradaudit"))[:-3].replace(os.sep, ".")
    name = name.removesuffix(".__init__")
    module = importlib.import_module(name)
    found = {key: value for key, value in vars(module).items() if isinstance(value, Check)}
    found.update({"ERROR": _catalogue()["GA901"]})
    return found


@pytest.mark.parametrize("path", BUILDERS, ids=[os.path.relpath(p, ROOT) for p in BUILDERS])
def test_every_call_site_fills_exactly_its_template(path):
    """Each ``CHECK.finding("kind", ...)`` with a literal kind passes the values its template
    takes, no more, no fewer: also for kinds no sample reaches (CUDA, a reference, bad options)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    checks = _module_checks(path)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "finding"
                and isinstance(node.func.value, ast.Name) and node.func.value.id in checks and node.args
                and isinstance(node.args[0], ast.Constant)):
            continue
        check, kind = checks[node.func.value.id], node.args[0].value
        assert kind in check.messages, (path, node.lineno, kind)
        if any(k.arg is None for k in node.keywords):
            continue  # **values: checked when built (the samples)
        given = {k.arg for k in node.keywords} - CONSTRUCTOR_ARGUMENTS
        assert given == placeholders(check.messages[kind]) - {"fix", "dtype"}, (path, node.lineno, kind)


def test_surrogate_rule_is_declared_where_design_says():
    """DESIGN.md: GA101, GA105 and GA302 are info when the target is declared a surrogate."""
    declared = {code for code, check in _catalogue().items() if check.surrogate_kinds}
    assert declared == {"GA101", "GA105", "GA302"}
    assert all(_catalogue()[code].surrogate_status == "info" for code in declared)


@pytest.fixture(scope="module")
def sample_findings() -> list[tuple[str, Finding]]:
    found = []
    for target, _, _ in table():
        (report,) = audit_target_string(os.path.join(SAMPLES, target), build_options())
        found += [(target, finding) for finding in report.findings]
    return found


def test_every_sample_finding_has_a_declared_kind_and_a_filled_template(sample_findings):
    checks = _catalogue()
    assert sample_findings
    for target, finding in sample_findings:
        check = checks[finding.code]
        assert finding.kind in check.messages, (target, finding.code, finding.kind)
        assert finding.check == check.slug, (target, finding.code)
        assert finding.to_dict()["kind"] == finding.kind
        template = check.messages[finding.kind]
        # every placeholder was filled: the fixed text between them is all there, in order
        position = 0
        for literal, _, _, _ in string.Formatter().parse(template):
            literal = literal.replace("{{", "{").replace("}}", "}")
            found = finding.message.find(literal, position)
            assert found >= 0, (target, finding.code, finding.kind, literal)
            position = found + len(literal)


def test_every_kind_of_most_checks_is_seen_in_the_samples(sample_findings):
    """The samples exercise many kinds: a kind renamed in a check but not at its call site
    would raise (KeyError), so seeing them built is the test that the names agree."""
    seen = {(f.code, f.kind) for _, f in sample_findings}
    assert len(seen) >= 40, sorted(seen)


CHECK = Check(code="GA101", slug="gradient", status="fail", summary="", explanation="",
              fix="Fix the backward, or declare surrogate=True.", location_role="backward",
              surrogate_kinds=("wrong",),
              messages={"wrong": "wrong at {count} points in {dtype}. {fix}", "other": "{reason}."})


def _audit(surrogate: bool) -> SimpleNamespace:
    return SimpleNamespace(options=SimpleNamespace(surrogate=surrogate),
                           target=SimpleNamespace(source=lambda role: {"path": "t.py", "line": 1, "role": role}))


def test_the_constructor_fills_kind_slug_location_and_the_surrogate_rule():
    plain = CHECK.finding("wrong", "fail", audit=_audit(False), count=3, dtype="float64")
    assert (plain.code, plain.check, plain.kind, plain.status) == ("GA101", "gradient", "wrong", "fail")
    assert plain.location == {"path": "t.py", "line": 1, "role": "backward"}
    assert plain.message.endswith(CHECK.fix) and "float64" in plain.message
    declared = CHECK.finding("wrong", "fail", audit=_audit(True), count=3, dtype="float64")
    assert declared.status == "info" and declared.message.endswith(SURROGATE_EXPECTED)
    other = CHECK.finding("other", "fail", audit=_audit(True), reason="no gradient")
    assert other.status == "fail"  # not a surrogate kind


def test_the_constructor_refuses_unfilled_or_unknown_values():
    with pytest.raises(KeyError):
        CHECK.finding("wrong", "fail")  # {count} unfilled
    with pytest.raises(KeyError):
        CHECK.finding("other", "fail", reason="r", typo=1)  # no placeholder takes it
    with pytest.raises(KeyError):
        CHECK.finding("undeclared", "fail")
    assert placeholders("at {x} in {dtype}: {error:.3g}") == {"x", "dtype", "error"}


def test_kind_is_in_the_json_only_when_set():
    assert "kind" not in Finding("GA901", "error", "by hand").to_dict()
    assert Finding("GA901", "error", "by hand").check == "error"  # from the model's code table


# -- the false GA101 fail: no gradient is the right gradient of a flat function -----------------
@pytest.mark.parametrize("name", ["constant_zero", "heaviside_step"])
def test_no_gradient_of_a_flat_forward_is_no_fail(name):
    report = audit(sample(f"checks_data:{name}"))
    assert report.status == "pass", report.to_dict()
    (gradient,) = [f for f in report.findings if f.code == "GA101"]
    assert (gradient.status, gradient.kind) == ("info", "constant")


def test_no_gradient_of_a_varying_forward_still_fails():
    report = audit(sample("hygiene:numpy_tanh"), select=["GA101"])
    (gradient,) = report.findings
    assert (gradient.status, gradient.kind) == ("fail", "no-gradient")
