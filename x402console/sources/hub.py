"""The Observatory: starts every observation source, feeds one sink, stops them all together.

Which sources run is decided from the settings: the health probes always; Prometheus when
``[prometheus] url`` is set, otherwise the console scrapes each replica's /metrics itself; the
component probe (nginx); plus whatever the caller adds (the Docker, process and log sources,
which need engines and files the caller has opened). All HTTP sources share one
httpx.AsyncClient (one connection pool, no proxy variables).

Threading rule: the sink is only ever called on the event loop thread that ran ``start()``.
Sources are asyncio tasks and call it directly; a source that works in a thread (the Docker
SDK's blocking streams) must hand snapshots over with ``loop.call_soon_threadsafe``, and if one
calls the wrapped sink from another thread anyway, the hub re-posts the call onto the loop
rather than running the app's sink off-thread. The app can therefore store snapshots without
locks (and a Textual app posts them as messages from there).

The hub also keeps its own bookkeeping from the snapshots that pass through: the current
replicas (ReplicaSet snapshots from discovery replace the static list, and the health and
scrape sources read it on their next tick), the newest status of every source, and when each
source last delivered data (``freshness``), so a pane can say "stale for 40 s".
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable


from x402console.sources.backoff import Backoff, sleep_or_stop
from x402console.sources.components import ComponentProbe
from x402console.sources.health import HealthProber, close_client, make_client
from x402console.sources.models import ReplicaIdentity, ReplicaSet, SourceStatus

if TYPE_CHECKING:
    import httpx

__all__ = ["Observatory", "static_replicas", "STOP_GRACE_SECONDS"]

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 3.0
Sink = Callable[[Any], None]


def _fallback_replicas(settings: Any) -> tuple[ReplicaIdentity, ...]:
    return tuple(
        ReplicaIdentity(
            name=r.name,
            kind="url",
            health_url=r.health_url,
            metrics_url=r.metrics_url,
            docker_host=r.docker_host,
            log_file=str(r.log_file) if r.log_file else None,
            control_url=r.control_url or None,
        )
        for r in settings.replicas
    )


def static_replicas(settings: Any) -> tuple[ReplicaIdentity, ...]:
    """The replicas known before any discovery runs: discovery.discover_static when that module
    is available (it knows pid files and kinds), else built from ``[[replicas]]`` here."""
    try:
        from x402console.sources import discovery  # lazy: it is optional for the hub
    except ImportError:
        return _fallback_replicas(settings)
    finder = getattr(discovery, "discover_static", None)
    if finder is None:
        return _fallback_replicas(settings)
    try:
        found = finder(settings)
    except Exception as exc:  # a discovery bug must not stop the console from watching URLs
        log.warning("discover_static failed, using [[replicas]] as written: %s", exc)
        return _fallback_replicas(settings)
    if isinstance(found, ReplicaSet):
        return tuple(found.replicas)
    return tuple(found)


def _source_name(source: Any, taken: set[str]) -> str:
    base = str(getattr(source, "name", "") or type(source).__name__)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}#{n}", n + 1
    taken.add(name)
    return name


class Observatory:
    """Runs the observation sources as tasks on the current event loop."""

    def __init__(self, settings: Any, sink: Sink, *, extra_sources: Iterable[Any] = (), early: Any = None) -> None:
        self.settings = settings
        self._early = early  # sources.early.EarlyFetch started before the UI, or None
        self._sink = sink
        self._extra = tuple(extra_sources)
        self._replicas: tuple[ReplicaIdentity, ...] = static_replicas(settings)
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task] = {}
        self._sources: dict[str, Any] = {}
        self._fresh: dict[str, float] = {}  # source -> monotonic time of its newest data
        self._statuses: dict[str, SourceStatus] = {}
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._started_at: float | None = None

    # ------------------------------------------------------------------ state
    @property
    def replicas(self) -> tuple[ReplicaIdentity, ...]:
        return self._replicas

    def replicas_provider(self) -> tuple[ReplicaIdentity, ...]:
        return self._replicas

    @property
    def sources(self) -> dict[str, Any]:
        return dict(self._sources)

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks.values())

    def statuses(self) -> dict[str, SourceStatus]:
        """The newest SourceStatus of every name seen (sources may report several names)."""
        return dict(self._statuses)

    def freshness(self) -> dict[str, float]:
        """Seconds since each source last delivered data; inf when it never has."""
        now = time.monotonic()
        return {name: (now - self._fresh[name]) if name in self._fresh else math.inf for name in self._sources}

    # ------------------------------------------------------------------ sources
    def _build_sources(self, client: httpx.AsyncClient) -> list[Any]:
        s = self.settings
        sources: list[Any] = [HealthProber(s, self.replicas_provider, client=client, early=self._early)]
        if s.prometheus.url:
            from x402console.sources.prometheus import PrometheusSource

            sources.append(PrometheusSource(s, self.replicas_provider, client=client))
        else:
            from x402console.sources.scrape import ScrapeSource

            sources.append(ScrapeSource(s, self.replicas_provider, client=client, early=self._early))
        # nginx is watched where it is part of the set-up: a URL to probe, or the deny file the
        # block action writes. A host without nginx then shows no false alarm.
        if s.nginx.url or Path(s.nginx.deny_file).exists():
            sources.append(ComponentProbe(s, client=client))
        sources.extend(self._extra)
        return sources

    def _observe(self, name: str, snapshot: Any) -> None:
        if isinstance(snapshot, ReplicaSet):
            self._replicas = tuple(snapshot.replicas)
        if isinstance(snapshot, SourceStatus):
            self._statuses[snapshot.name] = snapshot
            if not snapshot.ok:
                return  # a failure report is not fresh data
        self._fresh[name] = time.monotonic()

    def _sink_for(self, name: str) -> Sink:
        def sink(snapshot: Any) -> None:
            if self._loop is not None and threading.get_ident() != self._loop_thread:
                # The threading rule, enforced: never run the app's sink off the loop thread.
                try:
                    self._loop.call_soon_threadsafe(sink, snapshot)
                except RuntimeError:
                    pass  # the loop is closed: the console is shutting down
                return
            self._observe(name, snapshot)
            try:
                self._sink(snapshot)
            except Exception:  # a rendering bug must not end the observation
                log.exception("sink failed for a %s snapshot from %s", type(snapshot).__name__, name)

        return sink

    async def _run_source(self, name: str, source: Any) -> None:
        """Runs one source; if it breaks the contract (raises or returns early) it is reported
        and restarted with backoff, so one faulty source never silences the others."""
        sink = self._sink_for(name)
        backoff = Backoff()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await source.run(sink, self._stop)
                if self._stop.is_set():
                    return
                error = "stopped unexpectedly"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("source %s failed", name)
                error = f"failed: {type(exc).__name__}: {exc}"
            if time.monotonic() - started > 60:
                backoff.reset()
            delay = backoff.next_delay()
            sink(SourceStatus(name, False, f"{name} {error}; restarting", retry_in=round(delay, 2),
                              attempts=backoff.failures))
            if await sleep_or_stop(self._stop, delay):
                return

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("Observatory already started")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop = asyncio.Event()
        s = self.settings
        pool = max(32, 8 * max(1, len(self._replicas)))
        urls = [s.prometheus.url, s.nginx.url] + [u for r in s.replicas for u in (r.health_url, r.metrics_url)]
        tls = any(str(u).startswith("https:") for u in urls if u) or s.discovery.mode != "static"
        self._client = make_client(max(s.prometheus.timeout_seconds, s.prover.health_timeout_seconds), pool, tls=tls,
                                   lean=True)
        taken: set[str] = set()
        self._sources = {}
        self._fresh = {}
        for source in self._build_sources(self._client):
            name = _source_name(source, taken)
            self._sources[name] = source
            self._tasks[name] = asyncio.create_task(self._run_source(name, source), name=f"source:{name}")
        self._started_at = time.monotonic()

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> list[str]:
        """Set stop, give the sources ``grace`` seconds to return, cancel the rest, close HTTP.

        Returns the names of the sources that had to be cancelled (they ignored ``stop``).
        """
        self._stop.set()
        running = {name: t for name, t in self._tasks.items() if not t.done()}
        cancelled: list[str] = []
        if running:
            _, pending = await asyncio.wait(running.values(), timeout=grace)
            cancelled = [name for name, t in running.items() if t in pending]
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)
        for t in self._tasks.values():
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.warning("source task %s ended with %r", t.get_name(), t.exception())
        self._tasks.clear()
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await asyncio.wait_for(close_client(client), timeout=grace)
            except (asyncio.TimeoutError, Exception) as exc:  # closing must not fail a shutdown
                log.warning("closing the HTTP client: %r", exc)
        if cancelled:
            log.warning("sources cancelled at stop (they did not honour the stop event): %s", cancelled)
        return cancelled

    async def __aenter__(self) -> "Observatory":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
