"""The audit context: options, the target's callables, and cached evaluations.

Every check reads the same cached forward and backward results, so adding a check adds
no evaluation of the probe set unless it needs a new kind of input.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from . import scans
from .inputs import DEFAULT_SIZE, base_positions, dense_points, probe_spacing, probe_values
from ..targets.resolve import Target, TargetError

DTYPE_NAMES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
DEFAULT_DTYPES = ("float64", "float32", "float16", "bfloat16")
NEGATIVE_GRAD_OUTPUT_CODES = frozenset({"GA204"})
"""The checks that read the backward with grad_output -1."""
BASE_SAMPLES = 2048
"""Random samples in the base probe, where structural properties are settled (the default size)."""
EVALUATION_BLOCK = 1 << 17
"""Probe points per call when a large probe of an elementwise target is evaluated in blocks."""


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    """A floating dtype from ``float32``/``torch.float32``/a dtype; ``ValueError`` otherwise."""
    if isinstance(value, torch.dtype):
        if value in DTYPE_NAMES.values():
            return value
        raise ValueError(f"unsupported dtype {value}; choose from {', '.join(DTYPE_NAMES)}")
    name = str(value).replace("torch.", "").strip()
    aliases = {"double": "float64", "float": "float32", "half": "float16", "bf16": "bfloat16"}
    name = aliases.get(name, name)
    if name not in DTYPE_NAMES:
        raise ValueError(f"unsupported dtype {value!r}; choose from {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


@dataclass
class Options:
    """Validated audit options (see :func:`gradaudit.audit`)."""

    kinks: tuple[float, ...] = ()
    domain: tuple[float, float] | None = None
    dtypes: tuple[torch.dtype, ...] = tuple(DTYPE_NAMES[n] for n in DEFAULT_DTYPES)
    size: int = DEFAULT_SIZE
    seed: int = 0
    codes: frozenset[str] = frozenset()
    surrogate: bool = False
    reference: Target | None = None
    devices: tuple[str, ...] = ("cpu",)


@dataclass
class Evaluation:
    """Forward and backward of the target over the probe inputs in one dtype.

    ``grads[s]`` is the vector-Jacobian product with a grad_output of all ``s`` (+1.0, and
    -1.0 when GA204 is selected), so signed zeros created by the backward show up for both
    signs.
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


class CallError(Exception):
    """Calling the target failed; the message names the dtype and the exception."""


class Unblockable(Exception):
    """The probe cannot be evaluated block by block: a block failed or surprised."""


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise equality up to 1e-10 relative (vectorised and scalar kernels may differ in
    the last bit), with NaN equal to NaN."""
    return torch.isclose(a, b, rtol=1e-10, atol=0.0) | (torch.isnan(a) & torch.isnan(b))


def _differ(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mask of the elements where :func:`_same` fails; the exact comparison first, so the
    tolerant one only runs on the few elements that are not bitwise equal."""
    differ = a != b
    suspects = scans.indices(differ)
    if suspects.numel():
        differ.view(-1)[suspects] = ~_same(a.reshape(-1)[suspects], b.reshape(-1)[suspects])
    return differ


