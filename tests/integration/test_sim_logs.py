"""Both log shapes of a real simulator, line by line."""

from __future__ import annotations

import json
import random
import re

from tests.rig.sim import sim_factory, xff  # noqa: F401
from x402console.drill.payment import make_request

STD = r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d "
GIN = re.compile(
    r'\[GIN\] \d{4}/\d\d/\d\d - \d\d:\d\d:\d\d \| (?P<status>\d{3}) \| (?P<latency>[ 0-9.µnmhs]{13}) \|'
    r' (?P<ip>[ 0-9a-f.:]{15,}) \| (?P<method>[A-Z]+ *) "(?P<path>[^"]*)"$'
)
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)")


def traffic(sim) -> dict[str, dict]:
    """One of each outcome; returns the requests used."""
    rng = random.Random(5)
    ok = make_request(rng, recipient_pool=10**9)
    with sim.client() as c:
        assert c.post("/generate-proof", json=ok, headers=xff("203.0.113.10")).status_code == 200
        assert c.post("/generate-proof", json=ok, headers=xff("203.0.113.11")).status_code == 200
        assert c.post("/generate-proof", content=b"{oops", headers=xff("203.0.113.12")).status_code == 400
        bad = {**make_request(rng, recipient_pool=10**9), "minAmount": "0"}
        assert c.post("/generate-proof", json=bad, headers=xff("203.0.113.13")).status_code == 400
        forged = {**make_request(rng, recipient_pool=10**9), "signatureS": "5"}
        assert c.post("/generate-proof", json=forged, headers=xff("203.0.113.14")).status_code == 400
        assert c.get("/nowhere", headers=xff("203.0.113.15")).status_code == 404
    return {"ok": ok}


def test_gin_format_lines(sim_factory) -> None:  # noqa: F811
    sim = sim_factory()
    traffic(sim)
    assert sim.wait_for_output(lambda: sim.stdout.count("[GIN] ") >= 7)
    err = sim.stderr.splitlines()
    startup = [line[20:] for line in err[:10]]
    assert all(re.match(STD, line) for line in err)
    assert startup == [
        "Starting Umbra Protocol prover service...",
        "Compiling circuit...",
        "Circuit constraints: 28547",
        "WARNING: No trusted setup keys found, generating new keys",
        "WARNING: This is for development only - do NOT use in production",
        "Keys saved to ./keys/ directory",
        "Circuit compiled successfully",
        "Rate limiter initialized",
        "Proof cache initialized",
        f"Prover service ready on :{sim.port}",
    ]
    requests = [line[20:] for line in err[10:]]
    assert requests[0] == "Generating proof for 203.0.113.10"
    assert re.fullmatch(r"Proof generated in \d+ms", requests[1])
    assert requests[2:] == [
        "✓ Proof served from cache for 203.0.113.11",
        "Invalid request from 203.0.113.12: invalid character 'o' looking for beginning of object key string",
        "Validation failed from 203.0.113.13: minAmount must be positive",
        "Generating proof for 203.0.113.14",
        "Signature verification failed: invalid EdDSA signature",
    ]
    out = sim.stdout.splitlines()
    assert out[0] == "[GIN-debug] [WARNING] Creating an Engine instance with the Logger and Recovery middleware already attached."
    assert "[GIN-debug] POST   /generate-proof           --> main.generateProofHandler (5 handlers)" in out
    assert "[GIN-debug] GET    /cache/stats              --> main.cacheStatsHandler (5 handlers)" in out
    assert "[GIN-debug] [WARNING] You trusted all proxies, this is NOT safe. We recommend you to set a value." in out
    assert f"[GIN-debug] Listening and serving HTTP on :{sim.port}" in out
    access = [GIN.match(line) for line in out if line.startswith("[GIN] ")]
    assert all(access), [line for line in out if line.startswith("[GIN] ")]
    got = [(m["status"], m["ip"].strip(), m["method"].strip(), m["path"]) for m in access if m]
    assert got[-6:] == [
        ("200", "203.0.113.10", "POST", "/generate-proof"),
        ("200", "203.0.113.11", "POST", "/generate-proof"),
        ("400", "203.0.113.12", "POST", "/generate-proof"),
        ("400", "203.0.113.13", "POST", "/generate-proof"),
        ("400", "203.0.113.14", "POST", "/generate-proof"),
        ("404", "203.0.113.15", "GET", "/nowhere"),
    ]
    assert all(len(m["ip"]) == 15 and len(m["method"]) == 8 for m in access if m)


def test_json_format_lines(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--profile", "intended", env={"LOG_LEVEL": "debug"})
    traffic(sim)
    assert sim.wait_for_output(lambda: sim.stdout.count("Signature") + sim.stdout.count("signature") >= 1)
    entries = []
    for line in sim.stdout.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            assert list(entry) == sorted(entry), line
            assert line == json.dumps(entry, separators=(",", ":"), ensure_ascii=False), line
            assert RFC3339.fullmatch(entry["timestamp"])
            assert entry["level"] in ("debug", "info", "warning", "error", "fatal")
            entries.append(entry)
        else:
            assert line.startswith("[GIN] "), line  # gin's access log still shares stdout
    messages = [e["message"] for e in entries]
    assert messages[:2] == ["Logger initialized", "Service starting"]
    assert entries[0]["service"] == "x402-zk-prover" and entries[1]["port"] == str(sim.port)
    assert "Database initialized" in messages and "Service is ready to accept requests" in messages
    assert not sim.stderr.strip()  # nothing goes through the stdlib logger
    by_ip = {e.get("client_ip"): e for e in entries if e.get("operation") in ("proof_generation", "validation")}
    done = by_ip["203.0.113.10"]
    assert done["message"] == "Proof generated successfully" and done["success"] is True
    assert isinstance(done["duration_ms"], int) and done["min_amount"] and done["actual_amount"]
    hit = next(e for e in entries if e.get("result") == "hit")
    assert (hit["level"], hit["message"], hit["client_ip"]) == ("debug", "Proof served from cache", "203.0.113.11")
    invalid = by_ip["203.0.113.13"]
    assert (invalid["level"], invalid["message"], invalid["field"], invalid["reason"]) == (
        "warning", "Input validation failed", "minAmount", "minAmount must be positive",
    )
    assert by_ip["203.0.113.12"]["field"] == "request"
    assert by_ip["203.0.113.14"]["reason"] == "invalid EdDSA signature"


def test_json_level_threshold(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--log-format", "json")  # LOG_LEVEL unset: info
    traffic(sim)
    assert sim.wait_for_output(lambda: "Input validation failed" in sim.stdout)
    assert '"level":"debug"' not in sim.stdout
