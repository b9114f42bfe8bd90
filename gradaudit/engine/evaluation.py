"""One evaluation: the target's forward and backward over a set of inputs in one dtype."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from . import scans
from .calling import Caller, CallError, describe_exception
from .vjp import vjp


@dataclass
class Evaluation:
    """Forward and backward of the target over the probe inputs in one dtype.

    ``grads[s]`` is the vector-Jacobian product with a grad_output of all ``s`` (+1.0, and
    -1.0 when a selected check needs it), so signed zeros created by the backward show up
    for both signs.
    """

    dtype: torch.dtype
    x: torch.Tensor
    y: torch.Tensor | None = None
    grads: dict[float, torch.Tensor] = field(default_factory=dict)
    error: str | None = None
    grad_error: str | None = None
    exception: BaseException | None = None
    found: dict[str | float, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)
    """:meth:`flags` found so far, by ``which``."""

    @property
    def grad(self) -> torch.Tensor | None:
        return self.grads.get(1.0)

    def flags(self, which: str | float = "y") -> tuple[torch.Tensor, torch.Tensor]:
        """``(non-finite, negative zeros)`` of the output (``"y"``) or of ``grads[which]``: their
        sorted flat indices (:func:`gradaudit.engine.scans.flags`; read-only), found once. An
        evaluation made in blocks finds them block by block, while each block is in cache."""
        if which not in self.found:
            values = self.y if which == "y" else self.grads[which]
            assert values is not None
            self.found[which] = scans.flags(values)
        return self.found[which]


def run(caller: Caller, x: torch.Tensor, dtype: torch.dtype, signs: tuple[float, ...]) -> Evaluation:
    """Forward and backward (for each of ``signs``) of the target cast to ``dtype`` at ``x``;
    a failure is recorded in the evaluation (``error``, ``grad_error``), not raised."""
    ev = Evaluation(dtype=dtype, x=x)
    leaf = x.detach().requires_grad_(True)  # a new leaf over x's storage; the target gets a copy
    with torch.enable_grad():
        try:
            out = caller.call(leaf.clone(), dtype=dtype)
        except CallError as exc:
            ev.error = str(exc)
            ev.exception = exc.__cause__ or exc
            return ev
        ev.y = out.detach().clone()  # a target may reuse its output buffer on the next call
        if not out.requires_grad:
            ev.grad_error = (
                "its output does not require grad, so nothing flows back to the input "
                "(the target detaches, or returns a non-differentiable result)"
            )
            return ev
        grad_output = torch.empty_like(out)  # one buffer for both signs: a probe-sized allocation less
        for sign, grad in backwards(out, leaf, grad_output, signs,
                                    refresh=lambda: caller.call(leaf.clone(), dtype=dtype)):
            if isinstance(grad, str):
                ev.grad_error = grad
                return ev
            if sign != signs[-1] or (
                    grad.untyped_storage().data_ptr() == grad_output.untyped_storage().data_ptr()):
                # an identity backward hands the buffer back, and a backward that keeps
                # state may change what it returned on the next call
                grad = grad.clone()
            ev.grads[sign] = grad
    return ev


def backwards(out: torch.Tensor, leaf: torch.Tensor, grad_output: torch.Tensor,
              signs: tuple[float, ...], refresh: Callable[[], torch.Tensor] | None = None,
              ) -> Iterator[tuple[float, torch.Tensor | str]]:
    """The vector-Jacobian product of ``out`` for each of ``signs``, with ``grad_output``
    refilled each time (a backward may write into it, which the checks report), or the
    reason there is none (then it stops). A backward that cannot run a second time over one
    graph (a non-reentrant backward) gets a fresh forward from ``refresh`` for the next sign, so what
    every sign's gradient is does not depend on which checks asked for it."""
    for k, sign in enumerate(signs):
        grad_output.fill_(sign)
        try:
            grad = vjp(out, leaf, grad_output, retain_graph=sign != signs[-1])
        except Exception as exc:
            if k == 0 or refresh is None:
                yield sign, f"backward raised {describe_exception(exc)}"
                return
            try:
                out = refresh()
                grad_output.fill_(sign)
                grad = vjp(out, leaf, grad_output, retain_graph=sign != signs[-1])
            except Exception as again:
                yield sign, f"backward raised {describe_exception(again)}"
                return
        if grad is None:
            yield sign, "the input receives no gradient (it is unused by the graph)"
            return
        yield sign, grad.detach()
