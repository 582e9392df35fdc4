"""The start-up fetch (sources/early.py) against a real drill and against small loopback servers
that answer badly, and the sources that take its answers as their first sample."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
import time
from typing import Callable

import pytest

from tests.integration.test_http_sources import Running, fast, replicas_of
from tests.rig.components import free_port
from tests.rig.raw_server import RawServer
from x402console.config import load_config
from x402console.sources.early import EarlyFetch, get_once, start_early_fetch
from x402console.sources.health import HealthProber
from x402console.sources.models import FleetMetrics, HealthSample
from x402console.sources.scrape import ScrapeSource

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def make(behave: Callable[[socket.socket], None]) -> RawServer:
        servers.append(RawServer(behave))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


# ---------------------------------------------------------------------- against a real drill


async def test_the_first_health_sample_is_the_early_answer_and_the_first_own_scrape_makes_a_rate(drill_factory) -> None:
    env = drill_factory(traffic_rate=20)
    settings = fast(load_config(env.state.config), refresh=1.0)
    early = start_early_fetch(settings)
    assert early is not None
    assert early.done.wait(5)
    urls = [r.health_url for r in settings.replicas] + [r.metrics_url for r in settings.replicas]
    answers = {u: early.answer(u) for u in urls}
    assert all(a is not None and a.status == 200 for a in answers.values()), answers
    for r in settings.replicas:
        assert json.loads(answers[r.health_url].body)["status"] == "healthy"
        assert b"proof_generation_total" in answers[r.metrics_url].body
    # HTTP/1.0, so the prover closed the connection and never chunked the answer.
    await asyncio.sleep(0.3)  # the early scrape must be at least SECOND_SCRAPE_S old to be used at once

    prober = HealthProber(settings, replicas_of(settings), early=early)
    async with Running(prober) as run:
        for r in settings.replicas:
            first = await run.sink.wait(f"{r.name} health", lambda s, n=r.name: isinstance(s, HealthSample)
                                        and s.replica == n, timeout=10)
            assert first.ok and first.status_code == 200 and first.status_text == "healthy"
            assert first.ts == answers[r.health_url].at  # the start-up answer, not a new probe
            assert first.latency_ms == round(answers[r.health_url].latency_ms, 3)

    class Counting(ScrapeSource):
        calls = 0

        async def scrape_once(self, client, replica):
            Counting.calls += 1
            return await super().scrape_once(client, replica)

    # A fresh start-up fetch: on a loaded machine the first may be past its age limit by now.
    early = start_early_fetch(settings)
    assert early is not None and early.done.wait(5)
    await asyncio.sleep(0.35)
    assert all(early.answer(r.metrics_url) is not None for r in settings.replicas)
    source = Counting(settings, replicas_of(settings), early=early)
    async with Running(source) as run:
        metrics = await run.sink.wait("the first metrics", lambda s: isinstance(s, FleetMetrics), timeout=10)
        calls_at_first = Counting.calls
    # One own scrape per replica made the first rate: the start-up answer was the other.
    assert calls_at_first <= len(settings.replicas)
    assert metrics.proof_rate is not None and metrics.proof_rate > 0
    assert metrics.source == "scrape"


async def test_without_early_answers_the_scrape_source_still_needs_two_scrapes(drill_factory) -> None:
    env = drill_factory(traffic_rate=20)
    settings = fast(load_config(env.state.config), refresh=1.0)

    class Counting(ScrapeSource):
        calls = 0

        async def scrape_once(self, client, replica):
            Counting.calls += 1
            return await super().scrape_once(client, replica)

    async with Running(Counting(settings, replicas_of(settings))) as run:
        await run.sink.wait("the first metrics", lambda s: isinstance(s, FleetMetrics), timeout=10)
        assert Counting.calls >= 2 * len(settings.replicas) - 1


def test_with_prometheus_configured_only_health_is_fetched(drill_factory) -> None:
    env = drill_factory()
    plain = load_config(env.state.config)
    settings = dataclasses.replace(plain, prometheus=dataclasses.replace(plain.prometheus, url="http://127.0.0.1:1"))
    early = start_early_fetch(settings)
    assert early is not None
    assert [u for u, _ in early.requests] == [r.health_url for r in settings.replicas]
    assert early.done.wait(5)


# ---------------------------------------------------------------------- servers that answer badly


def test_a_refused_port_gives_no_answer_and_the_fetch_ends() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    fetch = EarlyFetch([(url, "*/*")], timeout=0.5).start()
    assert fetch.done.wait(5)
    assert fetch.answer(url) is None


def test_a_hung_server_is_given_up_on_after_the_timeout(raw_server) -> None:
    hang = threading.Event()
    server = raw_server(lambda conn: hang.wait(10))
    try:
        started = time.monotonic()
        assert get_once(server.url(), 0.3, "*/*") is None
        assert time.monotonic() - started < 5  # bounded by the timeout, not by the server
    finally:
        hang.set()


def test_many_hung_replicas_do_not_keep_the_fetch_going(raw_server) -> None:
    hang = threading.Event()
    servers = [raw_server(lambda conn: hang.wait(10)) for _ in range(6)]
    try:
        urls = [(s.url("/health"), "*/*") for s in servers]
        fetch = EarlyFetch(urls, timeout=0.3).start()
        assert fetch.done.wait(10)
        # Two timeouts' worth of waiting, not six: the sources take over after that.
        assert 1 <= fetch.attempted <= 3, fetch.attempted
        assert all(fetch.answer(u) is None for u, _ in urls)
    finally:
        hang.set()


def test_a_trickling_server_cannot_stretch_the_deadline(raw_server) -> None:
    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\n")
        for _ in range(40):
            conn.sendall(b"X: y\r\n")
            time.sleep(0.05)

    server = raw_server(trickle)
    assert get_once(server.url(), 0.3, "*/*") is None


@pytest.mark.parametrize("reply", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut short",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nup 1\r\n0\r\n\r\n",
    b"",
])
def test_broken_answers_are_dropped(raw_server, reply: bytes) -> None:
    server = raw_server(lambda conn: conn.sendall(reply))
    assert get_once(server.url(), 2.0, "*/*") is None


def test_an_endless_body_is_dropped_past_the_read_limit(raw_server, monkeypatch) -> None:
    import x402console.sources.early as early_mod

    monkeypatch.setattr(early_mod, "READ_LIMIT", 256 * 1024)

    def flood(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
        chunk = b"x" * 65536
        try:
            for _ in range(64):
                conn.sendall(chunk)
        except OSError:
            pass  # the client stopped reading

    server = raw_server(flood)
    assert get_once(server.url(), 5.0, "*/*") is None


def test_a_good_answer_is_kept_with_the_request_we_sent_and_expires(raw_server) -> None:
    server = raw_server(lambda conn: conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"status\":\"healthy\"}"))
    url = server.url("/health?x=1")
    fetch = EarlyFetch([(url, "application/json")], timeout=2.0).start()
    assert fetch.done.wait(5)
    answer = fetch.answer(url)
    assert answer is not None and answer.status == 200 and answer.body == b'{"status":"healthy"}'
    request = server.requests[0].decode()
    assert request.startswith("GET /health?x=1 HTTP/1.0\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in request
    assert "Accept: application/json\r\n" in request and "Accept-Encoding" not in request
    assert fetch.answer(url, max_age=0) is None  # too old to show
