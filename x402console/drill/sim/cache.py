"""The prover's in-memory proof cache (cache.go), quirks included.

- The key hashes only public inputs, and is checked before the signature, so a request with a
  bad signature but known public inputs is answered from the cache.
- "evictLRU" really evicts the oldest entry by creation time (FIFO).
- A new entry starts with AccessCount 1, so totalAccess = entries + hits.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def cache_key(req: dict[str, Any]) -> str:
    data = (
        str(req.get("minAmount", ""))
        + str(req.get("recipientKeyX", ""))
        + str(req.get("recipientKeyY", ""))
        + str(req.get("maxBlockAge", ""))
    )
    return hashlib.sha256(data.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class CachedProof:
    proof: str
    public_inputs: list[str]
    generated_at: float
    access_count: int = 1


class ProofCache:
    def __init__(self, max_size: int = 1000, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self.entries: dict[str, CachedProof] = {}

    def get(self, req: dict[str, Any]) -> CachedProof | None:
        entry = self.entries.get(cache_key(req))
        if entry is None or self._clock() - entry.generated_at > self.ttl_s:
            return None
        entry.access_count += 1
        return entry

    def set(self, req: dict[str, Any], proof: str, public_inputs: list[str]) -> None:
        if len(self.entries) >= self.max_size:
            self._evict_oldest()
        self.entries[cache_key(req)] = CachedProof(proof, list(public_inputs), self._clock())

    def _evict_oldest(self) -> None:
        if self.entries:
            oldest = min(self.entries, key=lambda k: self.entries[k].generated_at)
            del self.entries[oldest]

    def sweep(self) -> int:
        """The 5-minute cleanup of expired entries."""
        now = self._clock()
        expired = [k for k, e in self.entries.items() if now - e.generated_at > self.ttl_s]
        for k in expired:
            del self.entries[k]
        return len(expired)

    def stats(self) -> dict[str, int]:
        return {
            "maxSize": self.max_size,
            "size": len(self.entries),
            "totalAccess": sum(e.access_count for e in self.entries.values()),
            "ttlSeconds": int(self.ttl_s),
        }
