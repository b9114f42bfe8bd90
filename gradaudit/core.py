"""``audit()``: the one entry point every front end (CLI, pytest, pre-commit) goes through."""
from __future__ import annotations

import time
import traceback
from typing import Any, Callable, Iterable, Sequence

import torch

from .checks import ERROR, catalogue
from .checks.notices import WARNING, apply_suppressions, capture_warnings
from .engine.calling import CallError
from .engine.context import AuditContext
from .engine.options import Needs, Options
from .engine.probe import BASE_SAMPLES
from .engine.state import preserved_torch_state
from .failures import TARGET_EXITS, OptionError, crash_finding, exit_finding, frame_location, option_finding, user_frame
from .model.grouping import group_dtypes
from .model.report import Finding, Report, set_failure_renderer
from .options import build_options, merge_declared, merge_options
from .render.table import failure_text
from .targets.spec import Spec, TargetError
from .targets.suppressions import read_suppressions
from .targets.types import Target, source_location, target_from_object

set_failure_renderer(failure_text)  # the text of Report.raise_for_status's AuditFailure

VERBOSE_TRACEBACKS = False
"""Set by the CLI's -v: error findings then carry the traceback in their details."""


def audit(
    fn: Callable[..., Any] | Target,
    *,
    name: str | None = None,
    kinks: Iterable[float] | None = None,
    domain: Sequence[float] | None = None,
    dtypes: Iterable[str | torch.dtype] | None = None,
    size: int | None = None,
    seed: int | None = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    surrogate: bool | None = None,
    reference: Any = None,
    device: str | Iterable[str] | None = None,
    inputs: dict[str, Any] | None = None,
    compile: bool | str | None = None,
) -> Report:
    """Audit one activation: forward and backward over the structured probe inputs.

    ``fn`` is a function, ``functools.partial``, ``nn.Module`` (instance or no-argument
    class) or ``autograd.Function`` subclass. Options given here override those attached
    with ``@gradaudit.activation`` (one merge, :func:`gradaudit.model.options.merge_options`;
    ``ignore`` lists are joined). Bad options (given here or declared) raise
    :class:`OptionError`, a ``ValueError`` naming the target and the option. A target that
    cannot be audited, crashes in its own code, or raises ``SystemExit``/``GeneratorExit``
    gives a report with GA901 errors; ``KeyboardInterrupt`` is raised on (Ctrl-C stops the
    run). Torch's global state (RNG, default dtype, grad, anomaly and inference mode,
    deterministic flags, threads, flush-to-zero) is left as found; the audit itself runs
    outside inference mode and without flush-to-zero, so it gives the same verdict there.
    ``size`` is the number of seeded random samples in the float64 probe (the lower
    precisions take at most 16384 of them); the cost grows linearly with it. ``inputs`` gives
    the roles of the target's extra tensor inputs by parameter name: ``"like"`` (x's shape, the
    default), a shape such as ``(8,)`` broadcast against x, or a constant (a number or tensor).
    ``compile`` (True, or a backend such as ``"aot_eager"``) turns on GA406, which compares
    ``torch.compile`` with eager.
    """
    target = fn if isinstance(fn, Target) else target_from_object(fn, name)
    if name is not None:
        target.name = name
    call = {"kinks": kinks, "domain": domain, "dtypes": dtypes, "size": size, "seed": seed, "select": select,
            "ignore": ignore, "surrogate": surrogate, "reference": reference, "device": device,
            "inputs": inputs, "compile": compile}
    try:
        options = build_options(**merge_options(target.options, call))
    except OptionError as exc:
        raise exc.for_target(target.name) from None
    return run_audit(target, options)


def error_report(target_name: str, message: str, details: dict[str, Any] | None = None,
                 location: dict[str, Any] | None = None) -> Report:
    """A report with one GA901 error finding."""
    return Report(target=target_name,
                  findings=[ERROR.finding("message", "error", message=message, details=details, location=location)])


def run_audit(target: Target, options: Options) -> Report:
    """Run the selected checks on one resolved target.

    An audit of the default size runs on one thread: its tensors are small, and each
    parallel region (oneDNN opens one even for a hundred elements) costs more than the work,
    most of all on a busy machine. Larger probes keep torch's threads. The caller's thread
    count is restored by :func:`preserved_torch_state`."""
    started = time.perf_counter()
    with preserved_torch_state(), capture_warnings() as warned:
        torch.set_grad_enabled(True)
        if options.size <= BASE_SAMPLES:
            torch.set_num_threads(1)
        report = _run_checks(target, options)
    if WARNING.code in options.codes:
        report.findings.extend(warned.findings(target.name))
    report.findings = apply_suppressions(group_dtypes(report.findings), read_suppressions(_definitions(target)))
    report.seconds = time.perf_counter() - started
    return report


def _definitions(target: Target) -> list[dict[str, Any] | None]:
    """Where a suppression comment for ``target`` may be: its definition (class or function,
    from its first decorator line) and its forward's and backward's."""
    obj = type(target.obj) if isinstance(target.obj, torch.nn.Module) else target.obj
    try:
        own = source_location(obj) if obj is not None else None
    except Exception:  # an object whose source cannot be found has no comments
        own = None
    return [own, target.source("forward"), target.source("backward")]


def engine_needs(codes: Iterable[str]) -> Needs:
    """What the selected checks (``codes``) need from the engine, read from their
    declarations: the backward with grad_output -1 too, and whether the float64 probe is
    only ever streamed."""
    selected = set(codes)
    checks = [check for code, check in catalogue().items() if code in selected and check.run]
    negative = any(check.negative_grad_output for check in checks)
    return Needs(grad_output_signs=(1.0, -1.0) if negative else (1.0,),
                 streaming=bool(checks) and all(check.streams for check in checks))


