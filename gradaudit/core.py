"""``audit()``: the one entry point every front end (CLI, pytest, pre-commit) goes through."""
from __future__ import annotations

import math
import time
import traceback
from typing import Any, Callable, Iterable, Sequence

import torch

from .checks import catalogue, selected
from .context import AuditContext, CallError, Options, parse_dtype
from .inputs import DEFAULT_SIZE
from .report import Finding, Report
from .state import preserved_torch_state
from .targets import Target, TargetError, target_from_object

VERBOSE_TRACEBACKS = False
"""Set by the CLI's -v: error findings then carry the traceback in their details."""


def _validate_domain(domain: Any) -> tuple[float, float] | None:
    if domain is None:
        return None
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise ValueError(f"domain must be a pair (lo, hi) of numbers, not {domain!r}") from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ValueError(f"domain must satisfy lo < hi, got ({lo}, {hi})")
    return (lo, hi)


def build_options(
    *,
    kinks: Iterable[float] | None = None,
    domain: Sequence[float] | None = None,
    dtypes: Iterable[str | torch.dtype] | None = None,
    size: int | None = None,
    seed: int = 0,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    surrogate: bool = False,
    reference: Any = None,
    device: str | Iterable[str] | None = None,
) -> Options:
    """Validate user options; raises ``ValueError`` with a message that names the bad option."""
    parsed_dtypes = tuple(parse_dtype(d) for d in dtypes) if dtypes is not None else Options.dtypes
    if not parsed_dtypes:
        raise ValueError("dtypes must name at least one dtype")
    if torch.float64 not in parsed_dtypes:
        parsed_dtypes = (torch.float64,) + parsed_dtypes  # gradients are judged in float64
    if size is None:
        size = DEFAULT_SIZE
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"size must be a non-negative integer, not {size!r}")
    try:
        kink_values = tuple(float(k) for k in (kinks or ()))
    except (TypeError, ValueError):
        raise ValueError(f"kinks must be numbers, not {kinks!r}") from None
    if any(not math.isfinite(k) for k in kink_values):
        raise ValueError(f"kinks must be finite numbers, not {kinks!r}")
    ref_target: Target | None = None
    if reference is not None:
        if isinstance(reference, str):
            from .targets import resolve

            try:
                (ref_target,) = resolve(reference)[:1]
            except (TargetError, ValueError) as exc:
                raise ValueError(f"reference {reference!r} cannot be loaded: {exc}") from None
        else:
            ref_target = target_from_object(reference)
    from .devices import parse_devices

    return Options(
        kinks=kink_values,
        domain=_validate_domain(domain),
        dtypes=parsed_dtypes,
        size=size,
        seed=int(seed),
        codes=frozenset(selected(select, ignore)),
        surrogate=bool(surrogate),
        reference=ref_target,
        devices=parse_devices(device),
    )


def audit(
    fn: Callable[..., Any] | Target,
    *,
    name: str | None = None,
    kinks: Iterable[float] | None = None,
    domain: Sequence[float] | None = None,
    dtypes: Iterable[str | torch.dtype] | None = None,
    size: int | None = None,
    seed: int = 0,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    surrogate: bool | None = None,
    reference: Any = None,
    device: str | Iterable[str] | None = None,
) -> Report:
    """Audit one activation: forward and backward over the structured probe inputs.

    ``fn`` is a function, ``functools.partial``, ``nn.Module`` (instance or no-argument
    class) or ``autograd.Function`` subclass. Options given here override those attached
    with ``@gradaudit.activation``. Bad options raise ``ValueError``; a target that cannot
    be audited gives a report with status ``error`` (GA901). Torch's global state (RNG,
    default dtype, grad and anomaly mode, deterministic flags, threads) is left as found.
    ``size`` is the number of seeded random samples in the float64 probe (the lower
    precisions take at most 16384 of them); the cost grows linearly with it.
    """
    target = fn if isinstance(fn, Target) else target_from_object(fn, name)
    if name is not None:
        target.name = name
    declared = dict(target.options)
    merged: dict[str, Any] = {
        "kinks": kinks if kinks is not None else declared.get("kinks"),
        "domain": domain if domain is not None else declared.get("domain"),
        "dtypes": dtypes if dtypes is not None else declared.get("dtypes"),
        "size": size if size is not None else declared.get("size"),
        "seed": seed,
        "select": select if select is not None else declared.get("select"),
        "ignore": list(ignore or ()) + list(declared.get("ignore") or ()),
        "surrogate": surrogate if surrogate is not None else declared.get("surrogate", False),
        "reference": reference if reference is not None else declared.get("reference"),
        "device": device if device is not None else declared.get("device"),
    }
    options = build_options(**merged)
    return run_audit(target, options)


