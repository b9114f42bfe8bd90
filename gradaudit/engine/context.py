"""The audit context: the one object every check receives, a thin facade over the engine's
parts, each with one job:

- :mod:`.calling`: calling the target (callables, layout retry, output checks, point evaluators);
- :mod:`.probe`: the probe inputs;
- :mod:`.cache` (with :mod:`.evaluation`, :mod:`.blocks`, :mod:`.buffers`): the shared evaluations;
- :mod:`.structure` and :mod:`.kinks`: whether the target is elementwise, its kinks and jumps;
- :mod:`.numerics`, :mod:`.scans`, :mod:`.blame`: numerical derivatives, whole-probe scans, tracing.

Every check reads the same cached forward and backward results, so adding a check adds no
evaluation of the probe set unless it needs a new kind of input. What the selected checks
need is given as engine terms (:class:`Needs`); the engine knows no check.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterator

import torch

from ..targets.types import Target
from . import scans, structure
from .binding import Binding
from .buffers import Leases
from .cache import EvaluationCache
from .calling import Caller
from .evaluation import Evaluation
from .options import Needs, Options
from .probe import Probe

__all__ = ["AuditContext"]


class AuditContext:
    """Shared state of one target's audit. :meth:`close` it when its report is built."""

    scan_tail_kinks = True
    """Whether kink discovery also tests the probe's tail points (a section along one of several
    inputs does not: it serves the kink checks, and x's own audit has scanned x's tails)."""

    def __init__(self, target: Target, options: Options, needs: Needs | None = None) -> None:
        self.target = target
        self.options = options
        self.needs = needs or Needs()
        self._caller = Caller(target, options.seed, options.inputs)
        self._probe = Probe(options)
        self._leases = Leases()
        self._cache = EvaluationCache(self._caller, self._probe, self.needs, self._leases, lambda: self.elementwise)
        self._memo: dict[str, Any] = {}

    def close(self) -> None:
        """Give the leased evaluation buffers back for the next audit; the evaluations are
        unusable afterwards."""
        self._cache.clear()
        self._memo.clear()
        self._leases.release()

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute a value shared by several checks once per audit."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def grad_output_signs(self) -> tuple[float, ...]:
        """The grad_outputs the stored backwards run with: +1, and -1 when a check needs it."""
        return self.needs.grad_output_signs

    @property
    def streaming(self) -> bool:
        """Whether every selected check reads the float64 evaluation block by block, so that
        none needs it stored whole."""
        return self.needs.streaming

    # -- calling ------------------------------------------------------------------------------
    @property
    def layout(self) -> tuple[int, ...] | None:
        """How 1-D probes are reshaped for targets that reject 1-D input (e.g. Softmax2d)."""
        return self._caller.layout

    def callable_for(self, dtype: torch.dtype, device: str = "cpu") -> Callable[[torch.Tensor], Any]:
        return self._caller.callable_for(dtype, device)

    @property
    def binding(self) -> "Binding":
        """The target's extra tensor inputs and how to call it with them (:mod:`.binding`)."""
        return self._caller.binding

    def raw_callable_for(self, dtype: torch.dtype, device: str = "cpu") -> Callable[..., Any]:
        """The target taking every input (a module copied and cast to ``dtype``)."""
        return self._caller.raw_callable_for(dtype, device)

    def call(self, x: torch.Tensor, *, dtype: torch.dtype | None = None, reseed: bool = True) -> torch.Tensor:
        """Call the target on ``x`` (see :meth:`gradaudit.engine.calling.Caller.call`)."""
        return self._caller.call(x, dtype=dtype, reseed=reseed)

    def values64(self, points: torch.Tensor) -> torch.Tensor:
        """The float64 target at arbitrary float64 points (elementwise targets only)."""
        return self._caller.values64(points)

    def grads64(self, points: torch.Tensor, sign: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Vector-Jacobian product with grad_output ``sign`` at ``points`` in ``dtype``."""
        return self._caller.grads64(points, sign, dtype)

    # -- probe --------------------------------------------------------------------------------
    def probe(self, dtype: torch.dtype, samples: int | None = None) -> torch.Tensor:
        """The sorted probe inputs for ``dtype``."""
        return self._probe.values(dtype, samples)

    def probe_spacing(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return self._probe.spacing(dtype)

    def base_probe(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``dtype``'s probe with at most ``BASE_SAMPLES`` random samples (see :class:`Probe`)."""
        return self._probe.base(dtype)

    def base_indices(self) -> torch.Tensor:
        return self._probe.base_indices()

    def dense_probe(self) -> torch.Tensor:
        return self._probe.dense()

    # -- structure ----------------------------------------------------------------------------
    @functools.cached_property
    def elementwise(self) -> bool:
        """Whether output i depends on input i alone (settled on the base probe)."""
        return structure.is_elementwise(self._caller, self.base_probe(), self.options)

    @functools.cached_property
    def working_eps(self) -> float:
        """The relative rounding of the float64 forward: float64's, or float32's where the target
        computes float64 inputs in float32 (see :func:`structure.computes_in_float32`)."""
        if structure.computes_in_float32(self._caller, self.options, self.elementwise):
            return float(torch.finfo(torch.float32).eps)
        return float(torch.finfo(torch.float64).eps)

    @functools.cached_property
    def kinks(self) -> list[Any]:
        """Declared and discovered kinks and jumps (see :mod:`gradaudit.engine.kinks`)."""
        from .kinks import find_kinks

        return find_kinks(self)

    def near_kink(self, x: torch.Tensor, halfwidth: torch.Tensor) -> torch.Tensor:
        """Mask of points whose interval ``x ± halfwidth`` touches a kink or jump."""
        return structure.near_kink(self.kinks, x, halfwidth)

    # -- evaluations --------------------------------------------------------------------------
    def first_evaluation(self) -> Evaluation | None:
        """The float64 probe's evaluation, whose failure stops the audit; None when it is
        only streamed (see :meth:`EvaluationCache.first`)."""
        return self._cache.first()

    def evaluate(self, dtype: torch.dtype) -> Evaluation:
        """Forward and backward over ``dtype``'s probe inputs (cached)."""
        return self._cache.evaluate(dtype)

    def evaluation_blocks(self, dtype: torch.dtype) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(start, output, gradient)`` blocks of ``dtype``'s probe (see :meth:`EvaluationCache.blocks`)."""
        return self._cache.blocks(dtype)

    def reference64(self, dtype: torch.dtype) -> Evaluation:
        """The float64 target at ``dtype``'s probe inputs."""
        return self._cache.reference64(dtype)

    def evaluate_in(self, dtype: torch.dtype, compute: torch.dtype) -> Evaluation:
        """The target cast to ``compute`` at ``dtype``'s probe inputs (cached)."""
        return self._cache.evaluate_in(dtype, compute)

    def exact_at(self, dtype: torch.dtype, where: torch.Tensor) -> Evaluation:
        """The float64 target (forward and backward) at the inputs of ``dtype``'s probe that
        ``where`` selects (a bool mask over the probe, or sorted flat indices)."""
        index = scans.indices(where) if where.dtype == torch.bool else where
        return self._cache.exact_at(dtype, index)

    def lease(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised probe-sized buffer, recycled from an earlier audit where one is
        free (no fresh memory), given back when this audit closes."""
        return self._leases.lease(numel, dtype)
