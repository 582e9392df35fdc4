"""Fleet metrics, alerts and targets from the fleet's Prometheus HTTP API.

Each refresh evaluates the runbook's numbers as instant queries over a 1 m window, all at the
same evaluation time so they describe one moment, plus /api/v1/alerts and /api/v1/targets.
Queries are POSTed form-encoded (the API allows it, and long expressions stay out of URLs and
proxy logs). The duration quantiles are computed here from ``sum by (le)(rate(..._bucket))``
rather than with PromQL's histogram_quantile: the same arithmetic (rates.histogram_quantile),
but it also tells when p95 lies in the +Inf bucket, where Prometheus silently answers with the
top finite bound (2 s for the prover) although the real value may be far higher.

On start-up ``load_history`` fills the charts' rolling window from range queries so they are
not empty for the first minutes (emitted once as MetricsHistory).

Failure handling: nothing observed raises. Prometheus unreachable, an error envelope
(400/422/503 with errorType), a body that is not JSON: SourceStatus("prometheus", ok=False)
with the error and the retry delay (1 s doubling to 30 s); a failing query among working ones
leaves its number None and is named in the status. Warnings are passed on in the status text.
NaN/Inf results (0/0 on an idle fleet) become None.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import urlencode, urlsplit

from x402console.sources.backoff import Backoff, sleep_or_stop, unless_stopped
from x402console.sources.health import FetchError, ReplicasProvider, Sink, fetch_bounded, make_client
from x402console.sources.models import AlertState, ComponentState, FleetMetrics, ReplicaIdentity, SourceStatus, TargetState
from x402console.sources.promapi import (
    PromAPIError,
    QueryResult,
    histogram_buckets,
    parse_alerts,
    parse_envelope,
    parse_query_response,
    parse_targets,
)
from x402console.sources.rates import error_ratio, histogram_quantile

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AlertsSnapshot",
    "TargetsSnapshot",
    "MetricsHistory",
    "PrometheusSource",
    "FleetQueries",
    "instance_of",
]

API_BODY_LIMIT = 32 * 1024 * 1024
GET_URL_LIMIT = 4096  # longer queries are POSTed (what any proxy and server will take in a URL)
VERIFICATION_FAILURES = "verification_failures_total"
RANGE = "1m"


@dataclass(frozen=True)
class AlertsSnapshot:
    """Every pending or firing alert Prometheus knows about at ``ts``."""

    alerts: tuple[AlertState, ...]
    ts: float


@dataclass(frozen=True)
class TargetsSnapshot:
    targets: tuple[TargetState, ...]
    ts: float
    dropped: int = 0


@dataclass(frozen=True)
class MetricsHistory:
    """Back-filled chart history: (ts, value) points per series over the configured window.

    ``series`` keys: proof_rate, error_rate, error_ratio, p50_seconds, p95_seconds, rate_limited,
    active_requests. ``rss_bytes`` is per replica. Non-finite points (0/0 on an idle fleet)
    are left out rather than drawn as zero.
    """

    ts: float
    start: float
    end: float
    step: float
    series: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    rss_bytes: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)


def instance_of(url: str) -> str | None:
    """The host:port Prometheus uses as ``instance`` for a scrape of ``url``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}"


class FleetQueries:
    """The PromQL expressions for the runbook's numbers, built from settings (metric names, job)."""

    def __init__(self, settings: Any) -> None:
        m = settings.metrics
        job = settings.prometheus.job.replace("\\", "\\\\").replace('"', '\\"')
        sel = f'{{job="{job}"}}'
        self.proof_rate = f"sum(rate({m.proofs_total}{sel}[{RANGE}]))"
        self.error_rate = f"sum(rate({m.errors_total}{sel}[{RANGE}]))"
        self.buckets = f"sum by (le)(rate({m.duration_histogram}_bucket{sel}[{RANGE}]))"
        self.mean = (
            f"sum(rate({m.duration_histogram}_sum{sel}[{RANGE}]))"
            f" / sum(rate({m.duration_histogram}_count{sel}[{RANGE}]))"
        )
        self.rate_limited = f"sum(rate({m.rate_limited_total}{sel}[{RANGE}]))"
        self.verification_failures = f"sum(rate({VERIFICATION_FAILURES}{sel}[{RANGE}]))"
        self.active_requests = f"sum({m.active_requests}{sel})"
        self.rss = f"{m.resident_memory}{sel}"
        self.error_ratio = f"({self.error_rate}) / (({self.error_rate}) + ({self.proof_rate}))"

        def quantile(q: float) -> str:
            return f"histogram_quantile({q}, {self.buckets})"

        self.p50 = quantile(0.5)
        self.p95 = quantile(0.95)

    def instant(self) -> dict[str, str]:
        return {
            "proof_rate": self.proof_rate,
            "error_rate": self.error_rate,
            "buckets": self.buckets,
            "mean": self.mean,
            "rate_limited": self.rate_limited,
            "verification_failures": self.verification_failures,
            "active_requests": self.active_requests,
            "rss": self.rss,
        }

    def history(self) -> dict[str, str]:
        return {
            "proof_rate": self.proof_rate,
            "error_rate": self.error_rate,
            "error_ratio": self.error_ratio,
            "p50_seconds": self.p50,
            "p95_seconds": self.p95,
            "rate_limited": self.rate_limited,
            "active_requests": self.active_requests,
        }


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _iso(dt: Any) -> str | None:
    return dt.isoformat() if dt is not None else None


