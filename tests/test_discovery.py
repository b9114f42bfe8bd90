"""Discovery of targets in files and modules, and gradaudit list."""
from __future__ import annotations

import textwrap

from click.testing import CliRunner

from gradaudit.cli import main
from gradaudit.targets.discovery import discover

ACTS = textwrap.dedent('''
    import torch
    from torch.nn import ReLU  # imported, not defined here: not a target
    import gradaudit


    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g


    class Scaled(torch.nn.Module):
        def __init__(self, scale: float = 2.0):
            super().__init__()
            self.scale = scale

        def forward(self, x):
            return self.scale * x


    class NeedsWidth(torch.nn.Module):  # needs an argument: not a target
        def __init__(self, width):
            super().__init__()


    @gradaudit.activation(kinks=[0.0], domain=(-4, 4))
    def marked(x):
        return torch.relu(x)


    def unmarked(x):
        return x
''')


def test_discovers_functions_no_argument_modules_and_marked_callables(tmp_path):
    path = tmp_path / "acts.py"
    path.write_text(ACTS)
    targets = discover(str(path))
    assert [t.name.rsplit(":", 1)[1] for t in targets] == ["Square", "Scaled", "marked"]
    assert [t.kind for t in targets] == ["autograd.Function", "nn.Module class", "function"]
    assert targets[2].options == {"kinks": [0.0], "domain": (-4, 4)}


def test_list_prints_targets_and_skips_files_without_torch(tmp_path, monkeypatch):
    (tmp_path / "acts.py").write_text(ACTS)
    (tmp_path / "plain.py").write_text("raise SystemExit('must not be imported')\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["list", "acts.py", "plain.py"])
    assert result.exit_code == 0
    assert [line.split("\t") for line in result.output.splitlines()] == [
        ["acts.py:Square", "autograd.Function"], ["acts.py:Scaled", "nn.Module class"], ["acts.py:marked", "function"]]
    assert CliRunner().invoke(main, ["list", "no_such_module"]).exit_code == 2


def test_check_skips_files_without_targets_but_not_modules_without_targets(tmp_path, monkeypatch):
    (tmp_path / "plain.py").write_text("raise SystemExit('must not be imported')\n")
    (tmp_path / "empty_mod.py").write_text("import torch\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["check", "plain.py", "empty_mod.py", "--format", "json"])
    assert result.exit_code == 0 and '"results": []' in result.output
    # a module named by its dotted name that holds nothing is more likely a mistake
    assert CliRunner().invoke(main, ["check", "empty_mod"]).exit_code == 2


def test_a_file_inside_a_package_is_imported_by_its_dotted_name(tmp_path):
    """Relative imports work: pre-commit passes file paths of package modules."""
    from gradaudit.targets.loading import package_module
    from gradaudit.targets.resolve import resolve

    acts = tmp_path / "mypkg" / "acts"
    acts.mkdir(parents=True)
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (acts / "__init__.py").write_text("")
    (acts / "helpers.py").write_text("import torch\n\ndef positive(x):\n    return x > 0\n")
    (acts / "relus.py").write_text(
        "import torch\nfrom .helpers import positive\n\n\n"
        "def where_relu(x):\n    return torch.where(positive(x), x, torch.zeros_like(x))\n")
    assert package_module(str(acts / "relus.py")) == (str(tmp_path), "mypkg.acts.relus")
    assert package_module(str(tmp_path / "mypkg" / "__init__.py")) == (str(tmp_path), "mypkg")
    (target,) = resolve(str(acts / "relus.py") + ":where_relu")
    assert target.obj.__module__ == "mypkg.acts.relus"
