"""Which devices an audit runs on."""
from __future__ import annotations

from typing import Iterable

import torch


def parse_devices(device: str | Iterable[str] | None) -> tuple[str, ...]:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (every available device) -> device names.

    CPU is always first: every comparison is made against it. Raises ``ValueError`` for an
    unknown or unavailable device.
    """
    if device is None:
        return ("cpu",)
    names = [device] if isinstance(device, str) else list(device)
    out: list[str] = ["cpu"]
    for name in names:
        name = str(name).strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
            continue
        if name == "cpu":
            continue
        if name == "cuda" or name.startswith("cuda:"):
            if not torch.cuda.is_available():
                raise ValueError(
                    f"device {name!r} was asked for but CUDA is not available in this torch "
                    f"({torch.__version__}); use --device cpu or --device auto"
                )
            index = 0 if name == "cuda" else name.split(":", 1)[1]
            if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
                raise ValueError(f"device {name!r} does not exist; this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s)")
            out.append(f"cuda:{int(index)}")
            continue
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    return tuple(dict.fromkeys(out))
