"""Running a one-tensor callable under ``torch.compile``: one compile per call of
:func:`run_compiled`, dynamo's caches reset around a target's compiles (:func:`fresh_dynamo`),
the compile and warm-call seconds, graph breaks (with dynamo's reason and the user's source
line) and whether a second call with the same inputs compiled again. It knows no check code.

``torch._dynamo`` is imported inside the functions only: importing it costs about a second,
and an audit that does not compile must not pay it.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from .vjp import vjp


@dataclass
class GraphBreak:
    """One graph break: dynamo's reason (its first line) and the user's frame, if known."""

    reason: str
    path: str | None = None
    line: int | None = None
    source: str | None = None


@dataclass
class ForwardBackward:
    """The output and the gradients (by grad_output sign) of one call, flattened to 1-D when
    the call reshaped a 1-D input; ``error`` is what the call raised."""

    y: torch.Tensor | None = None
    grads: dict[float, torch.Tensor] = field(default_factory=dict)
    error: BaseException | None = None
    seconds: float = 0.0


@dataclass
class CompiledRun(ForwardBackward):
    """A compiled call: :class:`ForwardBackward` of the first call (which compiles), and what
    compiling showed."""

    warm_seconds: float | None = None
    """Seconds of a second forward and backward with the same inputs (compiled already)."""
    frames: int = 0
    """Frames dynamo compiled during the first call (a graph break adds one)."""
    recompiled: int = 0
    """Frames compiled again by the warm call: the compiled code's guards fail on every call."""
    breaks: list[GraphBreak] = field(default_factory=list)


def forward_backward(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, signs: tuple[float, ...],
                     seed: int, layout: tuple[int, ...] | None = None) -> ForwardBackward:
    """Forward, then backward with grad_output ``s`` for each of ``signs``, of ``fn`` at a copy
    of ``x`` (reshaped to ``layout`` for targets that reject 1-D input); the CPU generator
    reseeded first, as the eager evaluations are. Failures are recorded, not raised."""
    result = ForwardBackward()
    shaped = x.reshape(layout) if layout is not None and x.dim() == 1 else x
    leaf = shaped.detach().clone().requires_grad_(True)
    flat = (lambda t: t.reshape(-1)) if shaped is not x else (lambda t: t)  # noqa: E731
    started = time.perf_counter()
    torch.default_generator.manual_seed(seed)
    try:
        with torch.enable_grad():
            out = fn(leaf.clone())
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"it returned {type(out).__name__}, not a tensor")
            result.y = flat(out.detach().clone()) if out.numel() == leaf.numel() else out.detach().clone()
            if out.requires_grad:
                for i, sign in enumerate(signs):
                    grad = vjp(out, leaf, torch.full_like(out, sign), retain_graph=i + 1 < len(signs))
                    if grad is not None:
                        result.grads[sign] = flat(grad.detach().clone())
    except Exception as exc:  # the caller judges it (a compile failure, or the target's own)
        result.error = exc
    result.seconds = time.perf_counter() - started
    return result


@contextlib.contextmanager
def fresh_dynamo() -> Iterator[None]:
    """Dynamo's caches reset before and after: the compiles inside share no graph with the
    caller's or with another target's, and leave none behind. Inductor compiles on this thread
    (``compile_threads = 1``): its worker pool would outlive the audit as threads the command
    cannot tell from the target's."""
    import torch._dynamo
    import torch._inductor.config as inductor_config

    threads = inductor_config.compile_threads
    inductor_config.compile_threads = 1
    torch._dynamo.reset()
    try:
        yield
    finally:
        torch._dynamo.reset()
        inductor_config.compile_threads = threads


@contextlib.contextmanager
def quiet_dynamo() -> Iterator[None]:
    """Dynamo's own warnings (a graph break logs one to stderr) silenced: the finding says it."""
    logger = logging.getLogger("torch._dynamo")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def backend_problem(backend: str) -> str | None:
    """Why ``backend`` is not a torch.compile backend (None when it is one)."""
    import torch._dynamo

    try:
        torch._dynamo.lookup_backend(backend)
    except Exception as exc:  # InvalidBackend, or a backend whose import fails
        names = ", ".join(torch._dynamo.list_backends(exclude_tags=()))
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''} (choose from {names})"
    return None


def _frames() -> int:
    from torch._dynamo.utils import counters

    return int(counters["frames"]["total"])


def _break_reasons() -> list[str]:
    from torch._dynamo.utils import counters

    return [str(reason) for reason in counters["graph_break"]]


def run_compiled(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, signs: tuple[float, ...], seed: int,
                 backend: str, layout: tuple[int, ...] | None = None) -> CompiledRun:
    """``fn`` compiled with ``backend`` (``dynamic=False``), called twice at ``x``: the first
    call compiles (forward, and backward for each of ``signs``), the second is timed warm.
    Randomness follows eager's generator under Inductor (``fallback_random``), so a
    stochastic target compares draw for draw. Call it inside :func:`fresh_dynamo`."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    counters.clear()

    def compiled_target(t: torch.Tensor) -> Any:
        return fn(t)

    compiled = torch.compile(compiled_target, backend=backend, dynamic=False)
    with _inductor_patch(backend), quiet_dynamo():
        first = forward_backward(compiled, x, signs, seed, layout)
        run = CompiledRun(y=first.y, grads=first.grads, error=first.error, seconds=first.seconds)
        run.frames = _frames()
        reasons = _break_reasons()
        if first.error is None:
            warm = forward_backward(compiled, x, signs, seed, layout)
            run.warm_seconds = warm.seconds
            run.recompiled = _frames() - run.frames
    if reasons:
        run.breaks = graph_breaks(compiled_target, x, layout, reasons)
    return run


def _inductor_patch(backend: str) -> contextlib.AbstractContextManager[Any]:
    if backend != "inductor":
        return contextlib.nullcontext()
    import torch._inductor.config

    return torch._inductor.config.patch(fallback_random=True)


def graph_breaks(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, layout: tuple[int, ...] | None,
                 reasons: list[str]) -> list[GraphBreak]:
    """Where ``fn`` breaks the graph: ``torch._dynamo.explain`` (tracing only, no backend
    compile) gives the user's frame; ``reasons`` (dynamo's counters) when it cannot."""
    import torch._dynamo

    shaped = x.reshape(layout) if layout is not None and x.dim() == 1 else x
    found: list[GraphBreak] = []
    try:
        with quiet_dynamo():
            explained = torch._dynamo.explain(fn)(shaped.detach().clone())
        for item in explained.break_reasons:
            frame = _user_frame(getattr(item, "user_stack", None) or [])
            found.append(GraphBreak(_first_line(str(item.reason)), *(frame or (None, None, None))))
    except Exception:  # explain is best effort: the counters still say why
        found = []
    finally:
        torch._dynamo.reset()
    return found or [GraphBreak(_first_line(reason)) for reason in reasons]


def _user_frame(stack: list[Any]) -> tuple[str, int, str] | None:
    """The innermost frame of ``stack`` outside torch and gradaudit."""
    for frame in reversed(stack):
        name = str(getattr(frame, "filename", ""))
        if "/torch/" in name or "/gradaudit/" in name:
            continue
        return name, int(getattr(frame, "lineno", 0) or 0), str(getattr(frame, "line", "") or "").strip()
    return None


def _first_line(reason: str) -> str:
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    explanation = next((line for line in lines if line.startswith("Explanation:")), None)
    head = lines[0] if lines else reason
    return f"{head} ({explanation.removeprefix('Explanation:').strip()})" if explanation else head
