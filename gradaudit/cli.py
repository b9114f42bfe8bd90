"""The ``gradaudit`` command: a thin layer over :func:`gradaudit.audit` and the renderers."""
from __future__ import annotations

import sys
from typing import Any

import click

from .report import STATUS_ORDER, Report, worst_status

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def exit_code(reports: list[Report], strict: bool) -> int:
    """0: no fail (and no warn under strict); 1: a fail (or warn); 2: a target could not be audited."""
    worst = worst_status([r.status for r in reports]) if reports else "pass"
    if worst == "error":
        return EXIT_USAGE
    limit = STATUS_ORDER["warn"] if strict else STATUS_ORDER["fail"]
    return EXIT_FAIL if STATUS_ORDER[worst] >= limit else EXIT_OK


def _split(values: tuple[str, ...]) -> list[str] | None:
    items = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return items or None


def audit_options(function: Any) -> Any:
    """The options shared by ``check`` and other commands that audit."""
    decorators = [
        click.option("--dtype", "dtypes", multiple=True, help="Audit dtype (repeatable): float64, float32, float16, bfloat16."),
        click.option("--size", type=click.IntRange(min=0), default=None, help="Seeded random samples added to the probe grid."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random samples."),
        click.option("--select", multiple=True, help="Only these checks: codes, prefixes (GA2) or slugs; comma-separated."),
        click.option("--ignore", multiple=True, help="Skip these checks: codes, prefixes or slugs; comma-separated."),
        click.option("--kink", "kinks", multiple=True, type=float, help="Declare a kink location (repeatable)."),
        click.option("--domain", nargs=2, type=float, default=None, metavar="LO HI", help="Restrict inputs to [LO, HI]."),
        click.option("--surrogate", is_flag=True, default=None, help="The gradient is a declared surrogate / straight-through estimator."),
        click.option("--reference", default=None, metavar="TARGET", help="Reference implementation to compare with, as a target string."),
        click.option("--device", "devices", multiple=True, help="cpu, cuda, cuda:N or auto (every available device)."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gradaudit", prog_name="gradaudit")
def main() -> None:
    """Audit PyTorch activations and autograd.Functions: gradients, kinks, signed zeros, NaNs."""


@main.command()
@click.argument("targets", nargs=-1, required=True)
@audit_options
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None, help="Write the report to FILE.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.option("-v", "--verbose", is_flag=True, help="Show info findings and tracebacks.")
def check(targets: tuple[str, ...], output_format: str, output: str | None, strict: bool, verbose: bool, **options: Any) -> None:
    """Audit TARGETS: pkg.module:attr, path/to/file.py:attr, or a module or file to search."""
    from . import core
    from .render import renderer

    core.VERBOSE_TRACEBACKS = verbose
    try:
        built = core.build_options(
            kinks=options["kinks"] or None,
            domain=options["domain"],
            dtypes=_split(options["dtypes"]),
            size=options["size"],
            seed=options["seed"],
            select=_split(options["select"]),
            ignore=_split(options["ignore"]),
            surrogate=bool(options["surrogate"]),
            reference=options["reference"],
            device=_split(options["devices"]),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    reports: list[Report] = []
    for spec in targets:
        reports.extend(core.audit_target_string(spec, built))
    text = renderer(output_format)(reports, verbose=verbose)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False)
    sys.exit(exit_code(reports, strict))


@main.command("list")
@click.argument("targets", nargs=-1, required=True)
def list_targets(targets: tuple[str, ...]) -> None:
    """Print the targets that ``check`` would audit."""
    from .targets import TargetError, resolve

    failed = False
    for spec in targets:
        try:
            for target in resolve(spec):
                click.echo(f"{target.name}\t{target.kind}")
        except TargetError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
    sys.exit(EXIT_USAGE if failed else EXIT_OK)


@main.command()
@click.argument("name", required=False)
def explain(name: str | None) -> None:
    """Explain a check (by code or slug), or list every check."""
    from .checks import catalogue, lookup

    if name is None:
        for check in catalogue().values():
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
def plot(target: str, output: str, **options: Any) -> None:
    """Plot TARGET: f, its analytic and numerical derivatives, kinks, -0.0 regions, non-finite points."""
    from . import core
    from .plot import PlotUnavailable, plot_target
    from .targets import TargetError, resolve

    try:
        built = core.build_options(
            kinks=options["kinks"] or None, domain=options["domain"], dtypes=_split(options["dtypes"]),
            size=options["size"], seed=options["seed"], select=_split(options["select"]),
            ignore=_split(options["ignore"]), surrogate=bool(options["surrogate"]),
            reference=options["reference"], device=_split(options["devices"]),
        )
        targets = resolve(target)
    except (ValueError, TargetError) as exc:
        raise click.UsageError(str(exc)) from None
    if len(targets) != 1:
        raise click.UsageError(f"{target}: plot takes exactly one target; it names {len(targets)}")
    try:
        drawn = plot_target(targets[0], built, output)
    except PlotUnavailable as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # the target failed while plotting
        click.echo(f"error: {target}: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    kinks = ", ".join(f"{k:g}" for k in drawn["kinks"]) or "none"
    click.echo(f"wrote {output}: {target} is {drawn['status']}; kinks at {kinks}")
