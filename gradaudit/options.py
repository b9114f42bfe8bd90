"""Validated audit options: :func:`build_options` checks what a user gives (``audit()``'s
keywords, the command line, the config file), :func:`merge_declared` lays a run's options over
what a target declares. One merge for every front end (:mod:`gradaudit.model.options`)."""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch

from .checks import catalogue, expand
from .engine.inputs import DEFAULT_SIZE
from .engine.options import Options, parse_compile, parse_dtype, parse_input_roles
from .failures import OptionError
from .model.options import DECLARED, merge_options
from .targets.spec import TargetError
from .targets.types import Target, target_from_object


def _validate_domain(domain: Any) -> tuple[float, float] | None:
    if domain is None:
        return None
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise OptionError("domain", f"domain must be a pair (lo, hi) of numbers, not {domain!r}") from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise OptionError("domain", f"domain must satisfy lo < hi, got ({lo}, {hi})")
    return (lo, hi)


def _validate_kinks(kinks: Iterable[float] | None) -> tuple[float, ...]:
    try:
        values = tuple(float(k) for k in (kinks or ()))
    except (TypeError, ValueError):
        raise OptionError("kinks", f"kinks must be numbers, not {kinks!r}") from None
    if any(not math.isfinite(k) for k in values):
        raise OptionError("kinks", f"kinks must be finite numbers, not {kinks!r}")
    return values


def _codes(option: str, patterns: Iterable[str] | None) -> set[str]:
    """:func:`gradaudit.checks.expand`, its ``ValueError`` naming ``option``."""
    if isinstance(patterns, str):
        patterns = [patterns]
    try:
        return expand(patterns)
    except ValueError as exc:
        raise OptionError(option, f"{option}: {exc}") from None


def _load_reference(reference: Any) -> Target:
    if isinstance(reference, Target):  # loaded already (the run's, laid over a target's declared options)
        return reference
    if isinstance(reference, str):
        from .targets.resolve import resolve

        try:
            (ref_target,) = resolve(reference)[:1]
        except (TargetError, ValueError) as exc:
            raise OptionError("reference", f"reference {reference!r} cannot be loaded: {exc}") from None
        return ref_target
    try:
        return target_from_object(reference)
    except (TargetError, TypeError, ValueError) as exc:
        raise OptionError("reference", f"reference {reference!r} cannot be audited against: {exc}") from None


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
    inputs: dict[str, Any] | None = None,
    compile: bool | str | None = None,
) -> Options:
    """Validate user options; raises :class:`OptionError` (a ``ValueError``) whose ``option``
    and message name the bad option. GA406 (compiled) runs only with ``compile`` (a backend,
    or True for inductor) or when ``select`` names it explicitly."""
    try:
        parsed_dtypes = tuple(parse_dtype(d) for d in dtypes) if dtypes is not None else Options.dtypes
    except (TypeError, ValueError) as exc:
        raise OptionError("dtypes", str(exc)) from None
    if not parsed_dtypes:
        raise OptionError("dtypes", "dtypes must name at least one dtype")
    if torch.float64 not in parsed_dtypes:
        parsed_dtypes = (torch.float64,) + parsed_dtypes  # gradients are judged in float64
    if size is None:
        size = DEFAULT_SIZE
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OptionError("size", f"size must be a non-negative integer, not {size!r}")
    kink_values = _validate_kinks(kinks)
    ref_target = _load_reference(reference) if reference is not None else None
    codes = (_codes("select", select) if select else set(catalogue())) - _codes("ignore", ignore)
    try:
        backend = parse_compile(compile)
    except ValueError as exc:
        raise OptionError("compile", str(exc)) from None
    if backend is None and COMPILED_CODE in codes and _names_explicitly(select, COMPILED_CODE):
        backend = parse_compile(True)
    if backend is None:
        codes.discard(COMPILED_CODE)  # opt-in: a compile costs seconds
    elif COMPILED_CODE in codes:
        _check_backend(backend)
    try:
        roles = parse_input_roles(inputs)
    except ValueError as exc:
        raise OptionError("inputs", str(exc)) from None
    from .engine.devices import parse_devices

    try:
        devices = parse_devices(device)
    except ValueError as exc:
        raise OptionError("device", str(exc)) from None
    return Options(
        kinks=kink_values,
        domain=_validate_domain(domain),
        dtypes=parsed_dtypes,
        size=size,
        seed=int(seed),
        codes=frozenset(codes),
        surrogate=bool(surrogate),
        reference=ref_target,
        devices=devices,
        inputs=roles,
        compile=backend,
    )


COMPILED_CODE = "GA406"
"""The opt-in check: it runs with ``compile`` or when ``select`` names it (code or slug)."""


def _check_backend(backend: str) -> None:
    """An unknown torch.compile backend is a bad option (a usage error), not one GA901 per target."""
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise OptionError("compile", f"compile: unknown torch.compile backend {backend!r}; choose from {', '.join(known)}")


def _names_explicitly(select: Iterable[str] | None, code: str) -> bool:
    """Whether ``select`` names ``code`` by its code or slug (not by a prefix)."""
    if not select:
        return False
    names = {code.lower(), catalogue()[code].slug.lower()} if code in catalogue() else {code.lower()}
    patterns = [select] if isinstance(select, str) else list(select)
    return any(part.strip().lower() in names for pattern in patterns for part in str(pattern).split(","))


def _input_roles(inputs: Any) -> dict[str, Any]:
    try:
        return parse_input_roles(inputs)
    except ValueError as exc:
        raise OptionError("inputs", str(exc)) from None


def merge_declared(options: Options, declared: dict[str, Any]) -> Options:
    """A run's ``options`` (command line over config file) laid over a target's declared
    options (``@gradaudit.activation``, then its config table) by
    :func:`gradaudit.model.options.merge_options`: a declared option applies where the run
    gave none; declared ``ignore`` lists remove checks too.

    Every declared kink and domain is validated, used or not; a bad option raises :class:`OptionError`."""
    from dataclasses import replace

    _validate_kinks(declared.get("kinks"))
    _validate_domain(declared.get("domain"))
    run = {"kinks": options.kinks or None, "domain": options.domain, "surrogate": options.surrogate or None,
           "reference": options.reference, "inputs": options.inputs or None}
    merged = merge_options({key: declared.get(key) for key in DECLARED if key != "ignore"}, run)
    reference = merged.get("reference")
    updates: dict[str, Any] = {
        "kinks": _validate_kinks(merged.get("kinks")),
        "domain": _validate_domain(merged.get("domain")),
        "surrogate": bool(merged.get("surrogate")),
        "reference": _load_reference(reference) if reference is not None else None,
        "inputs": _input_roles(merged.get("inputs")),
    }
    if declared.get("ignore"):
        updates["codes"] = options.codes - _codes("ignore", declared["ignore"])
    return replace(options, **updates)
