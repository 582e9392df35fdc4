"""When a source polls next: exponential backoff after failures, and the chained-poll helpers.

Every HTTP source refreshes as a chain (DESIGN.md, reference/tui-lessons.md C.2): the next poll
is scheduled only after the last one finished, so polls never overlap and a slow poll stretches
the interval instead of piling requests onto a struggling service. After a failure the wait
grows 1 s, 2 s, 4 s ... up to 30 s, so a dead Prometheus is not hammered at the refresh rate,
and a success resets it. A little jitter keeps several consoles on one box from polling in step.

``Backoff`` is pure (the random source is injected). The async helpers below only wait: they
never raise for a stop, they return.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, TypeVar

if TYPE_CHECKING:
    from x402console.sources.models import ReplicaIdentity

__all__ = ["Backoff", "ReplicaChains", "sleep_or_stop", "unless_stopped"]

T = TypeVar("T")


class Backoff:
    """Delays after consecutive failures: initial * factor**n, capped at ``maximum``.

    Jitter multiplies the delay by a factor drawn from [1 - jitter, 1 + jitter]; the result is
    still capped at ``maximum`` so the documented ceiling holds.
    """

    def __init__(
        self,
        initial: float = 1.0,
        factor: float = 2.0,
        maximum: float = 30.0,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0:
            raise ValueError("initial must be positive")
        if factor < 1:
            raise ValueError("factor must be at least 1")
        if maximum < initial:
            raise ValueError("maximum must not be less than initial")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.initial = float(initial)
        self.factor = float(factor)
        self.maximum = float(maximum)
        self.jitter = float(jitter)
        self._rng = rng or random.Random()
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures counted since the last reset."""
        return self._failures

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        # The exponent is bounded so a source failing for days cannot overflow the float.
        exponent = min(self._failures, 64)
        self._failures += 1
        base = min(self.maximum, self.initial * self.factor**exponent)
        if self.jitter:
            base *= 1.0 + self._rng.uniform(-self.jitter, self.jitter)
        return min(self.maximum, max(0.0, base))

    def reset(self) -> None:
        self._failures = 0


# One waiter per stop event, shared by every sleep on it: the sources sleep several times a
# second between polls, and a task per sleep (what wait_for(stop.wait()) costs) was a visible
# part of an idle console's CPU.
_stop_waiters: "weakref.WeakKeyDictionary[asyncio.Event, asyncio.Future]" = weakref.WeakKeyDictionary()


def _stop_waiter(stop: asyncio.Event) -> asyncio.Future:
    """A future that completes when ``stop`` is set (made once per event and loop)."""
    fut = _stop_waiters.get(stop)
    if fut is None or fut.done() or fut.get_loop() is not asyncio.get_running_loop():
        fut = asyncio.ensure_future(stop.wait())
        _stop_waiters[stop] = fut
    return fut


async def sleep_or_stop(stop: asyncio.Event, delay: float) -> bool:
    """Wait ``delay`` seconds or until ``stop`` is set; True when stopped."""
    if stop.is_set():
        return True
    if delay <= 0:
        await asyncio.sleep(0)
        return stop.is_set()
    # asyncio.wait neither cancels the shared waiter on timeout nor wraps it in a new task.
    await asyncio.wait((_stop_waiter(stop),), timeout=delay)
    return stop.is_set()


async def unless_stopped(stop: asyncio.Event, work: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
    """Run ``work()`` but abandon it as soon as ``stop`` is set: (finished, result).

    A poll stuck on a hung server would otherwise hold the hub's shutdown for its whole
    timeout; cancelling an in-flight httpx request is safe.
    """
    if stop.is_set():
        return False, None
    task: asyncio.Task = asyncio.ensure_future(work())
    try:
        await asyncio.wait((task, _stop_waiter(stop)), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.done():
        return True, task.result()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
    return False, None


class ReplicaChains:
    """One chained poll per replica, kept in step with the replicas currently known.

    Each replica gets its own chain so a hung replica (which holds its poll for the whole
    timeout) never delays the others. ``reconcile`` starts chains for new replicas and cancels
    those of replicas that went away or whose URL changed (a recreated container).
    """

    def __init__(
        self,
        chain: Callable[["ReplicaIdentity", asyncio.Event], Awaitable[None]],
        key: Callable[["ReplicaIdentity"], tuple] = lambda r: (r.name, r.health_url, r.metrics_url),
        on_removed: Callable[["ReplicaIdentity"], None] | None = None,
    ) -> None:
        self._chain = chain
        self._key = key
        self._on_removed = on_removed
        self._tasks: dict[tuple, tuple["ReplicaIdentity", asyncio.Task]] = {}

    def reconcile(self, replicas: Iterable["ReplicaIdentity"], stop: asyncio.Event) -> None:
        wanted = {self._key(r): r for r in replicas}
        for key in list(self._tasks):
            replica, task = self._tasks[key]
            if key not in wanted or task.done():
                del self._tasks[key]
                task.cancel()
                if key not in wanted and self._on_removed is not None:
                    self._on_removed(replica)
        for key, replica in wanted.items():
            if key not in self._tasks and not stop.is_set():
                task = asyncio.ensure_future(self._chain(replica, stop))
                self._tasks[key] = (replica, task)

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        tasks = [t for _, t in self._tasks.values()]
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
