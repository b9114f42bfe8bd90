"""Which objects a target string names, under which name, loaded how (issue 18 items 11-13, 15;
issue 19's import cycle). Every fixture is a small project built in tmp_path."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradaudit.cli import main
from gradaudit.targets.resolve import resolve

QUICK = ["--dtype", "float64", "--size", "64", "--select", "GA101,GA202", "--format", "json"]
"""A cheap audit: float64 only, a small probe, two checks."""

SQRT_TRAP = textwrap.dedent('''
    import torch
    import gradaudit


    @gradaudit.activation
    def sqrt_relu(x):
        """NaN gradient at x < 0 (GA202 fail)."""
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))
''')

SQUARE = textwrap.dedent('''
    import torch


    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g
''')


@pytest.fixture(autouse=True)
def forget_modules_loaded_from(tmp_path):
    """Modules these tests load from tmp_path leave sys.modules with the test, so that another
    test's package of the same name is not taken for a second copy."""
    yield
    for name, module in list(sys.modules.items()):
        found = getattr(module, "__file__", None) or ""
        if name.startswith("_gradaudit_") or found.startswith(str(tmp_path)):
            del sys.modules[name]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def check(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["check", *args, *QUICK])
    return result.exit_code, json.loads(result.stdout)  # stderr may say "nothing to audit"


@pytest.fixture
def src_and_tests(tmp_path, monkeypatch):
    """src/pkg/acts.py defines a marked activation; tests/test_acts.py imports it."""
    write(tmp_path / "src" / "pkg" / "__init__.py", "")
    write(tmp_path / "src" / "pkg" / "acts.py", SQRT_TRAP)
    write(tmp_path / "tests" / "test_acts.py", '''
        import torch
        from pkg.acts import sqrt_relu


        def test_sqrt_relu():
            assert torch.equal(sqrt_relu(torch.tensor([4.0])), torch.tensor([2.0]))
    ''')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))  # as the project's conftest or install does
    return tmp_path


# -- item 11: an object imported into several files is one target, named where it is defined --

def test_an_imported_activation_is_found_only_where_it_is_defined(src_and_tests):
    assert resolve("tests") == []
    assert resolve("tests/test_acts.py") == []
    assert [t.name for t in resolve(".")] == ["src/pkg/acts.py:sqrt_relu"]


def test_a_run_over_the_defining_and_the_importing_file_audits_the_object_once(src_and_tests):
    code, run = check("tests/test_acts.py", "src")
    assert code == 1
    assert [r["target"] for r in run["results"]] == ["src/pkg/acts.py:sqrt_relu"]


def test_config_for_the_defining_module_matches_when_only_the_tests_changed(src_and_tests):
    """The README's pre-commit hook passes the changed files; the config names the module."""
    write(src_and_tests / "pyproject.toml", '''
        [tool.gradaudit.targets."pkg.acts:sqrt_relu"]
        skip = true
    ''')
    code, run = check("tests/test_acts.py")
    assert (code, run["results"]) == (0, [])


def test_an_activation_marked_where_it_is_bound_belongs_to_that_file(tmp_path, monkeypatch):
    """``gelu = gradaudit.activation(F.gelu)``: the mark is made in acts.py, so is the target."""
    write(tmp_path / "acts.py", '''
        import torch.nn.functional as F
        import gradaudit

        tanh_gelu = gradaudit.activation(F.hardswish)
    ''')
    monkeypatch.chdir(tmp_path)
    assert [t.name for t in resolve("acts.py")] == ["acts.py:tanh_gelu"]


def test_several_specs_naming_one_object_are_one_target(src_and_tests):
    """A directory, a file in it, and the same file spelled otherwise: one audit."""
    from gradaudit.targets.names import unique_names

    names = [t.name for spec in ("src", "src/pkg/acts.py", "./src/pkg/acts.py") for t in resolve(spec)]
    assert names == ["src/pkg/acts.py:sqrt_relu"] * 3
    spelled = names + ["./src/pkg/acts.py:sqrt_relu", str(src_and_tests / "src/pkg/acts.py") + ":sqrt_relu",
                       "src/pkg/acts.py:other"]
    assert unique_names(spelled) == ["src/pkg/acts.py:sqrt_relu", "src/pkg/acts.py:other"]


