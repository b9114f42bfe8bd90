"""Every check code and its slug (DESIGN.md's catalogue), as pure data.

The model (:mod:`gradaudit.model.report`) names a finding's check from this table, so it needs
neither torch nor the check registry; a test keeps it equal to the registry
(:func:`gradaudit.checks.catalogue`). A retired code is never reused.
"""
from __future__ import annotations

SLUGS: dict[str, str] = {
    "GA101": "gradient",
    "GA102": "second-order",
    "GA103": "forward-ad",
    "GA104": "vmap",
    "GA105": "parameter-gradient",
    "GA106": "gradient-shape",
    "GA201": "nonfinite-output",
    "GA202": "nonfinite-gradient",
    "GA203": "signed-zero-output",
    "GA204": "signed-zero-gradient",
    "GA301": "kink",
    "GA302": "discontinuity",
    "GA401": "inplace",
    "GA402": "determinism",
    "GA403": "dtype",
    "GA404": "shape",
    "GA405": "device",
    "GA406": "compiled",
    "GA407": "custom-op",
    "GA501": "reference",
    "GA901": "error",
}
"""Check code to slug, e.g. ``GA203`` to ``signed-zero-output``."""
