"""The HTTP observation sources against a real drill (simulated provers, real Prometheus) and
against small real HTTP servers that misbehave the ways a proxy or a broken Prometheus does."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.rig.components import free_port
from x402console.config import load_config
from x402console.drill.environment import wait_http_ok
from x402console.settings.model import PrometheusSettings, Replica, Settings
from x402console.sources.health import HealthProber
from x402console.sources.hub import static_replicas
from x402console.sources.models import ComponentState, FleetMetrics, HealthSample, SourceStatus
from x402console.sources.prometheus import AlertsSnapshot, MetricsHistory, PrometheusSource, TargetsSnapshot
from x402console.sources.scrape import ScrapeSource

pytestmark = pytest.mark.timeout(120)


class Collector:
    """The sink: records (monotonic time, snapshot) and lets a test wait for one."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Any]] = []
        self.threads: set[int] = set()

    def __call__(self, snapshot: Any) -> None:
        self.threads.add(threading.get_ident())
        self.items.append((time.monotonic(), snapshot))

    def of(self, kind: type, since: float = 0.0) -> list[Any]:
        return [s for t, s in self.items if isinstance(s, kind) and t >= since]

    async def wait(self, what: str, predicate: Callable[[Any], bool], timeout: float, since: float = 0.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, s in self.items:
                if t >= since and predicate(s):
                    return s
            await asyncio.sleep(0.05)
        recent = [s for _, s in self.items[-8:]]
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last snapshots: {recent}")


class Running:
    """A source's run() as a task, stopped (and checked to have stopped) at the end."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.sink = Collector()
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> "Running":
        self.task = asyncio.create_task(self.source.run(self.sink, self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=5)
        # run() returned normally: it never raised for anything it observed
        assert self.task.exception() is None

    def assert_alive(self) -> None:
        assert self.task is not None and not self.task.done(), "the source's run() ended early"


def fast(settings: Settings, refresh: float = 0.25, **prover: Any) -> Settings:
    ui = dataclasses.replace(settings.ui, refresh_seconds=refresh)
    return dataclasses.replace(settings, ui=ui, prover=dataclasses.replace(settings.prover, **prover))


def replicas_of(settings: Settings):
    found = static_replicas(settings)
    return lambda: found


async def control(env, replica, name: str, **params: Any) -> None:
    def call() -> None:
        try:
            env.control(replica).set_fault(name, **params)
        except httpx.HTTPError:
            if name != "crash":  # a crash may end the process before it answers
                raise

    await asyncio.to_thread(call)


def counters_now(urls: list[str]) -> tuple[float, float, float]:
    """(time, proofs, errors) summed over replicas, read with prometheus_client's own parser:
    an independent reference for the console's arithmetic."""
    proofs = errors = 0.0
    for url in urls:
        text = httpx.get(url, timeout=5, trust_env=False).text
        for fam in text_string_to_metric_families(text):
            for smp in fam.samples:
                if smp.name == "proof_generation_total":
                    proofs += smp.value
                elif smp.name == "proof_generation_errors_total":
                    errors += smp.value
    return time.monotonic(), proofs, errors


# ---------------------------------------------------------------------------------- health


async def test_health_reports_both_replicas_then_a_hung_one_without_delaying_the_other(drill_factory):
    env = drill_factory()
    settings = fast(load_config(env.state.config), refresh=0.2, health_timeout_seconds=1.5)
    prober = HealthProber(settings, replicas_of(settings))
    async with Running(prober) as run:
        for name in ("prover-1", "prover-2"):
            sample = await run.sink.wait(f"{name} healthy", lambda s, n=name: isinstance(s, HealthSample)
                                         and s.replica == n and s.ok, timeout=10)
            assert sample.status_code == 200
            assert sample.status_text == "healthy"
            assert sample.latency_ms is not None and sample.latency_ms > 0
            assert sample.error is None

        p1, p2 = env.replicas
        await control(env, p1, "hang")
        hung_at = time.monotonic()
        timed_out = await run.sink.wait(
            "prover-1 timing out",
            lambda s: isinstance(s, HealthSample) and s.replica == "prover-1" and not s.ok,
            timeout=15, since=hung_at,
        )
        assert "timed out" in timed_out.error
        assert timed_out.status_code is None
        # while prover-1's probe waited out its timeout, prover-2 kept being sampled, healthy
        during = [s for s in run.sink.of(HealthSample, since=hung_at)
                  if s.replica == "prover-2" and s.ts < timed_out.ts]
        assert during and all(s.ok for s in during)
        assert len(during) >= 2

        await control(env, p2, "crash")
        crashed_at = time.monotonic()
        # The probe that is in flight when the process dies may see the connection cut instead;
        # every probe after that must be refused.
        refused = await run.sink.wait(
            "prover-2 refusing connections",
            lambda s: isinstance(s, HealthSample) and s.replica == "prover-2" and not s.ok
            and s.error == "connection refused",
            timeout=15, since=crashed_at,
        )
        assert refused.status_code is None
        run.assert_alive()
    statuses = run.sink.of(SourceStatus)
    assert statuses and all(s.name == "health" and s.ok for s in statuses)


class _Handler(BaseHTTPRequestHandler):
    """Answers every request with what the server's ``script`` says for the path."""

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.command == "GET" and "?" in self.path:
            body = self.path.split("?", 1)[1].encode()  # the same form, sent as URL parameters
        self.server.requests.append((self.command, self.path, body))  # type: ignore[attr-defined]
        script: dict = self.server.script  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        code, ctype, payload = script.get(path, script.get("*", (404, "text/plain", b"not found")))
        if callable(payload):
            payload = payload(body)
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


@pytest.fixture
def fake_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.script = {}  # type: ignore[attr-defined]
    server.requests = []  # type: ignore[attr-defined]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _url(server: ThreadingHTTPServer, path: str = "") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


@pytest.mark.parametrize(
    "answer, expected",
    [
        ((503, "application/json", b'{"status":"unhealthy"}'), "HTTP 503"),
        ((429, "text/plain", b"slow down"), "HTTP 429"),
        ((200, "text/html", b"<html>proxy login</html>"), "not JSON"),
        ((200, "application/json", b'{"service":"umbra-prover"}'), "no status field"),
        ((200, "application/json", b'{"status":"degraded"}'), "'degraded'"),
    ],
)
async def test_health_words_each_bad_answer(fake_server, answer, expected):
    fake_server.script["/health"] = answer  # type: ignore[attr-defined]
    settings = Settings(replicas=(Replica("r", _url(fake_server, "/health"), _url(fake_server, "/metrics")),))
    prober = HealthProber(settings, replicas_of(settings))
    async with httpx.AsyncClient(trust_env=False) as client:
        sample = await prober.probe(client, static_replicas(settings)[0])
    assert not sample.ok
    assert expected in sample.error
    assert sample.status_code == answer[0]


# ---------------------------------------------------------------------------------- scrape


async def test_scrape_fleet_metrics_follow_traffic_faults_and_a_restart(drill_factory):
    env = drill_factory(traffic_rate=8, traffic_clients=200)
    settings = fast(load_config(env.state.config), refresh=0.5)
    urls = [f"{r.url}/metrics" for r in env.replicas]
    # a 10 s window so the fault's effect dominates it within seconds
    source = ScrapeSource(settings, replicas_of(settings), window_seconds=10)
    async with Running(source) as run:
        t0, proofs0, errors0 = await asyncio.to_thread(counters_now, urls)
        await asyncio.sleep(10)
        t1, proofs1, errors1 = await asyncio.to_thread(counters_now, urls)
        reference = (proofs1 - proofs0) / (t1 - t0)
        assert reference > 1, "the drill's traffic did not produce proofs"
        m = [f for f in run.sink.of(FleetMetrics) if f.proof_rate is not None][-1]
        assert m.source == "scrape"
        assert 0.6 * reference <= m.proof_rate <= 1.4 * reference, (m.proof_rate, reference)
        assert m.error_ratio is not None and m.error_ratio < 0.2
        assert m.p50_seconds is not None and 0 < m.p50_seconds <= 2
        assert m.p95_seconds is not None and m.p95_seconds >= m.p50_seconds
        assert m.mean_seconds is not None and m.mean_seconds > 0
        assert set(m.rss_bytes) == {"prover-1", "prover-2"} and all(v > 1e6 for v in m.rss_bytes.values())
        assert m.active_requests is not None and m.active_requests >= 0
        assert m.rate_limited_rate is None  # the coded build never exports it
        statuses = {s.name: s for s in run.sink.of(SourceStatus)}
        assert statuses["scrape:prover-1"].ok and statuses["scrape:prover-2"].ok

        for r in env.replicas:
            await control(env, r, "error_ratio", ratio=0.5)
        faulted_at = time.monotonic()
        high = await run.sink.wait(
            "error ratio above 0.3",
            lambda s: isinstance(s, FleetMetrics) and s.error_ratio is not None and s.error_ratio > 0.3,
            timeout=40, since=faulted_at,
        )
        assert high.error_ratio <= 1

        # a crash: connection refused, reported with a retry delay; then the replica restarts
        p1 = env.replicas[0]
        await control(env, p1, "crash")
        crashed_at = time.monotonic()
        down = await run.sink.wait(
            "prover-1 scrape failing",
            lambda s: isinstance(s, SourceStatus) and s.name == "scrape:prover-1" and not s.ok,
            timeout=15, since=crashed_at,
        )
        assert "connection refused" in down.error and "prover-1" in down.error
        assert down.retry_in is not None and down.retry_in >= 0.5
        await asyncio.to_thread(p1.process.stop, 5)  # already exited: this reaps it
        await asyncio.to_thread(p1.process.start)
        await asyncio.to_thread(wait_http_ok, f"{p1.url}/health", 30, p1.process.alive, p1.name)
        restarted_at = time.monotonic()
        await run.sink.wait(
            "prover-1 scraped again",
            lambda s: isinstance(s, SourceStatus) and s.name == "scrape:prover-1" and s.ok,
            timeout=40, since=restarted_at,
        )
        await run.sink.wait("two fleet updates after the restart", lambda s: isinstance(s, FleetMetrics)
                            and len(run.sink.of(FleetMetrics, since=restarted_at)) >= 3, timeout=10)
        assert source.window.restarts.get("prover-1", 0) >= 1
        run.assert_alive()
    for f in run.sink.of(FleetMetrics):
        for v in (f.proof_rate, f.error_rate, f.rate_limited_rate, f.mean_seconds, f.p50_seconds):
            assert v is None or (math.isfinite(v) and v >= 0), f
        assert f.error_ratio is None or 0 <= f.error_ratio <= 1, f


async def test_scrape_reports_malformed_metrics_and_keeps_what_parsed(fake_server):
    good = (
        b"# TYPE proof_generation_total counter\nproof_generation_total 10\n"
        b"# TYPE proof_generation_errors_total counter\nproof_generation_errors_total 1\n"
        b"this is { not a sample\n"
    )
    fake_server.script["/metrics"] = (200, "text/plain; version=0.0.4", good)  # type: ignore[attr-defined]
    fake_server.script["/gone/metrics"] = (503, "text/plain", b"upstream down")  # type: ignore[attr-defined]
    settings = fast(Settings(replicas=(
        Replica("odd", _url(fake_server, "/health"), _url(fake_server, "/metrics")),
        Replica("gone", _url(fake_server, "/gone/health"), _url(fake_server, "/gone/metrics")),
    )), refresh=0.2)
    source = ScrapeSource(settings, replicas_of(settings))
    async with Running(source) as run:
        bad = await run.sink.wait("a parse problem", lambda s: isinstance(s, SourceStatus)
                                  and s.name == "scrape:odd" and not s.ok, timeout=10)
        assert bad.error.startswith("odd: malformed metrics, line 5:")
        assert bad.updated_at is not None  # the data that parsed was used
        gone = await run.sink.wait("an HTTP error", lambda s: isinstance(s, SourceStatus)
                                   and s.name == "scrape:gone" and not s.ok, timeout=10)
        assert "HTTP 503" in gone.error and gone.retry_in is not None
        await run.sink.wait("fleet metrics", lambda s: isinstance(s, FleetMetrics) and s.proof_rate == 0, timeout=10)


# ---------------------------------------------------------------------------------- prometheus


async def test_prometheus_source_reads_the_fleet_targets_and_alerts(drill_factory):
    env = drill_factory(prometheus="on", traffic_rate=8, traffic_clients=200)
    settings = fast(load_config(env.state.config), refresh=0.5)
    source = PrometheusSource(settings, replicas_of(settings))
    async with Running(source) as run:
        history = await run.sink.wait("chart history", lambda s: isinstance(s, MetricsHistory), timeout=20)
        assert set(history.series) >= {"proof_rate", "error_ratio", "p50_seconds", "p95_seconds",
                                       "rate_limited", "active_requests"}
        assert history.end - history.start == pytest.approx(settings.metrics.window_minutes * 60)
        m = await run.sink.wait(
            "fleet metrics with proofs",
            # enough requests in the rate window that the 10 % invalid mix reads as about 10 %
            lambda s: isinstance(s, FleetMetrics) and (s.proof_rate or 0) >= 2.0 and s.p50_seconds is not None
            and len(s.rss_bytes) == 2,
            timeout=45,
        )
        assert m.source == "prometheus"
        assert m.error_ratio is not None and 0 <= m.error_ratio < 0.2
        assert 0 < m.p50_seconds <= 2 and m.p95_seconds >= m.p50_seconds
        # instances are mapped back to replica names through the replicas' URLs
        assert set(m.rss_bytes) == {"prover-1", "prover-2"}
        targets = await run.sink.wait(
            "both targets up",
            lambda s: isinstance(s, TargetsSnapshot) and len(s.targets) == 2
            and all(t.health == "up" for t in s.targets),
            timeout=20,
        )
        assert {t.job for t in targets.targets} == {"prover"}
        component = await run.sink.wait("prometheus component", lambda s: isinstance(s, ComponentState), timeout=10)
        assert component.ok and "version" in component.detail
        assert run.sink.of(AlertsSnapshot), "no alerts snapshot at all"

        p1 = env.replicas[0]
        await control(env, p1, "crash")
        crashed_at = time.monotonic()
        alerts = await run.sink.wait(
            "ProverServiceDown firing",
            lambda s: isinstance(s, AlertsSnapshot)
            and any(a.name == "ProverServiceDown" and a.state == "firing" for a in s.alerts),
            timeout=60, since=crashed_at,
        )
        down = next(a for a in alerts.alerts if a.name == "ProverServiceDown")
        assert down.severity == "critical"
        assert down.labels.get("instance") == f"127.0.0.1:{p1.port}"
        assert down.active_at
        run.assert_alive()

        # the range helper used for the charts answers over the same API
        now = time.time()
        result = await source.range_query(source.queries.proof_rate, now - 30, now, 5)
        assert result.result_type == "matrix" and result.matrix and len(result.matrix[0].values) >= 2


async def test_prometheus_down_is_reported_with_growing_retry_never_raised():
    closed = free_port()
    settings = fast(Settings(prometheus=PrometheusSettings(url=f"http://127.0.0.1:{closed}", timeout_seconds=1)),
                    refresh=0.1)
    source = PrometheusSource(settings)
    async with Running(source) as run:
        await run.sink.wait("two failures", lambda s: isinstance(s, SourceStatus) and s.attempts >= 2, timeout=15)
        failures = [s for s in run.sink.of(SourceStatus) if s.name == "prometheus"]
        assert all(not s.ok for s in failures)
        assert "connection refused" in failures[0].error
        assert failures[0].retry_in == pytest.approx(1.0, rel=0.15)
        assert failures[1].retry_in == pytest.approx(2.0, rel=0.15)
        # one line for the cause, not one per query
        assert failures[0].error.count("connection refused") == 1
        comp = run.sink.of(ComponentState)
        assert comp and not comp[-1].ok
        assert not run.sink.of(FleetMetrics)
        run.assert_alive()


def _envelope(obj: dict) -> bytes:
    return json.dumps(obj).encode()


async def test_prometheus_error_envelopes_and_garbage_become_statuses(fake_server):
    script = fake_server.script  # type: ignore[attr-defined]
    settings = fast(Settings(prometheus=PrometheusSettings(url=_url(fake_server), timeout_seconds=2)), refresh=0.1)

    async def one_poll() -> tuple[list, list, bool]:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await PrometheusSource(settings).poll(client)

    # a proxy's error page instead of JSON
    script["*"] = (502, "text/html", b"<html><body>Bad Gateway</body></html>")
    snaps, problems, reached = await one_poll()
    assert not reached and not snaps
    assert "HTTP 502" in problems[0] and "Bad Gateway" in problems[0]

    # JSON cut short
    script["*"] = (200, "application/json", b'{"status":"success","data":{"resultT')
    snaps, problems, reached = await one_poll()
    assert not reached and "not JSON" in problems[0]

    # the API's own error answer: 503 with errorType, 422 for a bad expression
    script["*"] = (503, "application/json", _envelope({"status": "error", "errorType": "timeout",
                                                       "error": "query timed out in expression evaluation"}))
    snaps, problems, reached = await one_poll()
    assert not reached
    assert "HTTP 503" in problems[0] and "timeout" in problems[0] and "query timed out" in problems[0]

    # one query failing among working ones: its number is None, the others are shown
    ok_vector = _envelope({"status": "success", "warnings": ["partial data: one store down"],
                           "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "4"]}]}})

    def query(body: bytes) -> bytes:
        if b"errors_total" in body:
            return _envelope({"status": "error", "errorType": "execution", "error": "many-to-many matching"})
        if b"_bucket" in body:
            return _envelope({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"le": "1"}, "value": [1, "NaN"]}, {"metric": {"le": "+Inf"}, "value": [1, "NaN"]}]}})
        if b"_sum" in body:
            return _envelope({"status": "success", "data": {"resultType": "vector",
                                                            "result": [{"metric": {}, "value": [1, "NaN"]}]}})
        return ok_vector

    script["*"] = (404, "text/plain", b"no")
    script["/api/v1/query"] = (200, "application/json", query)
    script["/api/v1/alerts"] = (200, "application/json", _envelope({"status": "success", "data": {"alerts": [
        {"labels": {"alertname": "X", "severity": "warning"}, "annotations": {"summary": "s"},
         "state": "firing", "activeAt": "2024-01-01T00:00:00.123456789Z", "value": "+Inf"}]}}))
    script["/api/v1/targets"] = (200, "application/json", _envelope({"status": "success", "data": {
        "activeTargets": [{"labels": {"instance": "127.0.0.1:1", "job": "prover"}, "health": "down",
                           "lastError": "connection refused", "lastScrape": "2024-01-01T00:00:00Z"}],
        "droppedTargets": []}}))
    snaps, problems, reached = await one_poll()
    assert reached
    fleet = next(s for s in snaps if isinstance(s, FleetMetrics))
    assert fleet.proof_rate == 4.0
    assert fleet.error_rate is None and fleet.error_ratio is None
    assert fleet.p50_seconds is None and fleet.mean_seconds is None  # NaN is not a number to show
    assert any("error_rate" in p and "many-to-many" in p for p in problems)
    assert any(p.startswith("warning: partial data") for p in problems)
    alerts = next(s for s in snaps if isinstance(s, AlertsSnapshot))
    assert alerts.alerts[0].name == "X" and alerts.alerts[0].state == "firing" and alerts.alerts[0].value == "+Inf"
    targets = next(s for s in snaps if isinstance(s, TargetsSnapshot))
    assert targets.targets[0].health == "down" and targets.targets[0].last_error == "connection refused"
    # every query was a form-encoded GET (short enough for a URL) carrying the same evaluation time
    queries = [(m, b) for m, p, b in fake_server.requests if p.split("?")[0] == "/api/v1/query"]  # type: ignore[attr-defined]
    assert queries and all(m == "GET" for m, b in queries)
    times = {part for m, b in queries[-8:] for part in b.split(b"&") if part.startswith(b"time=")}
    assert len(times) == 1

    # and through run(): a partial failure is shown but keeps the refresh cadence
    async with Running(PrometheusSource(settings, history=False)) as run:
        status = await run.sink.wait("status", lambda s: isinstance(s, SourceStatus), timeout=10)
        assert not status.ok and "many-to-many" in status.error and status.retry_in is None
        run.assert_alive()


