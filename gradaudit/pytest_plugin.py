"""pytest plugin: audit activations inside your own test suite.

Registered through the ``pytest11`` entry point, so installing gradaudit is enough::

    def test_my_activation(gradaudit):
        gradaudit.assert_audit(MySwish, ignore=["GA203"])

or, without the fixture, ``from gradaudit.pytest_plugin import assert_audit``. A failing
audit fails the test with the findings table as its message. Defaults come from
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
        from .model.report import AuditFailure

        report = self.audit(fn, **options)
        message = None
        try:
            report.raise_for_status(strict=self.settings["strict"] if strict is None else strict)
        except AuditFailure as failure:
            message = str(failure)
        if message is not None:  # outside the except block: the table is shown once, unchained
            pytest.fail(message, pytrace=False)
        return report

    __call__ = assert_audit


@pytest.fixture
def gradaudit(pytestconfig: pytest.Config) -> Auditor:
    """An :class:`Auditor` with ``[tool.gradaudit]`` and the ``--gradaudit-*`` options applied."""
    given = {s.key: pytestconfig.getoption(_dest(s.key)) for s in SETTINGS if s.in_pytest}
    return Auditor(load_config(start=str(pytestconfig.rootpath)), given)


def assert_audit(fn: Any, *, strict: bool | None = None, **options: Any) -> "Report":
    """Like the fixture's ``assert_audit``, with ``[tool.gradaudit]`` found from the working directory."""
    __tracebackhide__ = True
    return Auditor(load_config()).assert_audit(fn, strict=strict, **options)


__all__ = ["Auditor", "assert_audit", "gradaudit"]
