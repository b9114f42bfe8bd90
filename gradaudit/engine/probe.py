"""The probe an audit evaluates: its inputs per dtype, the base probe where structural
questions are settled, and where the base and dense points sit (all cached by
:mod:`gradaudit.engine.inputs`)."""
from __future__ import annotations

from typing import Any

import torch

from .inputs import base_positions, dense_points, probe_spacing, probe_values
from .options import Options

BASE_SAMPLES = 2048
"""Random samples in the base probe, where structural properties are settled (the default size)."""


class Probe:
    """The probe inputs selected by one audit's options."""

    def __init__(self, options: Options) -> None:
        self.options = options

    @property
    def _selection(self) -> dict[str, Any]:
        """The options that select the probe (and its cached spacing and positions)."""
        options = self.options
        return {"domain": options.domain, "size": options.size, "seed": options.seed, "kinks": options.kinks}

    @property
    def is_base(self) -> bool:
        """Whether the probe is the base probe (the default size or less)."""
        return self.options.size <= BASE_SAMPLES

    def values(self, dtype: torch.dtype, samples: int | None = None) -> torch.Tensor:
        """The sorted probe inputs for ``dtype`` (see :func:`gradaudit.engine.inputs.probe_values`)."""
        return probe_values(dtype, samples=samples, **self._selection)

    def spacing(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The spacing of :meth:`values` (see :func:`gradaudit.engine.inputs.spacing`), cached with it."""
        return probe_spacing(dtype, **self._selection)

    def base(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``dtype``'s probe with at most ``BASE_SAMPLES`` of the random samples: the whole
        structured grid, and what the default ``size`` gives. Structural questions (is the
        target elementwise, the small inputs of the hygiene checks, higher-order agreement)
        are settled here, at a cost and with inputs that do not change with ``size``."""
        return self.values(dtype, samples=min(self.options.size, BASE_SAMPLES))

    def base_indices(self) -> torch.Tensor:
        """Where the points of :meth:`base` sit in the float64 probe (a subset of it; cached
        with the probe)."""
        return base_positions(base_samples=BASE_SAMPLES, **self._selection)

    def dense(self) -> torch.Tensor:
        """The float64 probe's points on the dense grid (sorted; cached with the probe)."""
        return dense_points(**self._selection)
