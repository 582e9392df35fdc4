"""The prover's rate limiter arithmetic (rate_limiter.go), on an injectable clock."""

from __future__ import annotations

from x402console.drill.sim.limiter import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def allowed(limiter: RateLimiter, ip: str, n: int) -> int:
    return sum(limiter.allow(ip) for _ in range(n))


def test_ten_then_refused_within_the_minute() -> None:
    clock = Clock()
    rl = RateLimiter(10, 60.0, clock)
    assert allowed(rl, "1.2.3.4", 10) == 10
    assert rl.allow("1.2.3.4") is False
    clock.t += 59.999
    assert rl.allow("1.2.3.4") is False  # integer division: no token before a full minute


def test_refill_after_a_full_minute_is_capped_at_max() -> None:
    clock = Clock()
    rl = RateLimiter(10, 60.0, clock)
    allowed(rl, "a", 10)
    clock.t += 60.0
    assert allowed(rl, "a", 20) == 10
    clock.t += 600.0  # ten periods elapsed: 100 tokens computed, capped at 10
    assert allowed(rl, "a", 20) == 10


def test_partial_use_then_refill_tops_up_to_max_only() -> None:
    clock = Clock()
    rl = RateLimiter(10, 60.0, clock)
    assert allowed(rl, "a", 3) == 3
    clock.t += 61
    assert allowed(rl, "a", 15) == 10


def test_window_is_anchored_at_last_refill_not_first_request() -> None:
    clock = Clock()
    rl = RateLimiter(10, 60.0, clock)
    rl.allow("a")  # bucket created at t=1000, lastRefill=1000
    clock.t += 50
    allowed(rl, "a", 9)
    assert rl.allow("a") is False
    clock.t += 10  # 60 s after the bucket was created
    assert rl.allow("a") is True


def test_buckets_are_per_ip() -> None:
    clock = Clock()
    rl = RateLimiter(10, 60.0, clock)
    allowed(rl, "a", 10)
    assert rl.allow("a") is False
    assert rl.allow("b") is True


def test_gc_drops_only_buckets_idle_for_more_than_ten_minutes() -> None:
    clock = Clock()
    rl = RateLimiter(10, 60.0, clock)
    rl.allow("old")
    clock.t += 400
    rl.allow("new")
    clock.t += 201  # old: 601 s since lastRefill; new: 201 s
    assert rl.gc() == 1
    assert set(rl.buckets) == {"new"}


def test_configured_rate() -> None:
    clock = Clock()
    rl = RateLimiter(3, 60.0, clock)
    assert allowed(rl, "a", 5) == 3
