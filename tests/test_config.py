"""[tool.gradaudit] in pyproject.toml: discovery upward, validation, precedence, per-target tables."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from conftest import SAMPLES
from gradaudit.cli import main
from gradaudit.run.config import ConfigError, find_pyproject, load_config, target_matches

NO_BACK = os.path.join(SAMPLES, "seed_relu.py") + ":no_back"
STE = os.path.join(SAMPLES, "defects.py") + ":HeavisideSTE"


def write_config(directory, body: str) -> str:
    path = os.path.join(str(directory), "pyproject.toml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[project]\nname = 'x'\n\n" + body)
    return path


def check(args, cwd):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, ["check", *args], catch_exceptions=False)
    finally:
        os.chdir(old)


def test_found_from_the_working_directory_upward(tmp_path):
    path = write_config(tmp_path, '[tool.gradaudit]\nsize = 16\n')
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    write_config(tmp_path / "a", "")  # a pyproject.toml without [tool.gradaudit] is passed over
    assert find_pyproject(str(nested)) == path
    assert load_config(start=str(nested)).settings == {"size": 16}


def test_settings_and_target_tables_are_parsed(tmp_path):
    path = write_config(tmp_path, """
[tool.gradaudit]
dtypes = ["float64", "float32"]
size = 8
select = ["GA2"]
ignore = "GA204"
strict = true

[tool.gradaudit.targets."pkg.acts:HardTanh"]
kinks = [-1, 1]
domain = [-5, 5]
surrogate = false
ignore = ["GA203"]
""")
    config = load_config(path)
    assert config.settings == {"dtypes": ["float64", "float32"], "size": 8, "select": ["GA2"],
                               "ignore": ["GA204"], "strict": True}
    table = config.targets["pkg.acts:HardTanh"]
    assert table == {"kinks": [-1.0, 1.0], "domain": (-5.0, 5.0), "surrogate": False, "ignore": ["GA203"]}
    # the table lays over the decorator's options; ignore lists are combined
    declared = config.declared_for("pkg.acts:HardTanh", {"kinks": [0.0], "ignore": ["GA101"]})
    assert declared["kinks"] == [-1.0, 1.0] and declared["ignore"] == ["GA101", "GA203"]
    assert config.declared_for("pkg.acts:Other", {"kinks": [0.0]}) == {"kinks": [0.0]}


@pytest.mark.parametrize("body, key", [
    ("[tool.gradaudit]\ndtype = ['float32']\n", "dtype"),
    ("[tool.gradaudit.targets.'m:f']\nkink = [0]\n", "kink"),
])
def test_unknown_key_is_a_usage_error_naming_it(tmp_path, body, key):
    write_config(tmp_path, body)
    with pytest.raises(ConfigError, match=repr(key)):
        load_config(start=str(tmp_path))
    result = check(["samples/seed_relu.py:MyReLU"], tmp_path)
    assert result.exit_code == 2
    assert repr(key) in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("body", [
    "[tool.gradaudit]\nsize = -1\n", "[tool.gradaudit]\nstrict = 'yes'\n", "[tool.gradaudit]\ndtypes = ['int8']\n",
    "[tool.gradaudit.targets.'nocolon']\nkinks = [0]\n", "[tool.gradaudit.targets.'m:f']\ndomain = [1]\n",
    "[tool.gradaudit\n",
])
def test_bad_values_are_usage_errors(tmp_path, body):
    write_config(tmp_path, body)
    assert check(["x.py:f"], tmp_path).exit_code == 2


def test_config_applies_and_cli_flags_override_it(tmp_path):
    write_config(tmp_path, '[tool.gradaudit]\ndtypes = ["float64", "float32"]\nignore = ["GA2"]\nstrict = true\n')
    # no_back only warns through GA203/GA204, which the config ignores: strict passes
    result = check([NO_BACK, "--format", "json"], tmp_path)
    assert result.exit_code == 0, result.output
    assert not {f["code"] for f in json.loads(result.output)["results"][0]["findings"]} & {"GA203", "GA204"}
    # --ignore on the command line replaces the config's list: the warnings are back, strict exits 1
    assert check([NO_BACK, "--ignore", "GA101"], tmp_path).exit_code == 1
    assert check([NO_BACK, "--ignore", "GA101", "--no-strict"], tmp_path).exit_code == 0


def test_per_target_table_applies_to_a_discovered_file_target(tmp_path):
    key = os.path.relpath(os.path.join(SAMPLES, "defects.py"), tmp_path).replace(os.sep, "/") + ":HeavisideSTE"
    write_config(tmp_path, f'[tool.gradaudit]\ndtypes = ["float64", "float32"]\n\n'
                           f'[tool.gradaudit.targets."{key}"]\nsurrogate = true\n')
    assert check([STE, "--strict"], tmp_path).exit_code == 0
    os.remove(tmp_path / "pyproject.toml")
    assert check([STE, "--strict", "--dtype", "float64"], tmp_path).exit_code == 1


def test_config_option_names_a_file(tmp_path):
    path = write_config(tmp_path, '[tool.gradaudit]\ndtypes = ["float64"]\nselect = ["GA101"]\n')
    result = check([NO_BACK, "--config", path, "--format", "json", "--strict"], tmp_path.parent)
    assert result.exit_code == 0
    assert {f["code"] for f in json.loads(result.output)["results"][0]["findings"]} <= {"GA101"}


@pytest.mark.parametrize("key, name, expected", [
    ("pkg.acts:Act", "pkg.acts:Act", True),
    ("pkg.acts:Act", "pkg.acts:Other", False),
    ("pkg.acts:Act", "src/pkg/acts.py:Act", True),
    ("pkg.acts:Act", "pkg/acts/__init__.py:Act", True),
    ("pkg.acts:Act", "src/mypkg/acts.py:Act", False),
    ("src/pkg/acts.py:Act", "./src/pkg/acts.py:Act", True),
    ("src/pkg/acts.py:Act", "pkg.acts:Act", False),
])
def test_target_keys_match_module_and_file_spellings(tmp_path, monkeypatch, key, name, expected):
    monkeypatch.chdir(tmp_path)
    assert target_matches(key, name, str(tmp_path)) is expected


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_skip_leaves_out_a_discovered_module_that_is_not_an_activation(tmp_path, jobs):
    (tmp_path / "models.py").write_text(
        "import torch\n\n\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(4, 2)\n\n"
        "    def forward(self, x):\n        return self.fc(x)\n\n\n"
        "class Relu(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x.clamp(min=0)\n\n"
        "    @staticmethod\n    def backward(ctx, g):\n        (x,) = ctx.saved_tensors\n"
        "        return torch.where(x > 0, g, torch.zeros_like(g))\n")
    args = ["models.py", "--dtype", "float64", "--format", "json", *jobs]
    assert check(args, tmp_path).exit_code == 2  # Net cannot take a 1-D probe: GA901
    write_config(tmp_path, '[tool.gradaudit.targets."models.py:Net"]\nskip = true\n')
    result = check(args, tmp_path)
    assert result.exit_code == 0, result.output
    assert [r["target"] for r in json.loads(result.output)["results"]] == ["models.py:Relu"]
    assert load_config(str(tmp_path / "pyproject.toml")).skips("models.py:Net")
