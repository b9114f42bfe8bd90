"""What an audit is asked to do: the validated options, and what the selected checks need
from the engine (:class:`Needs`, given by the ``audit()`` layer, which reads the checks)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..targets.types import Target
from .inputs import DEFAULT_SIZE

DTYPE_NAMES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
DEFAULT_DTYPES = ("float64", "float32", "float16", "bfloat16")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    """A floating dtype from ``float32``/``torch.float32``/a dtype; ``ValueError`` otherwise."""
    if isinstance(value, torch.dtype):
        if value in DTYPE_NAMES.values():
            return value
        raise ValueError(f"unsupported dtype {value}; choose from {', '.join(DTYPE_NAMES)}")
    name = str(value).replace("torch.", "").strip()
    aliases = {"double": "float64", "float": "float32", "half": "float16", "bf16": "bfloat16"}
    name = aliases.get(name, name)
    if name not in DTYPE_NAMES:
        raise ValueError(f"unsupported dtype {value!r}; choose from {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


@dataclass
class Options:
    """Validated audit options (see :func:`gradaudit.audit`)."""

    kinks: tuple[float, ...] = ()
    domain: tuple[float, float] | None = None
    dtypes: tuple[torch.dtype, ...] = tuple(DTYPE_NAMES[n] for n in DEFAULT_DTYPES)
    size: int = DEFAULT_SIZE
    seed: int = 0
    codes: frozenset[str] = frozenset()
    surrogate: bool = False
    reference: Target | None = None
    devices: tuple[str, ...] = ("cpu",)


@dataclass(frozen=True)
class Needs:
    """What the selected checks need from the engine, in engine terms.

    ``grad_output_signs``: the grad_outputs every stored backward runs with (+1 always
    first; -1 too when a check looks at what the backward does with a negative one).
    ``streaming``: every selected check reads the float64 evaluation only block by block,
    once, so a large probe need never be stored whole. The default suits a context built
    directly (a plot, a test): +1 only, stored evaluations.
    """

    grad_output_signs: tuple[float, ...] = (1.0,)
    streaming: bool = False
