"""pytest plugin: audit activations inside your own test suite.

Registered through the ``pytest11`` entry point, so installing gradaudit is enough::

    def test_my_activation(gradaudit):
        gradaudit.assert_audit(MySwish, ignore=["GA203"])

or, without the fixture, ``from gradaudit.pytest_plugin import assert_audit``. A failing
audit fails the test with the findings table as its message. ``pytest --gradaudit`` also
collects every configured target (``[tool.gradaudit] targets``) as a test item, the way
pytest-mypy collects files: it passes or fails with the findings table, and is skipped where
the device it asks for is missing. Defaults come from
``[tool.gradaudit]`` in pyproject.toml (found from pytest's rootdir upward), then from
``--gradaudit-*`` command-line options, then from the call's keywords (one merge,
:func:`gradaudit.model.options.merge_options`, over the ``@gradaudit.activation`` options).

Loading this module imports nothing heavy: torch is imported when a test first audits.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

import pytest

from .model.options import RUN_SETTINGS, merge_options
from .run.config import SETTINGS, Config, load_config

if TYPE_CHECKING:  # pragma: no cover
    from .model.report import Report

def _dest(key: str) -> str:
    return f"gradaudit_{key}"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradaudit", "gradaudit (the gradaudit fixture and assert_audit)")
    for setting in SETTINGS:
        if not setting.in_pytest:
            continue
        flag = "--gradaudit-" + setting.flag.lstrip("-")
        if setting.is_flag:
            group.addoption(flag, action="store_true", default=None, dest=_dest(setting.key), help=setting.help)
        elif setting.flag_value is not None:
            group.addoption(flag, nargs="?", const=setting.flag_value, default=None, dest=_dest(setting.key),
                            metavar=setting.metavar, help=setting.help)
        else:
            group.addoption(flag, action="append" if setting.multiple else "store", type=setting.kind,
                            default=None, dest=_dest(setting.key), metavar=setting.metavar, help=setting.help)
    group.addoption("--gradaudit", action="store_true", default=False, dest="gradaudit_collect",
                    help="Collect every target of [tool.gradaudit] targets as a test item (marked gradaudit).")
    group.addoption("--gradaudit-device", action="append", default=None, dest="gradaudit_device", metavar="DEVICE",
                    help="Device of the collected targets' audits (cpu, cuda, cuda:N, auto); an item whose "
                         "device is missing is skipped.")


_PYTEST_VERBOSITY = [0]
"""pytest's own -v count in the session that loaded the plugin (the failure text follows it)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gradaudit: an audit of a configured target (pytest --gradaudit)")
    _PYTEST_VERBOSITY[0] = int(config.getoption("verbose", 0) or 0)


def pytest_unconfigure(config: pytest.Config) -> None:
    _PYTEST_VERBOSITY[0] = 0


def failure_message(report: "Report", strict: bool) -> str | None:
    """The text a failing audit fails its test with (None: it passes): the findings table at
    gradaudit's default level, or with every info finding and traceback under ``pytest -v``;
    what the default hid is counted with the hint a pytest user can follow, ``pytest -v``."""
    from .model.report import AuditFailure
    from .render.table import failure_text

    try:
        report.raise_for_status(strict=strict)
    except AuditFailure:
        verbosity = 1 if _PYTEST_VERBOSITY[0] >= 1 else 0
        return (f"gradaudit: {report.target} is {report.status}\n"
                + failure_text([report], verbosity=verbosity, more="pytest -v shows them"))
    return None


def _given(pytestconfig: pytest.Config) -> dict[str, Any]:
    return {s.key: pytestconfig.getoption(_dest(s.key)) for s in SETTINGS if s.in_pytest}


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: the items are selectable like any test
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("gradaudit_collect", False):
        return
    project = load_config(start=str(config.rootpath))
    collected = collect_configured(session, project, Auditor(project, _given(config)).settings,
                                   config.getoption("gradaudit_device"))
    # reported as collected, so that the terminal's counts and -k/-m deselection include them
    session.ihook.pytest_collectreport(report=pytest.CollectReport("gradaudit", "passed", None, collected))
    items.extend(collected)


