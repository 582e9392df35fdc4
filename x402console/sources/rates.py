"""Rates and quantiles computed by the console itself, the way Prometheus computes them.

Needed when the console scrapes /metrics directly (no Prometheus, or to cross-check it): the
runbook's thresholds are rates (errors > 20 %, proofs < 10/s) and a p95 (> 5 s), and a prover
restart resets every counter to zero in the middle of an incident.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Hashable, Iterable, NamedTuple, Sequence

__all__ = [
    "CounterRate",
    "QuantileEstimate",
    "histogram_quantile",
    "bucket_rate_quantile",
    "error_ratio",
    "RollingSeries",
]


class CounterRate:
    """Per-second rate of counters from scraped (ts, value) samples, reset-aware.

    A value lower than the one before means the process restarted and the counter began again
    at zero; as in Prometheus's rate(), the previous value is added back, so the increase
    across the reset is counted as ``previous + new`` rather than a negative jump.

    The rate is the corrected increase divided by the time between the first and the last
    sample inside the window. Unlike Prometheus it does not extrapolate to the window's edges:
    the console shows what was observed. Samples are kept per series in a deque bounded both by
    the window and by ``max_samples``. A sample not newer than the last one of its series is
    ignored (clock step or a repeated scrape); NaN samples are ignored.
    """

    def __init__(self, window_seconds: float = 300.0, max_samples: int = 1024) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if max_samples < 2:
            raise ValueError("max_samples must be at least 2")
        self.window = float(window_seconds)
        self.max_samples = max_samples
        self._series: dict[Hashable, deque[tuple[float, float]]] = {}

    def observe(self, series: Hashable, ts: float, value: float) -> None:
        if not (math.isfinite(ts) and isinstance(value, (int, float)) and not math.isnan(value)):
            return
        samples = self._series.get(series)
        if samples is None:
            samples = self._series[series] = deque(maxlen=self.max_samples)
        elif samples and ts <= samples[-1][0]:
            return
        samples.append((float(ts), float(value)))
        horizon = ts - self.window
        while samples and samples[0][0] < horizon:
            samples.popleft()

    def forget(self, series: Hashable) -> None:
        self._series.pop(series, None)

    def series(self) -> list[Hashable]:
        return list(self._series)

    def _window(self, series: Hashable, now: float | None) -> list[tuple[float, float]]:
        samples = self._series.get(series)
        if not samples:
            return []
        end = samples[-1][0] if now is None else now
        start = end - self.window
        return [s for s in samples if start <= s[0] <= end]

    def increase(self, series: Hashable, now: float | None = None) -> float | None:
        """Reset-corrected increase over the window; None with fewer than two samples."""
        window = self._window(series, now)
        if len(window) < 2:
            return None
        correction = 0.0
        previous = window[0][1]
        for _, value in window[1:]:
            if value < previous:
                correction += previous
            previous = value
        return window[-1][1] - window[0][1] + correction

    def rate(self, series: Hashable | None = None, now: float | None = None) -> float | None:
        """Per-second rate of one series, or with ``series=None`` the sum over every series
        that has a rate (None when none has)."""
        if series is None:
            rates = [r for r in (self.rate(s, now) for s in list(self._series)) if r is not None]
            return math.fsum(rates) if rates else None
        window = self._window(series, now)
        if len(window) < 2:
            return None
        elapsed = window[-1][0] - window[0][0]
        if elapsed <= 0:
            return None
        inc = self.increase(series, now)
        return None if inc is None else inc / elapsed


class QuantileEstimate(NamedTuple):
    """A quantile read from a classic histogram.

    ``lower_bound`` is True when the quantile lies in the +Inf bucket: Prometheus then returns
    the highest finite bucket bound, so the real value is at least ``value`` and could be far
    more. The prover's duration histogram tops out at 2 s, so a p95 above 2 s (the runbook's
    threshold is 5 s) can only be shown as "> 2 s".
    """

    value: float
    lower_bound: bool = False


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> QuantileEstimate:
    """Prometheus's bucketQuantile (promql/quantile.go), step for step.

    ``buckets`` are (upper bound ``le``, cumulative count) in any order. NaN when q is NaN,
    there are fewer than two buckets, the highest bound is not +Inf, or the count is 0; -Inf
    for q < 0 and +Inf for q > 1. Counts are made monotonic first (the same envelope Prometheus
    uses, after its 1e-12 relative precision correction).
    """
    nan = QuantileEstimate(math.nan)
    if math.isnan(q):
        return nan
    if q < 0:
        return QuantileEstimate(-math.inf)
    if q > 1:
        return QuantileEstimate(math.inf)
    ordered = sorted(((float(le), float(c)) for le, c in buckets if not math.isnan(float(le))), key=lambda b: b[0])
    if not ordered or not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return nan
    # coalesce buckets with the same upper bound
    merged: list[list[float]] = []
    for le, count in ordered:
        if merged and merged[-1][0] == le:
            merged[-1][1] += count
        else:
            merged.append([le, count])
    # correctPrecisionErrors(buckets, 1e-12)
    prev = merged[0][1]
    for b in merged[1:]:
        delta = abs(b[1] - prev)
        if delta == 0:
            continue
        if b[1] != 0 and delta / b[1] <= 1e-12:
            b[1] = prev
        else:
            prev = b[1]
    # ensureMonotonic
    top = merged[0][1]
    for b in merged[1:]:
        if b[1] > top:
            top = b[1]
        elif b[1] < top:
            b[1] = top
    if len(merged) < 2:
        return nan
    observations = merged[-1][1]
    if observations == 0 or math.isnan(observations):
        return nan
    rank = q * observations
    # sort.Search over all but the last bucket: first index with count >= rank
    b = len(merged) - 1
    for i in range(len(merged) - 1):
        if merged[i][1] >= rank:
            b = i
            break
    if b == len(merged) - 1:
        return QuantileEstimate(merged[-2][0], True)
    if b == 0 and merged[0][0] <= 0:
        return QuantileEstimate(merged[0][0])
    bucket_start = 0.0
    bucket_end = merged[b][0]
    count = merged[b][1]
    if b > 0:
        bucket_start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return QuantileEstimate(bucket_start + (bucket_end - bucket_start) * (rank / count))


def bucket_rate_quantile(
    q: float, earlier_buckets: Sequence[tuple[float, float]], later_buckets: Sequence[tuple[float, float]]
) -> QuantileEstimate:
    """Quantile of the observations made between two cumulative snapshots of a histogram, what
    ``histogram_quantile(q, rate(x_bucket[w]))`` gives (the rate's divisor cancels out).

    A restart resets every bucket together, so if any bucket went down the later snapshot is
    taken as the whole window's increase (like rate()'s reset correction for two samples).
    Buckets present only in the later snapshot count from zero. No new observations -> NaN.
    """
    before = {float(le): float(c) for le, c in earlier_buckets}
    after = [(float(le), float(c)) for le, c in later_buckets]
    if any(c < before.get(le, 0.0) for le, c in after):
        return histogram_quantile(q, after)
    return histogram_quantile(q, [(le, c - before.get(le, 0.0)) for le, c in after])


def error_ratio(errors_rate: float | None, proofs_rate: float | None) -> float | None:
    """Share of attempts that failed: errors / (errors + proofs), in [0, 1].

    ``proof_generation_total`` counts successful proofs only and ``..._errors_total`` the
    failures, so together they are the attempts. Semantics chosen so that nothing divides by
    zero and "no traffic" is never shown as "0 % errors":
    - None when either rate is unknown (None or NaN) or negative (bad data);
    - None when both are 0: no attempts in the window, so no ratio (the caller says "no traffic");
    - infinite rates: all errors -> 1.0, all proofs -> 0.0, both -> None.
    """
    if errors_rate is None or proofs_rate is None:
        return None
    errors = float(errors_rate)
    proofs = float(proofs_rate)
    if math.isnan(errors) or math.isnan(proofs) or errors < 0 or proofs < 0:
        return None
    if math.isinf(errors) or math.isinf(proofs):
        if math.isinf(errors) and math.isinf(proofs):
            return None
        return 1.0 if math.isinf(errors) else 0.0
    attempts = errors + proofs
    if attempts == 0:
        return None
    return errors / attempts


class RollingSeries:
    """A bounded time series for the charts: points older than the window (measured from the
    newest point) are dropped, and at most ``max_points`` are kept. Out-of-order points
    (ts not after the newest) are ignored so a chart never runs backwards."""

    def __init__(self, window_seconds: float, max_points: int = 3600) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if max_points < 1:
            raise ValueError("max_points must be at least 1")
        self.window = float(window_seconds)
        self._points: deque[tuple[float, float]] = deque(maxlen=max_points)

    def append(self, ts: float, value: float) -> bool:
        if not math.isfinite(ts):
            return False
        points = self._points
        if points and ts <= points[-1][0]:
            return False
        points.append((float(ts), float(value)))
        horizon = ts - self.window
        while points and points[0][0] < horizon:
            points.popleft()
        return True

    def __len__(self) -> int:
        return len(self._points)

    def points(self) -> list[tuple[float, float]]:
        return list(self._points)

    def timestamps(self) -> list[float]:
        return [p[0] for p in self._points]

    def values(self, finite_only: bool = False) -> list[float]:
        if finite_only:
            return [p[1] for p in self._points if math.isfinite(p[1])]
        return [p[1] for p in self._points]

    @property
    def latest(self) -> tuple[float, float] | None:
        return self._points[-1] if self._points else None

    def span(self) -> tuple[float, float] | None:
        """(min, max) of the finite values, None when there are none."""
        finite = self.values(finite_only=True)
        return (min(finite), max(finite)) if finite else None

    def clear(self) -> None:
        self._points.clear()
