"""Every route of a real simulator process over real HTTP: status, headers and exact bodies."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import httpx
import pytest

from tests.rig.sim import RunningSim, metric_families, module_sim_factory, sample  # noqa: F401
from x402console.drill.payment import make_old_shape_request, make_request, signature_for

JSON_CT = "application/json; charset=utf-8"


@pytest.fixture(scope="module")
def sim(module_sim_factory) -> RunningSim:  # noqa: F811
    return module_sim_factory("--exempt-ip", "127.0.0.1")


@pytest.fixture
def client(sim: RunningSim):
    with sim.client() as c:
        yield c


def fresh_request(**kw: Any) -> dict[str, Any]:
    """A signed request whose public inputs are new, so the cache cannot answer it."""
    return make_request(random.Random(), recipient_pool=10**12, **kw)


def counters(client: httpx.Client) -> dict[str, float]:
    fams = metric_families(client.get("/metrics").text)
    return {
        "errors": sample(fams, "proof_generation_errors", "proof_generation_errors_total") or 0.0,
        "proofs": sample(fams, "proof_generation", "proof_generation_total") or 0.0,
        "prove_count": sample(fams, "proof_generation_duration_seconds", "proof_generation_duration_seconds_count") or 0.0,
    }


def test_health(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.headers["content-type"] == JSON_CT
    assert r.content == b'{"service":"umbra-prover","status":"healthy","version":"1.0.0"}'
    assert "date" in r.headers and r.headers["content-length"] == str(len(r.content))


def test_cache_stats_shape(client: httpx.Client) -> None:
    r = client.get("/cache/stats")
    assert r.status_code == 200 and r.headers["content-type"] == JSON_CT
    body = r.json()
    assert list(body) == ["maxSize", "size", "totalAccess", "ttlSeconds"]
    assert body["maxSize"] == 1000 and body["ttlSeconds"] == 3600


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/prove"),
        ("POST", "/health"),
        ("GET", "/generate-proof"),
        ("DELETE", "/metrics"),
        ("PUT", "/cache/stats"),
        ("HEAD", "/health"),
        ("GET", "/debug/pprof/goroutine"),
        ("GET", "//health"),
    ],
)
def test_unknown_routes_and_wrong_methods_are_404(client: httpx.Client, method: str, path: str) -> None:
    r = client.request(method, path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "text/plain"
    if method != "HEAD":
        assert r.content == b"404 page not found"


def test_trailing_slash_is_redirected_like_gin(client: httpx.Client) -> None:
    r = client.get("/health/")
    assert r.status_code == 301 and r.headers["location"] == "/health"
    r = client.post("/generate-proof/", content=b"{}")
    assert r.status_code == 307 and r.headers["location"] == "/generate-proof"


def test_generate_proof_success_body(client: httpx.Client) -> None:
    req = fresh_request()
    before = counters(client)
    r = client.post("/generate-proof", json=req)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == JSON_CT
    assert r.text.startswith('{"proof":"{\\"Ar\\":')  # struct field order, proof is a JSON string
    body = r.json()
    assert list(body) == ["proof", "publicInputs", "generationTimeMs"]
    assert body["publicInputs"] == [
        req["minAmount"], req["recipientKeyX"], req["recipientKeyY"], req["maxBlockAge"], str(req["currentTime"]),
    ]
    assert isinstance(body["generationTimeMs"], int) and body["generationTimeMs"] >= 40
    proof = json.loads(body["proof"])
    assert list(proof) == ["Ar", "Krs", "Bs", "Commitments", "CommitmentPok"]
    assert all(int(proof["Ar"][k]) > 0 for k in ("X", "Y"))
    after = counters(client)
    assert after["proofs"] == before["proofs"] + 1
    assert after["prove_count"] == before["prove_count"] + 1
    assert after["errors"] == before["errors"]


def test_cache_hit_skips_signature_and_metrics(client: httpx.Client) -> None:
    req = fresh_request()
    first = client.post("/generate-proof", json=req).json()
    stats = client.get("/cache/stats").json()
    before = counters(client)
    # same public inputs, different private inputs and a wrong signature: still served
    other = {**req, "actualAmount": str(int(req["actualAmount"]) + 1), "signatureS": "1"}
    r = client.post("/generate-proof", json=other)
    assert r.status_code == 200
    assert r.json() == {**first, "generationTimeMs": 0}
    assert counters(client) == before
    after_stats = client.get("/cache/stats").json()
    assert after_stats["size"] == stats["size"]
    assert after_stats["totalAccess"] == stats["totalAccess"] + 1


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "Invalid request format"),
        (b"", 400, "Invalid request format"),
        (b"[1,2]", 400, "Invalid request format"),
        ("string-time", 400, "Invalid request format"),
        ("old-shape", 400, "recipientKeyX is required"),
        ("zero-min", 400, "minAmount must be positive"),
        ("stale", 400, "currentTime must be within last 5 minutes"),
        ("future-payment", 400, "paymentTime cannot be in the future"),
        ("bad-signature", 400, "Invalid signature: invalid EdDSA signature"),
        ("non-field-signature", 400, "Invalid signature: signature verification error: signatureR8x is not a field element"),
        ("underpaid", 500, "proof generation failed"),
        ("bad-sender-key", 500, "witness creation failed"),
    ],
)
def test_generate_proof_failures(client: httpx.Client, body: Any, status: int, error: str) -> None:
    now = int(time.time())
    if isinstance(body, bytes):
        content = body
    else:
        req = fresh_request()
        if body == "string-time":
            req["currentTime"] = str(req["currentTime"])
        elif body == "old-shape":
            req = make_old_shape_request()
        elif body == "zero-min":
            req["minAmount"] = "0"
        elif body == "stale":
            req["currentTime"] = now - 3600
        elif body == "future-payment":
            req["paymentTime"] = req["currentTime"] + 5
        elif body == "bad-signature":
            req["signatureS"] = str(int(req["signatureS"]) ^ 1)
        elif body == "non-field-signature":
            req["signatureR8x"] = "xyz"
        elif body == "underpaid":
            req = fresh_request(min_amount=5000, actual_amount=4999)
        elif body == "bad-sender-key":
            req["senderKeyX"] = "not-a-number"
            req["signatureR8x"], req["signatureR8y"], req["signatureS"] = signature_for(req)
        content = json.dumps(req).encode()
    before = counters(client)
    r = client.post("/generate-proof", content=content, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()) == (status, {"error": error})
    assert r.headers["content-type"] == JSON_CT
    after = counters(client)
    assert after["errors"] == before["errors"] + 1  # every one of these counts as an error
    assert after["proofs"] == before["proofs"]
    assert after["prove_count"] == before["prove_count"]  # only successful proves are observed
