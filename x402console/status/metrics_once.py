"""Fleet metrics taken once, for the headless status: from Prometheus over the status window,
or from two direct /metrics scrapes of every replica a short interval apart.

Both give the same outcome shape, with the number of observations behind each figure, so the
collector can prefer the log-based figure when it rests on more requests (a 2 s scrape
interval at 5 proofs/s sees ten proofs; the access log of the last minute sees three hundred).
Nothing raises for what is observed: every failure is a line in ``unobserved``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import httpx

from x402console.sources.exposition import MAX_BYTES, parse_exposition
from x402console.sources.health import FetchError, fetch_bounded
from x402console.sources.http_url import METRICS_ACCEPT
from x402console.sources.models import ReplicaIdentity
from x402console.sources.promapi import PromAPIError, QueryResult, histogram_buckets, parse_alerts
from x402console.sources.prometheus import VERIFICATION_FAILURES, PrometheusSource, instance_of
from x402console.sources.rates import error_ratio, histogram_quantile
from x402console.status.trend import NOISE_FLOOR_BYTES, memory_trend
from x402console.sources.scrape import (
    DURATION_COUNT,
    ERRORS,
    PROOFS,
    VERIFICATIONS,
    FleetWindow,
    ReplicaReading,
    read_exposition,
)

__all__ = ["MetricsOutcome", "scrape_twice", "query_prometheus", "replica_increase"]

_ALERTS_LIMIT = 8 * 1024 * 1024


@dataclass(frozen=True)
class MetricsOutcome:
    source: str  # "prometheus" | "scrape"
    proof_rate: float | None = None
    error_rate: float | None = None
    error_ratio: float | None = None
    p50: float | None = None
    p95: float | None = None
    p95_at_least: bool = False
    rate_limited_rate: float | None = None
    active_requests: float | None = None
    verification_failures: int | None = None
    attempts: float | None = None  # proofs + errors behind error_ratio
    latency_observations: float | None = None  # histogram observations behind p50/p95
    proof_rate_baseline: float | None = None
    rss: Mapping[str, float] = field(default_factory=dict)
    rss_growth: Mapping[str, float] = field(default_factory=dict)  # bytes/s per replica
    restarted: tuple[str, ...] = ()  # replicas whose process changed between the scrapes
    alerts_firing: tuple[str, ...] = ()
    prometheus_up: bool | None = None
    has_fleet_data: bool = False
    unobserved: tuple[str, ...] = ()


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


# --------------------------------------------------------------------------- direct scrapes


def replica_increase(before: ReplicaReading, after: ReplicaReading, kind: str) -> float | None:
    """A counter's increase between two readings of one replica; a restart in between (a new
    start time, or the counter going down) means everything after it is new."""
    a = after.counters.get(kind)
    if a is None:
        return None
    b = before.counters.get(kind)
    new_process = (
        before.start_time is not None and after.start_time is not None and abs(after.start_time - before.start_time) > 0.5
    )
    if b is None or new_process or a < b:
        return a  # a series that first appears in the later scrape was at zero before
    return a - b


async def _scrape(client: httpx.AsyncClient, replica: ReplicaIdentity, names: Any, timeout: float) -> tuple[float, ReplicaReading]:
    fetched = await fetch_bounded(
        client, "GET", replica.metrics_url, timeout=timeout, limit=MAX_BYTES,
        headers={"Accept": METRICS_ACCEPT},
    )
    if fetched.status_code != 200:
        raise FetchError(f"HTTP {fetched.status_code} {fetched.reason}".rstrip())
    expo = parse_exposition(fetched.body, fetched.headers.get("content-type"))
    return time.time(), read_exposition(expo, names)


async def _scrape_all(client: httpx.AsyncClient, replicas: Sequence[ReplicaIdentity], names: Any,
                      timeout: float) -> list[tuple[float, ReplicaReading] | BaseException]:
    return list(await asyncio.gather(*(_scrape(client, r, names, timeout) for r in replicas), return_exceptions=True))


async def scrape_twice(
    settings: Any,
    replicas: Sequence[ReplicaIdentity],
    client: httpx.AsyncClient,
    *,
    interval: float,
    timeout: float,
) -> MetricsOutcome:
    """Scrape every replica, wait until ``interval`` after the first scrape began, scrape again;
    rates and quantiles are those of the requests in between."""
    names = settings.metrics
    started = time.monotonic()
    first = await _scrape_all(client, replicas, names, timeout)
    await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    second = await _scrape_all(client, replicas, names, timeout)

    unobserved: list[str] = []
    window = FleetWindow(window_seconds=interval * 4 + timeout * 2 + 10, gauge_max_age=interval * 4 + timeout * 2 + 10)
    attempts = latency_obs = 0.0
    have_pair = False
    verification: float | None = None
    rss: dict[str, float] = {}
    growth: dict[str, float] = {}
    restarted: list[str] = []
    lifetime: list[float] = []
    for replica, one, two in zip(replicas, first, second):
        readings = [x for x in (one, two) if not isinstance(x, BaseException)]
        errors = [x for x in (one, two) if isinstance(x, BaseException)]
        if errors:
            which = "both scrapes" if len(errors) == 2 else ("the first scrape" if isinstance(one, BaseException) else "the second scrape")
            unobserved.append(f"metrics of {replica.name}: {which} failed: {errors[-1]}")
        for ts, reading in readings:  # type: ignore[misc]
            window.observe(replica.name, ts, reading)
        if not readings:
            continue
        ts_last, last = readings[-1]  # type: ignore[misc]
        if last.rss_bytes is not None and math.isfinite(last.rss_bytes):
            rss[replica.name] = last.rss_bytes
        if last.start_time and ts_last > last.start_time:
            proofs_total = last.counters.get(PROOFS)
            if proofs_total is not None:
                lifetime.append(proofs_total / (ts_last - last.start_time))
        if len(readings) == 2:
            (t1, r1), (t2, r2) = readings  # type: ignore[misc]
            have_pair = True
            if r1.start_time is not None and r2.start_time is not None and abs(r2.start_time - r1.start_time) > 0.5:
                restarted.append(replica.name)
            elif r1.rss_bytes is not None and r2.rss_bytes is not None:
                trend = memory_trend([(t1, r1.rss_bytes), (t2, r2.rss_bytes)])
                if trend is not None:
                    growth[replica.name] = trend
            for kind in (PROOFS, ERRORS):
                inc = replica_increase(r1, r2, kind)
                attempts += inc or 0.0
            latency_obs += replica_increase(r1, r2, DURATION_COUNT) or 0.0
            vinc = replica_increase(r1, r2, VERIFICATIONS)
            if vinc is not None:
                verification = (verification or 0.0) + vinc
    fleet = window.metrics(time.time())
    return MetricsOutcome(
        source="scrape",
        proof_rate=fleet.proof_rate,
        error_rate=fleet.error_rate,
        error_ratio=fleet.error_ratio,
        p50=fleet.p50_seconds,
        p95=fleet.p95_seconds,
        p95_at_least=fleet.p95_lower_bound,
        rate_limited_rate=fleet.rate_limited_rate,
        active_requests=fleet.active_requests,
        verification_failures=int(round(verification)) if verification is not None else None,
        attempts=attempts if have_pair else None,
        latency_observations=latency_obs if have_pair else None,
        proof_rate_baseline=math.fsum(lifetime) if lifetime else None,
        rss=rss,
        rss_growth=growth,
        restarted=tuple(restarted),
        has_fleet_data=have_pair,
        unobserved=tuple(unobserved),
    )


# --------------------------------------------------------------------------- Prometheus


def _queries(settings: Any, window_seconds: float) -> dict[str, str]:
    m = settings.metrics
    job = settings.prometheus.job.replace("\\", "\\\\").replace('"', '\\"')
    sel = f'{{job="{job}"}}'
    w = f"{max(1, int(round(window_seconds)))}s"
    return {
        "proofs": f"sum(rate({m.proofs_total}{sel}[{w}]))",
        "errors": f"sum(rate({m.errors_total}{sel}[{w}]))",
        "buckets": f"sum by (le)(increase({m.duration_histogram}_bucket{sel}[{w}]))",
        "rate_limited": f"sum(rate({m.rate_limited_total}{sel}[{w}]))",
        "verification": f"sum(increase({VERIFICATION_FAILURES}{sel}[{w}]))",
        "active": f"sum({m.active_requests}{sel})",
        "rss": f"{m.resident_memory}{sel}",
        "rss_growth": f"deriv({m.resident_memory}{sel}[{w}])",
        "baseline": f"sum(rate({m.proofs_total}{sel}[{w}] offset {w}))",
    }


async def _alerts(client: httpx.AsyncClient, base_url: str, timeout: float) -> tuple[str, ...]:
    try:
        fetched = await fetch_bounded(client, "GET", base_url + "/api/v1/alerts", timeout=timeout,
                                      limit=_ALERTS_LIMIT, headers={"Accept": "application/json"})
    except FetchError as exc:
        raise PromAPIError(f"cannot reach {base_url}: {exc}", "unreachable") from exc
    try:
        obj = json.loads(fetched.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise PromAPIError("alerts: answer that is not JSON", "bad_response", fetched.status_code) from None
    parsed = parse_alerts(obj, fetched.status_code)
    return tuple(dict.fromkeys(a.name for a in parsed.alerts if a.state == "firing" and a.name))


def _by_replica(res: Any, names: Mapping[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(res, QueryResult):
        for smp in res.vector:
            if math.isfinite(smp.value):
                inst = smp.metric.get("instance", "")
                out[names.get(inst, inst or "?")] = smp.value
    return out


async def query_prometheus(
    settings: Any,
    replicas: Sequence[ReplicaIdentity],
    client: httpx.AsyncClient,
    *,
    window_seconds: float,
    timeout: float,
) -> MetricsOutcome:
    """Instant queries over the status window, evaluated at one moment, plus the firing alerts.

    ``prometheus_up`` False: nothing answered (the caller scrapes the replicas instead).
    ``has_fleet_data`` False: Prometheus answered but holds no samples of the proof counters
    for the job over the window (its targets may be down for longer than that).
    """
    source = PrometheusSource(settings, lambda: tuple(replicas), client=client, history=False)
    # Whole seconds: PrometheusSource sends the query timeout as f"{timeout:g}s", and
    # Prometheus rejects a fractional duration such as "1.6s" (HTTP 400 bad_data).
    source.timeout = float(max(1, math.floor(timeout)))
    exprs = _queries(settings, window_seconds)
    at = time.time()
    keys = list(exprs)
    outcomes = await asyncio.gather(
        *(source.query(client, exprs[k], at) for k in keys),
        _alerts(client, source.base_url, timeout + 1.0),
        return_exceptions=True,
    )
    for out in outcomes:
        if isinstance(out, BaseException) and not isinstance(out, Exception):
            raise out
    results: dict[str, Any] = dict(zip(keys, outcomes[: len(keys)]))
    alerts_out = outcomes[-1]
    failures = [r for r in outcomes if isinstance(r, Exception)]
    if len(failures) == len(outcomes):
        cause = str(failures[0])
        return MetricsOutcome(source="prometheus", prometheus_up=False, unobserved=(f"prometheus: {cause}",))
    unobserved = []
    seen_causes: set[str] = set()
    for key, res in list(results.items()) + [("alerts", alerts_out)]:
        if isinstance(res, Exception) and str(res) not in seen_causes:
            seen_causes.add(str(res))
            unobserved.append(f"prometheus {key}: {res}")

    def scalar(key: str) -> float | None:
        res = results.get(key)
        return _finite(res.first_value()) if isinstance(res, QueryResult) else None

    proofs, errors = scalar("proofs"), scalar("errors")
    p50 = p95 = None
    at_least = False
    observations = None
    res = results.get("buckets")
    if isinstance(res, QueryResult):
        buckets = histogram_buckets(res)
        if buckets:
            observations = max(c for _, c in buckets)
            e50, e95 = histogram_quantile(0.5, buckets), histogram_quantile(0.95, buckets)
            p50 = _finite(e50.value)
            if math.isfinite(e95.value):
                p95, at_least = e95.value, e95.lower_bound
    names: dict[str, str] = {}
    for r in replicas:
        for url in (r.metrics_url, r.health_url):
            inst = instance_of(url) if url else None
            if inst:
                names.setdefault(inst, r.name)
    verification = scalar("verification")
    has_data = proofs is not None or errors is not None
    if not has_data and not any(isinstance(r, Exception) for r in results.values()):
        unobserved.append(f"prometheus: no samples of {settings.metrics.proofs_total} for job "
                          f"{settings.prometheus.job!r} over the last {window_seconds:g} s")
    attempts = None
    if proofs is not None and errors is not None:
        attempts = (proofs + errors) * window_seconds
    return MetricsOutcome(
        source="prometheus",
        proof_rate=proofs,
        error_rate=errors,
        error_ratio=error_ratio(errors, proofs),
        p50=p50,
        p95=p95,
        p95_at_least=at_least,
        rate_limited_rate=scalar("rate_limited"),
        active_requests=scalar("active"),
        verification_failures=int(round(verification)) if verification is not None else None,
        attempts=attempts,
        latency_observations=observations,
        proof_rate_baseline=scalar("baseline"),
        rss=_by_replica(results.get("rss"), names),
        rss_growth={
            # deriv() over the window: under the noise floor over the window is no growth.
            name: (g if abs(g) * window_seconds >= NOISE_FLOOR_BYTES else 0.0)
            for name, g in _by_replica(results.get("rss_growth"), names).items()
        },
        alerts_firing=alerts_out if isinstance(alerts_out, tuple) else (),
        prometheus_up=True,
        has_fleet_data=has_data,
        unobserved=tuple(unobserved),
    )