def error_report(target_name: str, message: str, details: dict[str, Any] | None = None) -> Report:
    """A report with one GA901 error finding."""
    return Report(target=target_name, findings=[Finding("GA901", "error", message, details=details)])


def run_audit(target: Target, options: Options) -> Report:
    """Run the selected checks on one resolved target."""
    started = time.perf_counter()
    with preserved_torch_state():
        torch.set_grad_enabled(True)
        report = _run_checks(target, options)
    report.seconds = time.perf_counter() - started
    return report


def _run_checks(target: Target, options: Options) -> Report:
    context = AuditContext(target, options)
    try:
        return _run_checks_in(context)
    finally:
        context.close()


def _run_checks_in(context: AuditContext) -> Report:
    target, options = context.target, context.options
    report = Report(target=target.name, location=target.source("forward"))
    started = time.perf_counter()
    try:
        first = context.first_evaluation()
    except TargetError as exc:
        return error_report(target.name, str(exc))
    if first is not None and first.error is not None:
        advice = (" gradaudit calls the target with one float64 tensor of probe inputs; fix the "
                  "target, restrict its inputs with domain=(lo, hi) / --domain, or audit a wrapper "
                  "that takes one tensor." if "raised" in first.error else "")
        return error_report(target.name, f"{target.name}: {first.error}.{advice}",
                            details=_traceback_details(first.exception))
    report.timings["float64 evaluation"] = time.perf_counter() - started
    for code, check in catalogue().items():
        if check.run is None or code not in options.codes:
            continue
        started = time.perf_counter()
        try:
            report.findings.extend(check.run(context))
        except TargetError as exc:
            report.findings.append(Finding("GA901", "error", str(exc)))
        except CallError as exc:
            report.findings.append(Finding(
                "GA901", "error",
                f"{target.name}: while running {code} ({check.slug}), {exc}. Fix the target or "
                f"exclude that check with ignore=['{code}'] / --ignore {code}.",
                details=_traceback_details(exc)))
        except Exception as exc:  # a bug in gradaudit itself: say so, keep going
            report.findings.append(Finding(
                "GA901", "error",
                f"{target.name}: gradaudit's check {code} ({check.slug}) crashed with "
                f"{type(exc).__name__}: {exc}. This is a gradaudit bug; please report it with "
                f"the output of -v. Other checks still ran.",
                details={"traceback": traceback.format_exc()}))
        report.timings[code] = time.perf_counter() - started
    from .blame import blame_findings

    started = time.perf_counter()
    blame_findings(context, report.findings)  # after every check, on copies: adds lines, changes no verdict
    report.timings["blame"] = time.perf_counter() - started
    return report


def _traceback_details(exc: BaseException | None = None) -> dict[str, Any] | None:
    if not VERBOSE_TRACEBACKS:
        return None
    text = ("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc is not None
            else traceback.format_exc())
    return {"traceback": text}


def audit_target_string(
    spec: str,
    options: Options,
    overrides: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
) -> list[Report]:
    """Resolve a target string and audit what it names; errors become GA901 reports.

    ``overrides(target_name, declared)`` may replace a target's declared options (the
    config file's per-target tables do).
    """
    try:
        targets = resolve_spec(spec)
    except TargetError as exc:
        return [error_report(spec, str(exc), _traceback_details(exc))]
    if not targets:
        return [error_report(spec, f"{spec}: no targets found (no autograd.Function, no-argument "
                                   f"nn.Module or @gradaudit.activation callable is defined there). "
                                   f"Name one explicitly as {spec}:name.")]
    reports = []
    for target in targets:
        target_options = options
        if overrides is not None:
            target.options = overrides(target.name, target.options)
        if target.options:
            target_options = merge_declared(options, target.options)
        reports.append(run_audit(target, target_options))
    return reports


def resolve_spec(spec: str) -> list[Target]:
    from .targets import resolve

    return resolve(spec)


def merge_declared(options: Options, declared: dict[str, Any]) -> Options:
    """Options from ``@gradaudit.activation`` (or config) filled in where the run gave none."""
    from dataclasses import replace

    updates: dict[str, Any] = {}
    if declared.get("kinks") and not options.kinks:
        updates["kinks"] = tuple(float(k) for k in declared["kinks"])
    if declared.get("domain") is not None and options.domain is None:
        updates["domain"] = _validate_domain(declared["domain"])
    if declared.get("surrogate") and not options.surrogate:
        updates["surrogate"] = True
    if declared.get("reference") is not None and options.reference is None:
        ref = declared["reference"]
        updates["reference"] = build_options(reference=ref).reference
    if declared.get("ignore"):
        from .checks import expand

        updates["codes"] = options.codes - expand(declared["ignore"])
    return replace(options, **updates) if updates else options

