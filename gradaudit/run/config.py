"""Run settings: defined once here, read from ``[tool.gradaudit]`` in pyproject.toml.

The CLI (``gradaudit check``) and the pytest plugin both build their options from
:data:`SETTINGS`, so a setting has one name, one parser and one help text everywhere:

    [tool.gradaudit]
    targets = ["src/mypkg/acts.py", "mypkg.acts:swiglu"]   # what a bare ``gradaudit check`` audits
    exclude = ["tests/**", "scripts/*.py"]                  # globs that discovery leaves alone
    dtypes = ["float64", "float32"]
    ignore = ["GA104"]
    strict = true

    [tool.gradaudit.overrides."mypkg.acts:HardTanh"]      # or [tool.gradaudit.targets."..."]
    kinks = [-1.0, 1.0]                                     # when targets is not a list

Precedence: explicit arguments (CLI flags, ``assert_audit`` keywords) over the config file
over the built-in defaults. This module imports nothing heavy (no torch), so the pytest
plugin can load it at start-up.
"""
from __future__ import annotations

import difflib
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..model.options import merge_options
from ..targets.spec import looks_like_path, split_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

DTYPE_CHOICES = ("float64", "float32", "float16", "bfloat16")


class ConfigError(ValueError):
    """The configuration file is unreadable or holds an unknown key or a bad value."""


