"""The proof cache (cache.go): FIFO eviction by creation time, TTL, public-input key, stats."""

from __future__ import annotations

from x402console.drill.sim.cache import ProofCache, cache_key


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def req(n: int, **extra: str) -> dict[str, str]:
    return {"minAmount": "1000", "recipientKeyX": str(n), "recipientKeyY": "7", "maxBlockAge": "150", **extra}


def test_key_ignores_private_inputs_and_current_time() -> None:
    a = req(1, actualAmount="5000", senderKeyX="1", signatureS="9")
    b = {**req(1, actualAmount="1", senderKeyX="2", signatureS="0"), "currentTime": 12345}
    assert cache_key(a) == cache_key(b)
    assert cache_key(req(1)) != cache_key(req(2))


def test_eviction_removes_the_oldest_created_even_if_recently_read() -> None:
    clock = Clock()
    cache = ProofCache(3, 3600, clock)
    for n in range(3):
        clock.t += 1
        cache.set(req(n), f"proof{n}", [str(n)])
    assert cache.get(req(0)) is not None  # a read does not protect it: it is not LRU
    clock.t += 1
    cache.set(req(3), "proof3", ["3"])
    assert cache.get(req(0)) is None
    assert all(cache.get(req(n)) is not None for n in (1, 2, 3))
    assert cache.stats()["size"] == 3


def test_ttl_expiry_and_sweep() -> None:
    clock = Clock()
    cache = ProofCache(10, 100, clock)
    cache.set(req(1), "p", ["x"])
    clock.t = 100
    assert cache.get(req(1)) is not None  # expired only when age > ttl
    clock.t = 100.5
    assert cache.get(req(1)) is None
    assert cache.sweep() == 1
    assert cache.stats()["size"] == 0


def test_stats_count_the_initial_access() -> None:
    cache = ProofCache(1000, 3600)
    cache.set(req(1), "p", ["x"])
    cache.set(req(2), "p", ["x"])
    cache.get(req(1))
    cache.get(req(1))
    assert cache.stats() == {"maxSize": 1000, "size": 2, "totalAccess": 4, "ttlSeconds": 3600}
