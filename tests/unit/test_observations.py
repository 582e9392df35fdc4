from dataclasses import dataclass, field

from x402console.core.observations import (
    T_ALERTS,
    T_HEALTH,
    T_METRICS,
    T_REPLICAS,
    ObservationStore,
)
from x402console.sources.models import FleetMetrics, HealthSample, ReplicaIdentity, ReplicaSet, RuntimeState
from x402console.sources.prometheus import AlertsSnapshot, MetricsHistory


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_series_keep_only_the_window_and_skip_gaps():
    clock = Clock()
    store = ObservationStore(window_seconds=60, clock=clock)
    for i in range(200):
        clock.t = 1000 + i
        store.apply(FleetMetrics(ts=clock.t, source="scrape", proof_rate=float(i), error_ratio=None))
    pts = list(store.series["proof_rate"].points)
    assert pts[0][0] >= clock.t - 60 and pts[-1] == (clock.t, 199.0)
    assert len(pts) == 61
    assert list(store.series["error_ratio"].points) == []  # None is a gap, not a zero


def test_nan_and_out_of_order_samples_are_not_plotted():
    store = ObservationStore(clock=Clock(2000))
    store.apply(FleetMetrics(ts=1990, source="scrape", proof_rate=float("nan")))
    store.apply(FleetMetrics(ts=1995, source="scrape", proof_rate=3.0))
    store.apply(FleetMetrics(ts=1994, source="scrape", proof_rate=9.0))
    assert list(store.series["proof_rate"].points) == [(1995, 3.0)]


def test_topics_say_what_changed():
    store = ObservationStore(clock=Clock())
    r = ReplicaIdentity("prover-1", "url", "http://127.0.0.1:1/health", "http://127.0.0.1:1/metrics")
    assert store.apply(ReplicaSet((r,))) >= {T_REPLICAS}
    assert store.apply(HealthSample("prover-1", True, 999.0)) == {T_HEALTH}
    assert store.apply(FleetMetrics(ts=1, source="scrape")) == {T_METRICS}
    assert store.apply(AlertsSnapshot(alerts=(), ts=1.0)) == {T_ALERTS}
    assert store.apply(object()) == set()


def test_replicas_that_disappear_take_their_state_with_them():
    store = ObservationStore(clock=Clock())
    a = ReplicaIdentity("prover-1", "url", "h", "m")
    b = ReplicaIdentity("prover-2", "url", "h", "m")
    store.apply(ReplicaSet((a, b)))
    store.apply(HealthSample("prover-2", True, 1.0))
    store.apply(RuntimeState("prover-2", "running", 1.0))
    store.apply(ReplicaSet((a,)))
    assert "prover-2" not in store.health and "prover-2" not in store.runtime
    assert store.replica_names() == ["prover-1"]


def test_history_fills_the_charts_and_live_points_win():
    clock = Clock(1000)
    store = ObservationStore(window_seconds=600, clock=clock)
    store.apply(FleetMetrics(ts=990, source="prometheus", proof_rate=12.0))
    hist = MetricsHistory(ts=1000, start=400, end=1000, step=10,
                          series={"proof_rate": ((900, 11.0), (990, 5.0)), "rate_limited": ((900, 2.0),)},
                          rss_bytes={"prover-1": ((950, 1e8),)})
    store.apply(hist)
    assert list(store.series["proof_rate"].points) == [(900, 11.0), (990, 12.0)]
    assert list(store.series["rate_limited_rate"].points) == [(900, 2.0)]
    assert list(store.rss["prover-1"].points) == [(950, 1e8)]


def test_freshness_is_the_age_of_the_newest_good_sample():
    clock = Clock(100)
    store = ObservationStore(clock=clock)
    store.apply(HealthSample("prover-1", True, 90.0))
    store.apply(HealthSample("prover-1", False, 99.0))  # a failed probe is not fresh data
    assert store.freshness() == {"health": 10.0}
