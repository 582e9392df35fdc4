"""signals_from_store: what the live console's ObservationStore holds, as one Signals."""

from __future__ import annotations

import pytest

from x402console.core.observations import ObservationStore
from x402console.core.severity import assess
from x402console.drill.sim.gofmt import gin_timestamp
from x402console.drill.sim.logs import gin_access_line
from x402console.settings.model import Settings
from x402console.sources.logparse import parse_log_line
from x402console.sources.models import (
    AlertState,
    ComponentState,
    FleetMetrics,
    HealthSample,
    ReplicaIdentity,
    ReplicaSet,
    RuntimeState,
    SourceStatus,
)
from x402console.sources.prometheus import AlertsSnapshot
from x402console.status.from_store import merge_rate_limited, signals_from_store, slope, stale_after
from x402console.status.logcount import LogCounter

NOW = 1_800_000_000.0
MIB = 2**20
SETTINGS = Settings()


def _store(now: float = NOW) -> ObservationStore:
    store = ObservationStore(window_seconds=600, clock=lambda: now)
    store.apply(ReplicaSet(tuple(
        ReplicaIdentity(n, "process", f"http://127.0.0.1:{p}/health", f"http://127.0.0.1:{p}/metrics")
        for n, p in (("prover-1", 8080), ("prover-2", 8081))
    )))
    return store


def _metrics(ts: float, **kw) -> FleetMetrics:
    base = dict(source="scrape", proof_rate=12.0, error_rate=0.0, error_ratio=0.0, p50_seconds=0.1,
                p95_seconds=0.3, active_requests=2.0)
    base.update(kw)
    return FleetMetrics(ts=ts, **base)


def test_replicas_metrics_components_and_alerts_come_through():
    store = _store()
    store.apply(HealthSample("prover-1", True, NOW - 1, 200))
    store.apply(HealthSample("prover-2", False, NOW - 1, error="connection refused"))
    store.apply(RuntimeState("prover-1", "running", NOW - 1, restart_count=2, mem_used=300 * MIB, mem_limit=512 * MIB))
    store.apply(RuntimeState("prover-2", "exited", NOW - 1, restart_count=0, exit_code=2))
    store.apply(_metrics(NOW - 1, error_ratio=0.27, p95_seconds=2.0, p95_lower_bound=True, rate_limited_rate=0.5,
                         rss_bytes={"prover-1": 310 * MIB}))
    store.apply(ComponentState("prometheus", False, "connection refused", NOW - 1))
    store.apply(ComponentState("nginx", True, "ok", NOW - 1))
    store.apply(AlertsSnapshot((
        AlertState("ProverServiceDown", "firing", "critical", None, None),
        AlertState("HighMemoryUsage", "pending", "warning", None, None),
    ), NOW - 1))

    s = signals_from_store(store, SETTINGS, NOW)

    one, two = s.replicas
    assert (one.name, one.up, one.state, one.restarts) == ("prover-1", True, "running", 2)
    assert one.memory_bytes == 300 * MIB and one.memory_limit_bytes == 512 * MIB  # /proc over the metric
    assert (two.up, two.state) == (False, "exited")
    assert two.memory_limit_bytes == SETTINGS.prover.memory_limit_bytes  # the configured limit
    assert s.error_ratio == 0.27
    assert s.latency_p95 == 2.0 and s.latency_p95_at_least
    assert s.rate_limited_rate == 0.5
    assert dict(s.components) == {"prometheus": "down", "nginx": "up"}
    assert s.alerts_firing == ("ProverServiceDown",)  # pending is not firing
    assert s.log_lines is None and "logs: not counted" in s.unobserved


def test_stale_samples_are_left_out_and_named():
    store = _store()
    old = NOW - stale_after(SETTINGS) - 5
    store.apply(HealthSample("prover-1", True, old, 200))
    store.apply(HealthSample("prover-2", True, NOW - 1, 200))
    store.apply(_metrics(old, error_ratio=0.5))
    s = signals_from_store(store, SETTINGS, NOW)
    assert [r.up for r in s.replicas] == [None, True]
    assert s.error_ratio is None and s.proof_rate is None
    assert any(u.startswith("health of prover-1") for u in s.unobserved)
    assert any(u.startswith("metrics: newest sample") for u in s.unobserved)
    assert assess(s, SETTINGS.severity).level is None  # nothing judged on old numbers


