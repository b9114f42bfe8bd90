"""Messages between ``--jobs`` workers and the parent: JSON data, never pickles.

A target runs inside a worker, so a worker may be under the target's control; unpickling
what it sends would let it run code in the parent. Workers send bytes
(``Connection.send_bytes``) holding one JSON object ``{"kind": ..., "payload": ...}``, and
the parent checks the shape of what it parses before it builds a :class:`Report` from it.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from ..model.report import Finding, Report

KINDS = ("ready", "located", "done", "fatal")
"""Kinds of message a worker sends: started; found its target (payload: its location);
finished a task (payload: a report, or an expansion); about to die (payload: why)."""

FINDING_FIELDS = frozenset(f.name for f in dataclasses.fields(Finding))
REPORT_FIELDS = frozenset(f.name for f in dataclasses.fields(Report))


class WireError(ValueError):
    """A worker sent something that is not a well-formed gradaudit message."""


def data(value: Any) -> Any:
    """``value`` as JSON data: containers become dicts and lists, anything else its repr."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [data(item) for item in value]
    item = getattr(value, "item", None)  # numpy and 0-d torch scalars
    if callable(item):
        try:
            number = item()
        except Exception:
            number = None
        if isinstance(number, (bool, int, float)):
            return number
    return repr(value)


def report_data(report: Report) -> dict[str, Any]:
    """Every field of a report, findings as dicts of their fields, as JSON data."""
    out = {f.name: data(getattr(report, f.name)) for f in dataclasses.fields(Report) if f.name != "findings"}
    out["findings"] = [{f.name: data(getattr(finding, f.name)) for f in dataclasses.fields(Finding)}
                       for finding in report.findings]
    return out


def encode(kind: str, payload: Any = None) -> bytes:
    """A message: reports and expansions (``(names, error reports)``) become JSON data."""
    if isinstance(payload, Report):
        payload = report_data(payload)
    elif kind == "done" and isinstance(payload, tuple):
        names, errors = payload
        payload = {"names": list(names), "errors": [report_data(r) for r in errors]}
    return json.dumps({"kind": kind, "payload": data(payload)}).encode("utf-8")


def decode(raw: bytes, expect: str | None = None) -> tuple[str, Any]:
    """``(kind, payload)`` of a worker's message; ``done`` payloads are parsed as ``expect``:
    ``"report"`` (a :class:`Report`) or ``"expansion"`` (``(names, error reports)``).
    Raises :class:`WireError` for anything else."""
    try:
        message = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"not a JSON message ({exc})") from None
    if not isinstance(message, dict) or set(message) != {"kind", "payload"} or message["kind"] not in KINDS:
        raise WireError("not a gradaudit message (an object with a known 'kind' and a 'payload')")
    kind, payload = message["kind"], message["payload"]
    if kind == "ready":
        return kind, None
    if kind == "located":
        return kind, _optional_dict(payload, "location")
    if kind == "fatal":
        return kind, _require(payload, dict, "the reason a worker died")
    if expect == "report":
        return kind, report_from_data(payload)
    if expect == "expansion":
        expansion = _require(payload, dict, "an expansion")
        names = _require(expansion.get("names"), list, "the names of an expansion")
        if not all(isinstance(name, str) for name in names):
            raise WireError("an expansion's names are not all strings")
        errors = _require(expansion.get("errors"), list, "the errors of an expansion")
        return kind, (names, [report_from_data(item) for item in errors])
    raise WireError(f"a {kind!r} message when no task was given")


def report_from_data(payload: Any) -> Report:
    """A :class:`Report` from :func:`report_data`'s form; :class:`WireError` if it is not one."""
    fields = _require(payload, dict, "a report")
    if not set(fields) <= REPORT_FIELDS or not isinstance(fields.get("target"), str):
        raise WireError("a report has unknown fields or no target name")
    findings = [_finding(item) for item in _require(fields.get("findings", []), list, "a report's findings")]
    seconds = fields.get("seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise WireError("a report's seconds are not a number")
    timings = _require(fields.get("timings", {}), dict, "a report's timings")
    try:
        return Report(**{**fields, "findings": findings, "location": _optional_dict(fields.get("location"), "location"),
                         "seconds": float(seconds), "timings": timings})
    except (TypeError, ValueError) as exc:
        raise WireError(f"not a report ({exc})") from None


def _finding(payload: Any) -> Finding:
    fields = _require(payload, dict, "a finding")
    if not set(fields) <= FINDING_FIELDS:
        raise WireError(f"a finding has unknown fields {sorted(set(fields) - FINDING_FIELDS)}")
    for key in ("code", "status", "message"):
        if not isinstance(fields.get(key), str):
            raise WireError(f"a finding's {key} is not a string")
    if not isinstance(fields.get("examples", []), list) or not all(isinstance(e, dict) for e in fields.get("examples", [])):
        raise WireError("a finding's examples are not a list of objects")
    _optional_dict(fields.get("details"), "details")
    _optional_dict(fields.get("location"), "location")
    try:
        return Finding(**fields)
    except (TypeError, ValueError) as exc:
        raise WireError(f"not a finding ({exc})") from None


def _require(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise WireError(f"{what} is not a JSON {'object' if kind is dict else 'array'}")
    return value


def _optional_dict(value: Any, what: str) -> dict[str, Any] | None:
    return None if value is None else _require(value, dict, what)


__all__ = ["WireError", "encode", "decode", "data", "report_data", "report_from_data"]
