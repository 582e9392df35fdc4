"""Every injectable fault, observed from outside the process the way an operator would see it."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import sqlite3
import time

import httpx
import pytest

from tests.rig.sim import metric_families, sample, sim_factory, start_sim, xff  # noqa: F401
from x402console.drill.payment import make_request


SCRAPER = "192.0.2.250"


@pytest.fixture
def sims(sim_factory):  # noqa: F811
    def start(*args: str, **kwargs):
        return sim_factory("--exempt-ip", SCRAPER, *args, **kwargs)

    return start


def fresh() -> dict:
    return make_request(random.Random(), recipient_pool=10**12)


def prove(sim, ip: str = "198.51.100.60") -> httpx.Response:
    with sim.client(timeout=30) as c:
        return c.post("/generate-proof", json=fresh(), headers=xff(ip))


def scrape(sim) -> dict:
    """Scrapes come from 192.0.2.250, which every simulator here exempts, like Prometheus."""
    with sim.client() as c:
        r = c.get("/metrics", headers=xff(SCRAPER))
        assert r.status_code == 200, r.text
        return metric_families(r.text)


def errors_total(sim) -> float:
    return sample(scrape(sim), "proof_generation_errors", "proof_generation_errors_total") or 0.0


def integrity_report(path) -> list[str]:
    con = sqlite3.connect(path, timeout=5)
    rows: list[str] = []
    try:
        for (row,) in con.execute("PRAGMA integrity_check"):
            rows.append(row)
    except sqlite3.DatabaseError as exc:
        rows.append(str(exc))
    finally:
        con.close()
    return rows


def test_crash_exits_with_the_code(sims) -> None:
    sim = sims()
    assert sim.control.set_fault("crash", exit_code=3) == {"crash": {"exit_code": 3, "after_seconds": 0.0}}
    assert sim.wait_exit(10) == 3
    assert "Fatal error in prover: exit status 3" in sim.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(sim.url + "/health", timeout=2)


def test_crash_at_start_is_a_go_panic(sims) -> None:
    sim = sims("--fault", 'crash={"after_seconds": 0.2}', wait_ready=False)
    assert sim.wait_exit(15) == 2
    assert "panic: runtime error: invalid memory address or nil pointer dereference" in sim.stderr
    assert "Prover service ready on" in sim.stderr  # it did start first


def test_hang_accepts_but_never_answers(sims) -> None:
    sim = sims()
    answered = sim.stdout.count("[GIN] ")
    sim.control.set_fault("hang")
    held = socket.create_connection(("127.0.0.1", sim.port), timeout=5)  # TCP connect succeeds
    try:
        held.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.77\r\n\r\n")
        held.settimeout(1.0)
        with pytest.raises(socket.timeout):
            held.recv(100)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(sim.url + "/health", timeout=1.0, headers=xff("192.0.2.78"))
        status = sim.control.status()
        assert status["faults"] == {"hang": {}} and status["held_connections"] >= 1
        assert sim.stdout.count("[GIN] ") == answered  # nothing was answered, nothing logged
        sim.control.clear_fault("hang")
        held.settimeout(5.0)
        assert held.recv(100).startswith(b"HTTP/1.1 200 OK")  # the held request resumes
        assert httpx.get(sim.url + "/health", timeout=5, headers=xff("192.0.2.79")).status_code == 200
    finally:
        held.close()


async def test_error_ratio_fails_that_share_of_proofs(sims) -> None:
    sim = sims()
    sim.control.set_fault("error_ratio", ratio=0.3)
    sem = asyncio.Semaphore(20)

    async def one(i: int, client: httpx.AsyncClient) -> int:
        async with sem:
            r = await client.post("/generate-proof", json=fresh(), headers=xff(f"203.0.113.{i}"))
            if r.status_code == 500:
                assert r.json() == {"error": "proof generation failed"}
            return r.status_code

    async with httpx.AsyncClient(base_url=sim.url, timeout=30, trust_env=False) as client:
        codes = await asyncio.gather(*(one(i, client) for i in range(1, 101)))
    failed = codes.count(500)
    assert codes.count(200) + failed == 100
    assert 12 <= failed <= 50  # binomial(100, 0.3): far outside 5 sigma otherwise
    assert errors_total(sim) == failed
    assert sim.wait_for_output(lambda: sim.stderr.count("Proof generation failed: ") == failed)


def test_latency_reaches_the_inf_bucket(sims) -> None:
    sim = sims()
    sim.control.set_fault("latency", seconds=2.5, jitter=0)
    r = prove(sim)
    assert r.status_code == 200 and r.json()["generationTimeMs"] >= 2500
    fams = scrape(sim)
    h = "proof_generation_duration_seconds"
    assert sample(fams, h, h + "_bucket", le="2.0") == 0.0
    assert sample(fams, h, h + "_bucket", le="+Inf") == 1.0
    assert sample(fams, h, h + "_sum") >= 2.5
    sim.control.clear_fault("latency")
    assert prove(sim, "198.51.100.61").json()["generationTimeMs"] < 2500


def test_invalid_proofs(sims) -> None:
    sim = sims("--profile", "intended", "--log-format", "gin")
    sim.control.set_fault("invalid_proofs")
    r = prove(sim)
    assert (r.status_code, r.json()) == (500, {"error": "generated proof is invalid"})
    assert sim.wait_for_output(lambda: "Proof verification failed: pairing doesn't match" in sim.stderr)
    fams = scrape(sim)
    assert sample(fams, "proof_generation_errors", "proof_generation_errors_total") == 1.0
    assert sample(fams, "verification_failures", "verification_failures_total") == 1.0
    v = "proof_verification_duration_seconds"
    assert sample(fams, v, v + "_count") == 0.0
    sim.control.clear_fault("invalid_proofs")
    assert prove(sim, "198.51.100.61").status_code == 200


def test_vk_change_and_restore(sims) -> None:
    sim = sims()
    vk = sim.state_dir / "keys" / "verification_key.json"
    reference = (sim.state_dir / "keys" / "backup" / "verification_key.json").read_bytes()
    assert vk.read_bytes() == reference
    assert prove(sim, "198.51.100.70").status_code == 200
    sim.control.set_fault("vk_change")
    assert vk.read_bytes() != reference  # what `diff verification_key.json backup/...` shows
    r = prove(sim, "198.51.100.71")
    assert (r.status_code, r.json()) == (500, {"error": "generated proof is invalid"})
    sim.control.clear_fault("vk_change")
    assert vk.read_bytes() == reference
    assert prove(sim, "198.51.100.72").status_code == 200


def test_memory_leak_grows_rss(sims) -> None:
    sim = sims()
    base = sample(scrape(sim), "process_resident_memory_bytes")
    sim.control.set_fault("memory_leak", mb_per_second=60, max_mb=80)

    def grown() -> bool:
        return sample(scrape(sim), "process_resident_memory_bytes") - base >= 60 * 2**20

    assert sim.wait_for_output(grown, timeout=10)
    time.sleep(0.5)
    assert sample(scrape(sim), "process_resident_memory_bytes") - base < 120 * 2**20  # capped by max_mb
    assert 79 <= sim.control.status()["leaked_mb"] <= 80
    sim.control.clear_fault("memory_leak")
    assert sim.control.status()["leaked_mb"] == 0


def test_db_corruption_then_restart_fails(sims, tmp_path) -> None:
    sim = sims()
    for i in range(5):
        assert prove(sim, f"198.51.100.{80 + i}").status_code == 200
    good_backup = sim.control.backup()
    faults = sim.control.set_fault("db_corruption", pages=4)
    assert faults == {"db_corruption": {"pages": 4}}
    assert len(sim.control.status()["damaged_pages"]) == 4
    report = integrity_report(sim.db_path)
    assert report != ["ok"] and any("malformed" in r or "btreeInitPage" in r for r in report)
    r = prove(sim, "198.51.100.90")
    assert r.status_code == 200  # a failed write does not fail the request
    assert sim.wait_for_output(
        lambda: "Failed to store proof in database: database disk image is malformed" in sim.stderr
    )
    sim.control.clear_fault("db_corruption")
    assert integrity_report(sim.db_path) != ["ok"]  # clearing the fault does not repair the file
    assert sim.stop() == 0

    again = start_sim(tmp_path, "--exempt-ip", SCRAPER, state_dir=sim.state_dir, wait_ready=False, name="restart")
    try:
        assert again.wait_exit(15) == 1
        assert "Failed to initialize database: database disk image is malformed" in again.stderr
    finally:
        again.stop()

    # the runbook's recovery: copy the latest backup over proofs.db and restart
    shutil.copyfile(good_backup, sim.db_path)
    restored = start_sim(tmp_path, "--exempt-ip", SCRAPER, state_dir=sim.state_dir, name="restored")
    try:
        assert integrity_report(sim.db_path) == ["ok"]
        assert prove(restored, "198.51.100.91").status_code == 200
    finally:
        restored.stop()


def test_faults_from_the_command_line(sims) -> None:
    sim = sims("--fault", 'error_ratio={"ratio": 1}', "--fault", "invalid_proofs")
    assert sim.control.faults() == {"error_ratio": {"ratio": 1.0}, "invalid_proofs": {"ratio": 1.0}}
    assert prove(sim).json() == {"error": "proof generation failed"}
    sim.control.clear_all()
    assert sim.control.faults() == {}
    assert prove(sim, "198.51.100.61").status_code == 200
