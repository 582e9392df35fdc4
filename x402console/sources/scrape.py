"""Fleet metrics from scraping every replica's /metrics directly (no Prometheus configured).

The console then does what Prometheus would: keeps each replica's counters over the last
minute, computes per-second rates with counter resets handled (a prover restarted in the middle
of an incident starts its counters again at zero), and reads p50/p95 from the increase of the
summed duration buckets over the window, as ``histogram_quantile(q, sum by (le)(rate(...[1m])))``.

The arithmetic is pure (``read_exposition`` and ``FleetWindow``, unit-tested with exposition
texts); ``ScrapeSource`` only fetches and paces. A restart is recognised two ways: a counter
going down (as rate() does), or ``process_start_time_seconds`` changing, which also catches a
restarted process whose counters already climbed past their old values between two scrapes.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Hashable, Mapping


from x402console.sources.backoff import Backoff, ReplicaChains, sleep_or_stop, unless_stopped
from x402console.sources.exposition import (
    MAX_BYTES,
    Exposition,
    MetricFamily,
    histogram_buckets,
    parse_exposition,
    wanted_names,
)
from x402console.sources.health import FetchError, ReplicasProvider, Sink, fetch_bounded, make_client
from x402console.sources.http_url import METRICS_ACCEPT
from x402console.sources.models import FleetMetrics, ReplicaIdentity, SourceStatus
from x402console.sources.rates import CounterRate, error_ratio, histogram_quantile

if TYPE_CHECKING:
    import httpx

__all__ = ["ReplicaReading", "read_exposition", "FleetWindow", "ScrapeSource", "VERIFICATION_FAILURES", "START_TIME"]

VERIFICATION_FAILURES = "verification_failures_total"  # only the intended build exports it
START_TIME = "process_start_time_seconds"
WINDOW_SECONDS = 60.0
SECOND_SCRAPE_S = 0.3  # the first rate comes from two scrapes at least this far apart

# Counter kinds kept per replica; the duration histogram's _sum and _count are counters too.
PROOFS, ERRORS, RATE_LIMITED, VERIFICATIONS, DURATION_SUM, DURATION_COUNT = (
    "proofs", "errors", "rate_limited", "verification_failures", "duration_sum", "duration_count",
)
_BUCKET = "bucket"


@dataclass(frozen=True)
class ReplicaReading:
    """The numbers the fleet view needs from one scrape of one replica (None: not exported)."""

    counters: Mapping[str, float] = field(default_factory=dict)
    buckets: tuple[tuple[float, float], ...] = ()
    active_requests: float | None = None
    rss_bytes: float | None = None
    start_time: float | None = None


def _summed(fam: MetricFamily, sample_name: str) -> float | None:
    """Sum over the label sets of one sample name; a duplicated label set (malformed input)
    counts once, with its first value, so it cannot show up as a jump in the rate."""
    seen: dict[frozenset, float] = {}
    for smp in fam.samples:
        if smp.name == sample_name:
            seen.setdefault(frozenset(smp.labels.items()), smp.value)
    return math.fsum(seen.values()) if seen else None


def _counter_sum(expo: Exposition, name: str) -> float | None:
    """A counter summed over its labels (rate_limit_exceeded_total has one series per ip).

    A family declared with no samples yet (a labelled counter nobody has hit) is 0, not absent.
    """
    fam = expo.family(name)
    if fam is None:
        return None
    found = _summed(fam, name)
    if found is None and name == fam.name and fam.type == "counter":
        found = _summed(fam, name + "_total")
    if found is None and not fam.samples:
        return 0.0
    return found


def _gauge_sum(expo: Exposition, name: str) -> float | None:
    fam = expo.family(name)
    return None if fam is None else _summed(fam, name)


def read_names(names: Any) -> frozenset[str]:
    """What ``read_exposition`` reads, for ``parse_exposition(only=...)``; ``names`` is settings.metrics."""
    return wanted_names((names.proofs_total, names.errors_total, names.rate_limited_total, VERIFICATION_FAILURES,
                         names.duration_histogram, names.active_requests, names.resident_memory, START_TIME))


def read_exposition(expo: Exposition, names: Any) -> ReplicaReading:
    """Pick the fleet numbers out of a parsed scrape; ``names`` is settings.metrics."""
    counters: dict[str, float] = {}
    for kind, metric in (
        (PROOFS, names.proofs_total),
        (ERRORS, names.errors_total),
        (RATE_LIMITED, names.rate_limited_total),
        (VERIFICATIONS, VERIFICATION_FAILURES),
    ):
        v = _counter_sum(expo, metric)
        if v is not None and not math.isnan(v):
            counters[kind] = v
    hist_name = names.duration_histogram
    hist = expo.family(hist_name)
    buckets: tuple[tuple[float, float], ...] = ()
    if hist is not None:
        buckets = tuple((le, c) for le, c in histogram_buckets(hist) if not math.isnan(c))
        for kind, suffix in ((DURATION_SUM, "_sum"), (DURATION_COUNT, "_count")):
            v = _summed(hist, hist_name + suffix)
            if v is not None and not math.isnan(v):
                counters[kind] = v
    return ReplicaReading(
        counters=counters,
        buckets=buckets,
        active_requests=_gauge_sum(expo, names.active_requests),
        rss_bytes=expo.value(names.resident_memory),
        start_time=expo.value(START_TIME),
    )


class _Monotonic:
    """Turns a resetting counter into a monotonic one by adding back what was lost at resets."""

    __slots__ = ("last_raw", "offset")

    def __init__(self) -> None:
        self.last_raw: float | None = None
        self.offset = 0.0

    def adjust(self, raw: float, restarted: bool) -> float:
        if self.last_raw is not None and (restarted or raw < self.last_raw):
            self.offset += self.last_raw
        self.last_raw = raw
        return raw + self.offset


class FleetWindow:
    """Per-replica counter history over a sliding window, summed into FleetMetrics.

    Gauges (active requests, RSS) come from each replica's newest reading, and only while that
    reading is younger than ``gauge_max_age``: a replica that stopped answering must not keep
    adding its last active_requests to the fleet's.
    """

    def __init__(self, window_seconds: float = WINDOW_SECONDS, gauge_max_age: float = 15.0) -> None:
        self.window = float(window_seconds)
        self.gauge_max_age = float(gauge_max_age)
        self._rates = CounterRate(self.window, max_samples=4096)
        self._adjusters: dict[Hashable, _Monotonic] = {}
        self._latest: dict[str, tuple[float, ReplicaReading]] = {}
        self._keys: dict[str, set[Hashable]] = {}
        self.restarts: dict[str, int] = {}

    def replicas(self) -> list[str]:
        return list(self._latest)

    def observe(self, replica: str, ts: float, reading: ReplicaReading) -> bool:
        """Add one scrape; True when it shows the replica restarted since the previous one."""
        previous = self._latest.get(replica)
        if previous is not None and ts <= previous[0]:
            return False
        new_process = False
        if previous is not None:
            before, after = previous[1].start_time, reading.start_time
            new_process = before is not None and after is not None and abs(after - before) > 0.5
        values: dict[Hashable, float] = {(replica, kind): v for kind, v in reading.counters.items()}
        for le, count in reading.buckets:
            values[(replica, _BUCKET, le)] = count
        # Without a start time a reset shows only as counters going down; each series is then
        # corrected on its own, as rate() does, and the replica is counted as restarted.
        went_down = any(
            (adj := self._adjusters.get(key)) is not None and adj.last_raw is not None and v < adj.last_raw
            for key, v in values.items()
        )
        restarted = new_process or went_down
        if restarted:
            self.restarts[replica] = self.restarts.get(replica, 0) + 1
        known = self._keys.setdefault(replica, set())
        if new_process:
            for key in known - values.keys():  # not exported yet by the new process: it is at 0
                adj = self._adjusters.get(key)
                if adj is not None and adj.last_raw is not None:
                    adj.offset += adj.last_raw
                    adj.last_raw = 0.0
        for key, raw in values.items():
            adj = self._adjusters.get(key)
            if adj is None:
                adj = self._adjusters[key] = _Monotonic()
                if previous is not None and not new_process:
                    # A series that appears in a later scrape of the same process (a labelled
                    # counter's first hit) was zero at the previous scrape.
                    self._rates.observe(key, previous[0], 0.0)
            self._rates.observe(key, ts, adj.adjust(raw, new_process))
            known.add(key)
        self._latest[replica] = (ts, reading)
        return restarted

    def forget(self, replica: str) -> None:
        for key in self._keys.pop(replica, set()):
            self._rates.forget(key)
            self._adjusters.pop(key, None)
        self._latest.pop(replica, None)

    def _rate(self, kind: str, now: float) -> float | None:
        rates = []
        for replica, keys in self._keys.items():
            key = (replica, kind)
            if key in keys:
                r = self._rates.rate(key, now)
                if r is not None:
                    rates.append(r)
        return math.fsum(rates) if rates else None

    def _increase(self, kind: str, now: float) -> float | None:
        incs = []
        for replica, keys in self._keys.items():
            key = (replica, kind)
            if key in keys:
                inc = self._rates.increase(key, now)
                if inc is not None:
                    incs.append(inc)
        return math.fsum(incs) if incs else None

    def bucket_increase(self, now: float) -> list[tuple[float, float]]:
        """The window's increase per ``le``, summed over replicas (``sum by (le)``)."""
        sums: dict[float, float] = {}
        for keys in self._keys.values():
            for key in keys:
                if len(key) == 3 and key[1] == _BUCKET:  # type: ignore[arg-type]
                    inc = self._rates.increase(key, now)
                    if inc is not None:
                        le = key[2]  # type: ignore[index]
                        sums[le] = sums.get(le, 0.0) + inc
        return sorted(sums.items())

    def metrics(self, now: float, source: str = "scrape") -> FleetMetrics:
        proofs = self._rate(PROOFS, now)
        errors = self._rate(ERRORS, now)
        p50 = p95 = None
        lower = False
        buckets = self.bucket_increase(now)
        if buckets:
            e50 = histogram_quantile(0.5, buckets)
            e95 = histogram_quantile(0.95, buckets)
            p50 = e50.value if math.isfinite(e50.value) else None
            if math.isfinite(e95.value):
                p95, lower = e95.value, e95.lower_bound
        mean = None
        count_inc = self._increase(DURATION_COUNT, now)
        sum_inc = self._increase(DURATION_SUM, now)
        if count_inc and sum_inc is not None and count_inc > 0:
            mean = sum_inc / count_inc
        active: list[float] = []
        rss: dict[str, float] = {}
        for replica, (ts, reading) in self._latest.items():
            if now - ts > self.gauge_max_age:
                continue
            if reading.active_requests is not None and math.isfinite(reading.active_requests):
                active.append(reading.active_requests)
            if reading.rss_bytes is not None and math.isfinite(reading.rss_bytes):
                rss[replica] = reading.rss_bytes
        return FleetMetrics(
            ts=now,
            source=source,
            proof_rate=proofs,
            error_rate=errors,
            error_ratio=error_ratio(errors, proofs),
            p50_seconds=p50,
            p95_seconds=p95,
            p95_lower_bound=lower,
            mean_seconds=mean,
            rate_limited_rate=self._rate(RATE_LIMITED, now),
            active_requests=math.fsum(active) if active else None,
            rss_bytes=rss,
            verification_failure_rate=self._rate(VERIFICATIONS, now),
        )


