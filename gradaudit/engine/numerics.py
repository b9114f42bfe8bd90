"""Numerical derivatives of the float64 forward: central differences at the probe's points,
which of them are smooth, and a ladder of shorter steps where the first step cannot be
trusted (a period shorter than the step). Engine code: it knows no check."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

if TYPE_CHECKING:
    from .context import AuditContext

EPS64 = torch.finfo(torch.float64).eps
HEADROOM = 64.0
"""Inputs (or values) within this factor of a dtype's max may overflow in any formula that scales
them (x * relu6(x + 3) / 6 needs a factor 6): an inf there is information, not a defect."""
RTOL, ATOL = 1e-3, 1e-5
LADDER = 10
"""Shorter steps tried, each a quarter of the one before (h/4 .. h/4**10)."""
UNIT_SCALE = 1.0
"""Activations vary on scales of order one (periods 2*pi/a, widths of bumps): where the
shortest step that float64's rounding allows is longer than this, the float64 forward cannot
show a derivative that changes within it."""


def float32_inside(ctx: "AuditContext") -> bool:
    """Whether the target computes float64 inputs in float32 inside (:attr:`AuditContext.working_eps`)."""
    return ctx.working_eps > EPS64


def relative_step(ctx: "AuditContext") -> float:
    """The relative step of central differences at the forward's working precision, eps^(1/3)
    (optimal for O(h^2) truncation): 6e-6 for float64, 5e-3 for float32 inside."""
    return ctx.working_eps ** (1.0 / 3.0)


def numerical_derivative(ctx: "AuditContext", x: torch.Tensor, y: torch.Tensor,
                         evaluate: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Central (steps h and h/2), forward and backward differences at ``x`` (float64) of the
    function ``evaluate`` (the target's forward by default) whose values at ``x`` are ``y``,
    in one call of it, with steps and rounding for the forward's working precision
    (:attr:`AuditContext.working_eps`: float32's for a target that computes in float32). The
    arithmetic is NumPy's: these are the few points the screen left, where a torch operation
    costs several times a NumPy one."""
    evaluate = evaluate or ctx.values64
    eps = ctx.working_eps
    xs, ys = _array(x), _array(y)
    with np.errstate(all="ignore"):  # inf and NaN where the target (or x near the max) has them, as torch gives
        h = relative_step(ctx) * np.maximum(np.abs(xs), 1.0)
        plus, minus = xs + h, xs - h
        half_plus, half_minus = xs + h / 2, xs - h / 2
    points = torch.from_numpy(np.concatenate([plus, minus, half_plus, half_minus]))
    yp, ym, yhp, yhm = _array(evaluate(points)).reshape(4, -1)
    with np.errstate(all="ignore"):
        central = (yp - ym) / (plus - minus)
        central_half = (yhp - yhm) / (half_plus - half_minus)
        forward = (yp - ys) / (plus - xs)
        backward = (ys - ym) / (xs - minus)
        magnitude = np.maximum(np.maximum(np.abs(ys), np.abs(yp)), np.abs(ym))
        if eps > EPS64:  # float32 inside: its intermediates (x, 1 + erf(x)) round on the scale of |x| too
            magnitude = np.maximum(magnitude, np.abs(xs))
        rounding = 8 * eps * magnitude / h
    locally_constant = (yp == ys) & (ym == ys)
    numeric = {"h": h, "plus": plus, "minus": minus, "central": central, "central_half": central_half,
               "forward": forward, "backward": backward, "rounding": rounding, "constant": locally_constant}
    return {key: torch.from_numpy(value) for key, value in numeric.items()}


def gradcheck_tolerances(ctx: "AuditContext") -> dict[str, float]:
    """``eps``, ``atol`` and ``rtol`` for torch.autograd.gradcheck on the target: torch's usual
    float64 ones, or longer steps and looser bounds for a forward computed in float32
    (:attr:`AuditContext.working_eps`), whose rounding over a step of 1e-6 is 10% of the slope."""
    if not float32_inside(ctx):
        return {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3}
    return {"eps": relative_step(ctx), "atol": 1e-3, "rtol": 1e-2}


def _array(t: torch.Tensor) -> np.ndarray:
    """``t`` as a float64 NumPy array (a view where it already is one)."""
    return t.detach().to(torch.float64).numpy()


def smooth_points(ctx: "AuditContext", x: torch.Tensor, numeric: dict[str, torch.Tensor]) -> torch.Tensor:
    """Points where the differences look smooth (:func:`smooth`) and no kink or jump is within
    reach."""
    return smooth(numeric) & within_reach(ctx, x, numeric)


def smooth(numeric: dict[str, torch.Tensor]) -> torch.Tensor:
    """Points where both one-sided differences agree and central differences with steps h and
    h/2 agree (Richardson), all finite."""
    forward, backward = numeric["forward"].numpy(), numeric["backward"].numpy()
    central, half = numeric["central"].numpy(), numeric["central_half"].numpy()
    rounding = numeric["rounding"].numpy()
    with np.errstate(all="ignore"):
        agree = np.abs(forward - backward) <= 0.05 * np.maximum(np.abs(forward), np.abs(backward)) + 1e-4 + 4 * rounding
        agree &= np.abs(central - half) <= 1e-3 * np.abs(half) + 1e-6 + 8 * rounding
    finite = np.isfinite(central) & np.isfinite(half) & np.isfinite(forward) & np.isfinite(backward)
    return torch.from_numpy(agree & finite)


