"""The evaluations of one audit, made once and shared by every check: the probe's per
dtype (whole, or in blocks for large probes of elementwise targets), the float64 target at
another dtype's inputs, and the streaming policy (a large probe that every selected check
reads block by block is never stored whole)."""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from . import blocks
from .blocks import Unblockable
from .buffers import Leases
from .calling import Caller
from .evaluation import Evaluation, run
from .options import Needs
from .probe import Probe


class EvaluationCache:
    """Evaluations keyed by (probe dtype, compute dtype)."""

    def __init__(self, caller: Caller, probe: Probe, needs: Needs, leases: Leases,
                 elementwise: Callable[[], bool]) -> None:
        self._caller = caller
        self._probe = probe
        self._needs = needs
        self._leases = leases
        self._elementwise = elementwise
        self._evaluations: dict[tuple[torch.dtype, torch.dtype], Evaluation] = {}

    def clear(self) -> None:
        self._evaluations.clear()

    @property
    def signs(self) -> tuple[float, ...]:
        return self._needs.grad_output_signs

    def _blocked(self, x: torch.Tensor) -> bool:
        """Whether a probe this large is evaluated block by block (elementwise targets only)."""
        return blocks.large(x) and self._elementwise()

    def first(self) -> Evaluation | None:
        """The evaluation whose failure stops the audit: the float64 probe's. None when every
        selected check streams a probe large enough to be evaluated in blocks: nothing is
        evaluated up front then (the elementwise test that allows blocks has called the
        target on the base probe already), and a failure on the probe surfaces in the check
        that streams it."""
        if self._needs.streaming and self._blocked(self._probe.values(torch.float64)):
            return None
        return self.evaluate(torch.float64)

    def evaluate(self, dtype: torch.dtype) -> Evaluation:
        """Forward and backward (for each grad_output sign) over ``dtype``'s probe inputs (cached)."""
        key = (dtype, dtype)
        if key not in self._evaluations:
            x = self._probe.values(dtype)
            self._evaluations[key] = self._whole_or_blocks(x, dtype)
        return self._evaluations[key]

    def _whole_or_blocks(self, x: torch.Tensor, dtype: torch.dtype) -> Evaluation:
        if self._blocked(x):
            try:
                return blocks.run_blocks(self._caller, x, dtype, self.signs, self._leases.lease)
            except Unblockable:
                pass
        return run(self._caller, x, dtype, self.signs)

    def blocks(self, dtype: torch.dtype) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(start, output, gradient)`` for consecutive blocks of ``dtype``'s probe (grad_output
        +1), each valid until the next is asked for, without storing the whole. Slices of the
        stored evaluation when there is one. Raises :class:`Unblockable` when the probe cannot
        be evaluated in blocks (the caller then uses :meth:`evaluate`, which also says what
        failed)."""
        key = (dtype, dtype)
        if key in self._evaluations:
            yield from blocks.stored_blocks(self._evaluations[key])
            return
        x = self._probe.values(dtype)
        if not self._blocked(x):
            raise Unblockable
        for start, out, sign, grad in blocks.blocks(self._caller, x, dtype, self.signs):
            if sign == 1.0:
                yield start, out, grad

    def reference64(self, dtype: torch.dtype) -> Evaluation:
        """The float64 target at ``dtype``'s probe inputs (the exact values, as near as we can)."""
        if dtype == torch.float64:
            return self.evaluate(dtype)
        return self.evaluate_in(dtype, torch.float64)

    def evaluate_in(self, dtype: torch.dtype, compute: torch.dtype) -> Evaluation:
        """The target cast to ``compute`` at ``dtype``'s probe inputs (cached)."""
        if compute == dtype:
            return self.evaluate(dtype)
        key = (dtype, compute)
        if key not in self._evaluations:
            self._evaluations[key] = run(self._caller, self.evaluate(dtype).x.to(compute), compute, self.signs)
        return self._evaluations[key]

    def exact_at(self, dtype: torch.dtype, index: torch.Tensor) -> Evaluation:
        """The float64 target at the inputs of ``dtype``'s probe at the sorted flat indices
        ``index``. Elementwise targets are evaluated at those inputs alone, so the cost
        follows the number of selected inputs."""
        if dtype == torch.float64 or not self._elementwise():
            full = self.reference64(dtype)
            pick = lambda t: t.reshape(-1).index_select(0, index)  # noqa: E731
            subset = Evaluation(dtype=torch.float64, x=pick(full.x), error=full.error, grad_error=full.grad_error)
            subset.y = pick(full.y) if full.y is not None else None
            subset.grads = {sign: pick(grad) for sign, grad in full.grads.items()}
            return subset
        x = self.evaluate(dtype).x.reshape(-1).index_select(0, index)
        return run(self._caller, x.to(torch.float64), torch.float64, self.signs)
