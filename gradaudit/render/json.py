"""The JSON document of DESIGN.md (built by the model: :func:`gradaudit.model.report.run_document`)."""
from __future__ import annotations

import json
from typing import Any

from ..model.report import Report, run_document


def render_json(reports: list[Report], verbose: bool = False, **_: Any) -> str:
    return json.dumps(run_document(reports), indent=2, allow_nan=False) + "\n"