class Auditor:
    """Audits with the project's settings; the ``gradaudit`` fixture is one of these."""

    def __init__(self, config: Config, given: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.settings = config.resolve(given or {})

    def audit(self, fn: Any, *, name: str | None = None, ignore: Iterable[str] | None = None,
              **options: Any) -> "Report":
        """:func:`gradaudit.audit` with the options merged once
        (:func:`gradaudit.model.options.merge_options`): the decorator's, then the target's
        config table, then the run settings (``--gradaudit-*`` over ``[tool.gradaudit]``), then
        this call's keywords; ``ignore`` lists are joined."""
        from .core import audit
        from .targets.types import target_from_object

        target = target_from_object(fn, name)
        run = {key: self.settings.get(key) for key in RUN_SETTINGS}
        merged = merge_options(self.config.target_table(target.name), run, {**options, "ignore": ignore})
        return audit(target, **merged)  # audit() lays these over the decorator's options

    def assert_audit(self, fn: Any, *, strict: bool | None = None, **options: Any) -> "Report":
        """Audit ``fn`` and fail the test, with the findings table, on a fail or error (or a
        warn when ``strict``). Returns the report when it passes."""
        __tracebackhide__ = True
        report = self.audit(fn, **options)
        message = failure_message(report, self.settings["strict"] if strict is None else strict)
        if message is not None:  # the table, shown once
            pytest.fail(message, pytrace=False)
        return report

    __call__ = assert_audit


@pytest.fixture
def gradaudit(pytestconfig: pytest.Config) -> Auditor:
    """An :class:`Auditor` with ``[tool.gradaudit]`` and the ``--gradaudit-*`` options applied."""
    return Auditor(load_config(start=str(pytestconfig.rootpath)), _given(pytestconfig))


def assert_audit(fn: Any, *, strict: bool | None = None, **options: Any) -> "Report":
    """Like the fixture's ``assert_audit``, with ``[tool.gradaudit]`` found from the working directory."""
    __tracebackhide__ = True
    return Auditor(load_config()).assert_audit(fn, strict=strict, **options)


# -- pytest --gradaudit: configured targets as test items ---------------------------------

class AuditItem(pytest.Item):
    """One configured target's audit; fails with the findings table on a fail or error (or a
    warn under strict), is skipped where its device is missing."""

    def __init__(self, *, target: Any = None, error: "Report | None" = None, project: Config | None = None,
                 settings: Mapping[str, Any] | None = None, devices: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target, self.error, self.project = target, error, project
        self.settings = dict(settings or {})
        self.devices = devices
        self.add_marker("gradaudit")

    def runtest(self) -> None:
        from .run.tasks import RunOptions, audit_target

        report = self.error
        if report is None:
            missing = missing_device(self.devices or self.target.options.get("device"))
            if missing:
                pytest.skip(f"{self.target.name}: device {missing} is not available here")
            kwargs = {key: self.settings.get(key) for key in RUN_SETTINGS}
            report = audit_target(self.target, RunOptions({**kwargs, "device": self.devices}), self.project)
        self.user_properties.append(("gradaudit_status", report.status))
        message = failure_message(report, bool(self.settings.get("strict")))
        if message is not None:
            raise AuditItemFailure(message)

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if excinfo.errisinstance(AuditItemFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"gradaudit: {self.name}"


class AuditItemFailure(Exception):
    """A collected target's audit failed; the message is the findings table."""


def missing_device(devices: Any) -> str | None:
    """The first CUDA device of ``devices`` that this machine does not have (None: all present).
    Imports torch only when a CUDA device is asked for."""
    names = [devices] if isinstance(devices, str) else list(devices or ())
    wanted = [name for name in names if name.startswith("cuda")]
    if not wanted:
        return None
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for name in wanted:
        index = name.partition(":")[2] or "0"
        if not index.isdigit() or int(index) >= count:
            return name
    return None


def collect_configured(session: pytest.Session, project: Config, settings: Mapping[str, Any],
                       devices: list[str] | None) -> list[AuditItem]:
    """An item per target that ``[tool.gradaudit] targets`` names (a file or directory stands
    for the targets discovery finds in it, less what ``exclude`` leaves out and ``skip = true``
    tables); a string that names nothing auditable is one item that fails with its GA901."""
    from .run.selection import configured_specs
    from .run.tasks import resolve_targets
    from .targets.files import excluding
    from .targets.names import first_seen

    items: list[AuditItem] = []
    seen: set[str] = set()
    common = dict(project=project, settings=settings, devices=devices)
    with excluding(project.exclude, project.directory):
        for spec in configured_specs(project):
            targets, errors = resolve_targets(spec)
            for report in errors:
                if first_seen([report.target], seen):
                    items.append(AuditItem.from_parent(session, name=report.target, nodeid=f"gradaudit::{report.target}",
                                                       error=report, **common))
            for target in targets:
                if project.skips(target.name) or not first_seen([target.name], seen):
                    continue
                error = None
                if getattr(target, "error", None) is not None:  # a file of a directory that fails to import
                    from .core import error_report

                    error = error_report(target.name, target.error)
                items.append(AuditItem.from_parent(session, name=target.name, nodeid=f"gradaudit::{target.name}",
                                                   target=target, error=error, **common))
    return items


__all__ = ["Auditor", "assert_audit", "gradaudit", "AuditItem", "collect_configured"]