def _first_issue(expo: Exposition) -> str:
    first = str(expo.errors[0])
    more = len(expo.errors) - 1
    return first + (f" (and {more} more)" if more > 0 else "")


class ScrapeSource:
    """Scrapes each replica's /metrics on its own chain and emits FleetMetrics(source="scrape")
    every refresh. Per replica, SourceStatus "scrape:<name>" says whether its scrape works
    (failures back off 1 s doubling to 30 s) or parsed with problems (data still used)."""

    name = "scrape"

    def __init__(
        self,
        settings: Any,
        replicas_provider: ReplicasProvider,
        *,
        client: httpx.AsyncClient | None = None,
        interval: float | None = None,
        window_seconds: float = WINDOW_SECONDS,
        early: Any = None,
    ) -> None:
        self.settings = settings
        self.replicas_provider = replicas_provider
        self.interval = float(interval if interval is not None else settings.ui.refresh_seconds)
        self.timeout = float(settings.prometheus.timeout_seconds)
        self.window = FleetWindow(window_seconds, gauge_max_age=max(15.0, 5 * self.interval))
        self._client = client
        self._early = early  # sources.early.EarlyFetch: a first scrape taken while the UI loaded
        self._only = read_names(settings.metrics)

    async def scrape_once(self, client: httpx.AsyncClient, replica: ReplicaIdentity) -> tuple[float, Exposition]:
        fetched = await fetch_bounded(
            client, "GET", replica.metrics_url, timeout=self.timeout, limit=MAX_BYTES,
            headers={"Accept": METRICS_ACCEPT, "Accept-Encoding": "gzip"},
        )
        if fetched.status_code != 200:
            raise FetchError(f"HTTP {fetched.status_code} {fetched.reason}".rstrip())
        expo = parse_exposition(fetched.body, fetched.headers.get("content-type"), only=self._only)
        return time.time(), expo

    async def _chain(self, client: httpx.AsyncClient, sink: Sink, replica: ReplicaIdentity, stop: asyncio.Event) -> None:
        status_name = f"{self.name}:{replica.name}"
        backoff = Backoff()
        last_ok: float | None = None
        scrapes = 0
        early = self._early.answer(replica.metrics_url) if self._early is not None else None
        if early is not None and early.status == 200:
            # The start-up scrape is the first of the two a rate needs: the chain's first own
            # scrape then makes one (after SECOND_SCRAPE_S at least, for a sensible window).
            body, _ = early.bounded(MAX_BYTES)
            expo = parse_exposition(body, early.headers.get("content-type"), only=self._only)
            if not expo.errors:
                self.window.observe(replica.name, early.at, read_exposition(expo, self.settings.metrics))
                scrapes = 1
                wait = SECOND_SCRAPE_S - (time.monotonic() - early.monotonic)
                if wait > 0 and await sleep_or_stop(stop, wait):
                    return
        while True:
            try:
                finished, outcome = await unless_stopped(stop, lambda: self.scrape_once(client, replica))
                error: str | None = None
            except FetchError as exc:
                finished, outcome, error = True, None, f"{replica.name}: {exc}"
            except Exception as exc:  # a bug here must show as an error, not end the chain
                finished, outcome, error = True, None, f"{replica.name}: internal error: {type(exc).__name__}: {exc}"
            if not finished:
                return
            if outcome is None:
                delay = max(self.interval, backoff.next_delay())
                sink(SourceStatus(status_name, False, error, last_ok, round(delay, 2), backoff.failures))
            else:
                ts, expo = outcome
                backoff.reset()
                scrapes += 1
                # A rate needs two scrapes: take the second one soon, so the metrics pane shows
                # numbers within a second of start-up instead of after two full intervals.
                delay = min(self.interval, SECOND_SCRAPE_S) if scrapes == 1 else self.interval
                self.window.observe(replica.name, ts, read_exposition(expo, self.settings.metrics))
                if scrapes == 2:
                    sink(self.window.metrics(time.time()))
                last_ok = ts
                if expo.errors:
                    problem = f"{replica.name}: malformed metrics, {_first_issue(expo)}"
                    sink(SourceStatus(status_name, False, problem, ts, None, 0))
                else:
                    sink(SourceStatus(status_name, True, None, ts))
            if await sleep_or_stop(stop, delay):
                return

    async def run(self, sink: Sink, stop: asyncio.Event) -> None:
        client = self._client or make_client(self.timeout)
        chains = ReplicaChains(
            lambda r, s: self._chain(client, sink, r, s),
            on_removed=lambda r: self.window.forget(r.name),
        )
        try:
            while not stop.is_set():
                try:
                    replicas = tuple(self.replicas_provider())
                    chains.reconcile(replicas, stop)
                    if self.window.replicas():
                        sink(self.window.metrics(time.time()))
                    if not replicas:
                        sink(SourceStatus(self.name, False, "no replicas known yet", retry_in=self.interval))
                except Exception as exc:  # never end the source over one bad tick
                    sink(SourceStatus(self.name, False, f"internal error: {type(exc).__name__}: {exc}",
                                      retry_in=self.interval))
                if await sleep_or_stop(stop, self.interval):
                    break
        finally:
            await chains.close()
            if self._client is None:
                await client.aclose()
