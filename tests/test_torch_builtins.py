"""The gallery: every built-in activation of the installed torch against recorded verdicts.

The verdicts live in tests/data/torch_builtins.json. After a deliberate change (a new check,
a new torch), regenerate them with ``python tests/test_torch_builtins.py --update`` and
review the diff: every change of verdict is a finding about PyTorch or about gradaudit.
"""
from __future__ import annotations

import json
import os
import sys
import warnings

import pytest
import torch

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "torch_builtins.json")
TORCH = ".".join(torch.__version__.split("+")[0].split(".")[:2])


def audit_builtins() -> dict[str, dict]:
    from gradaudit.core import audit_target_string, build_options

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit-dim softmax deprecation warnings
        reports = audit_target_string("@torch-activations", build_options())
    return {r.target: r for r in reports}


def verdict(report) -> dict:
    return {"status": report.status,
            "codes": sorted({f.code for f in report.findings if f.status in ("warn", "fail", "error")})}


def recorded() -> dict:
    with open(DATA, encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def reports():
    return audit_builtins()


def test_data_file_covers_every_builtin(reports):
    data = recorded()
    assert set(data["verdicts"]) == set(reports)


@pytest.mark.skipif(recorded()["torch"] != TORCH, reason=f"verdicts recorded for torch {recorded()['torch']}, not {TORCH}")
@pytest.mark.parametrize("target", sorted(recorded()["verdicts"]))
def test_builtin_verdict(target, reports):
    report = reports[target]
    expected = recorded()["verdicts"][target]
    if verdict(report) != expected:
        shown = "\n".join(f"  {f.code} {f.status} ({f.dtype}): {f.message}" for f in report.findings
                          if f.status != "info")
        pytest.fail(f"{target}: recorded {expected}, got {verdict(report)}\n{shown}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_torch_builtins.py --update")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    data = {"torch": TORCH, "verdicts": {name: verdict(r) for name, r in audit_builtins().items()}}
    with open(DATA, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    print(f"wrote {DATA}: {len(data['verdicts'])} verdicts for torch {TORCH}")
