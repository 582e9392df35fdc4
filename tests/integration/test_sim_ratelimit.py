"""The per-IP limiter on a real process: every route, gin's XFF trust, exemptions, profiles."""

from __future__ import annotations

import json
import re
import sqlite3

import httpx

from tests.rig.sim import metric_families, sample, sim_factory, xff  # noqa: F401

BODY_429 = b'{"error":"Rate limit exceeded","message":"Maximum 10 requests per minute. Please try again later."}'


def statuses(client: httpx.Client, method: str, path: str, n: int, ip: str) -> list[int]:
    return [client.request(method, path, headers=xff(ip)).status_code for _ in range(n)]


def test_ten_then_429_on_every_route_per_spoofed_ip(sim_factory) -> None:  # noqa: F811
    sim = sim_factory()
    with sim.client() as c:
        assert statuses(c, "GET", "/health", 10, "203.0.113.1") == [200] * 10
        r = c.get("/health", headers=xff("203.0.113.1"))
        assert r.status_code == 429 and r.content == BODY_429
        assert r.headers["content-type"] == "application/json; charset=utf-8"
        # 404s spend the same budget
        assert statuses(c, "GET", "/missing", 11, "203.0.113.2") == [404] * 10 + [429]
        assert statuses(c, "POST", "/generate-proof", 11, "203.0.113.3")[-1] == 429
        assert statuses(c, "GET", "/metrics", 11, "203.0.113.4") == [200] * 10 + [429]
        # a new spoofed address is a new bucket; the exhausted one stays exhausted
        assert c.get("/health", headers=xff("203.0.113.99")).status_code == 200
        assert c.get("/health", headers=xff("203.0.113.1")).status_code == 429
        # a fully valid chain counts as its leftmost item
        assert c.get("/health", headers=xff("203.0.113.1, 10.0.0.1")).status_code == 429
        # an invalid item makes gin fall back to the peer, 127.0.0.1, which still has budget
        assert c.get("/health", headers=xff("203.0.113.1, bogus")).status_code == 200
        metrics = c.get("/metrics", headers=xff("192.0.2.200")).text
    lines = [line for line in sim.stdout.splitlines() if line.startswith("[GIN] ")]
    assert sum(" | 429 | " in line for line in lines) == 6
    assert any(re.search(r"\| 429 \| +[0-9.]+[µnm]?s \| {5}203\.0\.113\.1 \| GET {6}\"/health\"$", line) for line in lines)
    fams = metric_families(metrics)
    # as coded: the 429 path never touches the counters, and the ip counter has no series at all
    assert "rate_limit_exceeded" not in fams
    assert sample(fams, "proof_generation_errors", "proof_generation_errors_total") == 10.0  # 10 empty POSTs
    assert sample(fams, "active_requests") == 1.0  # only this scrape is in flight
    assert "Rate limit exceeded" not in sim.stderr + sim.stdout  # main.go logs nothing for a 429


def test_exempt_ip_is_never_limited(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--exempt-ip", "203.0.113.50", "--exempt-ip", "127.0.0.1")
    with sim.client() as c:
        assert statuses(c, "GET", "/health", 25, "203.0.113.50") == [200] * 25
        assert statuses(c, "GET", "/health", 25, "127.0.0.1") == [200] * 25  # no header: peer
        assert statuses(c, "GET", "/health", 11, "203.0.113.51")[-1] == 429


def test_intended_profile_reads_env_and_counts_violations(sim_factory) -> None:  # noqa: F811
    sim = sim_factory(
        "--profile", "intended", env={"RATE_LIMIT_PER_MINUTE": "3", "CACHE_SIZE": "5", "CACHE_TTL_SECONDS": "60"}
    )
    with sim.client() as c:
        assert statuses(c, "GET", "/health", 5, "198.51.100.7") == [200, 200, 200, 429, 429]
        r = c.get("/cache/stats", headers=xff("198.51.100.7"))
        assert r.json() == {"error": "Rate limit exceeded", "message": "Maximum 3 requests per minute. Please try again later."}
        stats = c.get("/cache/stats", headers=xff("198.51.100.9")).json()
        assert (stats["maxSize"], stats["ttlSeconds"]) == (5, 60)
        fams = metric_families(c.get("/metrics", headers=xff("198.51.100.8")).text)
    assert sample(fams, "rate_limit_exceeded", "rate_limit_exceeded_total", ip="198.51.100.7") == 3.0
    assert sim.wait_for_output(lambda: sim.stdout.count('"operation":"rate_limit"') == 3)
    warnings = [json.loads(line) for line in sim.stdout.splitlines() if '"operation":"rate_limit"' in line]
    assert warnings[0]["level"] == "warning" and warnings[0]["message"] == "Rate limit exceeded"
    assert warnings[0]["client_ip"] == "198.51.100.7"
    sim.stop()
    con = sqlite3.connect(sim.db_path)
    rows = con.execute("SELECT client_ip, endpoint FROM rate_limit_log").fetchall()
    con.close()
    assert rows == [("198.51.100.7", "/health")] * 2 + [("198.51.100.7", "/cache/stats")]


def test_coded_profile_ignores_env(sim_factory) -> None:  # noqa: F811
    sim = sim_factory(env={"RATE_LIMIT_PER_MINUTE": "2", "CACHE_SIZE": "5"})
    with sim.client() as c:
        assert statuses(c, "GET", "/health", 10, "192.0.2.9") == [200] * 10
        assert c.get("/cache/stats", headers=xff("192.0.2.10")).json()["maxSize"] == 1000
