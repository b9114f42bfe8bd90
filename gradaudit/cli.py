"""The ``gradaudit`` command: a thin layer over :func:`gradaudit.audit` and the renderers."""
from __future__ import annotations

import os
import sys
import threading
import traceback
from typing import Any

import click

from .model.options import RUN_SETTINGS, merge_options
from .model.report import Report, worst_status
from .render import FORMATS
from .run.config import SETTING_BY_KEY, SETTINGS, ConfigError, Setting, load_config

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
"""Ctrl-C: the shell's convention, 128 + SIGINT."""


def exit_code(reports: list[Report], strict: bool) -> int:
    """0: no fail (and no warn under strict); 1: a fail (or warn); 2: a target could not be audited."""
    worst = worst_status([r.status for r in reports])
    if worst == "error":
        return EXIT_USAGE
    return EXIT_FAIL if worst == "fail" or (strict and worst == "warn") else EXIT_OK


def _split(values: tuple[str, ...]) -> list[str] | None:
    items = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return items or None


def setting_option(setting: Setting) -> Any:
    """The click option of a run setting of :data:`gradaudit.run.config.SETTINGS` (default None:
    a value not given on the command line comes from the config file)."""
    if setting.is_flag:
        name = setting.flag.lstrip("-")
        return click.option(f"{setting.flag}/--no-{name}", setting.key, default=None, help=setting.help)
    if setting.flag_value is not None:  # a value is optional: --compile, --compile aot_eager
        return click.option(setting.flag, setting.key, is_flag=False, flag_value=setting.flag_value,
                            default=None, metavar=setting.metavar, help=setting.help)
    return click.option(setting.flag, setting.key, multiple=setting.multiple, type=setting.kind,
                        default=None, metavar=setting.metavar, help=setting.help)


