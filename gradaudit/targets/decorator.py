"""``@gradaudit.activation``: attach audit options to a callable where it is defined."""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Sequence, TypeVar

from .types import HOME_ATTRIBUTE, OPTIONS_ATTRIBUTE

T = TypeVar("T")


def activation(
    fn: T | None = None,
    *,
    kinks: Iterable[float] | None = None,
    domain: Sequence[float] | None = None,
    surrogate: bool = False,
    reference: Any = None,
    ignore: Iterable[str] | None = None,
    inputs: dict[str, Any] | None = None,
) -> T | Callable[[T], T]:
    """Mark ``fn`` as an activation for discovery and record its audit options.

    Usable bare (``@activation``) or with options (``@activation(kinks=[0.0])``,
    ``@activation(inputs={"bias": (8,)})`` for the roles of extra tensor inputs). The
    object is returned unchanged apart from an ``__gradaudit__`` attribute (its options) and
    a ``__gradaudit_module__`` attribute: the module this is called in, which owns the target
    (``gelu = activation(F.gelu)`` makes ``gelu`` a target of this file, not of torch's).
    """
    marked_in = sys._getframe(1).f_globals.get("__name__")

    def mark(target: T) -> T:
        options = {
            "kinks": list(kinks) if kinks is not None else None,
            "domain": tuple(domain) if domain is not None else None,
            "surrogate": surrogate,
            "reference": reference,
            "ignore": list(ignore) if ignore is not None else None,
            "inputs": dict(inputs) if inputs is not None else None,
        }
        setattr(target, OPTIONS_ATTRIBUTE, {k: v for k, v in options.items() if v not in (None, False)})
        if isinstance(marked_in, str):
            setattr(target, HOME_ATTRIBUTE, marked_in)
        return target

    return mark(fn) if fn is not None else mark
