"""The code space: unique codes and slugs, documented ranges, and a README table that is the
registry's own output (regenerate with ``python tests/test_catalogue.py --update``)."""
from __future__ import annotations

import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
START, END = "<!-- checks:start", "<!-- checks:end -->"


def generated() -> str:
    from gradaudit.checks import catalogue
    from gradaudit.render.catalogue import render_check_table

    return render_check_table(catalogue().values())


def readme_section() -> str:
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    return text.split(START, 1)[1].split("\n", 1)[1].split(END, 1)[0].strip()


def test_codes_and_slugs_are_unique_and_well_formed():
    from gradaudit.checks import catalogue
    from gradaudit.model.codes import CODE_RANGES, RETIRED_CODES

    checks = list(catalogue().values())
    assert len({c.slug for c in checks}) == len(checks)
    for check in checks:
        assert re.fullmatch(r"GA[1-9]\d\d", check.code), check.code
        assert check.code[:3] in CODE_RANGES, f"{check.code} is outside the documented ranges"
        assert check.code not in RETIRED_CODES, f"{check.code} is retired and may not be reused"
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", check.slug), check.slug
        assert set(check.status.split(" / ")) <= {"info", "warn", "fail", "error"}, check.status


def test_code_ranges_and_retired_codes_are_well_formed():
    from gradaudit.model.codes import CODE_RANGES, RETIRED_CODES, SLUGS

    assert all(re.fullmatch(r"GA[1-9]", prefix) for prefix in CODE_RANGES)
    for code, reason in RETIRED_CODES.items():
        assert re.fullmatch(r"GA[1-9]\d\d", code) and code[:3] in CODE_RANGES and reason, code
        assert code not in SLUGS, f"{code} is retired but still in the slug table"


def test_slug_table_is_unique_and_inside_the_ranges():
    """The model's code -> slug table (for findings loaded from JSON; test_run_robustness keeps
    it equal to the registry) names each slug once, with codes inside the documented ranges."""
    from gradaudit.model.codes import CODE_RANGES, SLUGS

    assert len(set(SLUGS.values())) == len(SLUGS)
    assert all(code[:3] in CODE_RANGES for code in SLUGS)


def test_readme_check_table_is_the_registry():
    assert readme_section() == generated()


def test_design_contract_names_are_kept():
    """Every code the registry has keeps the slug DESIGN.md gives it (where shared/ is beside)."""
    design = os.path.join(os.path.dirname(ROOT), "shared", "DESIGN.md")
    if not os.path.exists(design):
        pytest.skip("shared/DESIGN.md is not beside the checkout")
    from gradaudit.checks import catalogue

    with open(design, encoding="utf-8") as handle:
        named = dict(re.findall(r"^\| (GA\d{3}) \| ([a-z0-9-]+) \|", handle.read(), re.M))
    for code, check in catalogue().items():
        if code in named:
            assert check.slug == named[code], code


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_catalogue.py --update")
    sys.path.insert(0, ROOT)
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    head, rest = text.split(START, 1)
    marker, rest = rest.split("\n", 1)
    text = head + START + marker + "\n" + generated() + "\n" + END + rest.split(END, 1)[1]
    with open(README, "w", encoding="utf-8") as handle:
        handle.write(text)
    print("wrote the README's check table")
