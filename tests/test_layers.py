"""The layers stay layers: the import contract holds, the engine knows no check, and a saved
report renders without torch."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

ENGINE = os.path.join(ROOT, "gradaudit", "engine")


def test_the_import_contract_holds():
    """import-linter's contracts in pyproject.toml (the layers, and no torch below the engine)."""
    pytest.importorskip("importlinter")
    command = shutil.which("lint-imports") or shutil.which("lint-imports", path=os.path.dirname(sys.executable))
    if command is None:
        pytest.skip("import-linter's lint-imports is not on PATH")
    result = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_engine_names_no_check_code():
    """Checks declare what they need (model.check.Check); the engine is handed plain needs, so
    no engine module mentions a check code, in code, docstrings or comments."""
    mentions = []
    for name in sorted(os.listdir(ENGINE)):
        if name.endswith(".py"):
            with open(os.path.join(ENGINE, name), encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if re.search(r"GA\d{3}", line):
                        mentions.append(f"engine/{name}:{number}: {line.strip()}")
    assert mentions == []


def test_a_saved_report_renders_without_torch(tmp_path):
    """The model and the renderers read a saved JSON report in a process that never imports torch."""
    document = {"tool": "gradaudit", "version": "0.1.0", "status": "warn", "results": [
        {"target": "samples/seed_relu.py:no_back", "status": "warn", "findings": [
            {"code": "GA203", "check": "signed-zero-output", "status": "warn", "message": "creates -0.0",
             "dtype": "float32", "examples": [{"input": -1.0, "output": "-0.0"}],
             "location": {"path": "samples/seed_relu.py", "line": 12}},
            {"code": "GA301", "check": "kink", "status": "info", "message": "kink at 0",
             "details": {"location": 0.0, "left": 0.0, "right": 1.0}}]}]}
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(document), encoding="utf-8")
    script = """
import json, sys
import gradaudit.model.report as model
from gradaudit.render import FORMATS, renderer
document = json.load(open(sys.argv[1], encoding="utf-8"))
reports = [model.Report(target=r["target"], findings=[model.Finding(**f) for f in r["findings"]])
           for r in document["results"]]
assert [r.status for r in reports] == ["warn"]
for name in FORMATS:
    assert renderer(name)(reports)
assert json.loads(renderer("json")(reports))["results"][0]["findings"][0]["code"] == "GA203"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy"))
assert not loaded, loaded
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", script, str(saved)], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr
