"""One finding per cause: findings that differ only in their dtype become one, with ``dtypes``.

A check that finds the same defect in float32, float16 and bfloat16 reports it once per
dtype; people want it once, "in float32, float16 and bfloat16". :func:`group_dtypes` merges
findings with the same code, kind, status, input and location whose messages are the same
apart from the dtype's name and the figures (counts, intervals, examples). The merged finding
keeps the first one's message, examples and ``dtype`` (so a JSON consumer that reads
``dtype`` still finds it), lists every dtype in ``dtypes``, and keeps what each other dtype
said in ``details["per_dtype"]``: nothing is lost. Kink-table findings (one per kink, whose
details form a table row) are never merged. Pure data: no torch.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from .report import Finding

KINK_ROW = ("location", "left", "right", "verdict")
"""The details a finding about one kink or jump carries: such findings make the kink table."""

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", re.IGNORECASE)
"""A figure in a message (``inf`` and ``nan`` are words: an overflow and a NaN are two causes)."""


def is_kink_row(finding: Finding) -> bool:
    """Whether the finding is one row of a kink table."""
    details = finding.details or {}
    return all(key in details for key in KINK_ROW)


def message_shape(finding: Finding) -> str:
    """The message with the finding's own dtype name and every number blanked: two findings
    of one cause in two dtypes have the same shape."""
    text = finding.message
    if finding.dtype:
        text = re.sub(rf"\b{re.escape(finding.dtype)}\b", "{dtype}", text)
    return _NUMBER.sub("#", text)


def _key(finding: Finding) -> tuple[Any, ...] | None:
    if finding.dtype is None or finding.dtypes or is_kink_row(finding):
        return None
    location = tuple(sorted((finding.location or {}).items(), key=lambda item: item[0]))
    return (finding.code, finding.kind, finding.status, finding.input, finding.suppressed,
            repr(location), message_shape(finding))


def dtype_list(dtypes: list[str]) -> str:
    """``float32``, ``float32 and float16``, ``float32, float16 and bfloat16``."""
    return dtypes[0] if len(dtypes) == 1 else f"{', '.join(dtypes[:-1])} and {dtypes[-1]}"


def _merge(group: list[Finding]) -> Finding:
    first, others = group[0], group[1:]
    dtypes = [first.dtype] + [f.dtype for f in others if f.dtype not in (first.dtype,)]
    dtypes = list(dict.fromkeys(d for d in dtypes if d))
    per_dtype = {f.dtype: {"message": f.message, "examples": f.examples, **({"details": f.details} if f.details else {})}
                 for f in others if f.dtype}
    details = {**(first.details or {}), "per_dtype": per_dtype}
    message = first.message.rstrip()
    message += f" Also in {dtype_list(dtypes[1:])}."
    return replace(first, message=message, dtypes=dtypes, details=details)


def group_dtypes(findings: list[Finding]) -> list[Finding]:
    """``findings`` with those that differ only in dtype merged into one (at the place of the
    first); every other finding, kink rows included, unchanged and in order."""
    groups: dict[tuple[Any, ...], list[Finding]] = {}
    order: list[Finding | tuple[Any, ...]] = []
    for finding in findings:
        key = _key(finding)
        if key is None:
            order.append(finding)
        elif key in groups:
            if any(f.dtype == finding.dtype for f in groups[key]):  # same dtype twice: two causes
                order.append(finding)
            else:
                groups[key].append(finding)
        else:
            groups[key] = [finding]
            order.append(key)
    out = []
    for item in order:
        if isinstance(item, Finding):
            out.append(item)
        else:
            group = groups[item]
            out.append(group[0] if len(group) == 1 else _merge(group))
    return out