async def test_prometheus_queries_are_gets_through_the_lean_client_and_long_ones_posts(fake_server):
    from x402console.sources.health import close_client, make_client
    from x402console.sources.prometheus import GET_URL_LIMIT

    script = fake_server.script  # type: ignore[attr-defined]
    script["/api/v1/query"] = (200, "application/json", lambda body: _envelope({
        "status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"n": str(len(body))}, "value": [1, "2"]}]}}))
    settings = Settings(prometheus=PrometheusSettings(url=_url(fake_server), timeout_seconds=2))
    source = PrometheusSource(settings, history=False)
    client = make_client(2, lean=True)  # as the hub makes it
    try:
        short = await source.query(client, 'sum(rate(proof_generation_total{job="prover"}[1m]))')
        assert not client.built, "a short query should not need httpx"
        long_expr = "sum(" + " + ".join(f'up{{i="{i}"}}' for i in range(GET_URL_LIMIT // 8)) + ")"
        long = await source.query(client, long_expr)
        assert client.built, "a long query is a POST, which the lean client does not do"
    finally:
        await close_client(client)
    (m1, p1, b1), (m2, p2, b2) = fake_server.requests[-2:]  # type: ignore[attr-defined]
    assert m1 == "GET" and "query=sum%28rate%28proof_generation_total" in p1
    assert m2 == "POST" and p2 == "/api/v1/query" and len(b2) > GET_URL_LIMIT
    assert short.vector and long.vector and int(long.vector[0].metric["n"]) == len(b2)


async def test_health_of_a_replica_without_a_usable_url_is_an_error_not_a_crash():
    settings = Settings(replicas=(Replica("nourl", "", ""),))
    prober = HealthProber(settings, replicas_of(settings))
    async with httpx.AsyncClient(trust_env=False) as client:
        sample = await prober.probe(client, static_replicas(settings)[0])
    assert not sample.ok and sample.error.startswith("bad URL")


# ---------------------------------------------------------------------------------- components


async def test_component_probe_reports_nginx_and_its_deny_file(fake_server, tmp_path):
    from x402console.settings.model import NginxSettings
    from x402console.sources.components import ComponentProbe

    deny = tmp_path / "blocked_ips.conf"
    deny.write_text("# blocked by the console\ndeny 203.0.113.7;\n  deny\t198.51.100.0/24; # range\n#deny 1.2.3.4;\n"
                    "allow 127.0.0.1;\n")
    fake_server.script["*"] = (404, "text/html", b"<center>nginx</center>")  # type: ignore[attr-defined]
    settings = Settings(nginx=NginxSettings(deny_file=deny, url=_url(fake_server)))
    async with httpx.AsyncClient(trust_env=False) as client:
        up = await ComponentProbe(settings).nginx(client)
        assert up.name == "nginx" and up.ok
        assert "HTTP 404" in up.detail and "2 deny lines" in up.detail

        closed = Settings(nginx=NginxSettings(deny_file=tmp_path / "missing.conf", url=f"http://127.0.0.1:{free_port()}"))
        down = await ComponentProbe(closed).nginx(client)
        assert not down.ok and "connection refused" in down.detail and "does not exist" in down.detail

        unset = Settings(nginx=NginxSettings(deny_file=deny, url=None))
        file_only = await ComponentProbe(unset).nginx(client)
        assert file_only.ok and "no [nginx] url" in file_only.detail and "2 deny lines" in file_only.detail
