"""Named target groups, used as ``gradaudit check @NAME``."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .loading import resolve_named
from .spec import TargetError, parse_spec
from .types import Target

FUNCTIONAL = [
    "relu", "rrelu", "hardtanh", "relu6", "sigmoid", "hardsigmoid", "tanh", "silu", "mish", "hardswish",
    "elu", "celu", "selu", "glu", "gelu", "hardshrink", "leaky_relu", "logsigmoid", "softplus",
    "softshrink", "softsign", "tanhshrink",
]
"""torch.nn.functional activations that take one tensor and need no other argument."""
SOFTMAX_FAMILY = ["softmax", "softmin", "log_softmax"]


def torch_activations() -> list[Target]:
    """Every ``torch.nn.modules.activation`` module that constructs with defaults, the
    ``torch.nn.functional`` counterparts, and the softmax family over the last dimension."""
    from torch.nn.modules import activation

    targets: list[Target] = []
    for name, obj in vars(activation).items():
        if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == activation.__name__):
            continue
        try:
            obj()
        except TypeError:
            continue  # needs arguments (Threshold, MultiheadAttention)
        targets.append(Target(name=f"torch.nn:{name}", obj=obj))
    for name in FUNCTIONAL:
        targets.append(Target(name=f"torch.nn.functional:{name}", obj=getattr(F, name)))
    for name in SOFTMAX_FAMILY:
        targets.append(resolve_named(parse_spec(f"torch.nn.functional:{name}(dim=-1)")))
    return targets


GROUPS: dict[str, Callable[[], list[Target]]] = {"torch-activations": torch_activations}


def resolve_group(name: str) -> list[Target]:
    """The targets of a named group; :class:`TargetError` naming the known groups otherwise."""
    if name not in GROUPS:
        raise TargetError(f"@{name}: no such target group; known groups: "
                          f"{', '.join('@' + g for g in GROUPS)}.")
    return GROUPS[name]()


__all__ = ["GROUPS", "resolve_group"]
