"""Signals from what the live console already observes (its ObservationStore), plus the log
counts, which the store does not keep (the app hands log batches straight to the log pane):
the app feeds those to a LogCounter and passes it here.

Pure: no I/O. Old data is not used as if it were current: a health sample or fleet metrics
older than the staleness limit are left out and named in ``unobserved``, so severity says
"not observed" instead of judging on numbers from before a source broke.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable

from x402console.core.observations import ObservationStore, Series
from x402console.core.signals import ReplicaSignal, Signals
from x402console.status.combine import choose_error_ratio, choose_latency, choose_proof_rate
from x402console.status.logcount import LogCounter, LogSnapshot
from x402console.status.trend import memory_trend

__all__ = ["signals_from_store", "slope", "stale_after", "merge_rate_limited"]

# A memory slope needs this much history; shorter, a garbage collection looks like a trend.
MIN_SLOPE_SPAN_SECONDS = 5.0
MIN_SLOPE_POINTS = 3


def stale_after(settings: Any) -> float:
    """Seconds after which a sample no longer describes the present."""
    refresh = float(settings.ui.refresh_seconds)
    timeout = float(max(settings.prover.health_timeout_seconds, settings.prometheus.timeout_seconds))
    return max(30.0, 5 * refresh + 2 * timeout)


def slope(points: Iterable[tuple[float, float]], start: float | None = None) -> float | None:
    """The memory trend of the points at or after ``start`` (trend.memory_trend); None with
    fewer than MIN_SLOPE_POINTS points or a span under MIN_SLOPE_SPAN_SECONDS."""
    pts = [(t, v) for t, v in points if start is None or t >= start]
    return memory_trend(pts, min_points=MIN_SLOPE_POINTS, min_span=MIN_SLOPE_SPAN_SECONDS)


def merge_rate_limited(metric: float | None, logs: float | None) -> float | None:
    """The as-coded prover never increments rate_limit_exceeded_total (its 429s show only in
    the access log), so a 0 from the metric must not hide 429s the logs saw."""
    known = [v for v in (metric, logs) if v is not None and math.isfinite(v)]
    return max(known) if known else None


def _baseline(series: Series, now: float, window: float) -> float | None:
    """Median proof rate of the older half of the window: what the service usually does."""
    start, recent = now - window, now - window / 2
    values = [v for t, v in series.points if start <= t < recent]
    return statistics.median(values) if len(values) >= 3 else None


def signals_from_store(
    store: ObservationStore,
    settings: Any,
    now: float,
    *,
    logs: LogCounter | LogSnapshot | None = None,
    window_seconds: float | None = None,
    db_integrity: str | None = None,
    db_error: str | None = None,
    vk_status: str | None = None,
) -> Signals:
    """One Signals picture of the store at ``now``.

    ``logs``: the LogCounter the app feeds with every LogBatch (or a snapshot of it); without
    it the log-based signals stay unknown. ``window_seconds``: the window for log counts, the
    memory slope and the rate baseline (default: [metrics] window_minutes, at most the store's).
    ``db_integrity``/``db_error``/``vk_status``: results of the database and key checks when
    the app has run them (the store does not hold them).
    """
    window = float(window_seconds) if window_seconds else float(settings.metrics.window_minutes) * 60.0
    window = max(1.0, min(window, store.window)) if store.window else max(1.0, window)
    limit_age = stale_after(settings)
    unobserved: list[str] = []

    metrics = store.metrics
    if metrics is not None and now - metrics.ts > limit_age:
        unobserved.append(f"metrics: newest sample is {now - metrics.ts:.0f} s old ({metrics.source})")
        metrics = None
    elif metrics is None:
        unobserved.append("metrics: no sample yet")

    replicas: list[ReplicaSignal] = []
    memory_limit_default = float(settings.prover.memory_limit_bytes) if settings.prover.memory_limit_bytes > 0 else None
    for name in store.replica_names():
        health = store.health.get(name)
        up: bool | None = None
        if health is not None:
            if now - health.ts <= limit_age:
                up = health.ok
            else:
                unobserved.append(f"health of {name}: newest probe is {now - health.ts:.0f} s old")
        runtime = store.runtime.get(name)
        if runtime is not None and now - runtime.ts > limit_age:
            unobserved.append(f"state of {name}: newest reading is {now - runtime.ts:.0f} s old")
            runtime = None
        memory = None
        if runtime is not None and runtime.mem_used is not None:
            memory = float(runtime.mem_used)
        elif metrics is not None and name in metrics.rss_bytes:
            memory = float(metrics.rss_bytes[name])
        limit = float(runtime.mem_limit) if runtime is not None and runtime.mem_limit else memory_limit_default
        rss_series = store.rss.get(name)
        growth = slope(rss_series.points, now - window) if rss_series is not None else None
        replicas.append(
            ReplicaSignal(
                name=name,
                up=up,
                state=runtime.state if runtime is not None else None,
                restarts=runtime.restart_count if runtime is not None else None,
                memory_bytes=memory,
                memory_limit_bytes=limit,
                memory_growth_bytes_per_s=growth,
            )
        )

    snap: LogSnapshot | None
    if isinstance(logs, LogCounter):
        snap = logs.snapshot(window, now)
    else:
        snap = logs
    if snap is None:
        unobserved.append("logs: not counted")

    verification = 0
    if snap is not None:
        verification = snap.verification_failures
    if metrics is not None and metrics.verification_failure_rate:
        # The metric's rate is over one minute: its increase there is what it has seen.
        verification = max(verification, int(round(metrics.verification_failure_rate * 60.0)))

    components = {name: ("up" if c.ok else "down") for name, c in store.components.items()}
    for status in store.failing_sources():
        unobserved.append(f"{status.name}: {status.error or 'failing'}")

    # The store's metrics cover Prometheus' or the scraper's minute: they win, except that a
    # p95 in the histogram's +Inf bucket yields to the access log's real durations.
    latency = choose_latency(
        metrics.p50_seconds if metrics is not None else None,
        metrics.p95_seconds if metrics is not None else None,
        bool(metrics.p95_lower_bound) if metrics is not None else False,
        None,
        snap,
    )
    return Signals(
        taken_at=now,
        replicas=tuple(replicas),
        proof_rate=choose_proof_rate(metrics.proof_rate if metrics is not None else None, None, snap),
        proof_rate_baseline=_baseline(store.series["proof_rate"], now, window),
        error_ratio=choose_error_ratio(metrics.error_ratio if metrics is not None else None, None, snap),
        latency_p50=latency.p50,
        latency_p95=latency.p95,
        latency_p95_at_least=latency.at_least,
        rate_limited_rate=merge_rate_limited(
            metrics.rate_limited_rate if metrics is not None else None,
            snap.rate_limited_rate if snap is not None else None,
        ),
        active_requests=metrics.active_requests if metrics is not None else None,
        verification_failures=verification,
        log_counts=dict(snap.counts) if snap is not None else {},
        log_lines=snap.lines if snap is not None else None,
        top_client=snap.top_client if snap is not None else None,
        top_client_share=snap.top_client_share if snap is not None else None,
        top_client_requests=snap.top_client_requests if snap is not None else None,
        db_integrity=db_integrity,
        db_error=db_error,
        vk_status=vk_status,
        components=components,
        alerts_firing=tuple(dict.fromkeys(a.name for a in store.firing_alerts())),
        unobserved=tuple(unobserved),
    )
