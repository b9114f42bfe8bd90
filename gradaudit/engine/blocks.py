"""Evaluating a large probe of an elementwise target block by block.

The target's temporaries stay in cache and are recycled by the allocator, where probe-sized
ones would each be fresh memory. Any failure or surprise raises :class:`Unblockable`, and
the caller evaluates the probe whole, so errors read as they do without blocks.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from . import scans
from .calling import Caller, CallError
from .evaluation import Evaluation, backwards

EVALUATION_BLOCK = 1 << 17
"""Probe points per call when a large probe of an elementwise target is evaluated in blocks."""


class Unblockable(Exception):
    """The probe cannot be evaluated block by block: a block failed or surprised."""


def large(x: torch.Tensor) -> bool:
    """Whether a probe this large is worth evaluating in blocks (elementwise targets only)."""
    return x.numel() > 2 * EVALUATION_BLOCK


def blocks(caller: Caller, x: torch.Tensor, dtype: torch.dtype,
           signs: tuple[float, ...]) -> Iterator[tuple[int, torch.Tensor, float, torch.Tensor]]:
    """Forward and backward of an elementwise target over ``x``, ``EVALUATION_BLOCK``
    points per call: ``(start, output, sign, gradient)`` for each block and each of
    ``signs``, each valid until the next is asked for. Raises :class:`Unblockable` when a
    block fails or differs from the first (another shape or dtype, no gradient)."""
    grad_output: torch.Tensor | None = None
    dtypes: dict[float | str, torch.dtype] = {}
    for start in range(0, x.numel(), EVALUATION_BLOCK):
        part = x[start : start + EVALUATION_BLOCK]
        with torch.enable_grad():
            leaf = part.detach().requires_grad_(True)
            try:
                out = caller.call(leaf.clone(), dtype=dtype)  # the probe is shared: the target gets a copy
            except CallError:
                raise Unblockable from None
            if (out.shape != part.shape or not out.requires_grad
                    or out.dtype != dtypes.setdefault("output", out.dtype)):
                raise Unblockable
            if grad_output is None:
                grad_output = torch.empty_like(out)  # one buffer for every block and sign
            for sign, grad in backwards(out, leaf, grad_output[: part.numel()], signs,
                                        refresh=lambda leaf=leaf: caller.call(leaf.clone(), dtype=dtype)):
                if isinstance(grad, str) or grad.shape != part.shape or grad.dtype != dtypes.setdefault(sign, grad.dtype):
                    raise Unblockable
                yield start, out.detach(), sign, grad


def run_blocks(caller: Caller, x: torch.Tensor, dtype: torch.dtype, signs: tuple[float, ...],
               lease: Callable[[int, torch.dtype], torch.Tensor]) -> Evaluation:
    """The whole evaluation, made block by block straight into leased buffers (so the results
    are not fresh memory either), with each block's flags found while it is in cache. Raises
    :class:`Unblockable` as :func:`blocks` does."""
    ev = Evaluation(dtype=dtype, x=x)
    found: dict[str | float, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # Evaluation.flags, per block

    def store(which: str | float, into: torch.Tensor, start: int, block: torch.Tensor) -> None:
        into[start : start + block.numel()] = block
        found.setdefault(which, []).append(tuple(where + start for where in scans.flags(block)))

    for start, out, sign, grad in blocks(caller, x, dtype, signs):
        if ev.y is None:
            ev.y = lease(x.numel(), out.dtype)
        if sign == signs[0]:
            store("y", ev.y, start, out)
        if sign not in ev.grads:
            ev.grads[sign] = lease(x.numel(), grad.dtype)
        store(sign, ev.grads[sign], start, grad)
    ev.found = {which: (torch.cat([n for n, _ in parts]), torch.cat([z for _, z in parts]))
                for which, parts in found.items()}
    return ev


def stored_blocks(ev: Evaluation) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(start, output, gradient)`` slices of a stored evaluation, as :func:`blocks` gives them."""
    if ev.y is None or ev.grad is None:
        raise Unblockable
    for start in range(0, ev.x.numel(), EVALUATION_BLOCK):
        yield start, ev.y[start : start + EVALUATION_BLOCK], ev.grad[start : start + EVALUATION_BLOCK]
