"""The JSON document of DESIGN.md."""
from __future__ import annotations

import json
import math
from typing import Any

from ..report import Report, worst_status


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def run_document(reports: list[Report]) -> dict[str, Any]:
    from .. import __version__

    return _clean({
        "tool": "gradaudit",
        "version": __version__,
        "status": worst_status([r.status for r in reports]) if reports else "pass",
        "results": [r.result_dict() for r in reports],
    })


def render_json(reports: list[Report], verbose: bool = False) -> str:
    return json.dumps(run_document(reports), indent=2, allow_nan=False) + "\n"
