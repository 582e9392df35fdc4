"""Lines per second over a short sliding window, for the log pane's status line.

Pure Python (no textual) so it is testable with a fake clock.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

__all__ = ["RateMeter"]


class RateMeter:
    """Counts arrivals in buckets of `resolution` seconds and reports the rate over `window`.

    Buckets rather than one entry per batch: memory stays bounded however often batches come.
    """

    def __init__(
        self, window: float = 2.0, resolution: float = 0.25, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if window <= 0 or resolution <= 0 or resolution > window:
            raise ValueError("need 0 < resolution <= window")
        self.window = window
        self.resolution = resolution
        self.clock = clock
        self._buckets: deque[list[float]] = deque()  # [bucket start, count]
        self._started = clock()

    def add(self, count: int) -> None:
        now = self.clock()
        start = now - (now % self.resolution)
        buckets = self._buckets
        if buckets and buckets[-1][0] == start:
            buckets[-1][1] += count
        else:
            buckets.append([start, float(count)])
            self._expire(now)

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        buckets = self._buckets
        while buckets and buckets[0][0] + self.resolution <= horizon:
            buckets.popleft()

    def rate(self) -> float:
        now = self.clock()
        self._expire(now)
        total = sum(count for _, count in self._buckets)
        # Right after start the window is not full yet; dividing by it would understate.
        span = min(self.window, max(now - self._started, self.resolution))
        return total / span
