"""Issue 19, "one of everything": one spec parser, one option merge, one overall status, and the
two target-identity regressions (a package that re-exports its submodules' targets; ``list``
of a file that fails to import)."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from gradaudit.cli import main

ACTS = textwrap.dedent("""
    import torch, gradaudit

    @gradaudit.activation(kinks=[0.0])
    def relu(x):
        return torch.where(x > 0, x, torch.zeros_like(x))

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g
""")
FAST = ["--dtype", "float64", "--size", "64", "--select", "GA101"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))  # an installed package, not a folder here
    yield tmp_path
    for name in [m for m in sys.modules if m == "optpkg" or m.startswith("optpkg.")]:
        del sys.modules[name]


def test_a_package_audits_the_targets_its_submodules_define_and_it_exposes(project):
    package = project / "lib" / "optpkg"
    package.mkdir()
    (package / "acts.py").write_text(ACTS)
    (package / "__init__.py").write_text("from .acts import relu, Square\n")
    result = CliRunner().invoke(main, ["check", "optpkg", *FAST, "--format", "json"])
    assert result.exit_code == 0, result.output
    targets = [r["target"] for r in json.loads(result.output)["results"]]
    assert targets == ["optpkg.acts:relu", "optpkg.acts:Square"]  # each once, by its defining module
    listed = CliRunner().invoke(main, ["list", "optpkg"])
    assert listed.exit_code == 0 and [line.split("\t")[0] for line in listed.output.splitlines()] == targets


def test_list_of_a_file_that_fails_to_import_is_an_error_on_stderr(project):
    (project / "src").mkdir()
    (project / "src" / "good.py").write_text(ACTS)
    (project / "src" / "broken.py").write_text("import torch\nraise RuntimeError('boom')\n")
    result = CliRunner().invoke(main, ["list", "src"])
    assert result.exit_code == 2
    assert "broken.py" not in result.stdout and "broken.py" in result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["src/good.py:relu", "src/good.py:Square"]


@pytest.mark.parametrize("text, kind, container, attribute, keywords", [
    ("pkg.mod:f", "attribute", "pkg.mod", "f", {}),
    ("path/to/acts.py:Acts.relu", "attribute", "path/to/acts.py", "Acts.relu", {}),
    ("torch.nn.functional:softmax(dim=-1)", "attribute", "torch.nn.functional", "softmax", {"dim": -1}),
    ("@torch-activations", "group", "torch-activations", "", {}),
    ("acts.py", "path", "acts.py", "", {}),
    ("src/", "path", "src/", "", {}),
    ("pkg.mod", "module", "pkg.mod", "", {}),
])
def test_one_spec_parser(text, kind, container, attribute, keywords):
    from gradaudit.targets.spec import parse_spec

    spec = parse_spec(text)
    assert (spec.text, spec.kind, spec.container, spec.attribute, spec.keywords) == (
        text, kind, container, attribute, keywords)
    assert spec.names_one_target == (kind == "attribute")


@pytest.mark.parametrize("text", ["pkg.mod:", ":f", "m:softmax(1)", "m:f(dim=x)"])
def test_a_malformed_spec_is_a_target_error(text):
    from gradaudit.targets.spec import parse_spec
    from gradaudit.targets.spec import TargetError

    with pytest.raises(TargetError):
        parse_spec(text)


def test_each_target_is_resolved_once_per_run(project, monkeypatch):
    from gradaudit.targets import discovery, loading

    (project / "acts.py").write_text(ACTS)
    loads: list[str] = []
    real = loading.load_file

    def counting(path, target):
        loads.append(path)
        return real(path, target)

    monkeypatch.setattr(loading, "load_file", counting)
    monkeypatch.setattr(discovery, "load_file", counting)
    result = CliRunner().invoke(main, ["check", "acts.py", "acts.py:relu", *FAST])
    assert result.exit_code == 0, result.output
    assert loads == ["acts.py"]  # searched once; neither its targets nor the file named again are re-resolved


def test_merge_options_precedence_and_combined_ignore():
    from gradaudit.model.options import merge_options

    decorator = {"kinks": [0.0], "ignore": ["GA101"], "surrogate": True}
    config = {"kinks": [1.0], "ignore": ["GA203"], "domain": (-2.0, 2.0)}
    command_line = {"kinks": None, "domain": (-1.0, 1.0), "select": ["GA1"]}
    call = {"domain": None, "select": ["GA2"], "ignore": "GA204"}
    merged = merge_options(decorator, config, command_line, call)
    assert merged == {"kinks": [1.0], "ignore": ["GA101", "GA203", "GA204"], "surrogate": True,
                      "domain": (-1.0, 1.0), "select": ["GA2"]}
    assert merge_options({"ignore": ["a"]}, {"ignore": ["b"]}, combined=()) == {"ignore": ["b"]}


def _record_options(monkeypatch):
    """Replace the audit itself: record the options each target would be audited with."""
    from gradaudit import core
    from gradaudit.model.report import Report

    seen: dict[str, object] = {}

    def fake_run_audit(target, options):
        seen[target.name] = options
        return Report(target=target.name)

    monkeypatch.setattr(core, "run_audit", fake_run_audit)
    return seen


def test_cli_precedence_decorator_config_command_line(project, monkeypatch):
    (project / "acts.py").write_text(ACTS)
    (project / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.gradaudit]
        ignore = ["GA104"]
        [tool.gradaudit.targets."acts.py:relu"]
        kinks = [1.0]
        domain = [-3.0, 3.0]
        ignore = ["GA203"]
    """))
    seen = _record_options(monkeypatch)
    assert CliRunner().invoke(main, ["check", "acts.py", "--domain", "-2", "2"]).exit_code == 0
    relu, square = seen["acts.py:relu"], seen["acts.py:Square"]
    assert relu.kinks == (1.0,) and relu.domain == (-2.0, 2.0)  # config over decorator, command line over config
    assert not {"GA104", "GA203"} & relu.codes and "GA203" in square.codes and "GA104" not in square.codes
    assert CliRunner().invoke(main, ["check", "acts.py:relu", "--kink", "0.5", "--ignore", "GA102"]).exit_code == 0
    relu = seen["acts.py:relu"]
    assert relu.kinks == (0.5,) and relu.domain == (-3.0, 3.0)
    assert "GA104" in relu.codes and not {"GA102", "GA203"} & relu.codes  # --ignore replaces the file's run-wide list


def test_audit_call_over_decorator(monkeypatch):
    import gradaudit

    seen = _record_options(monkeypatch)

    @gradaudit.activation(kinks=[0.0], domain=(-1, 1), surrogate=True, ignore=["GA203"])
    def f(x):
        return x

    gradaudit.audit(f, name="f", domain=(-5, 5), ignore=["GA204"])
    options = seen["f"]
    assert options.kinks == (0.0,) and options.domain == (-5.0, 5.0) and options.surrogate
    assert not {"GA203", "GA204"} & options.codes
    gradaudit.audit(f, name="f", surrogate=False, kinks=[])
    assert not seen["f"].surrogate and seen["f"].kinks == ()
