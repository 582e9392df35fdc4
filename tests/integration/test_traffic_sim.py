"""The traffic generator against the real simulated prover: its counters move as the mix says."""

from __future__ import annotations

import asyncio
import random
import time

import httpx

from tests.rig.sim import RunningSim, metric_families, sample, sim_factory, xff  # noqa: F401
from x402console.drill.traffic import TrafficConfig, generate
from x402console.drill.traffic_mix import ALL_KINDS, INVALID_KINDS, OLD_SHAPE, VALID, build

SCRAPE_IP = "192.0.2.200"  # not one the generator hands out for 60 clients


def counters(sim: RunningSim) -> tuple[float, float]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        text = client.get(sim.url + "/metrics", headers=xff(SCRAPE_IP)).text
    fams = metric_families(text)
    total = sample(fams, "proof_generation", "proof_generation_total")
    errors = sample(fams, "proof_generation_errors", "proof_generation_errors_total")
    assert total is not None and errors is not None, text[:2000]
    return total, errors


async def test_generator_moves_the_sims_counters(sim_factory) -> None:  # noqa: F811
    sim = sim_factory()
    total0, errors0 = await asyncio.to_thread(counters, sim)
    cfg = TrafficConfig(targets=[sim.url], rate=10, clients=60, invalid_ratio=0.5, duration=2.5, seed=11,
                        timeout=5)
    stats = await asyncio.wait_for(generate(cfg), timeout=30)
    total1, errors1 = await asyncio.to_thread(counters, sim)

    assert stats.completed == stats.sent == 25
    assert "429" not in stats.by_status  # 60 clients share 25 requests: the limiter never bites
    proofs = total1 - total0
    errors = errors1 - errors0
    assert proofs >= 1 and errors >= 1
    # Every invalid kind is rejected before a proof is counted; valid ones give 200s (maybe cached).
    invalid_sent = sum(n for k, n in stats.by_kind.items() if k in INVALID_KINDS)
    assert errors == invalid_sent
    assert proofs <= stats.by_kind.get(VALID, 0) == stats.by_kind_status[VALID].get("200", 0)
    if OLD_SHAPE in stats.by_kind:
        assert stats.by_error["recipientKeyX is required"] >= stats.by_kind[OLD_SHAPE]


def test_every_kind_gets_its_expected_answer_from_the_sim(sim_factory) -> None:  # noqa: F811
    sim = sim_factory()
    rng = random.Random(12)
    mismatches = []
    with httpx.Client(trust_env=False, timeout=10) as client:
        for i, kind in enumerate(k for k in ALL_KINDS for _ in range(4)):
            req = build(kind, rng, time.time())
            # A documentation address per request, so the limiter never answers instead.
            r = client.post(sim.url + "/generate-proof", content=req.body,
                            headers={"Content-Type": "application/json", **xff(f"203.0.113.{1 + i}")})
            error = r.json().get("error") if r.status_code != 200 else None
            if (r.status_code, error) != (req.expect_status, req.expect_error):
                mismatches.append((kind, req.expect_status, req.expect_error, r.status_code, r.text[:200]))
    assert not mismatches