def test_first_seen_keeps_one_spelling_over_a_whole_run(src_and_tests):
    from gradaudit.targets.names import first_seen

    seen: set[str] = set()
    assert first_seen(["src/pkg/acts.py:sqrt_relu", "broken.py"], seen) == ["src/pkg/acts.py:sqrt_relu", "broken.py"]
    assert first_seen(["./src/pkg/acts.py:sqrt_relu", "./broken.py", "pkg.acts:sqrt_relu"], seen) == [
        "pkg.acts:sqrt_relu"]  # a dotted name is not matched to a file without importing it


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_run_given_a_directory_and_a_file_in_it_audits_each_target_once(src_and_tests, jobs):
    code, run = check("src", "src/pkg/acts.py", "./src/pkg/acts.py:sqrt_relu", "--jobs", jobs)
    assert [r["target"] for r in run["results"]] == ["src/pkg/acts.py:sqrt_relu"]


def test_unique_drops_repeated_objects():
    from gradaudit.targets.types import unique

    first, second = resolve("torch.nn.functional:relu"), resolve("torch.nn.functional:relu")
    assert [t.name for t in unique(first + second + resolve("torch.nn.functional:silu"))] == [
        "torch.nn.functional:relu", "torch.nn.functional:silu"]


# -- item 12: every file is its own module -------------------------------------------------

@pytest.fixture
def two_ops(tmp_path, monkeypatch):
    """a/ops/acts.py and b/ops/acts.py: the same package-relative name, different code."""
    for root, body in (("a", "torch.relu(x)"), ("b", "torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x)) * scale()")):
        write(tmp_path / root / "ops" / "__init__.py", "")
        write(tmp_path / root / "ops" / "helpers.py", f"ROOT = {root!r}\n\ndef scale():\n    return 1.0\n")
        write(tmp_path / root / "ops" / "acts.py", f'''
            import torch
            import gradaudit
            from ops.helpers import ROOT
            from .helpers import scale


            @gradaudit.activation
            def act(x):
                return {body}
        ''')
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_two_files_with_one_package_relative_name_are_two_modules(two_ops, order):
    loaded = {root: resolve(f"{root}/ops/acts.py:act")[0].obj for root in order}
    assert loaded["a"] is not loaded["b"]
    for root, obj in loaded.items():
        assert obj.__globals__["ROOT"] == root
        assert Path(obj.__code__.co_filename).resolve() == (two_ops / root / "ops" / "acts.py").resolve()
    # discovered again (as a worker re-resolves a name), each is still its own file's
    assert resolve(f"{order[1]}/ops/acts.py")[0].obj is loaded[order[1]]


def test_a_run_over_both_files_audits_each_file_own_code(two_ops):
    code, run = check("a", "b")
    assert [r["target"] for r in run["results"]] == ["a/ops/acts.py:act", "b/ops/acts.py:act"]
    assert [r["status"] for r in run["results"]] == ["pass", "fail"]


# -- item 13: what a directory scan imports, and what it leaves behind --------------------