def _snippet(body: bytes, n: int = 80) -> str:
    text = body[:n].decode("utf-8", "replace")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return repr(text + ("..." if len(body) > n else ""))


class PrometheusSource:
    """Polls one Prometheus as a chain; emits FleetMetrics, AlertsSnapshot, TargetsSnapshot,
    ComponentState("prometheus"), SourceStatus("prometheus") and, once, MetricsHistory."""

    name = "prometheus"

    def __init__(
        self,
        settings: Any,
        replicas_provider: ReplicasProvider | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        interval: float | None = None,
        history: bool = True,
    ) -> None:
        if not settings.prometheus.url:
            raise ValueError("PrometheusSource needs [prometheus] url")
        self.settings = settings
        self.base_url = settings.prometheus.url.rstrip("/")
        self.timeout = float(settings.prometheus.timeout_seconds)
        self.interval = float(interval if interval is not None else settings.ui.refresh_seconds)
        self.queries = FleetQueries(settings)
        self.replicas_provider: Callable[[], tuple[ReplicaIdentity, ...]] = replicas_provider or (lambda: ())
        self.history_wanted = history
        self._client = client
        self._version: str | None = None
        self._history_attempts = 0

    # ------------------------------------------------------------------ HTTP
    async def _call(self, client: httpx.AsyncClient, method: str, path: str, data: Mapping[str, str] | None = None) -> tuple[Any, int]:
        """(decoded JSON, status code); PromAPIError for anything without a usable JSON answer."""
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        try:
            query = urlencode(dict(data)) if data is not None else ""
            if method == "GET" or len(url) + len(query) < GET_URL_LIMIT:
                # The API takes the same form as URL parameters; as a GET it goes through the
                # lean client (no httpx to import, ~1 ms less CPU per query). Long queries
                # still POST, where no proxy or server can cut the URL short.
                fetched = await fetch_bounded(client, "GET", f"{url}?{query}" if query else url,
                                              timeout=self.timeout + 1.0, limit=API_BODY_LIMIT, headers=headers)
            else:
                fetched = await fetch_bounded(client, method, url, timeout=self.timeout + 1.0, limit=API_BODY_LIMIT,
                                              data=dict(data or {}), headers=headers)
        except FetchError as exc:
            raise PromAPIError(f"cannot reach {self.base_url}: {exc}", "unreachable") from exc
        if fetched.truncated:
            raise PromAPIError(f"answer larger than {API_BODY_LIMIT // (1024 * 1024)} MiB", "bad_response", fetched.status_code)
        try:
            obj = json.loads(fetched.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            what = "HTTP error page" if fetched.status_code >= 400 else "answer that is not JSON"
            raise PromAPIError(f"{what}: {_snippet(fetched.body)}", "bad_response", fetched.status_code) from None
        if fetched.status_code >= 400 and not (isinstance(obj, dict) and obj.get("status") == "error"):
            raise PromAPIError(f"{fetched.reason or 'error'}: {_snippet(fetched.body)}", "bad_response", fetched.status_code)
        return obj, fetched.status_code

    async def query(self, client: httpx.AsyncClient, expr: str, at: float | None = None) -> QueryResult:
        data = {"query": expr, "timeout": f"{max(1, round(self.timeout * 1000))}ms"}
        if at is not None:
            data["time"] = f"{at:.3f}"
        obj, code = await self._call(client, "POST", "/api/v1/query", data)
        return parse_query_response(obj, code)

    async def range_query(
        self, expr: str, start: float, end: float, step: float, *, client: httpx.AsyncClient | None = None
    ) -> QueryResult:
        """/api/v1/query_range (POST); raises PromAPIError."""
        if client is None:
            client = self._client
        if client is None:
            async with make_client(self.timeout) as own:
                return await self.range_query(expr, start, end, step, client=own)
        data = {
            "query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}",
            "timeout": f"{max(1, round(self.timeout * 1000))}ms",
        }
        obj, code = await self._call(client, "POST", "/api/v1/query_range", data)
        return parse_query_response(obj, code)

    # ------------------------------------------------------------------ one refresh
    def _replica_by_instance(self) -> dict[str, str]:
        names: dict[str, str] = {}
        try:
            replicas = tuple(self.replicas_provider())
        except Exception:
            replicas = ()
        for r in replicas:
            for url in (r.metrics_url, r.health_url):
                inst = instance_of(url) if url else None
                if inst:
                    names.setdefault(inst, r.name)
        return names

    def _fleet(self, ts: float, results: Mapping[str, QueryResult | BaseException]) -> FleetMetrics:
        def scalar(key: str) -> float | None:
            res = results.get(key)
            return _finite(res.first_value()) if isinstance(res, QueryResult) else None

        proofs = scalar("proof_rate")
        errors = scalar("error_rate")
        p50 = p95 = None
        lower = False
        res = results.get("buckets")
        if isinstance(res, QueryResult):
            buckets = histogram_buckets(res)
            if buckets:
                e50 = histogram_quantile(0.5, buckets)
                e95 = histogram_quantile(0.95, buckets)
                p50 = _finite(e50.value)
                if math.isfinite(e95.value):
                    p95, lower = e95.value, e95.lower_bound
        rss: dict[str, float] = {}
        res = results.get("rss")
        if isinstance(res, QueryResult):
            names = self._replica_by_instance()
            for smp in res.vector:
                if math.isfinite(smp.value):
                    inst = smp.metric.get("instance", "")
                    rss[names.get(inst, inst or "?")] = smp.value
        return FleetMetrics(
            ts=ts,
            source="prometheus",
            proof_rate=proofs,
            error_rate=errors,
            error_ratio=error_ratio(errors, proofs),
            p50_seconds=p50,
            p95_seconds=p95,
            p95_lower_bound=lower,
            mean_seconds=scalar("mean"),
            rate_limited_rate=scalar("rate_limited"),
            active_requests=scalar("active_requests"),
            rss_bytes=rss,
            verification_failure_rate=scalar("verification_failures"),
        )

    @staticmethod
    def _alerts(obj: Any, code: int, ts: float) -> tuple[AlertsSnapshot, tuple[str, ...]]:
        parsed = parse_alerts(obj, code)
        alerts = tuple(
            AlertState(
                name=a.name,
                state=a.state,
                severity=a.labels.get("severity"),
                summary=a.annotations.get("summary"),
                active_at=_iso(a.active_at),
                labels=dict(a.labels),
                value=a.value_text or None,
            )
            for a in parsed.alerts
        )
        return AlertsSnapshot(alerts, ts), parsed.warnings

    @staticmethod
    def _targets(obj: Any, code: int, ts: float) -> tuple[TargetsSnapshot, tuple[str, ...]]:
        parsed = parse_targets(obj, code)
        targets = tuple(
            TargetState(
                instance=t.labels.get("instance", t.scrape_url),
                job=t.labels.get("job", t.scrape_pool),
                health=t.health,
                last_error=t.last_error or None,
                last_scrape=_iso(t.last_scrape),
            )
            for t in parsed.active
        )
        return TargetsSnapshot(targets, ts, parsed.dropped_count), parsed.warnings

    async def _buildinfo(self, client: httpx.AsyncClient) -> None:
        if self._version is not None:
            return
        try:
            obj, code = await self._call(client, "GET", "/api/v1/status/buildinfo")
            data = parse_envelope(obj, code).data
            version = data.get("version") if isinstance(data, dict) else None
            self._version = str(version) if version else "unknown"
        except PromAPIError as exc:
            # Older versions and some proxies have no buildinfo; the queries decide health.
            if exc.error_type != "unreachable":
                self._version = "unknown"

    async def poll(self, client: httpx.AsyncClient) -> tuple[list[Any], list[str], bool]:
        """One refresh: (snapshots, problems, reached). ``reached`` is False when nothing worked."""
        at = time.time()
        instant = self.queries.instant()
        keys = list(instant)
        jobs = [self.query(client, instant[k], at) for k in keys]
        jobs.append(self._call(client, "GET", "/api/v1/alerts"))
        jobs.append(self._call(client, "GET", "/api/v1/targets?state=active"))
        jobs.append(self._buildinfo(client))
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        for out in outcomes:
            if isinstance(out, BaseException) and not isinstance(out, Exception):
                raise out  # cancellation and the like are not observations
        results: dict[str, Any] = dict(zip(keys, outcomes[: len(keys)]))
        alerts_out, targets_out = outcomes[len(keys)], outcomes[len(keys) + 1]
        problems: list[str] = []
        warnings: list[str] = []
        worked = 0
        for key in keys:
            res = results[key]
            if isinstance(res, Exception):
                problems.append(f"{key}: {res}")
            else:
                worked += 1
                warnings.extend(res.warnings)
        snapshots: list[Any] = []
        ts = time.time()
        if worked:
            snapshots.append(self._fleet(at, results))
        targets_snap: TargetsSnapshot | None = None
        for label, out, convert in (("alerts", alerts_out, self._alerts), ("targets", targets_out, self._targets)):
            if isinstance(out, Exception):
                problems.append(f"{label}: {out}")
                continue
            try:
                snap, warns = convert(out[0], out[1], ts)
            except PromAPIError as exc:
                problems.append(f"{label}: {exc}")
                continue
            worked += 1
            warnings.extend(warns)
            snapshots.append(snap)
            if isinstance(snap, TargetsSnapshot):
                targets_snap = snap
        problems.extend(f"warning: {w}" for w in dict.fromkeys(warnings))
        reached = worked > 0
        if reached:
            detail = f"version {self._version or 'unknown'}"
            if targets_snap is not None:
                up = sum(1 for t in targets_snap.targets if t.health == "up")
                detail += f"; {up}/{len(targets_snap.targets)} targets up"
            snapshots.append(ComponentState("prometheus", True, detail, ts))
        return snapshots, _dedupe(problems), reached

    # ------------------------------------------------------------------ history
    def history_window(self, now: float) -> tuple[float, float, float]:
        seconds = max(60.0, float(self.settings.metrics.window_minutes) * 60.0)
        step = max(1.0, self.interval, seconds / 600.0)
        return now - seconds, now, step

    async def load_history(self, client: httpx.AsyncClient, now: float | None = None) -> MetricsHistory:
        """Range queries for the charts' window; raises PromAPIError when a query fails."""
        now = time.time() if now is None else now
        start, end, step = self.history_window(now)
        exprs = self.queries.history()
        keys = list(exprs)
        results = await asyncio.gather(
            *(self.range_query(exprs[k], start, end, step, client=client) for k in keys),
            self.range_query(self.queries.rss, start, end, step, client=client),
        )
        series: dict[str, tuple[tuple[float, float], ...]] = {}
        for key, res in zip(keys, results[: len(keys)]):
            points = res.matrix[0].values if res.matrix else ()
            series[key] = tuple(p for p in points if math.isfinite(p[1]))
        rss: dict[str, tuple[tuple[float, float], ...]] = {}
        names = self._replica_by_instance()
        for s in results[-1].matrix:
            inst = s.metric.get("instance", "")
            rss[names.get(inst, inst or "?")] = tuple(p for p in s.values if math.isfinite(p[1]))
        return MetricsHistory(time.time(), start, end, step, series, rss)

    async def _maybe_history(self, client: httpx.AsyncClient, sink: Sink) -> None:
        if not self.history_wanted or self._history_attempts >= 3:
            return
        self._history_attempts += 1
        try:
            history = await self.load_history(client)
        except Exception as exc:  # history is a nicety: never let it end the source
            sink(SourceStatus(f"{self.name}:history", False, f"chart history not loaded: {exc}"))
            return
        self.history_wanted = False
        sink(history)

    # ------------------------------------------------------------------ the chain
    async def run(self, sink: Sink, stop: asyncio.Event) -> None:
        client = self._client or make_client(self.timeout + 1.0)
        backoff = Backoff()
        last_ok: float | None = None
        try:
            while not stop.is_set():
                try:
                    finished, outcome = await unless_stopped(stop, lambda: self.poll(client))
                except Exception as exc:  # a bug must show as a status, never end the source
                    finished, outcome = True, ([], [f"internal error: {type(exc).__name__}: {exc}"], False)
                if not finished:
                    break
                snapshots, problems, reached = outcome  # type: ignore[misc]
                for snap in snapshots:
                    sink(snap)
                if reached:
                    backoff.reset()
                    last_ok = time.time()
                    delay = self.interval
                    sink(SourceStatus(self.name, not problems, "; ".join(problems) or None, last_ok))
                    if self.history_wanted:
                        done, _ = await unless_stopped(stop, lambda: self._maybe_history(client, sink))
                        if not done:
                            break
                else:
                    delay = max(self.interval, backoff.next_delay())
                    error = "; ".join(problems) or "no answer"
                    sink(SourceStatus(self.name, False, error, last_ok, round(delay, 2), backoff.failures))
                    sink(ComponentState("prometheus", False, error, time.time()))
                if await sleep_or_stop(stop, delay):
                    break
        finally:
            if self._client is None:
                await client.aclose()


def _dedupe(problems: list[str]) -> list[str]:
    """One line per distinct cause: when Prometheus is down every query says the same thing,
    and then the cause is given once without naming each query."""
    causes: dict[str, list[str]] = {}
    for p in problems:
        what, _, cause = p.partition(": ") if not p.startswith("warning: ") else ("", "", p)
        causes.setdefault(cause or p, []).append(what)
    return [cause if len(whats) > 1 or not whats[0] else f"{whats[0]}: {cause}" for cause, whats in causes.items()]
