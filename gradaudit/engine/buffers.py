"""Probe-sized buffers leased by an audit and recycled by the next one.

A fresh probe-sized tensor is fresh memory, and its page faults cost more than the
arithmetic (about 1.4 ms for 8 MB on the CI machine, four float32 passes). An audit leases
its evaluation buffers and gives them back when it closes, after its report is built; an
audit that never closes keeps them. Only the most recent size is kept, so the memory held
between audits is bounded by one audit's evaluation outputs.
"""
from __future__ import annotations

import threading

import torch


class Recycler:
    """Buffers handed from one finished audit to the next (shared by the whole process)."""

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


RECYCLER = Recycler()


class Leases:
    """The buffers one audit holds, given back together when it closes."""

    def __init__(self, recycler: Recycler = RECYCLER) -> None:
        self._recycler = recycler
        self._leased: list[torch.Tensor] = []

    def lease(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised buffer, recycled from an earlier audit where one is free."""
        tensor = self._recycler.take(numel, dtype)
        self._leased.append(tensor)
        return tensor

    def release(self) -> None:
        leased, self._leased = self._leased, []
        self._recycler.give_back(leased)
