"""The latest of everything the sources reported, kept in one place (pure; no I/O, no UI).

The app feeds every snapshot into `ObservationStore.apply`, which returns the topics it changed
so that only the panes showing those topics redraw. Histories for the charts are bounded
rolling windows; nothing here grows without bound.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from x402console.sources.models import (
    ComponentState,
    FleetMetrics,
    HealthSample,
    ReplicaIdentity,
    ReplicaSet,
    RuntimeState,
    SourceStatus,
)

# Topics a snapshot can change; panes subscribe to the ones they show.
T_REPLICAS = "replicas"
T_HEALTH = "health"
T_RUNTIME = "runtime"
T_METRICS = "metrics"
T_ALERTS = "alerts"
T_TARGETS = "targets"
T_COMPONENTS = "components"
T_SOURCES = "sources"
T_LOGS = "logs"

# The chart series, in display order, with their units.
SERIES = (
    ("proof_rate", "proofs/s"),
    ("error_ratio", "ratio"),
    ("p50_seconds", "s"),
    ("p95_seconds", "s"),
    ("rate_limited_rate", "req/s"),
    ("active_requests", "requests"),
)


@dataclass
class Series:
    """A bounded (time, value) history over a rolling window."""

    window_seconds: float
    points: deque = field(default_factory=deque)

    def add(self, ts: float, value: float | None) -> None:
        if value is None or value != value:  # None and NaN are gaps, not zeros
            return
        if self.points and ts <= self.points[-1][0]:
            return  # an older or duplicate sample (e.g. history arriving after live data)
        self.points.append((ts, float(value)))
        self.trim(ts)

    def trim(self, now: float) -> None:
        cutoff = now - self.window_seconds
        while self.points and self.points[0][0] < cutoff:
            self.points.popleft()

    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None


class ObservationStore:
    def __init__(self, window_seconds: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self.window = window_seconds
        self.clock = clock
        self.replicas: tuple[ReplicaIdentity, ...] = ()
        self.health: dict[str, HealthSample] = {}
        self.runtime: dict[str, RuntimeState] = {}
        self.metrics: FleetMetrics | None = None
        self.alerts: tuple = ()
        self.targets: tuple = ()
        self.components: dict[str, ComponentState] = {}
        self.sources: dict[str, SourceStatus] = {}
        self.series: dict[str, Series] = {name: Series(window_seconds) for name, _ in SERIES}
        self.rss: dict[str, Series] = {}
        # newest successful sample per source kind, for the header's freshness display
        self.fresh: dict[str, float] = {}

    # ------------------------------------------------------------------ intake
    def apply(self, snap: Any) -> set[str]:
        now = self.clock()
        if isinstance(snap, ReplicaSet):
            self.replicas = snap.replicas
            names = {r.name for r in snap.replicas}
            for d in (self.health, self.runtime):
                for gone in set(d) - names:
                    del d[gone]
            return {T_REPLICAS, T_HEALTH, T_RUNTIME}
        if isinstance(snap, HealthSample):
            self.health[snap.replica] = snap
            if snap.ok:
                self.fresh["health"] = snap.ts
            return {T_HEALTH}
        if isinstance(snap, RuntimeState):
            self.runtime[snap.replica] = snap
            self.fresh["runtime"] = snap.ts
            return {T_RUNTIME}
        if isinstance(snap, FleetMetrics):
            self._apply_metrics(snap)
            return {T_METRICS}
        # Sources repeat an unchanged status on every poll; only a change is news for the panes
        # (a topic returned here makes the next frame redraw them at once).
        if isinstance(snap, ComponentState):
            before = self.components.get(snap.name)
            self.components[snap.name] = snap
            same = before is not None and (before.ok, before.detail) == (snap.ok, snap.detail)
            return set() if same else {T_COMPONENTS}
        if isinstance(snap, SourceStatus):
            before = self.sources.get(snap.name)
            self.sources[snap.name] = snap
            same = before is not None and (before.ok, before.error, before.retry_in, before.attempts) == (
                snap.ok, snap.error, snap.retry_in, snap.attempts)
            return set() if same else {T_SOURCES}
        kind = type(snap).__name__
        if kind == "AlertsSnapshot":
            self.alerts = tuple(getattr(snap, "alerts", ()))
            self.fresh["alerts"] = getattr(snap, "ts", now)
            return {T_ALERTS}
        if kind == "TargetsSnapshot":
            self.targets = tuple(getattr(snap, "targets", ()))
            return {T_TARGETS}
        if kind == "MetricsHistory":
            self._apply_history(snap)
            return {T_METRICS}
        return set()

    def _apply_metrics(self, m: FleetMetrics) -> None:
        self.metrics = m
        self.fresh["metrics"] = m.ts
        for name, _unit in SERIES:
            self.series[name].add(m.ts, getattr(m, name))
        for replica, value in m.rss_bytes.items():
            self.rss.setdefault(replica, Series(self.window)).add(m.ts, value)

    # The history's series names where they differ from FleetMetrics field names.
    _HISTORY_NAMES = {"rate_limited": "rate_limited_rate"}

    def _apply_history(self, hist: Any) -> None:
        """Fill the windows from a range query so charts are not empty at start-up."""
        for name, points in (getattr(hist, "series", {}) or {}).items():
            target = self.series.get(self._HISTORY_NAMES.get(name, name))
            if target is not None:
                self._merge(target, points)
        for replica, points in (getattr(hist, "rss_bytes", {}) or {}).items():
            self._merge(self.rss.setdefault(replica, Series(self.window)), points)

    def _merge(self, target: Series, points: Iterable[tuple[float, float]]) -> None:
        merged = dict(target.points)
        for t, v in points:
            if v == v:  # NaN is a gap
                merged.setdefault(float(t), float(v))
        target.points = deque(sorted(merged.items()))
        target.trim(self.clock())

    # ------------------------------------------------------------------ views
    def freshness(self, now: float | None = None) -> dict[str, float]:
        """Age in seconds of the newest sample from each source kind."""
        now = self.clock() if now is None else now
        return {k: max(0.0, now - ts) for k, ts in self.fresh.items()}

    def firing_alerts(self) -> list:
        return [a for a in self.alerts if getattr(a, "state", "") == "firing"]

    def failing_sources(self) -> list[SourceStatus]:
        return [s for s in self.sources.values() if not s.ok]

    def replica_names(self) -> list[str]:
        names = [r.name for r in self.replicas]
        for extra in list(self.health) + list(self.runtime):
            if extra not in names:
                names.append(extra)
        return names
