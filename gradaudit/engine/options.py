"""What an audit is asked to do: the validated options, and what the selected checks need
from the engine (:class:`Needs`, given by the ``audit()`` layer, which reads the checks)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

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


@dataclass(frozen=True)
class InputRole:
    """The role of a target's extra tensor input (DESIGN.md, "Targets with several tensor
    inputs"): ``like`` (x's shape, an elementwise partner), ``shape`` (a parameter-like tensor
    of :attr:`shape` broadcast against x), ``constant`` (:attr:`value` passed as given), or
    ``integer``: a bare integer written on the command line or in a string, a shape ``(n,)``
    unless the parameter is annotated as a number (then the constant ``n``)."""

    kind: str
    shape: tuple[int, ...] = ()
    value: Any = None

    def describe(self) -> str:
        if self.kind == "like":
            return "like x"
        if self.kind == "shape":
            return f"shape {self.shape}"
        return f"constant {self.value!r}" if self.kind == "constant" else f"{self.value}"


LIKE = InputRole("like")
FLAGS = {"true": True, "false": False, "none": None}
"""Constants written by name on the command line: ``--input fp8_input_store=false``."""


def _shape(value: Any, text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{text} is not a shape (a tuple of positive integers)") from None
    if not dims or any(d < 1 for d in dims) or any(isinstance(v, bool) for v in value):
        raise ValueError(f"{text} is not a shape (a tuple of positive integers)")
    return dims


def parse_input_role(name: str, value: Any) -> InputRole:
    """The :class:`InputRole` of ``value`` given for the input ``name``: ``"like"``, a shape
    (a tuple or list of ints, or ``"1,8,1"``), a number, a flag (True, False, None, or their
    names), a tensor, or a bare integer string (``"8"``, from ``--input bias=8``). ``ValueError``
    names the input otherwise."""
    text = f"input {name!r}: {value!r}"
    if isinstance(value, InputRole):
        return value
    if isinstance(value, torch.Tensor):
        return InputRole("constant", value=value)
    if value is None or isinstance(value, (bool, int, float)):  # flags too: forward(ctx, x, bias, fp8_input_store)
        return InputRole("constant", value=value)
    if isinstance(value, (tuple, list)):
        return InputRole("shape", shape=_shape(value, text))
    if isinstance(value, str):
        stripped = value.strip().strip("()[] ")
        if stripped.lower() == "like":
            return LIKE
        if stripped.lower() in FLAGS:
            return InputRole("constant", value=FLAGS[stripped.lower()])
        if "," in stripped:
            return InputRole("shape", shape=_shape([v for v in stripped.split(",") if v.strip()], text))
        try:
            return InputRole("integer", value=int(stripped))
        except ValueError:
            pass
        try:
            return InputRole("constant", value=float(stripped))
        except ValueError:
            pass
    raise ValueError(f"{text} is not an input role; give 'like', a shape such as 8 or 1,8,1, a number or a flag (true, false, none)")


def parse_input_roles(inputs: Mapping[str, Any] | None) -> dict[str, InputRole]:
    """Every entry of ``inputs`` (name -> role) parsed by :func:`parse_input_role`."""
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise ValueError(f"inputs must map parameter names to roles, e.g. {{'bias': (8,)}}, not {inputs!r}")
    return {str(name): parse_input_role(str(name), value) for name, value in inputs.items()}


COMPILE_BACKEND = "inductor"
"""The backend of ``compile=True`` / a bare ``--compile``."""


def parse_compile(value: Any) -> str | None:
    """The torch.compile backend an audit compiles with, or None (no compiled comparison): ``True`` is
    :data:`COMPILE_BACKEND`, a string names a backend, ``False``/None turn it off."""
    if value is None or value is False:
        return None
    if value is True:
        return COMPILE_BACKEND
    if isinstance(value, str) and value.strip():
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "1"):
            return COMPILE_BACKEND
        if lowered in ("false", "no", "0", "off"):
            return None
        return value.strip()
    raise ValueError(f"compile must be true, false or a torch.compile backend name, not {value!r}")


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
    inputs: dict[str, InputRole] = field(default_factory=dict)
    """Roles of the target's extra tensor inputs, by parameter name (unnamed ones are ``like``)."""
    compile: str | None = None
    """The torch.compile backend the compiled check compares with eager, or None (off)."""


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
