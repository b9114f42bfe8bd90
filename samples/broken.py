"""Targets that cannot be audited at all (GA901); `gradaudit check samples/` skips them,
because discovery only collects Functions, Modules and @gradaudit.activation callables.
Name them explicitly, e.g. `gradaudit check samples/broken.py:raises`."""
import torch  # noqa: F401  (mentions torch, so discovery imports this file)


def returns_tuple(x):
    """Not an activation: returns a tuple."""
    return x, x


def raises(x):
    """Crashes on every call."""
    raise ValueError("this activation is broken")


NOT_CALLABLE = 42
