"""Detection beside gradcheck: a SiLU whose backward is wrong at one input, or only for x > 3,
audited by gradaudit (GA101) and by torch.autograd.gradcheck (fast and slow) over seeds."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F


class WrongSiLU(torch.autograd.Function):
    """SiLU whose backward is off by 0.1 x grad_output where ``WrongSiLU.mask(x)`` holds."""

    mask: Callable[[torch.Tensor], torch.Tensor] = staticmethod(lambda x: torch.zeros_like(x, dtype=torch.bool))

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return F.silu(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        grad = g * s * (1 + x * (1 - s))
        return torch.where(WrongSiLU.mask(x), grad + 0.1 * g, grad)


Defect = Callable[[int, torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]
"""``(seed, the inputs the tool will evaluate) -> mask`` of the inputs where the backward is wrong."""


def wrong_single_element(seed: int, inputs: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrong at one of the tool's inputs, chosen by ``seed`` and by value (so it stays one
    input however the tool splits its evaluation)."""
    value = float(inputs.reshape(-1)[(seed * 7919) % inputs.numel()])
    return lambda x: x == value


def wrong_above_three(seed: int, inputs: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x > 3


DEFECTS: dict[str, Defect] = {"wrong at one element": wrong_single_element, "wrong only for x > 3": wrong_above_three}


def gradaudit_detects(defect: Defect, n: int, seed: int) -> bool:
    from gradaudit import audit
    from gradaudit.engine.inputs import probe_values

    WrongSiLU.mask = staticmethod(defect(seed, probe_values(torch.float64, size=n, seed=seed)))
    report = audit(WrongSiLU, size=n, seed=seed, select=["GA101"], dtypes=["float64"])
    return "GA101" in report.codes("fail")


def gradcheck_detects(defect: Defect, n: int, seed: int, fast: bool) -> bool:
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    WrongSiLU.mask = staticmethod(defect(seed, x.detach()))
    return not torch.autograd.gradcheck(WrongSiLU.apply, (x,), fast_mode=fast, raise_exception=False)


def detection_rows(sizes: list[int], seeds: int) -> list[list[str]]:
    """``[defect, n, gradaudit, gradcheck fast, gradcheck slow]`` as detected/runs; gradcheck
    fast up to 1e5 inputs, slow up to 1e3 (its cost is quadratic)."""
    rows = []
    for name, defect in DEFECTS.items():
        for n in sizes:
            ours = sum(gradaudit_detects(defect, n, s) for s in range(seeds))
            fast = sum(gradcheck_detects(defect, n, s, True) for s in range(seeds)) if n <= 100000 else None
            slow = sum(gradcheck_detects(defect, n, s, False) for s in range(seeds)) if n <= 1000 else None
            rows.append([name, f"{n:.0e}", f"{ours}/{seeds}", "-" if fast is None else f"{fast}/{seeds}",
                         "-" if slow is None else f"{slow}/{seeds}"])
    return rows
