"""samples/README.md states a verdict for every sample; this keeps it true."""
from __future__ import annotations

import os
import re

import pytest

from conftest import SAMPLES
from gradaudit.core import audit_target_string, build_options

ROW = re.compile(r"^\| `(?P<target>[^`]+)` \| (?P<status>\w+) \|(?P<codes>[^|]*)\|")


def table() -> list[tuple[str, str, set[str]]]:
    rows = []
    with open(os.path.join(SAMPLES, "README.md"), encoding="utf-8") as handle:
        for line in handle:
            match = ROW.match(line)
            if match:
                codes = {c.strip() for c in match["codes"].split(",") if c.strip()}
                rows.append((match["target"], match["status"], codes))
    return rows


def test_table_covers_every_discovered_sample():
    from gradaudit.targets.discovery import discover

    listed = {target for target, _, _ in table()}
    discovered = {os.path.relpath(t.name, SAMPLES).replace(os.sep, "/") for t in discover(SAMPLES)}
    assert discovered <= listed, discovered - listed


@pytest.mark.parametrize("target, status, codes", table(), ids=[row[0] for row in table()])
def test_sample_verdict(target, status, codes):
    (report,) = audit_target_string(os.path.join(SAMPLES, target), build_options())
    assert report.status == status, report.to_dict()
    found = {f.code for f in report.findings if f.status in ("warn", "fail", "error") and not f.suppressed}
    assert found == codes, report.to_dict()