class TargetOptionError(ConfigError):
    """A per-target table holds a bad value: an error (GA901) for the targets it names, not
    for the whole run. ``option`` is the key."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


# -- value parsers: each takes a config or command-line value and returns it validated ----

def _string_list(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of strings, not {value!r}")
    return [part.strip() for v in value for part in v.split(",") if part.strip()]


def _dtypes(value: Any) -> list[str]:
    names = _string_list("dtypes", value)
    for name in names:
        if name.replace("torch.", "") not in DTYPE_CHOICES:
            raise ValueError(f"dtypes: unsupported dtype {name!r}; choose from {', '.join(DTYPE_CHOICES)}")
    return names


def _integer(key: str, minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{key} must be an integer >= {minimum}, not {value!r}")
        return value
    return parse


def _boolean(key: str) -> Callable[[Any], bool]:
    def parse(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, not {value!r}")
        return value
    return parse


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"timeout must be a positive number of seconds, not {value!r}")
    return float(value)


def _numbers(key: str, finite: bool = False) -> Callable[[Any], list[float]]:
    def parse(value: Any) -> list[float]:
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{key} must be a list of numbers, not {value!r}")
        numbers = [float(v) for v in value]
        if any(math.isnan(v) or (finite and math.isinf(v)) for v in numbers):
            kind = "finite numbers" if finite else "numbers (not nan)"
            raise ValueError(f"{key} must be a list of {kind}, not {value!r}")
        return numbers
    return parse


def _interval(value: Any) -> tuple[float, float]:
    numbers = _numbers("domain")(value)
    if len(numbers) != 2:
        raise ValueError(f"domain must be a pair [lo, hi], not {value!r}")
    if not numbers[0] < numbers[1]:
        raise ValueError(f"domain must be a pair [lo, hi] with lo < hi, not {value!r}; swap the bounds")
    return (numbers[0], numbers[1])


def _string(key: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key} must be a target string such as 'torch.nn.functional:relu', not {value!r}")
        return value
    return parse


def _inputs(value: Any) -> dict[str, Any]:
    """``inputs = {bias = [8], slope = 25, gate = "like"}``: a table of input roles."""
    if not isinstance(value, dict):
        raise ValueError(f"inputs must be a table of parameter names to roles, e.g. {{bias = [8]}}, not {value!r}")
    for name, role in value.items():
        if isinstance(role, bool) or not isinstance(role, (str, int, float, list)):
            raise ValueError(f"inputs: {name} = {role!r} is not a role; give \"like\", a shape such as [8] or a number")
    return dict(value)


def _compile(value: Any) -> bool | str:
    if isinstance(value, bool) or (isinstance(value, str) and value.strip()):
        return value
    raise ValueError(f"compile must be true, false or a torch.compile backend name, not {value!r}")


@dataclass(frozen=True)
class Setting:
    """One run setting: its config key, command-line flag, parser and help text."""

    key: str
    flag: str
    parse: Callable[[Any], Any]
    help: str
    multiple: bool = False
    is_flag: bool = False
    kind: type = str
    metavar: str | None = None
    in_pytest: bool = True
    flag_value: str | None = None
    """The value of the flag given without one (``--compile`` alone is ``inductor``)."""


SETTINGS: tuple[Setting, ...] = (
    Setting("dtypes", "--dtype", _dtypes, "Audit dtype (repeatable): float64, float32, float16, bfloat16.",
            multiple=True, metavar="DTYPE"),
    Setting("size", "--size", _integer("size", 0),
            "Seeded random samples added to the float64 probe grid (at most 16384 of them below float64).",
            kind=int, metavar="N"),
    Setting("seed", "--seed", _integer("seed", 0), "Seed of the random samples (default 0).", kind=int, metavar="N"),
    Setting("select", "--select", lambda v: _string_list("select", v),
            "Only these checks: codes, prefixes (GA2) or slugs; comma-separated.", multiple=True, metavar="CHECKS"),
    Setting("ignore", "--ignore", lambda v: _string_list("ignore", v),
            "Skip these checks: codes, prefixes or slugs; comma-separated.", multiple=True, metavar="CHECKS"),
    Setting("compile", "--compile", _compile,
            "Also compare torch.compile with eager (GA406), with BACKEND (default inductor); costs seconds per target.",
            metavar="[BACKEND]", flag_value="inductor"),
    Setting("strict", "--strict", _boolean("strict"), "Treat warnings as failures (exit 1 on warn).", is_flag=True),
    Setting("jobs", "--jobs", _integer("jobs", 1), "Audit targets in N worker processes.",
            kind=int, metavar="N", in_pytest=False),
    Setting("timeout", "--timeout", _seconds,
            "Per-target time limit in seconds; a target that runs longer is reported as an error (GA901).",
            kind=float, metavar="SECONDS", in_pytest=False),
)
"""Every top-level ``[tool.gradaudit]`` key, in the order ``--help`` shows them."""

TARGET_KEYS: dict[str, Callable[[Any], Any]] = {
    "kinks": _numbers("kinks", finite=True),
    "domain": _interval,
    "surrogate": _boolean("surrogate"),
    "reference": _string("reference"),
    "ignore": lambda v: _string_list("ignore", v),
    "inputs": _inputs,
    "skip": _boolean("skip"),
}
"""Keys of a per-target table ``[tool.gradaudit.targets."module:attr"]``; ``skip = true``
leaves out a target that discovery finds but that is not an activation (a whole model)."""

SETTING_BY_KEY = {s.key: s for s in SETTINGS}


def _unknown_key(where: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}.{hint} Known keys: {', '.join(known)}.")


@dataclass
class Config:
    """Validated ``[tool.gradaudit]`` settings and per-target tables from one file."""

    path: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    target_errors: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per table key, the options whose values are bad (key: message): reported as an error
    of each target that table names when it is audited, so the other targets still run."""
    target_list: list[str] = field(default_factory=list)
    """``targets = [...]``: what a bare ``gradaudit check`` and ``pytest --gradaudit`` audit;
    paths are relative to the config file's directory, as written."""
    exclude: list[str] = field(default_factory=list)
    """``exclude = [...]``: globs (relative to the config file's directory) that discovery skips."""

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path) if self.path else os.getcwd()

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every setting: ``given`` (the command line's values that are not None) over the file
        over the defaults; a setting given replaces the file's (``ignore`` too: the file's
        top-level settings are the command line's defaults)."""
        parsed: dict[str, Any] = {}
        for key, value in given.items():
            if key not in SETTING_BY_KEY:
                raise KeyError(f"unknown setting {key!r}")
            if value is not None and value != () and value != []:
                parsed[key] = SETTING_BY_KEY[key].parse(list(value) if isinstance(value, tuple) else value)
        merged: dict[str, Any] = {s.key: None for s in SETTINGS}
        merged.update(merge_options(self.settings, parsed, combined=()))
        merged["strict"] = bool(merged["strict"])
        merged["seed"] = merged["seed"] or 0
        merged["jobs"] = merged["jobs"] or 1
        return merged

    def target_options(self, target_name: str) -> dict[str, Any]:
        """The per-target table(s) that match ``target_name``, merged (later keys win)."""
        found: dict[str, Any] = {}
        for key, table in self.targets.items():
            if target_matches(key, target_name, self.directory):
                found.update(table)
        return found

    def option_errors(self, target_name: str) -> list[tuple[str, str]]:
        """(option, message) for every bad value in a table that matches ``target_name``."""
        return [(option, message) for key, errors in self.target_errors.items()
                if target_matches(key, target_name, self.directory) for option, message in errors.items()]

    def skips(self, target_name: str) -> bool:
        """Whether the target's config table says ``skip = true``."""
        return bool(self.target_options(target_name).get("skip"))

    def target_table(self, target_name: str) -> dict[str, Any]:
        """The audit options of the per-target table(s) that match ``target_name`` (the config
        layer of :func:`gradaudit.model.options.merge_options`). :class:`TargetOptionError`
        if a matching table holds a bad value."""
        for option, message in self.option_errors(target_name):
            raise TargetOptionError(message, option)
        return {k: v for k, v in self.target_options(target_name).items() if k != "skip"}

    def declared_for(self, target_name: str, declared: Mapping[str, Any]) -> dict[str, Any]:
        """A target's ``@gradaudit.activation`` options with its config table laid over them
        (``ignore`` lists are joined): the ``overrides`` of :func:`gradaudit.core.audit_resolved`."""
        return merge_options(declared, self.target_table(target_name))


def target_matches(key: str, target_name: str, base: str) -> bool:
    """Whether a config table key names the target ``target_name``.

    A key is ``module:attr`` or ``path/to/file.py:attr``. A path key is relative to the
    config file's directory and matches the same file however the target was spelled; a
    dotted key also matches a file target whose path ends in that module's path
    (``pkg/acts.py`` or ``src/pkg/acts.py`` for ``pkg.acts``).
    """
    key_module, key_attr = split_spec(key)
    module, attribute = split_spec(target_name)
    if not key_attr or key_attr != attribute:
        return False
    if key_module == module:
        return True
    if not looks_like_path(module):
        return False
    target_path = os.path.normcase(os.path.abspath(module))
    if key_module.endswith(".py") or "/" in key_module:
        return target_path == os.path.normcase(os.path.abspath(os.path.join(base, key_module)))
    parts = key_module.split(".")
    for suffix in (os.path.join(*parts) + ".py", os.path.join(*parts, "__init__.py")):
        if target_path == os.path.normcase(suffix) or target_path.endswith(os.sep + os.path.normcase(suffix)):
            return True
    return False


def parse_table(table: Mapping[str, Any], path: str | None) -> Config:
    """Validate a ``[tool.gradaudit]`` table; :class:`ConfigError` names the bad key."""
    where = f"{path or 'configuration'} [tool.gradaudit]"
    settings: dict[str, Any] = {}
    targets: dict[str, dict[str, Any]] = {}
    target_errors: dict[str, dict[str, str]] = {}
    lists: dict[str, list[str]] = {"targets": [], "exclude": []}
    for key, value in table.items():
        if key in ("targets", "exclude") and isinstance(value, (list, str)):
            try:
                lists[key] = _string_list(key, value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            continue
        if key in ("targets", "overrides"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {key!r} must be a list of target strings or a table of "
                                  f"per-target tables" if key == "targets" else
                                  f"{where}: 'overrides' must be a table of per-target tables")
            for name, options in value.items():
                targets[name], errors = _parse_target_table(name, options, path)
                if errors:
                    target_errors[name] = errors
            continue
        if key not in SETTING_BY_KEY:
            raise _unknown_key(where, key, [s.key for s in SETTINGS] + ["targets", "exclude", "overrides"])
        try:
            settings[key] = SETTING_BY_KEY[key].parse(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return Config(path=path, settings=settings, targets=targets, target_errors=target_errors,
                  target_list=lists["targets"], exclude=lists["exclude"])


def target_table_name(name: str, path: str | None) -> str:
    """How messages name a per-target table: ``pyproject.toml [tool.gradaudit.targets."m:f"]``
    (written ``[tool.gradaudit.overrides."m:f"]`` where ``targets`` is the list of targets)."""
    return f'{path or "configuration"} [tool.gradaudit.targets."{name}"]'


def _parse_target_table(name: str, options: Any, path: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The valid options of a table, and a message per option whose value is bad. A bad key
    or a table that is not one is a :class:`ConfigError` of the whole file."""
    where = target_table_name(name, path)
    module, attribute = split_spec(name)
    if module == name or not module or not attribute:
        raise ConfigError(f"{where}: a target key is 'package.module:attr' or 'path/to/file.py:attr'")
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: must be a table of options")
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in options.items():
        if key not in TARGET_KEYS:
            raise _unknown_key(where, key, list(TARGET_KEYS))
        try:
            parsed[key] = TARGET_KEYS[key](value)
        except ValueError as exc:
            errors[key] = f"{where}: {exc}"
    return parsed, errors


def find_pyproject(start: str | None = None) -> str | None:
    """The nearest pyproject.toml with a ``[tool.gradaudit]`` table, from ``start`` upward."""
    directory = os.path.abspath(start or os.getcwd())
    while True:
        candidate = os.path.join(directory, "pyproject.toml")
        if os.path.isfile(candidate) and "gradaudit" in _read(candidate).get("tool", {}):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: is not valid TOML ({exc})") from None


def load_config(path: str | None = None, start: str | None = None) -> Config:
    """The configuration in ``path``, or found from ``start`` (the working directory) upward.

    No file gives an empty :class:`Config` (every setting at its default).
    """
    if path is None:
        path = find_pyproject(start)
        if path is None:
            return Config()
    document = _read(path)
    table = document.get("tool", {}).get("gradaudit", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.gradaudit] must be a table")
    return parse_table(table, path)


__all__ = ["Config", "ConfigError", "TargetOptionError", "target_table_name", "SETTINGS", "Setting", "TARGET_KEYS", "load_config", "find_pyproject"]
