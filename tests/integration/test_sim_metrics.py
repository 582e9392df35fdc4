"""The /metrics exposition of a real simulator, parsed: names, types, labels, buckets, help."""

from __future__ import annotations

import random
import re

import httpx
import pytest

from tests.rig.sim import metric_families, sample, sim_factory, xff  # noqa: F401
from x402console.drill.payment import make_request

# family name as the parser reports it (counters lose _total) -> (type, help, buckets or None)
CUSTOM = {
    "proof_generation_duration_seconds": (
        "histogram", "Time taken to generate a proof", ["0.05", "0.1", "0.15", "0.2", "0.3", "0.5", "1.0", "2.0", "+Inf"],
    ),
    "proof_generation": ("counter", "Total number of proofs generated", None),
    "proof_generation_errors": ("counter", "Total number of proof generation errors", None),
    "proof_verification_duration_seconds": (
        "histogram", "Time taken to verify a proof", ["0.001", "0.005", "0.01", "0.02", "0.05", "0.1", "+Inf"],
    ),
    "active_requests": ("gauge", "Number of requests currently being processed", None),
    "circuit_constraints_total": ("gauge", "Total number of constraints in the circuit", None),
    "witness_generation_duration_seconds": (
        "histogram", "Time taken to generate witness", ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "+Inf"],
    ),
}
RUNTIME = {
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
    "go_goroutines": "gauge",
    "go_threads": "gauge",
    "promhttp_metric_handler_requests": "counter",
    "promhttp_metric_handler_requests_in_flight": "gauge",
}


def scrape(client: httpx.Client) -> tuple[httpx.Response, dict]:
    r = client.get("/metrics", headers={**xff("192.0.2.1"), "Accept-Encoding": "identity"})
    return r, metric_families(r.text)


def test_exposition_format_and_families(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--exempt-ip", "192.0.2.1")
    with sim.client() as c:
        r, fams = scrape(c)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "content-encoding" not in r.headers
        gz = c.get("/metrics", headers={**xff("192.0.2.1"), "Accept-Encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip" and "proof_generation_total" in gz.text
    for name, (kind, help_text, buckets) in CUSTOM.items():
        fam = fams[name]
        assert (fam.type, fam.documentation) == (kind, help_text), name
        if buckets:
            les = [s.labels["le"] for s in fam.samples if s.name.endswith("_bucket")]
            assert les == buckets, name
        else:
            assert all(s.labels == {} for s in fam.samples), name
    for name, kind in RUNTIME.items():
        assert fams[name].type == kind, name
    assert sample(fams, "process_resident_memory_bytes") > 10 * 2**20
    assert sample(fams, "go_goroutines") >= 1 and sample(fams, "go_threads") >= 1
    assert sample(fams, "active_requests") == 1.0  # the scrape itself
    assert sample(fams, "promhttp_metric_handler_requests_in_flight") == 1.0
    assert sample(fams, "circuit_constraints_total") == 0.0  # never set as coded
    assert {s.labels["code"] for s in fams["promhttp_metric_handler_requests"].samples} == {"200", "500", "503"}
    assert "rate_limit_exceeded" not in fams and "verification_failures" not in fams
    assert not any(name.endswith("_created") for name in fams)
    assert not re.search(r"^\w+_created", r.text, re.M)
    names = [line.split()[2] for line in r.text.splitlines() if line.startswith("# TYPE")]
    assert names == sorted(names)  # client_golang sorts families


def test_counters_follow_outcomes(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--exempt-ip", "192.0.2.1")
    rng = random.Random(11)
    with sim.client() as c:
        _, before = scrape(c)
        assert sample(before, "promhttp_metric_handler_requests", "promhttp_metric_handler_requests_total", code="200") == 0.0
        req = make_request(rng, recipient_pool=10**9)
        assert c.post("/generate-proof", json=req, headers=xff("198.51.100.1")).status_code == 200
        assert c.post("/generate-proof", json=req, headers=xff("198.51.100.1")).status_code == 200  # cache hit
        assert c.post("/generate-proof", content=b"x", headers=xff("198.51.100.1")).status_code == 400
        for _ in range(10):
            c.get("/health", headers=xff("198.51.100.2"))
        assert c.post("/generate-proof", content=b"x", headers=xff("198.51.100.2")).status_code == 429
        _, after = scrape(c)
    assert sample(after, "proof_generation", "proof_generation_total") == 1.0
    assert sample(after, "proof_generation_errors", "proof_generation_errors_total") == 1.0  # not the 429
    hist = "proof_generation_duration_seconds"
    assert sample(after, hist, hist + "_count") == 1.0
    assert 0.04 <= sample(after, hist, hist + "_sum") < 2.0
    vhist = "proof_verification_duration_seconds"
    assert sample(after, vhist, vhist + "_count") == 1.0
    assert sample(after, vhist, vhist + "_bucket", le="0.1") == 1.0
    assert sample(after, "promhttp_metric_handler_requests", "promhttp_metric_handler_requests_total", code="200") == 1.0  # counted after it is served
    assert sample(after, "active_requests") == 1.0


def test_intended_profile_extras(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--profile", "intended", "--exempt-ip", "192.0.2.1", "--fault", "invalid_proofs")
    with sim.client() as c:
        r = c.post("/generate-proof", json=make_request(random.Random(), recipient_pool=10**9), headers=xff("1.2.3.4"))
        assert r.status_code == 500
        _, fams = scrape(c)
    assert sample(fams, "circuit_constraints_total") == 28547.0
    assert fams["verification_failures"].type == "counter"
    assert sample(fams, "verification_failures", "verification_failures_total") == 1.0


@pytest.mark.parametrize("profile", ["coded", "intended"])
def test_go_goroutines_counts_open_connections(sim_factory, profile: str) -> None:  # noqa: F811
    import socket

    sim = sim_factory("--profile", profile, "--exempt-ip", "192.0.2.1")
    with sim.client() as c:
        _, before = scrape(c)
        socks = [socket.create_connection(("127.0.0.1", sim.port)) for _ in range(20)]
        try:
            ok = sim.wait_for_output(lambda: sample(scrape(c)[1], "go_goroutines") >= sample(before, "go_goroutines") + 20)
            assert ok
        finally:
            for s in socks:
                s.close()
