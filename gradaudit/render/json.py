"""The JSON document of DESIGN.md (built by the model: :func:`gradaudit.model.report.run_document`)."""
from __future__ import annotations

import json
from typing import Any

from ..model.report import Report, run_document

SCHEMA_RESOURCE = "schema/report.schema.json"
"""The JSON Schema of this document, shipped in the package."""


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the report, read with :mod:`importlib.resources`."""
    from importlib.resources import files

    return json.loads(files("gradaudit").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8"))


def render_json(reports: list[Report], verbose: bool = False, **_: Any) -> str:
    return json.dumps(run_document(reports), indent=2, allow_nan=False) + "\n"