TRAP = 'import torch\nraise SystemExit("{} must not be imported")\n'


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project directory: one real activation file and everything a scan must leave alone."""
    write(tmp_path / "acts.py", SQUARE)
    for skipped in ("setup.py", ".venv/lib/python3.11/site-packages/torchy/__init__.py",
                    "venv/lib/python3.11/site-packages/torchy/mod.py", "env2/lib/acts.py",
                    "build/lib/pkg/acts.py", "dist/acts.py", ".hidden/acts.py",
                    "__pycache__/acts.py", "lib/site-packages/acts.py", "condaenv/lib/acts.py"):
        write(tmp_path / skipped, TRAP.format(skipped))
    write(tmp_path / "env2" / "pyvenv.cfg", "home = /usr/bin\n")
    (tmp_path / "condaenv" / "conda-meta").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_directory_scan_skips_setup_virtualenvs_builds_and_hidden_folders(project):
    before = list(sys.path)
    assert [t.name for t in resolve(".")] == ["acts.py:Square"]
    assert sys.path == before
    assert resolve("setup.py") == []  # as pre-commit passes it when it changed


def test_a_directory_scan_skips_what_gitignore_ignores_without_git(project):
    write(project / ".gitignore", "# generated\n/generated/\n*_gen.py\n")
    write(project / "generated" / "acts.py", TRAP.format("generated/acts.py"))
    write(project / "sub" / "acts_gen.py", TRAP.format("sub/acts_gen.py"))
    assert [t.name for t in resolve(".")] == ["acts.py:Square"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_directory_scan_skips_what_gitignore_ignores_in_a_git_repository(project):
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    write(project / "sub" / ".gitignore", "scratch*\n")
    write(project / "sub" / "scratch_acts.py", TRAP.format("sub/scratch_acts.py"))
    write(project / "sub" / "kept.py", SQUARE)
    assert [t.name for t in resolve(".")] == ["acts.py:Square", "sub/kept.py:Square"]


def test_a_file_that_fails_to_import_is_one_error_and_the_rest_is_audited(tmp_path, monkeypatch):
    write(tmp_path / "broken.py", 'import torch\nraise ImportError("no module named apex")\n')
    write(tmp_path / "exits.py", 'import sys\nimport torch\nsys.exit(3)\n')
    write(tmp_path / "good.py", SQRT_TRAP)
    monkeypatch.chdir(tmp_path)
    code, run = check(".")
    assert code == 2
    by_target = {r["target"]: r for r in run["results"]}
    assert list(by_target) == ["broken.py", "exits.py", "good.py:sqrt_relu"]
    for name in ("broken.py", "exits.py"):
        assert [(f["code"], f["status"]) for f in by_target[name]["findings"]] == [("GA901", "error")]
    assert by_target["good.py:sqrt_relu"]["status"] == "fail"


def test_loading_leaves_sys_path_as_found_and_siblings_importable(tmp_path, monkeypatch):
    write(tmp_path / "flat" / "helper.py", "SCALE = 2.0\n")
    write(tmp_path / "flat" / "acts.py", "import torch\nfrom helper import SCALE\n\ndef act(x):\n    return SCALE * x\n")
    write(tmp_path / "pkgroot" / "mypkg" / "__init__.py", "")
    write(tmp_path / "pkgroot" / "mypkg" / "helper.py", "SCALE = 3.0\n")
    write(tmp_path / "pkgroot" / "mypkg" / "acts.py",
          "import torch\nfrom mypkg.helper import SCALE\n\ndef act(x):\n    return SCALE * x\n")
    write(tmp_path / "mod_here.py", "import torch\n\ndef act(x):\n    return x\n")
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert resolve("flat/acts.py:act")[0].obj.__globals__["SCALE"] == 2.0
    assert resolve("pkgroot/mypkg/acts.py:act")[0].obj.__globals__["SCALE"] == 3.0
    assert resolve("mod_here:act")[0].obj.__name__ == "act"
    assert sys.path == before


def test_a_script_sees_its_own_argv_not_gradaudits(tmp_path, monkeypatch):
    write(tmp_path / "script.py", '''
        import sys
        import torch
        ARGV = list(sys.argv)

        def act(x):
            return x
    ''')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["gradaudit", "check", "--strict", "script.py"])
    assert resolve("script.py:act")[0].obj.__globals__["ARGV"] == ["script.py"]
    assert sys.argv == ["gradaudit", "check", "--strict", "script.py"]


# -- item 15, discovery half: an attribute that raises when read ---------------------------

def test_discovery_survives_attributes_that_raise(tmp_path, monkeypatch):
    write(tmp_path / "lazy.py", SQUARE + textwrap.dedent('''
        import sys
        import types


        class Lazy:
            """A lazy-loading proxy: every attribute read fails until it is loaded."""
            __slots__ = ()

            def __getattr__(self, name):
                raise ImportError(f"lazy proxy not loaded: {name}")


        class Unhashable:
            @property
            def __module__(self):
                raise RuntimeError("no module")

            @property
            def __class__(self):
                raise RuntimeError("no class")


        proxy = Lazy()
        odd = Unhashable()


        def __getattr__(name):
            raise ImportError(f"optional dependency missing for {name}")


        class _Module(types.ModuleType):
            @property
            def broken(self):
                raise RuntimeError("property raised")


        sys.modules[__name__].__class__ = _Module
    '''))
    monkeypatch.chdir(tmp_path)
    assert [t.name for t in resolve("lazy.py")] == ["lazy.py:Square"]
    from gradaudit.targets.spec import TargetError

    for named in ("lazy.py:proxy.forward", "lazy.py:optional", "lazy.py:broken"):
        with pytest.raises(TargetError):
            resolve(named)


# -- issue 19: one-way imports inside the targets layer ------------------------------------

def test_the_targets_layer_has_no_import_cycle():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("gradaudit", cache_dir=None)
    layer = ["gradaudit.targets", "gradaudit.targets.discovery", "gradaudit.targets.groups", "gradaudit.targets.decorator"]
    layer += [m for m in ("gradaudit.targets.loading", "gradaudit.targets.types") if m in graph.modules]
    cycles = [(a, b) for a in layer for b in layer
              if a < b and graph.chain_exists(a, b) and graph.chain_exists(b, a)]
    assert cycles == []