def test_failing_sources_are_unobserved():
    store = _store()
    store.apply(SourceStatus("scrape:prover-2", False, "prover-2: timed out after 5 s"))
    store.apply(SourceStatus("health", True))
    s = signals_from_store(store, SETTINGS, NOW)
    assert "scrape:prover-2: prover-2: timed out after 5 s" in s.unobserved
    assert not any(u.startswith("health:") for u in s.unobserved)


def test_memory_growth_is_the_slope_of_the_rss_history():
    clock = [NOW - 60]
    store = ObservationStore(window_seconds=600, clock=lambda: clock[0])
    store.apply(ReplicaSet((ReplicaIdentity("prover-1", "process", "h", "m"),)))
    for i in range(13):  # 5 MiB/s on prover-1 for a minute
        clock[0] = NOW - 60 + i * 5
        store.apply(_metrics(clock[0], rss_bytes={"prover-1": 100 * MIB + i * 25 * MIB}))
    s = signals_from_store(store, SETTINGS, NOW)
    assert s.replicas[0].memory_growth_bytes_per_s == pytest.approx(5 * MIB)
    assert s.replicas[0].memory_bytes == 400 * MIB


def test_slope_needs_enough_history_and_ignores_noise():
    assert slope([(0, 1.0), (1, 2.0)]) is None  # two points
    assert slope([(0, 0.0), (1, 1.0), (2, 2.0)]) is None  # span under 5 s
    flat = [(t, 50 * MIB + (t % 2) * MIB) for t in range(0, 60, 5)]  # 1 MiB of wobble
    assert slope(flat) == 0.0
    rising = [(t, 50 * MIB + t * MIB) for t in range(0, 60, 5)]
    assert slope(rising) == pytest.approx(MIB)
    assert slope(rising, start=30) == pytest.approx(MIB)


def test_baseline_is_the_median_rate_of_the_older_half_of_the_window():
    clock = [0.0]
    store = ObservationStore(window_seconds=600, clock=lambda: clock[0])
    store.apply(ReplicaSet((ReplicaIdentity("prover-1", "process", "h", "m"),)))
    for i in range(60):  # 10 minutes: 20 proofs/s, then 3/s in the last 2 minutes
        clock[0] = NOW - 600 + i * 10
        store.apply(_metrics(clock[0], proof_rate=20.0 if i < 48 else 3.0))
    s = signals_from_store(store, SETTINGS, NOW)
    assert s.proof_rate == 3.0
    assert s.proof_rate_baseline == 20.0
    assert assess(s, SETTINGS.severity).level == "P1"  # the runbook's "drops below 10 req/s"


def test_log_counter_supplies_log_signals_and_real_latency_beats_a_lower_bound():
    store = _store()
    store.apply(_metrics(NOW - 1, p50_seconds=1.5, p95_seconds=2.0, p95_lower_bound=True, rate_limited_rate=0.0))
    logs = LogCounter(clock=lambda: NOW)
    for i in range(10):
        text = gin_access_line(gin_timestamp(NOW - 10 + i), 200, int(6.5e9), f"203.0.113.{i}", "POST", "/generate-proof")
        logs.feed(parse_log_line(text.rstrip(), "prover-1"))
    for i in range(30):  # the as-coded prover's 429s show only in the access log
        text = gin_access_line(gin_timestamp(NOW - 5), 429, 10_000, "192.0.2.66", "POST", "/generate-proof")
        logs.feed(parse_log_line(text.rstrip(), "prover-2"))
    s = signals_from_store(store, SETTINGS, NOW, logs=logs, window_seconds=60)
    assert s.latency_p95 == pytest.approx(6.5) and not s.latency_p95_at_least
    assert s.rate_limited_rate is not None and s.rate_limited_rate > 0
    assert s.top_client == "192.0.2.66" and s.top_client_requests == 30
    assert s.log_count("rate_limit") == 30 and s.log_lines == 40
    assert "logs: not counted" not in s.unobserved
    assert assess(s, SETTINGS.severity).level == "P1"


def test_checks_the_store_does_not_hold_are_passed_through():
    s = signals_from_store(_store(), SETTINGS, NOW, db_integrity="failed", db_error="database disk image is malformed",
                           vk_status="changed")
    assert (s.db_integrity, s.db_error, s.vk_status) == ("failed", "database disk image is malformed", "changed")
    assert assess(s, SETTINGS.severity).level == "P0"


def test_merge_rate_limited_takes_the_larger_known_figure():
    assert merge_rate_limited(0.0, 3.0) == 3.0
    assert merge_rate_limited(2.0, None) == 2.0
    assert merge_rate_limited(None, None) is None
    assert merge_rate_limited(float("nan"), 1.0) == 1.0
