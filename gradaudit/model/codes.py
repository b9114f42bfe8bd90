"""Every check code and its slug (DESIGN.md's catalogue), as pure data.

A finding built by a check gets its slug from the check (:meth:`gradaudit.model.check.Check.finding`);
this table names the check only of findings loaded from JSON or built by hand outside the checks
(the worker runner's GA901), so the model needs neither torch nor the check registry. Tests keep
it in agreement with the registry (:func:`gradaudit.checks.catalogue`) wherever both name a
code, inside :data:`CODE_RANGES`, and clear of :data:`RETIRED_CODES`; a new check needs no row.
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

CODE_RANGES: dict[str, str] = {
    "GA1": "gradients",
    "GA2": "values (non-finite, signed zeros)",
    "GA3": "kinks and jumps",
    "GA4": "hygiene, layouts and backends (dtype, shape, device, compile, custom ops)",
    "GA5": "comparison with a reference",
    "GA9": "could not audit",
}
"""Code prefix to the family its codes belong to (DESIGN.md); a new check takes the next free
code of its family, and ``--select GA2`` selects a whole family."""

RETIRED_CODES: dict[str, str] = {}
"""Codes once used and withdrawn, each with the reason (``{"GA199": "merged into GA101"}``).
A retired code is never reused: a stored report or a ``--ignore`` list that names it keeps
its meaning. None has been retired yet."""
