"""The one parser of target strings: :func:`parse_spec` gives a :class:`Spec`, which every
place that needs to know what a target string names reads (the resolver, the runner, the
worker pool, name dedupe), and :class:`TargetError`. No torch, no import of user code.

Target strings:
    ``package.module:attr`` and ``path/to/file.py:attr`` name one target; dotted attributes
    after the colon (``mymod:Acts.relu``) and literal keyword arguments
    (``torch.nn.functional:softmax(dim=-1)``, bound as a ``functools.partial``) are allowed.
    ``@name`` is a target group; a bare file or directory (``path``) or module (``module``) is
    searched for targets. ``ns::op`` and ``torch.ops.ns.op`` (an overload may follow:
    ``torch.ops.ns.op.default``) name a ``torch.library`` custom op (``op``), which the module
    that registers it must have imported.
"""
from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from typing import Any

KINDS = ("attribute", "group", "path", "module", "op")
_OP = re.compile(r"^(?:torch\.ops\.(?P<ns>[A-Za-z_]\w*)\.|(?P<ns2>[A-Za-z_]\w*)::)(?P<op>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)$")
"""``torch.ops.ns.op[.overload]`` or ``ns::op[.overload]``."""


class TargetError(Exception):
    """A target cannot be audited; the message is one paragraph that says what to do."""


def looks_like_path(module_part: str) -> bool:
    """Whether the part of a target string before the colon is a file path, not a module."""
    return module_part.endswith(".py") or os.sep in module_part or "/" in module_part


@dataclass(frozen=True)
class Spec:
    """A parsed target string."""

    text: str
    """The string as given: the name of the one target an ``attribute`` spec names."""
    kind: str
    """``attribute`` (one target), ``group`` (``@name``), ``path`` (a file or directory to
    search), ``module`` (a dotted module to search) or ``op`` (a custom op)."""
    container: str
    """The module or path before the colon (the whole string without one; a group's name; an
    op's namespace)."""
    member: str = ""
    """Everything after the colon, keyword arguments included: ``softmax(dim=-1)``."""
    attribute: str = ""
    """The dotted attribute after the colon, without arguments: ``softmax`` (an op's name and
    overload: ``my_op`` or ``my_op.default``)."""
    keywords: dict[str, Any] = field(default_factory=dict, hash=False)
    """Literal keyword arguments to bind: ``{"dim": -1}``."""

    @property
    def names_one_target(self) -> bool:
        return self.kind in ("attribute", "op")

    @property
    def is_path(self) -> bool:
        """Whether the container is a file or directory rather than a module, group or op."""
        return self.kind not in ("group", "op") and (looks_like_path(self.container) or os.path.isdir(self.container))


def split_spec(text: str) -> tuple[str, str]:
    """``(before, after)`` the attribute colon; ``(text, "")`` when there is none (a Windows
    drive letter, ``C:\\acts.py``, is no attribute colon). Never raises."""
    before, colon, after = text.rpartition(":")
    if not colon or (len(before) == 1 and before.isalpha() and after.startswith(("\\", "/"))):
        return text, ""
    return before, after


def parse_spec(text: str) -> Spec:
    """Parse a target string; :class:`TargetError` for one that names an attribute badly (an
    empty side of the colon, arguments that are not literal keywords)."""
    if text.startswith("@"):
        return Spec(text, "group", text[1:])
    op = _OP.match(text)
    if op is not None:
        namespace = op.group("ns") or op.group("ns2")
        return Spec(text, "op", namespace, op.group("op"), op.group("op"))
    container, member = split_spec(text)
    if container == text:
        return Spec(text, "path" if looks_like_path(text) or os.path.isdir(text) else "module", text)
    if not member or not container:
        raise TargetError(
            f"{text}: a target is 'package.module:attribute' or 'path/to/file.py:attribute'; "
            f"one side of the colon is empty."
        )
    attribute, keywords = _split_call(member, text)
    return Spec(text, "attribute", container, member, attribute, keywords)


def _split_call(member: str, text: str) -> tuple[str, dict[str, Any]]:
    """``softmax(dim=-1)`` -> ``("softmax", {"dim": -1})``; a plain name has no keywords."""
    if not member.endswith(")") or "(" not in member:
        return member, {}
    try:
        call = ast.parse(member, mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError("only keyword arguments are allowed")
        keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg is not None}
        name = ast.unparse(call.func)
    except (SyntaxError, ValueError) as exc:
        raise TargetError(
            f"{text}: cannot read the arguments in {member!r} ({exc}). Bind keyword arguments "
            f"with literal values only, e.g. torch.nn.functional:softmax(dim=-1)."
        ) from None
    return name, keywords


__all__ = ["Spec", "TargetError", "parse_spec", "split_spec", "looks_like_path"]
