"""What a run audits: the command line's target strings, or the configuration's ``targets``.

``gradaudit check`` with no targets audits ``[tool.gradaudit] targets``. With targets (the
files pre-commit passes), it audits them plus the configured ``module:attr`` targets defined in
those files (which discovery may not find: a plain function needs no mark once it is
configured). No torch here: the plugin and the CLI read it before anything is imported.
"""
from __future__ import annotations

import os
from typing import Iterable

from ..targets.spec import TargetError, parse_spec
from .config import Config


def _relative(path: str) -> str:
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    return os.path.relpath(absolute, cwd) if absolute == cwd or absolute.startswith(cwd + os.sep) else absolute


def configured_specs(config: Config) -> list[str]:
    """``targets = [...]`` as target strings for the working directory: a path (or the path
    of a ``path.py:attr``) is read relative to the config file's folder."""
    specs = []
    for text in config.target_list:
        try:
            spec = parse_spec(text)
        except TargetError:
            specs.append(text)  # auditing it says what is wrong with it
            continue
        if spec.kind == "group" or not spec.is_path and not os.path.exists(os.path.join(config.directory, spec.container)):
            specs.append(text)
            continue
        container = _relative(os.path.join(config.directory, spec.container))
        specs.append(f"{container}:{spec.member}" if spec.member else container)
    return specs


def _module_file_suffixes(module: str) -> tuple[str, ...]:
    parts = module.split(".")
    return (os.path.join(*parts) + ".py", os.path.join(*parts, "__init__.py"))


def defines(spec_text: str, path: str, base: str) -> bool:
    """Whether the configured one-target string ``spec_text`` is defined in the file ``path``
    (by its path, relative to ``base``, or by its dotted module's file, found by suffix
    without importing anything: ``pkg.acts`` is defined in ``src/pkg/acts.py``)."""
    try:
        spec = parse_spec(spec_text)
    except TargetError:
        return False
    if not spec.names_one_target:
        return False
    target = os.path.normcase(os.path.abspath(path))
    if spec.is_path:
        return target == os.path.normcase(os.path.abspath(os.path.join(base, spec.container)))
    return any(target == os.path.normcase(os.path.abspath(s)) or target.endswith(os.sep + os.path.normcase(s))
               for s in _module_file_suffixes(spec.container))


def run_specs(given: Iterable[str], config: Config) -> list[str]:
    """The target strings a run audits: ``given``, each file followed by the configured
    one-target strings defined in it (spelled ``file.py:attr``, the name discovery gives, so
    that a target both configured and discovered is audited once); or, with nothing given,
    the configured ``targets``."""
    given = list(given)
    if not given:
        return configured_specs(config)
    configured = [text for text in config.target_list if _names_one(text)]
    specs: list[str] = []
    for text in given:
        if configured and os.path.isfile(text):
            for name in configured:
                if defines(name, text, config.directory):
                    specs.append(f"{_relative(text)}:{parse_spec(name).member}")
        specs.append(text)
    return specs


def _names_one(text: str) -> bool:
    try:
        return parse_spec(text).names_one_target
    except TargetError:
        return False


__all__ = ["configured_specs", "run_specs", "defines"]
