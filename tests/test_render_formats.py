"""--format sarif / markdown / github, -o FILE, and gradaudit explain."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from gradaudit.checks import catalogue, lookup
from gradaudit.cli import main
from gradaudit.render import FORMATS, renderer
from gradaudit.model.report import Finding, Report

FAST = ["--dtype", "float64", "--dtype", "float32"]
TARGETS = ["samples/seed_relu.py:no_back", "samples/defects.py:where_sqrt", "samples/seed_relu.py:MyReLU",
           "samples/defects.py:nope"]


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def reports(request):
    import os

    from conftest import ROOT
    from gradaudit.core import audit_target_string, build_options

    old = os.getcwd()
    os.chdir(ROOT)
    try:
        options = build_options(dtypes=["float64", "float32"])
        return [r for spec in TARGETS for r in audit_target_string(spec, options)]
    finally:
        os.chdir(old)


def test_format_choices_come_from_the_renderers():
    for name in FORMATS:
        assert callable(renderer(name))
    with pytest.raises(ValueError):
        renderer("xml")
    help_text = run(["check", "--help"]).output
    assert all(name in help_text for name in FORMATS)


def test_sarif_has_one_rule_per_check_and_located_results(reports, in_root):
    document = json.loads(renderer("sarif")(reports, checks=catalogue().values()))
    assert document["version"] == "2.1.0" and "sarif" in document["$schema"]
    (run_,) = document["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == list(catalogue())
    for rule in rules:
        check = lookup(rule["id"])
        assert rule["name"] == check.slug and check.fix in rule["help"]["text"]
    expected = {(r.target, f.code) for r in reports for f in r.findings if f.status != "info"}
    results = run_["results"]
    assert {(r["properties"]["target"], r["ruleId"]) for r in results} == expected
    levels = {(r["properties"]["target"], r["ruleId"]): r["level"] for r in results}
    assert levels[("samples/defects.py:where_sqrt", "GA202")] == "error"
    assert levels[("samples/seed_relu.py:no_back", "GA203")] == "warning"
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        (location,) = result["locations"]
        artifact = location["physicalLocation"]["artifactLocation"]
        assert artifact["uriBaseId"] == "%SRCROOT%" and artifact["uri"].startswith("samples/")
    located = {r["properties"]["target"]: r["locations"][0]["physicalLocation"] for r in results}
    assert located["samples/defects.py:where_sqrt"]["region"]["startLine"] > 1
    # a target that could not be resolved is located at its file, without a line
    assert located["samples/defects.py:nope"]["artifactLocation"]["uri"] == "samples/defects.py"
    assert "region" not in located["samples/defects.py:nope"]


def test_sarif_falls_back_to_the_report_location():
    report = Report("m:f", [Finding("GA101", "fail", "wrong")], location={"path": "/abs/acts.py", "line": 7})
    (result,) = json.loads(renderer("sarif")([report]))["runs"][0]["results"]
    physical = result["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "file:///abs/acts.py" and physical["region"]["startLine"] == 7


def test_markdown_renders_a_summary_and_a_findings_table(reports):
    text = renderer("markdown")(reports)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    tables = [row for row in rows if re.fullmatch(r"\|(-+:?\|)+|\|(---:?\|)+", row)]
    assert len(tables) == 2  # two header separators
    cells = [row.count("|") - row.count("\\|") for row in rows]
    assert len(set(cells[: 2 + len(reports)])) == 1  # summary rows all have the same columns
    assert len(set(cells[2 + len(reports):])) == 1  # and so do findings rows: pipes in messages escaped
    for report in reports:
        assert any(f"`{report.target}`" in row and f"**{report.status}**" in row for row in rows)


def test_markdown_escapes_pipes_and_newlines():
    report = Report("m:f", [Finding("GA101", "fail", "a | b\nc")])
    finding_row = renderer("markdown")([report]).splitlines()[-1]
    assert "a \\| b<br>c" in finding_row


def test_github_annotations(reports):
    lines = renderer("github")(reports).splitlines()
    annotations = [line for line in lines if line.startswith("::")]
    expected = [(r, f) for r in reports for f in r.findings if f.status != "info"]
    assert len(annotations) == len(expected)
    for line, (report, finding) in zip(annotations, expected):
        command, properties, message = re.fullmatch(r"::(\w+) ([^:]*)::(.*)", line).groups()
        assert command == {"fail": "error", "error": "error", "warn": "warning"}[finding.status]
        fields = dict(item.split("=", 1) for item in properties.split(","))
        assert fields["file"].startswith("samples/") and finding.code in fields["title"]
        assert "\n" not in message


def test_github_escapes_workflow_command_characters():
    report = Report("a.py:f", [Finding("GA101", "fail", "50% off\nnext line")],
                    location={"path": "dir,1/a:b.py", "line": 3})
    (line, _) = renderer("github")([report]).splitlines()
    assert line.startswith("::error file=dir%2C1/a%3Ab.py,line=3,")
    assert line.endswith("::50%25 off%0Anext line")


@pytest.mark.parametrize("output_format", ["sarif", "markdown", "github"])
def test_cli_writes_each_format_to_a_file(output_format, tmp_path, in_root):
    out = tmp_path / f"report.{output_format}"
    result = run(["check", "samples/seed_relu.py:no_back", "--format", output_format, "-o", str(out), *FAST])
    assert result.exit_code == 0 and result.output == ""
    text = out.read_text()
    assert "GA203" in text
    if output_format == "sarif":
        assert json.loads(text)["runs"][0]["results"]


@pytest.mark.parametrize("name", ["GA203", "ga203", "signed-zero-output", "GA301", "kink"])
def test_explain_prints_explanation_example_and_fix(name):
    check = lookup(name)
    result = run(["explain", name])
    assert result.exit_code == 0
    assert check.code in result.output and check.explanation in result.output and check.fix in result.output
    if check.example:
        assert check.example in result.output


def test_explain_lists_every_check_and_rejects_unknown_names():
    listing = run(["explain"]).output
    assert all(code in listing for code in catalogue())
    assert CliRunner().invoke(main, ["explain", "GA999"]).exit_code == 2
