"""The gallery: every built-in activation of the installed torch against recorded verdicts.

The verdicts live in tests/data/torch_builtins.json, and the README's table "What gradaudit
finds in PyTorch" shows them (status and warn/fail codes of ``gradaudit check
@torch-activations``; info findings are left out, their number depends on the CPU). After a
deliberate change (a new check, a new torch), regenerate both with
``python tests/test_torch_builtins.py --update`` and review the diff: every change of verdict
is a finding about PyTorch or about gradaudit.
"""
from __future__ import annotations

import json
import os
import sys
import warnings

import pytest
import torch

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "torch_builtins.json")
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
START, END = "<!-- torch-activations:start -->", "<!-- torch-activations:end -->"
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


def gallery_table(reports: dict) -> str:
    """The README's table: each target's status and warn/fail/error codes, as the data file
    records them. Info findings are not counted: how many there are depends on the kernel a
    layout takes (oneDNN takes contiguous float16 on AVX512-FP16 CPUs), and nothing the suite
    asserts may depend on the CPU's vector path."""
    lines = ["| target | status | warn / fail codes |", "|---|---|---|"]
    for name, report in reports.items():
        found = verdict(report)
        lines.append(f"| `{name}` | **{found['status']}** | {', '.join(found['codes'])} |")
    return "\n".join(lines)


def readme_table() -> str:
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    return text.split(START, 1)[1].split(END, 1)[0].strip()


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


@pytest.mark.skipif(recorded()["torch"] != TORCH, reason="the README table was made with another torch")
def test_readme_table_matches_a_fresh_run(reports):
    assert readme_table() == gallery_table(reports)


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_torch_builtins.py --update")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fresh = audit_builtins()
    data = {"torch": TORCH, "verdicts": {name: verdict(r) for name, r in fresh.items()}}
    with open(DATA, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    head, rest = text.split(START, 1)
    text = head + START + "\n" + gallery_table(fresh) + "\n" + END + rest.split(END, 1)[1]
    with open(README, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {DATA} and the README table: {len(data['verdicts'])} verdicts for torch {TORCH}")
