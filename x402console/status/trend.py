"""Memory trends from (time, bytes) samples, with a floor under which growth is not claimed.

A process's resident memory moves by a few MiB for reasons that are no leak (a cache filling,
the allocator keeping freed arenas), and a one-shot status samples only a few seconds. A rise
smaller than NOISE_FLOOR_BYTES over the samples is therefore reported as no growth (0 B/s)
rather than extrapolated: 1 MiB in 2 s read as a trend would put a healthy replica "at its
limit within hours".
"""

from __future__ import annotations

import math
from typing import Iterable

__all__ = ["least_squares_slope", "memory_trend", "NOISE_FLOOR_BYTES"]

NOISE_FLOOR_BYTES = 4 * 2**20


def least_squares_slope(points: Iterable[tuple[float, float]]) -> float | None:
    """Units per second through the points; None with fewer than two distinct times."""
    pts = [(t, v) for t, v in points if math.isfinite(t) and math.isfinite(v)]
    if len(pts) < 2:
        return None
    mt = math.fsum(t for t, _ in pts) / len(pts)
    mv = math.fsum(v for _, v in pts) / len(pts)
    den = math.fsum((t - mt) ** 2 for t, _ in pts)
    if den <= 0:
        return None
    return math.fsum((t - mt) * (v - mv) for t, v in pts) / den


def memory_trend(
    points: Iterable[tuple[float, float]],
    *,
    min_points: int = 2,
    min_span: float = 0.5,
    noise_floor: float = NOISE_FLOOR_BYTES,
) -> float | None:
    """Bytes per second, 0.0 when the fitted change over the span stays under ``noise_floor``,
    None with too few points or too short a span to say anything."""
    pts = sorted((t, v) for t, v in points if math.isfinite(t) and math.isfinite(v))
    if len(pts) < min_points or pts[-1][0] - pts[0][0] < min_span:
        return None
    slope = least_squares_slope(pts)
    if slope is None:
        return None
    if abs(slope * (pts[-1][0] - pts[0][0])) < noise_floor:
        return 0.0
    return slope