def within_reach(ctx: "AuditContext", x: torch.Tensor, numeric: dict[str, torch.Tensor]) -> torch.Tensor:
    """Points whose steps ``x ± h`` reach no kink or jump and stay inside the domain."""
    mask = ~ctx.near_kink(x, numeric["h"])
    if ctx.options.domain is not None:
        lo, hi = ctx.options.domain
        mask &= (numeric["minus"] >= lo) & (numeric["plus"] <= hi)
    return mask


def shorter_steps(ctx: "AuditContext", x: torch.Tensor, gradient: torch.Tensor,
                  h: torch.Tensor) -> dict[str, torch.Tensor]:
    """``right``, ``resolved``, ``unresolved`` and ``estimate`` (the derivative from the
    shortest steps that agreed, NaN where none did) at points where ``gradient`` (the
    backward) disagreed with central differences of step ``h``, or where those did not look
    smooth: a step longer than the function's own scale (a period shorter than h) averages the
    derivative away, as x + sin(x)**2 at |x| = 1e6 with h = 6 does.

    The forward is differenced again with the steps h/4 .. h/4**LADDER (Richardson-extrapolated
    from steps s and s/2), as long as float64's rounding stays under a quarter of the
    tolerance. A point is **resolved** where two consecutive steps agree with each other, and
    **right** where they agree with the backward too. It is **unresolved** (skipped, never
    failed) where it is not right, the backward changes by more than the tolerance among the
    points x ± h/4**k around x (the derivative varies on a scale shorter than h; a backward
    wrong at x alone does not), and either the shortest usable step does not converge, or the
    shortest step that float64's rounding allows, or the ladder's own last step, is longer than
    :data:`UNIT_SCALE` (then steps that agree only agree that the differences of a bounded
    oscillation over a long step are tiny: sin at |x| = 1e13 gives ~1e-9 at every step). A smooth
    wrong backward is neither: the steps agree on another derivative, and the backward does
    not change around x."""
    eps = ctx.working_eps
    xs, g = _array(x)[None, :], _array(gradient)[None, :]
    steps = _array(h)[None, :] * 4.0 ** -np.arange(1, LADDER + 1, dtype=np.float64)[:, None]
    with np.errstate(all="ignore"):
        plus, minus, half_plus, half_minus = xs + steps, xs - steps, xs + steps / 2, xs - steps / 2
        points = np.stack([plus, minus, half_plus, half_minus])
        yp, ym, yhp, yhm = _array(ctx.values64(torch.from_numpy(points.reshape(-1)))).reshape(points.shape)
        estimate = (4 * (yhp - yhm) / (half_plus - half_minus) - (yp - ym) / (plus - minus)) / 3
        magnitude = np.maximum(np.maximum(np.abs(yp), np.abs(ym)), np.maximum(np.abs(yhp), np.abs(yhm)))
        rounding = 32 * eps * magnitude / steps  # of the extrapolated estimate (from the half step's)
        basic = ATOL + RTOL * np.abs(estimate)
        usable = np.isfinite(estimate) & (rounding <= basic / 4)
        converged = np.zeros_like(usable)
        converged[:-1] = (usable[:-1] & usable[1:]
                          & (np.abs(estimate[:-1] - estimate[1:]) <= basic[:-1] / 2 + rounding[:-1] + rounding[1:]))
        right = (converged & (np.abs(g - estimate) <= basic + rounding)).any(axis=0)
    columns = np.arange(xs.shape[1])
    any_usable = usable.any(axis=0)
    finest = np.where(any_usable, LADDER - 1 - np.argmax(usable[::-1], axis=0), 0)
    fine_converged = any_usable & (finest > 0) & converged[np.maximum(finest - 1, 0), columns]
    with np.errstate(all="ignore"):  # the shortest step whose rounding stays under a quarter of the tolerance
        shortest = 128 * eps * magnitude[finest, columns] / basic[finest, columns]
    around = np.concatenate([plus, minus])  # x ± h/4**k: from a quarter of h down to far below the shortest step
    beside = _array(ctx.grads64(torch.from_numpy(around.reshape(-1)))).reshape(around.shape)
    with np.errstate(all="ignore"):  # the backward around x (not at x: one wrong point is not a scale)
        spread = beside.max(axis=0) - beside.min(axis=0)
        steady = spread <= ATOL + RTOL * np.abs(beside).max(axis=0)
    coarse = steps[-1] > UNIT_SCALE  # even the ladder's last step is longer than the unit scale (sin at 1e13)
    unresolved = ~right & ~steady & (~fine_converged | ~(shortest <= UNIT_SCALE) | coarse)
    resolved = converged.any(axis=0)
    best = np.where(resolved, estimate[LADDER - 1 - np.argmax(converged[::-1], axis=0), columns], np.nan)
    return {"right": torch.from_numpy(right), "resolved": torch.from_numpy(resolved),
            "unresolved": torch.from_numpy(unresolved), "estimate": torch.from_numpy(best)}
