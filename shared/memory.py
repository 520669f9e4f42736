"""The process's memory budget for images: how much decoded inputs and a step's working copies
of them may take, and a semaphore counted in bytes that keeps requests in flight together
within it, whichever front end they came from.

The budget is a share (limits.memory_fraction) of the container's memory limit: cgroup v2's
memory.max where one is set, else limits.memory_limit_bytes. jobpath.prepare estimates each
request's bytes from the image headers; one over the whole budget is rejected at once
(ImageRejected over_budget), one that fits holds its bytes from before decoding until its outputs
are encoded.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path

from studioline.shared.config import LimitSettings
from studioline.shared.errors import TransientError

CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
# cgroup v1 writes "no limit" as a page-rounded 2**63 - 1.
CGROUP_V1_UNLIMITED = 1 << 62


class MemoryBusy(TransientError):
    """The budget is held by other requests now; the same request fits later."""

    code = "memory_busy"


def container_memory_limit(fallback: int, path: Path | None = None) -> int:
    """The container's memory limit: cgroup v2 memory.max, else cgroup v1's
    memory.limit_in_bytes, or `fallback` where neither sets one ("max", or v1's huge
    "unlimited" value)."""
    for candidate in ([path] if path else [CGROUP_MEMORY_MAX, CGROUP_V1_LIMIT]):
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < CGROUP_V1_UNLIMITED:
            return int(text)
        return fallback
    return fallback


def budget_bytes(limits: LimitSettings, path: Path | None = None) -> int:
    # Read on every call: a pod's memory limit can be resized in place.
    return int(container_memory_limit(limits.memory_limit_bytes, path) * limits.memory_fraction)


def megabytes(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


class Reservation:
    """Bytes held in a budget until `release` (idempotent)."""

    def __init__(self, budget: ByteBudget, nbytes: int, owner: int):
        self.budget, self.nbytes, self.owner = budget, nbytes, owner
        self.released = False

    def release(self) -> None:
        self.budget._release(self)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class ByteBudget:
    """A semaphore counted in bytes, granted in arrival order.

    A thread that holds nothing waits (up to a timeout) for the bytes it asks for. A thread that
    already holds some never waits: what it would wait for may be its own bytes (the Kafka loop
    prepares a whole batch before running it), so it gets the bytes at once or MemoryBusy."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._free = capacity
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()  # waiting requests, oldest first
        self._held: dict[int, int] = {}  # bytes held, by thread

    @property
    def free(self) -> int:
        with self._cond:
            return self._free

    def acquire(self, nbytes: int, timeout: float) -> Reservation:
        if nbytes > self.capacity:
            raise ValueError(f"{megabytes(nbytes)} can never fit in a budget of {megabytes(self.capacity)}")
        me = threading.get_ident()
        with self._cond:
            held = self._held.get(me, 0)
            if held:
                if self._queue or nbytes > self._free:
                    raise MemoryBusy(
                        f"memory budget busy: {megabytes(nbytes)} more wanted while this thread holds "
                        f"{megabytes(held)}; {megabytes(self._free)} of {megabytes(self.capacity)} free"
                    )
            else:
                ticket = object()
                self._queue.append(ticket)
                try:
                    granted = self._cond.wait_for(lambda: self._queue[0] is ticket and nbytes <= self._free, timeout)
                finally:
                    self._queue.remove(ticket)
                    self._cond.notify_all()  # the next in line may fit now
                if not granted:
                    raise MemoryBusy(
                        f"waited {timeout:g} s for {megabytes(nbytes)} of the memory budget "
                        f"({megabytes(self.capacity)}), held by other requests"
                    )
            self._free -= nbytes
            self._held[me] = held + nbytes
            return Reservation(self, nbytes, me)

    def _release(self, reservation: Reservation) -> None:
        with self._cond:
            if reservation.released:
                return
            reservation.released = True
            self._free += reservation.nbytes
            left = self._held[reservation.owner] - reservation.nbytes
            if left:
                self._held[reservation.owner] = left
            else:
                del self._held[reservation.owner]
            self._cond.notify_all()


_budgets: dict[int, ByteBudget] = {}
_budgets_lock = threading.Lock()


def process_budget(limits: LimitSettings) -> ByteBudget:
    """The process's one budget for these limits, shared by its Kafka loop and gRPC threads."""
    capacity = budget_bytes(limits)
    with _budgets_lock:
        if capacity not in _budgets:
            _budgets[capacity] = ByteBudget(capacity)
        return _budgets[capacity]
