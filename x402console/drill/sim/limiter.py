"""The prover's per-IP rate limiter, with its real (fixed-window-like) arithmetic.

rate_limiter.go computes the refill as int(elapsed / period * maxRate) on durations, so no
token comes back until a whole period has passed since the bucket's last refill; then the bucket
is topped up to at most maxRate. In effect: maxRate requests, then 429s until 60 s after the
last refill. The clock is injectable so the arithmetic can be tested without waiting minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

GC_INTERVAL_S = 5 * 60.0
IDLE_LIMIT_S = 10 * 60.0


@dataclass
class Bucket:
    tokens: int
    last_refill: float


class RateLimiter:
    def __init__(
        self,
        max_rate: int = 10,
        period_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_rate = max_rate
        self.period_s = period_s
        self._clock = clock
        self.buckets: dict[str, Bucket] = {}

    def allow(self, ip: str) -> bool:
        now = self._clock()
        bucket = self.buckets.get(ip)
        if bucket is None:
            bucket = self.buckets[ip] = Bucket(self.max_rate, now)
        periods = int((now - bucket.last_refill) // self.period_s)
        to_add = periods * self.max_rate
        if to_add > 0:
            bucket.tokens = min(bucket.tokens + to_add, self.max_rate)
            bucket.last_refill = now
        if bucket.tokens > 0:
            bucket.tokens -= 1
            return True
        return False

    def gc(self) -> int:
        """Drop buckets whose last refill is more than 10 minutes old (the 5-minute sweep)."""
        now = self._clock()
        stale = [ip for ip, b in self.buckets.items() if now - b.last_refill > IDLE_LIMIT_S]
        for ip in stale:
            del self.buckets[ip]
        return len(stale)
