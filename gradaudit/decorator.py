"""``@gradaudit.activation``: attach audit options to a callable where it is defined."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence, TypeVar

from .targets import OPTIONS_ATTRIBUTE

T = TypeVar("T")


def activation(
    fn: T | None = None,
    *,
    kinks: Iterable[float] | None = None,
    domain: Sequence[float] | None = None,
    surrogate: bool = False,
    reference: Any = None,
    ignore: Iterable[str] | None = None,
) -> T | Callable[[T], T]:
    """Mark ``fn`` as an activation for discovery and record its audit options.

    Usable bare (``@activation``) or with options (``@activation(kinks=[0.0])``). The
    object is returned unchanged apart from an ``__gradaudit__`` attribute.
    """

    def mark(target: T) -> T:
        options = {
            "kinks": list(kinks) if kinks is not None else None,
            "domain": tuple(domain) if domain is not None else None,
            "surrogate": surrogate,
            "reference": reference,
            "ignore": list(ignore) if ignore is not None else None,
        }
        setattr(target, OPTIONS_ATTRIBUTE, {k: v for k, v in options.items() if v not in (None, False)})
        return target

    return mark(fn) if fn is not None else mark