def audit_kwargs(options: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The command-line layer of :func:`gradaudit.model.options.merge_options` (keywords of
    :func:`gradaudit.core.build_options`): the run settings (command line over the config
    file's ``[tool.gradaudit]``) and the audit options only the command line gives."""
    return merge_options({key: settings[key] for key in RUN_SETTINGS}, {
        "kinks": options["kinks"] or None,
        "domain": options["domain"],
        "surrogate": True if options["surrogate"] else None,
        "reference": options["reference"],
        "device": _split(options["devices"]),
        "inputs": parse_inputs(options["inputs"]),
    })


def compile_and_targets(backend: str | None, targets: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """``--compile TARGET``: click gives the optional backend the next word; a word that names a
    target (a path, ``module:attr``, ``@group``) is a target, and the backend the default."""
    if backend is not None and (":" in backend or "/" in backend or backend.endswith(".py") or backend.startswith("@")):
        return (backend, *targets), "inductor"
    return targets, backend


def parse_inputs(values: tuple[str, ...]) -> dict[str, str] | None:
    """``--input bias=8 --input gate=like`` as ``{"bias": "8", "gate": "like"}`` (roles are
    parsed by the audit, which names a bad one with its target)."""
    inputs: dict[str, str] = {}
    for value in values:
        name, equals, role = value.partition("=")
        if not equals or not name.strip() or not role.strip():
            raise click.BadParameter(f"{value!r} is not NAME=ROLE (e.g. bias=8, bias=1,8,1, gate=like or slope=25.0)",
                                     param_hint="--input")
        inputs[name.strip()] = role.strip()
    return inputs or None


def audit_options(function: Any) -> Any:
    """The options shared by ``check`` and other commands that audit."""
    decorators = [
        *(setting_option(s) for s in SETTINGS if s.key in ("dtypes", "size", "seed", "select", "ignore", "compile")),
        click.option("--kink", "kinks", multiple=True, type=float, help="Declare a kink location (repeatable)."),
        click.option("--domain", nargs=2, type=float, default=None, metavar="LO HI", help="Restrict inputs to [LO, HI]."),
        click.option("--surrogate", is_flag=True, default=None, help="The gradient is a declared surrogate / straight-through estimator."),
        click.option("--reference", default=None, metavar="TARGET", help="Reference implementation to compare with, as a target string."),
        click.option("--device", "devices", multiple=True, help="cpu, cuda, cuda:N or auto (every available device)."),
        click.option("--input", "inputs", multiple=True, metavar="NAME=ROLE",
                     help="Role of an extra tensor input (repeatable): like (x's shape, the default), a shape "
                          "broadcast against x (8 or 1,8,1), or a constant (25.0; a bare integer is a constant "
                          "where the parameter is annotated as a number)."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


class Program(click.Group):
    """The ``gradaudit`` group. Run as a program (``args`` taken from ``sys.argv``), it does not
    wait at exit for non-daemon threads that an audited target started and left running:
    Python would join them and the command would never end."""

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        as_program = args is None
        before = set(threading.enumerate())
        try:
            return super().main(args, *rest, **kwargs)
        except SystemExit as exc:
            if as_program:
                _leave_stray_threads(before, exc.code)
            raise


def _leave_stray_threads(before: set[threading.Thread], code: Any) -> None:
    """End the process now if threads that the run did not start are alive and not daemons."""
    stray = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    if not stray:
        return
    names = ", ".join(sorted(t.name for t in stray))
    click.echo(f"gradaudit: not waiting for {len(stray)} thread(s) that an audited target started and "
               f"left running ({names}); exiting.", err=True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


@click.group(cls=Program, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gradaudit", prog_name="gradaudit")
def main() -> None:
    """Audit PyTorch activations and autograd.Functions: gradients, kinks, signed zeros, NaNs."""


@main.command()
@click.argument("targets", nargs=-1, required=False)
@audit_options
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None, help="Write the report to FILE.")
@setting_option(SETTING_BY_KEY["strict"])
@setting_option(SETTING_BY_KEY["jobs"])
@setting_option(SETTING_BY_KEY["timeout"])
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Read [tool.gradaudit] from this file instead of the nearest pyproject.toml that has it.")
@click.option("-v", "--verbose", is_flag=True, help="Show info findings and tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Show the summary table and one line per warn or fail.")
@click.option("--show-suppressed", is_flag=True, help="List the findings that suppressions silenced.")
def check(targets: tuple[str, ...], output_format: str, output: str | None, config_path: str | None,
          verbose: bool, quiet: bool, show_suppressed: bool, **options: Any) -> None:
    """Audit TARGETS: pkg.module:attr, path/to/file.py:attr, or a module or file to search.

    Without TARGETS, audit the targets listed in [tool.gradaudit] targets. With files (as
    pre-commit passes them), audit what discovery finds in them and the configured targets
    they define. Settings not given here come from [tool.gradaudit] in pyproject.toml.
    """
    from . import core
    from .render import renderer
    from .run.runner import run_check
    from .run.tasks import stdout_to_stderr

    targets, options["compile"] = compile_and_targets(options.get("compile"), targets)
    verbosity = _verbosity(verbose, quiet)
    core.VERBOSE_TRACEBACKS = verbose
    try:
        with stdout_to_stderr():  # importing a --reference or a target may print
            config, settings, option_kwargs = _prepare(config_path, options, verbose)
            specs = _specs_or_usage_error(targets, config)
            reports: list[Report] = run_check(specs, option_kwargs, config, jobs=settings["jobs"],
                                              timeout=settings["timeout"], verbose=verbose)
    except KeyboardInterrupt:
        click.echo("gradaudit: interrupted (Ctrl-C); no report was written.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exc:  # a target's exit that got past the runner: never a silent 0
        click.echo(f"gradaudit: error: the run was ended by SystemExit({exc.code!r}) from an audited "
                   f"target; no report was written. Audit the targets one by one to find it.", err=True)
        sys.exit(EXIT_USAGE)
    from .checks import catalogue

    if not reports:
        nothing_to_audit(specs)
    text = renderer(output_format)(reports, verbose=verbose, verbosity=verbosity, show_suppressed=show_suppressed,
                                   checks=catalogue().values())
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False)
    sys.exit(exit_code(reports, settings["strict"]))


def _verbosity(verbose: bool, quiet: bool) -> int:
    """-1 (``-q``), 0 (the default) or 1 (``-v``)."""
    if verbose and quiet:
        raise click.UsageError("-q/--quiet and -v/--verbose exclude each other; give one")
    return -1 if quiet else (1 if verbose else 0)


def nothing_to_audit(specs: list[str]) -> None:
    """The one line, on stderr, of a run whose files held no target (exit 0: a pre-commit run
    passes every changed file, and most hold no activation)."""
    shown = ", ".join(specs[:3]) + (f" and {len(specs) - 3} more" if len(specs) > 3 else "")
    click.echo(f"gradaudit: nothing to audit: no targets in {shown}", err=True)


def _specs_or_usage_error(targets: tuple[str, ...], config: Any) -> list[str]:
    """The target strings to audit (:func:`gradaudit.run.selection.run_specs`); none given and
    none configured is a usage error."""
    from .run.selection import run_specs

    specs = run_specs(targets, config)
    if not specs:
        where = config.path or "pyproject.toml"
        raise click.UsageError(f"no targets: give TARGETS, or list them in {where} as "
                               f"[tool.gradaudit] targets = [\"src/pkg/acts.py\", \"pkg.acts:swiglu\"]")
    return specs


def _prepare(config_path: str | None, options: dict[str, Any], verbose: bool) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The config, the run's settings and its audit keywords, built once to validate them: a
    bad one is a usage error that names it (with the traceback under -v), whatever it raised."""
    from . import core

    try:
        config = load_config(config_path)
        settings = config.resolve({s.key: options.pop(s.key, None) for s in SETTINGS})
        option_kwargs = audit_kwargs(options, settings)
        core.build_options(**option_kwargs)
        return config, settings, option_kwargs
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc) + (f"\n{traceback.format_exc()}" if verbose else "")) from None
    except (KeyboardInterrupt, click.ClickException):
        raise
    except BaseException as exc:  # a --reference that raises SystemExit or a property's error
        where = "--reference" if options.get("reference") is not None else "the options"
        raise click.UsageError(f"{where}: building the run's options raised {type(exc).__name__}: {exc}"
                               + (f"\n{traceback.format_exc()}" if verbose else "")) from None


@main.command("list")
@click.argument("targets", nargs=-1, required=False)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Read [tool.gradaudit] from this file instead of the nearest pyproject.toml that has it.")
def list_targets(targets: tuple[str, ...], config_path: str | None) -> None:
    """Print the targets that ``check`` would audit (the configured ones without TARGETS)."""
    from .targets.files import excluding

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    specs = _specs_or_usage_error(targets, config)
    failed = listed = False
    with excluding(config.exclude, config.directory):
        for spec in specs:
            ok, names = _list_one(spec)
            failed |= not ok
            for line in names:
                if not config.skips(line.split("\t")[0]):
                    click.echo(line)
                    listed = True
    if not listed and not failed:
        nothing_to_audit(specs)
    sys.exit(EXIT_USAGE if failed else EXIT_OK)


def _list_one(spec: str) -> tuple[bool, list[str]]:
    """(no error, ``name<TAB>kind`` lines) for the targets ``spec`` stands for; errors on stderr.
    Torch is imported only when a file to search mentions it (or a module is named)."""
    from .run.tasks import stdout_to_stderr

    if _holds_no_torch(spec):
        return True, []
    from .targets.resolve import resolve
    from .targets.spec import TargetError
    from .targets.types import UnloadableFile

    try:
        with stdout_to_stderr():  # what an imported file prints is not a target name
            found = resolve(spec)
    except TargetError as exc:
        click.echo(f"error: {exc}", err=True)
        return False, []
    except KeyboardInterrupt:
        click.echo("gradaudit: interrupted (Ctrl-C).", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BaseException as exc:  # SystemExit or an error of the searched code
        click.echo(f"error: {spec}: searching it raised {type(exc).__name__}: {exc}", err=True)
        return False, []
    ok, lines = True, []
    for target in found:
        if isinstance(target, UnloadableFile):  # a file of a directory that fails to import
            click.echo(f"error: {target.error}", err=True)
            ok = False
        else:
            lines.append(f"{target.name}\t{target.kind}")
    return ok, lines


def _holds_no_torch(spec: str) -> bool:
    """Whether ``spec`` is a bare file that a search would not import (no torch in it, a
    ``setup.py``, an excluded file): listing it needs no torch."""
    from .targets.files import mentions_torch, skipped_file

    return os.path.isfile(spec) and (skipped_file(spec) or not mentions_torch(spec))


@main.command()
@click.argument("name", required=False)
def explain(name: str | None) -> None:
    """Explain a check (by code or slug), or list every check."""
    from .run.check_table import lookup, static_catalogue  # the catalogue's text without torch

    if name is None:
        for check in static_catalogue().values():
            click.echo(f"{check.code}  {check.slug:22} {check.status:12} {check.summary}")
        return
    try:
        check = lookup(name)
    except KeyError:
        raise click.UsageError(f"unknown check {name!r}; run 'gradaudit explain' for the list") from None
    click.echo(f"{check.code} {check.slug} ({check.status})\n")
    click.echo(check.summary + "\n")
    click.echo(check.explanation + "\n")
    if check.example:
        click.echo(f"Example: {check.example}")
    click.echo(f"Fix: {check.fix}")


if __name__ == "__main__":  # pragma: no cover
    main()


@main.command()
@click.argument("target")
@audit_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), required=True, help="Image file (.png, .svg, .pdf).")
@click.option("--range", "x_range", nargs=2, type=float, default=None, metavar="LO HI",
              help="Draw x over [LO, HI] (default [-10, 10], widened to show every kink).")
def plot(target: str, output: str, x_range: tuple[float, float] | None, **options: Any) -> None:
    """Plot TARGET: f and its derivatives in the first --dtype (default float64), with kinks,
    -0.0 regions, and the inputs where GA101 failed, GA201/GA202 found NaN or inf, and a lower
    dtype overflowed. The audit runs in float64 and every --dtype given (else the configured ones)."""
    from . import core
    from .plot import PlotUnavailable, plot_target
    from .targets.resolve import resolve
    from .targets.spec import TargetError

    given = [d for value in options.get("dtypes") or () for d in value.split(",") if d.strip()]
    draw_in = given[0].strip().replace("torch.", "") if given else "float64"
    if given:
        options["dtypes"] = tuple(dict.fromkeys(["float64", *given]))
    try:
        settings = load_config(None).resolve({s.key: options.pop(s.key, None) for s in SETTINGS})
        built = core.build_options(**audit_kwargs(options, settings))
        targets = resolve(target)
    except (ConfigError, ValueError, TargetError) as exc:
        raise click.UsageError(str(exc)) from None
    if len(targets) != 1:
        raise click.UsageError(f"{target}: plot takes exactly one target; it names {len(targets)}")
    try:
        drawn = plot_target(targets[0], built, output, x_range=x_range, dtype=draw_in)
    except (PlotUnavailable, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # the target failed while plotting
        click.echo(f"error: {target}: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    kinks = ", ".join(f"{k:g}" for k in drawn["kinks"]) or "none"
    marked = ", ".join(f"{code} ({count})" for code, count in sorted(drawn["marks"].items())) or "nothing"
    click.echo(f"wrote {output}: {target} is {drawn['status']}; kinks at {kinks}; marked {marked}; "
               f"{drawn['clipped']} value(s) clipped")