def blamed_defects() -> dict[str, tuple[str, str]]:
    """Check code -> ``(defect, phase)`` that blame traces, from the checks' declarations."""
    return {code: check.blame for code, check in catalogue().items() if check.blame is not None}


def _run_checks(target: Target, options: Options) -> Report:
    context = AuditContext(target, options, engine_needs(options.codes))
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
    except TARGET_EXITS as exc:
        report.findings.append(exit_finding(target.name, exc, "while calling it on the float64 probe",
                                            report.location, _traceback_details(exc)))
        return report
    if first is not None and first.error is not None:
        advice = (" gradaudit calls the target with one float64 tensor of probe inputs; fix the "
                  "target, restrict its inputs with domain=(lo, hi) / --domain, or audit a wrapper "
                  "that takes one tensor." if "raised" in first.error else "")
        alike = [e.name for e in context.binding.extras if e.role.kind == "like"]
        if "raised" in first.error and alike:
            names, example = ", ".join(map(repr, alike)), alike[-1]
            advice = (f" gradaudit passed {names} as {'a tensor' if len(alike) == 1 else 'tensors'} like x (every required positional parameter after "
                      f"the first is a tensor input unless given a role); give a parameter that is not a tensor "
                      f"a constant role, e.g. inputs={{'{example}': False}} / --input {example}=false or "
                      f"{example}=-1, a parameter-like one its shape (--input {example}=8), or restrict x "
                      f"with --domain.")
        return error_report(target.name, f"{target.name}: {first.error}.{advice}",
                            details=_traceback_details(first.exception),
                            location=_blamed_location(first.exception, report.location))
    report.timings["float64 evaluation"] = time.perf_counter() - started
    for code, check in catalogue().items():
        if check.run is None or code not in options.codes:
            continue
        started = time.perf_counter()
        try:
            report.findings.extend(check.run(context))
        except (*TARGET_EXITS, Exception) as exc:  # KeyboardInterrupt stops the run
            report.findings.append(_check_error(target.name, code, check.slug, exc, report.location))
        report.timings[code] = time.perf_counter() - started
    from .engine.blame import blame_findings

    started = time.perf_counter()
    try:
        blame_findings(context, report.findings, blamed_defects())  # after every check, on copies: adds lines, changes no verdict
    except TARGET_EXITS:
        pass  # blame only adds source lines; the checks reported the exit already
    report.timings["blame"] = time.perf_counter() - started
    return report


def _internal_error(target_name: str, code: str, slug: str, exc: Exception) -> Finding:
    """GA901 for a crash with no frame in the target's code: a bug in gradaudit itself."""
    return ERROR.finding("internal", "error", target=target_name, code=code, slug=slug,
                         exception=f"{type(exc).__name__}: {exc}", details={"traceback": traceback.format_exc()})


def _blamed_location(exc: BaseException | None, fallback: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where the target's code raised ``exc``, else ``fallback`` (the target's source)."""
    frame = user_frame(exc) if exc is not None else None
    return frame_location(frame) if frame is not None else fallback


def _check_error(target: str, code: str, slug: str, exc: BaseException,
                 location: dict[str, Any] | None) -> Finding:
    """The GA901 for a check that could not finish; ``details["during"]`` names the check."""
    if isinstance(exc, TargetError):
        finding = ERROR.finding("message", "error", message=str(exc))
    elif isinstance(exc, CallError):
        finding = ERROR.finding("call", "error", target=target, code=code, slug=slug, reason=str(exc),
                                details=_traceback_details(exc), location=_blamed_location(exc, location))
    elif isinstance(exc, TARGET_EXITS):
        finding = exit_finding(target, exc, f"while running {code} ({slug})", location, _traceback_details(exc))
    else:
        finding = (crash_finding(target, code, slug, exc, _traceback_details(exc))
                   or _internal_error(target, code, slug, exc))
    finding.details = {**(finding.details or {}), "during": code}
    return finding


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
        return [no_targets_report(spec)]
    return [audit_resolved(target, options, overrides) for target in targets]


def no_targets_report(spec: str) -> Report:
    """The GA901 report of a module (or other target string) in which no target was found."""
    return error_report(spec, f"{spec}: no targets found (no autograd.Function, no-argument "
                              f"nn.Module or @gradaudit.activation callable is defined there). "
                              f"Name one explicitly as {spec}:name.")


def audit_resolved(
    target: Target,
    options: Options,
    overrides: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
) -> Report:
    """Audit one resolved target with the run's ``options`` laid over its declared ones
    (:func:`merge_declared`); a bad declared option is a GA901 report for it alone."""
    from .targets.types import UnloadableFile

    if isinstance(target, UnloadableFile):  # a file of a directory scan that failed to import
        return error_report(target.name, target.error)
    if overrides is not None:
        target.options = overrides(target.name, target.options)
    try:
        target_options = merge_declared(options, target.options) if target.options else options
    except OptionError as exc:
        finding = option_finding(target.name, exc, target.source("forward"))
        return Report(target=target.name, findings=[finding], location=finding.location)
    return run_audit(target, target_options)


def resolve_spec(spec: str | Spec) -> list[Target]:
    """The targets a target string names (parsed once, by :func:`gradaudit.targets.spec.parse_spec`)."""
    from .targets.resolve import resolve

    return resolve(spec)
