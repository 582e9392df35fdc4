"""The Observatory against a real drill: which sources it runs, what reaches the sink, how it
follows discovery, survives a faulty source, keeps the threading rule, and stops."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time

import pytest

from x402console.config import load_config
from x402console.settings.model import Settings
from x402console.sources.hub import Observatory
from x402console.sources.models import ComponentState, FleetMetrics, HealthSample, ReplicaSet, SourceStatus
from x402console.sources.prometheus import PrometheusSource
from x402console.sources.scrape import ScrapeSource
from tests.integration.test_http_sources import Collector

pytestmark = pytest.mark.timeout(120)


def fast(settings: Settings, refresh: float = 0.25) -> Settings:
    return dataclasses.replace(settings, ui=dataclasses.replace(settings.ui, refresh_seconds=refresh))


def source_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("source:") and not t.done()]


class Faulty:
    """Breaks the contract: raises on its first run, then behaves."""

    name = "faulty"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, sink, stop: asyncio.Event) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("boom")
        sink(SourceStatus(self.name, True, updated_at=time.time()))
        await stop.wait()


class FromThread:
    """Delivers a snapshot from a worker thread, as a careless Docker source might."""

    name = "threaded"

    async def run(self, sink, stop: asyncio.Event) -> None:
        worker = threading.Thread(target=sink, args=(SourceStatus(self.name, True, updated_at=time.time()),))
        worker.start()
        await asyncio.to_thread(worker.join)
        await stop.wait()


class Discovery:
    """Announces a replica set with only prover-2 once told to."""

    name = "discovery"

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def run(self, sink, stop: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(self.go.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait((waiter, stopper), return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if stop.is_set():
            return
        sink(ReplicaSet(tuple(r for r in self.hub.replicas if r.name == "prover-2"), time.time()))
        await stop.wait()


async def test_observatory_collects_follows_discovery_and_stops_clean(drill_factory):
    env = drill_factory(nginx="on", traffic_rate=4, traffic_clients=50)
    settings = fast(load_config(env.state.config))
    assert not settings.prometheus.url  # the drill has no Prometheus here: scrape instead
    sink = Collector()
    discovery, faulty = Discovery(), Faulty()
    hub = Observatory(settings, sink, extra_sources=[discovery, faulty, FromThread()])
    discovery.hub = hub
    assert [r.name for r in hub.replicas] == ["prover-1", "prover-2"]
    before = len(asyncio.all_tasks())
    await hub.start()
    try:
        assert set(hub.sources) == {"health", "scrape", "components", "discovery", "faulty", "threaded"}
        assert isinstance(hub.sources["scrape"], ScrapeSource)
        for name in ("prover-1", "prover-2"):
            await sink.wait(f"{name} health", lambda s, n=name: isinstance(s, HealthSample) and s.replica == n
                            and s.ok, timeout=10)
        await sink.wait("fleet metrics", lambda s: isinstance(s, FleetMetrics) and s.proof_rate is not None,
                        timeout=15)
        nginx = await sink.wait("nginx", lambda s: isinstance(s, ComponentState) and s.name == "nginx", timeout=10)
        assert nginx.ok and "HTTP" in nginx.detail and "0 deny lines" in nginx.detail

        # a source that raised was reported and restarted; the others never noticed
        crashed = await sink.wait("faulty reported", lambda s: isinstance(s, SourceStatus) and s.name == "faulty"
                                  and not s.ok, timeout=5)
        assert "RuntimeError: boom" in crashed.error and crashed.retry_in is not None
        await sink.wait("faulty restarted", lambda s: isinstance(s, SourceStatus) and s.name == "faulty" and s.ok,
                        timeout=5)
        assert faulty.runs == 2

        # the snapshot sent from a thread reached the sink on the loop thread
        await sink.wait("threaded", lambda s: isinstance(s, SourceStatus) and s.name == "threaded", timeout=5)
        assert sink.threads == {threading.get_ident()}

        fresh = hub.freshness()
        assert fresh["health"] < 5 and fresh["scrape"] < 5 and fresh["components"] < 10
        assert math.isinf(fresh["discovery"])  # has not delivered anything yet

        # discovery now says only prover-2 exists: probes of prover-1 stop
        discovery.go.set()
        await sink.wait("replica set", lambda s: isinstance(s, ReplicaSet), timeout=5)
        assert [r.name for r in hub.replicas] == ["prover-2"]
        await asyncio.sleep(3 * settings.ui.refresh_seconds)  # the next tick cancels prover-1's chain
        switched = time.monotonic()
        await asyncio.sleep(6 * settings.ui.refresh_seconds)
        later = {s.replica for s in sink.of(HealthSample, since=switched)}
        assert later == {"prover-2"}
        assert hub.statuses()["health"].ok
    finally:
        cancelled = await asyncio.wait_for(hub.stop(), timeout=10)
    assert cancelled == []
    assert source_tasks() == []
    assert not hub.running
    assert len(asyncio.all_tasks()) <= before
    count = len(sink.items)
    await asyncio.sleep(3 * settings.ui.refresh_seconds)
    assert len(sink.items) == count  # nothing arrives after stop()


async def test_observatory_picks_prometheus_when_configured_and_stops_despite_a_hung_replica(drill_factory):
    env = drill_factory(prometheus="on")
    settings = fast(load_config(env.state.config))
    assert settings.prometheus.url
    sink = Collector()
    hub = Observatory(settings, sink)
    await hub.start()
    try:
        assert isinstance(hub.sources["prometheus"], PrometheusSource)
        await sink.wait("prometheus component", lambda s: isinstance(s, ComponentState) and s.name == "prometheus"
                        and s.ok, timeout=20)
        await sink.wait("fleet metrics", lambda s: isinstance(s, FleetMetrics) and s.source == "prometheus",
                        timeout=20)
        await asyncio.to_thread(env.control(env.replicas[0]).set_fault, "hang")
        await asyncio.sleep(1.0)  # prover-1's probe is now stuck waiting for its 5 s timeout
    finally:
        # the stuck probe is abandoned at once: every source returns by itself, none is cancelled
        cancelled = await asyncio.wait_for(hub.stop(grace=3), timeout=8)
    assert cancelled == []
    assert source_tasks() == []