def describe_exception(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _check_output(out: torch.Tensor, x: torch.Tensor) -> None:
    """Raise :class:`CallError` for an output no check can judge: not floating (integer,
    bool, complex), or empty for a non-empty input."""
    given = f"for a {dtype_name(x.dtype)} tensor of shape {tuple(x.shape)}"
    if out.is_complex():
        raise CallError(
            f"it returned a tensor of dtype {dtype_name(out.dtype)} {given}. gradaudit audits real-valued "
            f"targets; audit the real and imaginary parts as two targets, e.g. lambda x: f(x).real"
        )
    if not out.is_floating_point():
        raise CallError(
            f"it returned a tensor of dtype {dtype_name(out.dtype)} {given}, which carries no gradient. "
            f"gradaudit audits differentiable targets with floating outputs; return a floating "
            f"tensor (e.g. .to(x.dtype)), or audit the differentiable function it rounds"
        )
    if out.numel() == 0 and x.numel() > 0:
        raise CallError(
            f"it returned an empty tensor of shape {tuple(out.shape)} {given}, so there is "
            f"nothing to audit; return the activation's values, one per input element"
        )


class _Recycler:
    """Probe-sized result tensors handed from one finished audit to the next.

    A fresh probe-sized tensor is fresh memory, and its page faults cost more than the
    arithmetic (about 1.4 ms for 8 MB on the CI machine, four float32 passes). An audit
    leases its evaluation buffers and gives them back when it closes, after its report is
    built; an audit that never closes keeps them. Only the most recent size is kept, so the
    memory held between audits is bounded by one audit's evaluation outputs.
    """

    def __init__(self) -> None:
        self._free: dict[tuple[int, torch.dtype], list[torch.Tensor]] = {}
        self._lock = threading.Lock()

    def take(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        with self._lock:
            stack = self._free.get((numel, dtype))
            if stack:
                return stack.pop()
        return torch.empty(numel, dtype=dtype)

    def give_back(self, tensors: list[torch.Tensor]) -> None:
        with self._lock:
            for tensor in tensors:
                key = (tensor.numel(), tensor.dtype)
                for other in [k for k in self._free if k[0] != key[0]]:
                    del self._free[other]
                stack = self._free.setdefault(key, [])
                if len(stack) < 8:
                    stack.append(tensor)


_RECYCLER = _Recycler()


class AuditContext:
    """Shared state of one target's audit. :meth:`close` it when its report is built."""

    def __init__(self, target: Target, options: Options) -> None:
        self.target = target
        self.options = options
        self._callables: dict[tuple[torch.dtype, str], Callable[[torch.Tensor], Any]] = {}
        self._evaluations: dict[tuple[torch.dtype, torch.dtype], Evaluation] = {}
        self._memo: dict[str, Any] = {}
        self._leased: list[torch.Tensor] = []
        self.layout: tuple[int, ...] | None = None
        """How 1-D probes are reshaped for targets that reject 1-D input (e.g. Softmax2d)."""

    def close(self) -> None:
        """Give the leased evaluation buffers back for the next audit; the evaluations are
        unusable afterwards."""
        self._evaluations.clear()
        self._memo.clear()
        leased, self._leased = self._leased, []
        _RECYCLER.give_back(leased)

    @property
    def grad_output_signs(self) -> tuple[float, ...]:
        """The grad_outputs the backward runs with: +1, and -1 when a selected check reads it
        (GA204 looks for -0.0 the backward creates from a negative grad_output)."""
        return (1.0, -1.0) if NEGATIVE_GRAD_OUTPUT_CODES & self.options.codes else (1.0,)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute a value shared by several checks once per audit."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # -- calling the target -------------------------------------------------------------
    def callable_for(self, dtype: torch.dtype, device: str = "cpu") -> Callable[[torch.Tensor], Any]:
        key = (dtype, device)
        if key not in self._callables:
            self._callables[key] = self.target.callable_for(dtype, device)
        return self._callables[key]

    def call(self, x: torch.Tensor, *, dtype: torch.dtype | None = None, reseed: bool = True) -> torch.Tensor:
        """Call the target on ``x``; a 1-D ``x`` is reshaped to :attr:`layout` when one was
        needed (a target that rejects 1-D input is retried as (n, 1, 1) and (1, n, 1, 1))."""
        if x.dim() != 1:
            return self._call(x, dtype=dtype, reseed=reseed)
        if self.layout is not None:
            out = self._call(x.reshape(self.layout), dtype=dtype, reseed=reseed)
            return out.reshape(-1) if out.numel() == x.numel() else out
        try:
            return self._call(x, dtype=dtype, reseed=reseed)
        except CallError as first:
            for layout in ((-1, 1, 1), (1, -1, 1, 1)):
                try:
                    out = self._call(x.reshape(layout), dtype=dtype, reseed=reseed)
                except CallError:
                    continue
                self.layout = layout
                return out.reshape(-1) if out.numel() == x.numel() else out
            raise first

    def _call(self, x: torch.Tensor, *, dtype: torch.dtype | None = None, reseed: bool = True) -> torch.Tensor:
        """Call the target (cast to ``dtype``) on ``x`` and check that it returns a tensor.

        The global RNG is reseeded first, so stochastic targets give the same draws for the
        same input shape; the caller's RNG state is restored by :func:`gradaudit.audit`.
        """
        fn = self.callable_for(dtype or x.dtype, x.device.type if x.device.type != "meta" else "cpu")
        if reseed:
            # the CPU generator only: torch.manual_seed also records a CUDA stack trace per call
            torch.default_generator.manual_seed(self.options.seed)
            if x.device.type == "cuda":
                torch.cuda.manual_seed(self.options.seed)
        try:
            out = fn(x)
        except TargetError:
            raise
        except Exception as exc:
            raise CallError(
                f"calling it on a {dtype_name(x.dtype)} tensor of shape {tuple(x.shape)} raised "
                f"{describe_exception(exc)}"
            ) from exc
        if not isinstance(out, torch.Tensor):
            raise CallError(
                f"it returned {type(out).__name__}, not a tensor. gradaudit audits callables that "
                f"map one tensor to one tensor; wrap the target, e.g. lambda x: f(x)[0]"
            )
        _check_output(out, x)
        return out

    # -- structure ------------------------------------------------------------------------
    @functools.cached_property
    def elementwise(self) -> bool:
        """Whether output i depends on input i alone. Verified three ways on the base probe
        (:meth:`base_probe`): a random subset gives the same outputs alone as inside the whole
        (no normalisation across elements); perturbing a few elements changes only their
        outputs, over the whole and again over values in [-10, 10] (over the whole softmax is
        one-hot, the huge inputs dominate, so a perturbation there shows nothing)."""
        x = self.base_probe()
        with torch.no_grad():
            try:
                y = self.call(x.clone())  # the probe is shared: in-place targets get a copy
            except CallError:
                return False
        if y.shape != x.shape:
            return False
        generator = torch.Generator().manual_seed(self.options.seed + 1)
        n = x.numel()
        subset = torch.unique(torch.randint(0, n, (min(n, 64),), generator=generator))
        with torch.no_grad():
            try:
                alone = self.call(x[subset])
            except CallError:
                return False
        if alone.shape != subset.shape or not bool(_same(alone, y[subset]).all()):
            return False
        for _ in range(2):
            chosen = torch.randint(0, n, (max(3, min(n // 100, 1000)),), generator=generator)
            if not self._only_perturbed_outputs_change(x, y, chosen):
                return False
        moderate = x[x.abs() <= 10]
        if moderate.numel() < 8:
            return True
        moderate = moderate[torch.linspace(0, moderate.numel() - 1, min(64, moderate.numel())).round().long()]
        with torch.no_grad():
            try:
                y = self.call(moderate)
            except CallError:
                return False
        return y.shape == moderate.shape and self._only_perturbed_outputs_change(
            moderate, y, torch.arange(0, moderate.numel(), 7))

    def _only_perturbed_outputs_change(self, x: torch.Tensor, y: torch.Tensor, chosen: torch.Tensor) -> bool:
        """Perturb ``x[chosen]`` and check that every other output stays as in ``y``."""
        perturbed = x.clone()
        perturbed[chosen] = perturbed[chosen] * 0.75 + 0.3
        if self.options.domain is not None:
            perturbed = perturbed.clamp(*self.options.domain)
        with torch.no_grad():
            try:
                y2 = self.call(perturbed)
            except CallError:
                return False
        if y2.shape != y.shape:
            return False
        differ = _differ(y2, y)
        differ[chosen] = False
        return not scans.any_true(differ)

    # -- evaluations ------------------------------------------------------------------------
    def probe(self, dtype: torch.dtype, samples: int | None = None) -> torch.Tensor:
        """The sorted probe inputs for ``dtype`` (see :func:`gradaudit.engine.inputs.probe_values`)."""
        return probe_values(dtype, samples=samples, **self._probe_options)

    @property
    def _probe_options(self) -> dict[str, Any]:
        """The options that select the probe (and its cached spacing and positions)."""
        options = self.options
        return {"domain": options.domain, "size": options.size, "seed": options.seed, "kinks": options.kinks}

    def probe_spacing(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The spacing of :meth:`probe` (see :func:`gradaudit.engine.inputs.spacing`), cached with it."""
        return probe_spacing(dtype, **self._probe_options)

    def base_probe(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``dtype``'s probe with at most ``BASE_SAMPLES`` of the random samples: the whole
        structured grid, and what the default ``size`` gives. Structural questions (is the
        target elementwise, do its jvp and double backward agree with the backward, the
        small inputs of GA104 and GA401-GA404) are settled here, at a cost and with inputs
        that do not change with ``size``."""
        return self.probe(dtype, samples=min(self.options.size, BASE_SAMPLES))

    def base_indices(self) -> torch.Tensor:
        """Where the points of :meth:`base_probe` sit in the float64 probe (a subset of it;
        cached with the probe)."""
        return base_positions(base_samples=BASE_SAMPLES, **self._probe_options)

    def dense_probe(self) -> torch.Tensor:
        """The float64 probe's points on the dense grid (sorted; cached with the probe)."""
        return dense_points(**self._probe_options)

    @functools.cached_property
    def streaming(self) -> bool:
        """Whether every selected check reads the float64 evaluation block by block
        (``Check.streams``), so that none needs it stored whole."""
        from ..checks import catalogue

        checks = [check for code, check in catalogue().items() if code in self.options.codes and check.run]
        return bool(checks) and all(check.streams for check in checks)

    def first_evaluation(self) -> Evaluation | None:
        """The evaluation whose failure stops the audit (GA901): the float64 probe's. None when
        every selected check streams a probe large enough to be evaluated in blocks: nothing is
        evaluated up front then (the elementwise test that allows blocks has called the target
        on the base probe already), and a failure on the probe surfaces in the check that
        streams it."""
        if self.streaming and self._blocked(self.probe(torch.float64)):
            return None
        return self.evaluate(torch.float64)

    def evaluate(self, dtype: torch.dtype) -> Evaluation:
        """Forward and backward (for each of :attr:`grad_output_signs`) over ``dtype``'s probe inputs (cached)."""
        key = (dtype, dtype)
        if key not in self._evaluations:
            x = self.probe(dtype)
            self._evaluations[key] = self._run_blocks(x, dtype) if self._blocked(x) else self._run(x, dtype)
        return self._evaluations[key]

    def _blocked(self, x: torch.Tensor) -> bool:
        """Whether a probe this large is evaluated block by block (elementwise targets only)."""
        return x.numel() > 2 * EVALUATION_BLOCK and self.elementwise

    def _run_blocks(self, x: torch.Tensor, dtype: torch.dtype) -> Evaluation:
        """:meth:`_run` block by block (see :meth:`_evaluation_blocks`), straight into leased
        buffers, so the results are not fresh memory either. Any failure or surprise repeats
        the evaluation whole, so errors read as they do without blocks."""
        ev = Evaluation(dtype=dtype, x=x)
        found: dict[str | float, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # Evaluation.flags, per block

        def store(which: str | float, into: torch.Tensor, start: int, block: torch.Tensor) -> None:
            into[start : start + block.numel()] = block
            found.setdefault(which, []).append(tuple(where + start for where in scans.flags(block)))

        try:
            for start, out, sign, grad in self._evaluation_blocks(x, dtype):
                if ev.y is None:
                    ev.y = self.lease(x.numel(), out.dtype)
                if sign == self.grad_output_signs[0]:
                    store("y", ev.y, start, out)
                if sign not in ev.grads:
                    ev.grads[sign] = self.lease(x.numel(), grad.dtype)
                store(sign, ev.grads[sign], start, grad)
        except Unblockable:
            return self._run(x, dtype)
        ev.found = {which: (torch.cat([n for n, _ in parts]), torch.cat([z for _, z in parts]))
                    for which, parts in found.items()}
        return ev

    def evaluation_blocks(self, dtype: torch.dtype) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(start, output, gradient)`` for consecutive blocks of ``dtype``'s probe (grad_output
        +1), each valid until the next is asked for, without storing the whole: for a check
        that reads the evaluation once, in order, where no other selected check reads it
        (:attr:`streaming`). Slices of the stored evaluation when there is one. Raises
        :class:`Unblockable` when the probe cannot be evaluated in blocks (the caller then
        uses :meth:`evaluate`, which also says what failed)."""
        key = (dtype, dtype)
        if key in self._evaluations:
            ev = self._evaluations[key]
            if ev.y is None or ev.grad is None:
                raise Unblockable
            for start in range(0, ev.x.numel(), EVALUATION_BLOCK):
                yield start, ev.y[start : start + EVALUATION_BLOCK], ev.grad[start : start + EVALUATION_BLOCK]
            return
        x = self.probe(dtype)
        if not self._blocked(x):
            raise Unblockable
        for start, out, sign, grad in self._evaluation_blocks(x, dtype):
            if sign == 1.0:
                yield start, out, grad

    def _evaluation_blocks(self, x: torch.Tensor,
                           dtype: torch.dtype) -> Iterator[tuple[int, torch.Tensor, float, torch.Tensor]]:
        """Forward and backward of an elementwise target over ``x``, ``EVALUATION_BLOCK``
        points per call: ``(start, output, sign, gradient)`` for each block and each of
        :attr:`grad_output_signs`, each valid until the next is asked for. The target's
        temporaries stay in cache and are recycled by the allocator, where probe-sized ones
        would each be fresh memory. Raises :class:`Unblockable` when a block fails or
        differs from the first (another shape or dtype, no gradient)."""
        grad_output: torch.Tensor | None = None
        dtypes: dict[float | str, torch.dtype] = {}
        for start in range(0, x.numel(), EVALUATION_BLOCK):
            part = x[start : start + EVALUATION_BLOCK]
            with torch.enable_grad():
                leaf = part.detach().requires_grad_(True)
                try:
                    out = self.call(leaf.clone(), dtype=dtype)  # the probe is shared: the target gets a copy
                except CallError:
                    raise Unblockable from None
                if (out.shape != part.shape or not out.requires_grad
                        or out.dtype != dtypes.setdefault("output", out.dtype)):
                    raise Unblockable
                if grad_output is None:
                    grad_output = torch.empty_like(out)  # one buffer for every block and sign
                for sign, grad in self._backwards(out, leaf, grad_output[: part.numel()]):
                    if isinstance(grad, str) or grad.shape != part.shape or grad.dtype != dtypes.setdefault(sign, grad.dtype):
                        raise Unblockable
                    yield start, out.detach(), sign, grad

    def lease(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised probe-sized buffer, recycled from an earlier audit where one is
        free (no fresh memory), given back when this audit closes."""
        tensor = _RECYCLER.take(numel, dtype)
        self._leased.append(tensor)
        return tensor

    def reference64(self, dtype: torch.dtype) -> Evaluation:
        """The float64 target at ``dtype``'s probe inputs (the exact values, as near as we can)."""
        if dtype == torch.float64:
            return self.evaluate(dtype)
        key = (dtype, torch.float64)
        if key not in self._evaluations:
            self._evaluations[key] = self._run(self.evaluate(dtype).x.to(torch.float64), torch.float64)
        return self._evaluations[key]

    def exact_at(self, dtype: torch.dtype, where: torch.Tensor) -> Evaluation:
        """The float64 target (forward and both-sign backward) at the inputs of ``dtype``'s
        probe that ``where`` selects (a bool mask over the probe, or sorted flat indices):
        the exact values, as near as we can. Elementwise targets are evaluated at those
        inputs alone, so the cost follows the number of selected inputs."""
        index = scans.indices(where) if where.dtype == torch.bool else where
        if dtype == torch.float64 or not self.elementwise:
            full = self.reference64(dtype)
            pick = lambda t: t.reshape(-1)[index]  # noqa: E731
            subset = Evaluation(dtype=torch.float64, x=pick(full.x), error=full.error, grad_error=full.grad_error)
            subset.y = pick(full.y) if full.y is not None else None
            subset.grads = {sign: pick(grad) for sign, grad in full.grads.items()}
            return subset
        return self._run(self.evaluate(dtype).x.reshape(-1)[index].to(torch.float64), torch.float64)

    def evaluate_in(self, dtype: torch.dtype, compute: torch.dtype) -> Evaluation:
        """The target cast to ``compute`` at ``dtype``'s probe inputs (cached), e.g. float32 at
        the float16 probe values: what the same formula gives with more precision."""
        if compute == torch.float64:
            return self.reference64(dtype)
        if compute == dtype:
            return self.evaluate(dtype)
        key = (dtype, compute)
        if key not in self._evaluations:
            self._evaluations[key] = self._run(self.evaluate(dtype).x.to(compute), compute)
        return self._evaluations[key]

    def _run(self, x: torch.Tensor, dtype: torch.dtype) -> Evaluation:
        ev = Evaluation(dtype=dtype, x=x)
        leaf = x.detach().requires_grad_(True)  # a new leaf over x's storage; the target gets a copy
        with torch.enable_grad():
            try:
                out = self.call(leaf.clone(), dtype=dtype)
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
            for sign, grad in self._backwards(out, leaf, grad_output):
                if isinstance(grad, str):
                    ev.grad_error = grad
                    return ev
                if sign != self.grad_output_signs[-1] or (
                        grad.untyped_storage().data_ptr() == grad_output.untyped_storage().data_ptr()):
                    # an identity backward hands the buffer back, and a backward that keeps
                    # state may change what it returned on the next call (GA402's concern)
                    grad = grad.clone()
                ev.grads[sign] = grad
        return ev

    def _backwards(self, out: torch.Tensor, leaf: torch.Tensor,
                   grad_output: torch.Tensor) -> Iterator[tuple[float, torch.Tensor | str]]:
        """The vector-Jacobian product of ``out`` for each of :attr:`grad_output_signs`,
        with ``grad_output`` refilled each time (a backward may write into it; GA401 reports
        that), or the reason there is none (then it stops)."""
        signs = self.grad_output_signs
        for sign in signs:
            grad_output.fill_(sign)
            try:
                (grad,) = torch.autograd.grad(out, leaf, grad_output, retain_graph=sign != signs[-1],
                                              allow_unused=True)
            except Exception as exc:
                yield sign, f"backward raised {describe_exception(exc)}"
                return
            if grad is None:
                yield sign, "the input receives no gradient (it is unused by the graph)"
                return
            yield sign, grad.detach()

    # -- float64 point evaluations used by numerics, kinks and zero classification ---------------
    def values64(self, points: torch.Tensor) -> torch.Tensor:
        """The float64 target at arbitrary float64 points (elementwise targets only)."""
        with torch.no_grad():
            return self.call(points.to(torch.float64, copy=True)).detach().to(torch.float64)  # copy: in-place targets

    def grads64(self, points: torch.Tensor, sign: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Vector-Jacobian product with grad_output ``sign`` at ``points`` in ``dtype``."""
        leaf = points.to(dtype).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = self.call(leaf.clone(), dtype=dtype)
            (grad,) = torch.autograd.grad(out, leaf, torch.full_like(out, sign), allow_unused=True)
        if grad is None:
            return torch.zeros_like(leaf)
        return grad.detach()

    # -- kinks -------------------------------------------------------------------------------
    @functools.cached_property
    def kinks(self) -> list[Any]:
        """Declared and discovered kinks and jumps (see :mod:`gradaudit.engine.kinks`)."""
        from .kinks import find_kinks

        return find_kinks(self)

    def near_kink(self, x: torch.Tensor, halfwidth: torch.Tensor) -> torch.Tensor:
        """Mask of points whose interval ``x ± halfwidth`` touches a kink or jump."""
        mask = torch.zeros_like(x, dtype=torch.bool)
        for kink in self.kinks:
            reach = halfwidth * 2 + 1e-9 * max(1.0, abs(kink.location))
            mask |= (x - kink.location).abs() <= reach
        return mask
