"""Shared test helpers: load samples by name, audit quickly."""
from __future__ import annotations

import os
import sys
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "samples")


def sample(spec: str) -> Any:
    """The object named by ``file:attr`` under samples/, e.g. ``sample('defects:where_sqrt')``."""
    from gradaudit.targets.resolve import resolve

    module, attr = spec.split(":")
    (target,) = resolve(os.path.join(SAMPLES, f"{module}.py") + f":{attr}")
    return target.obj


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test from the repository root (paths in reports are relative to it)."""
    monkeypatch.chdir(ROOT)
    return ROOT


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
