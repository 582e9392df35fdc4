"""The incident matcher as tables: each incident's typical picture ranks it first, also with the
side effects its fault brings along; a healthy system matches nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from x402console.core.matcher import Match, match, score_incident
from x402console.core.runbook import load_runbook, parse_runbook
from x402console.core.signals import ReplicaSignal, Signals
from x402console.settings.model import SeverityThresholds

GIB = 2**30
MIB = 2**20


def replica(name: str, up: bool | None = True, *, mem: float = 0.4 * GIB, growth: float | None = 0.0,
            state: str | None = "running") -> ReplicaSignal:
    return ReplicaSignal(name, up=up, state=state, memory_bytes=mem, memory_limit_bytes=4 * GIB,
                         memory_growth_bytes_per_s=growth)


HEALTHY = Signals(
    taken_at=1_700_000_000.0,
    replicas=(replica("prover-1"), replica("prover-2")),
    proof_rate=12.0,
    proof_rate_baseline=12.0,
    error_ratio=0.01,
    latency_p50=0.2,
    latency_p95=0.4,
    rate_limited_rate=0.0,
    active_requests=2,
    log_lines=1000,
    log_counts={"validation": 5},
    top_client="203.0.113.9",
    top_client_share=0.04,
    top_client_requests=40,
    db_integrity="ok",
    vk_status="match",
    components={"prometheus": "up"},
)


def sig(**changes) -> Signals:
    return replace(HEALTHY, **changes)


ALL_DOWN = (replica("prover-1", False, state="exited"), replica("prover-2", False))
ONE_DOWN = (replica("prover-1", False), replica("prover-2"))

# (row id, picture, the incident that must rank first)
PICTURES: list[tuple[str, Signals, int]] = [
    # 1: Service Down
    ("1 crash + hang", sig(replicas=ALL_DOWN, proof_rate=0.0, error_ratio=None, latency_p95=None, active_requests=None), 1),
    ("1 with panic lines and the alert", sig(replicas=ALL_DOWN, proof_rate=0.0, error_ratio=None,
                                             log_counts={"panic": 1}, alerts_firing=("ProverServiceDown",)), 1),
    ("1 hang: requests pile up", sig(replicas=ALL_DOWN, proof_rate=0.0, error_ratio=None, active_requests=40), 1),
    ("1 exited, never probed", sig(replicas=(replica("prover-1", None, state="exited"),
                                             replica("prover-2", None, state="dead")), proof_rate=None), 1),
    # 2: High Error Rate
    ("2 prover failures", sig(error_ratio=0.35, proof_rate=8.0,
                              log_counts={"generation_failed": 300, "validation": 100}), 2),
    ("2 ratio only", sig(error_ratio=0.3), 2),
    ("2 elevated (P2 band)", sig(error_ratio=0.12, log_counts={"validation": 400}), 2),
    ("2 with rate limiting and its alert", sig(error_ratio=0.3, rate_limited_rate=0.5,
                                               alerts_firing=("ProverHighErrorRate",)), 2),
    # 3: Slow Performance
    ("3 latency above the histogram", sig(latency_p95=2.0, latency_p95_at_least=True, latency_p50=2.0,
                                         active_requests=30), 3),
    ("3 exact latency > 5 s", sig(latency_p95=6.2, latency_p50=5.8), 3),
    ("3 throughput halved, no errors", sig(proof_rate=4.0, proof_rate_baseline=9.0), 3),
    ("3 title: below 5 req/s", sig(proof_rate=3.0, proof_rate_baseline=6.0, latency_p95=1.5), 3),
    # 4: Invalid Proofs
    ("4 key changed, before any traffic", sig(vk_status="changed", proof_rate=0.0, proof_rate_baseline=0.0), 4),
    ("4 invalid proofs raise errors", sig(vk_status="changed", verification_failures=50,
                                          log_counts={"verification_failed": 50, "error": 50},
                                          error_ratio=0.9, proof_rate=0.5), 4),
    ("4 logs only, key not compared", sig(vk_status=None, log_counts={"verification_failed": 20},
                                          error_ratio=0.6, proof_rate=4.0), 4),
    ("4 with the error alert", sig(verification_failures=10, error_ratio=0.5,
                                   alerts_firing=("ProverHighErrorRate",)), 4),
    # 5: Database Corruption
    ("5 integrity failed", sig(db_integrity="failed"), 5),
    ("5 corruption raises errors and downs a replica", sig(db_integrity="failed", db_error="database disk image is malformed",
                                                           log_counts={"db_error": 40}, error_ratio=0.6, proof_rate=3.0,
                                                           replicas=ONE_DOWN), 5),
    ("5 not checked yet: errors in the logs", sig(db_integrity=None, log_counts={"db_error": 40}, error_ratio=0.6,
                                                  proof_rate=3.0, alerts_firing=("ProverHighErrorRate",)), 5),
    ("5 unreadable file", sig(db_integrity=None, db_error="file is not a database"), 5),
    # 6: DDoS
    ("6 three attackers", sig(top_client="203.0.113.5", top_client_share=0.31, rate_limited_rate=85.0,
                              log_counts={"rate_limit": 5000}), 6),
    ("6 overloaded: latency and errors", sig(top_client_share=0.5, rate_limited_rate=120.0, latency_p95=1.8,
                                             error_ratio=0.08), 6),
    ("6 spoofed IPs: refusals only", sig(rate_limited_rate=25.0, top_client_share=0.06), 6),
    # 7: Memory Leak
    ("7 early: growing", sig(replicas=(replica("prover-1", mem=0.8 * GIB, growth=4 * MIB), replica("prover-2"))), 7),
    ("7 near the limit", sig(replicas=(replica("prover-1", mem=3.5 * GIB, growth=4 * MIB), replica("prover-2"))), 7),
    ("7 unresponsive replica", sig(replicas=(replica("prover-1", False, mem=3.9 * GIB, growth=4 * MIB), replica("prover-2")),
                                   log_counts={"out_of_memory": 2}), 7),
    ("7 leak took every replica down", sig(replicas=(replica("prover-1", False, mem=3.9 * GIB, growth=4 * MIB),
                                                     replica("prover-2", False, mem=3.9 * GIB, growth=4 * MIB)),
                                           proof_rate=0.0, error_ratio=None, alerts_firing=("ProverServiceDown",)), 7),
    ("7 OOM lines only", sig(log_counts={"out_of_memory": 3}), 7),
]


@pytest.mark.parametrize("picture, first", [p[1:] for p in PICTURES], ids=[p[0] for p in PICTURES])
def test_the_typical_picture_ranks_its_incident_first(picture, first):
    found = match(picture)
    assert found, "nothing matched"
    assert found[0].incident == first, [(m.incident, m.score) for m in found]
    if len(found) > 1:
        assert found[0].score > found[1].score  # a clear first, not a tie broken by number
    assert found[0].evidence


def test_every_incident_is_first_in_some_picture():
    assert {first for _, _, first in PICTURES} == {i.number for i in load_runbook().incidents}


@pytest.mark.parametrize(
    "picture",
    [
        HEALTHY,
        # idle: no traffic at all, nothing failing
        sig(proof_rate=0.0, proof_rate_baseline=0.0, error_ratio=None, latency_p50=None, latency_p95=None,
            log_counts={}, top_client=None, top_client_share=None, top_client_requests=None, active_requests=0),
        # one client sends most requests but nobody is refused (a small integrator)
        sig(top_client_share=0.9),
        # normal bad input, errors below 5 %
        sig(error_ratio=0.03, log_counts={"validation": 30}),
        # memory flat and well below the limit
        sig(replicas=(replica("prover-1", mem=2 * GIB, growth=0.0), replica("prover-2", mem=1 * GIB, growth=-1000.0))),
        # nothing observed at all
        Signals(taken_at=0.0),
    ],
    ids=["busy", "idle", "dominant but not refused", "bad input", "flat memory", "blind"],
)
def test_a_healthy_system_matches_nothing(picture):
    assert match(picture) == []


# ----------------------------------------------------------------- what a match says

def test_a_match_names_its_incident_and_says_why():
    (m, *_) = match(sig(error_ratio=0.35, log_counts={"generation_failed": 300}))
    assert (m.incident, m.id, m.title, m.severity) == (2, "high_error_rate", "High Error Rate (>20%)", "P1")
    assert m.evidence[0] == "error ratio 35.0% > 20%"  # the strongest sign first
    assert "300 'Proof generation failed' log lines" in m.evidence
    assert 0 < m.score <= 1


def test_evidence_names_the_replica_and_the_attacker():
    (m, *_) = match(sig(replicas=(replica("prover-1"), replica("prover-2", mem=3.5 * GIB, growth=4 * MIB))))
    assert m.evidence[0] == "prover-2 uses 87.5% of its memory limit > 80%"
    (m, *_) = match(sig(top_client="203.0.113.5", top_client_share=0.31, rate_limited_rate=85.0))
    assert m.evidence[0] == "client 203.0.113.5 sends 31.0% of requests and clients are rate limited (85.0 req/s)"


def test_missing_says_what_would_confirm_it():
    m = score_incident(load_runbook().incident(5), sig(db_integrity=None, log_counts={"db_error": 4}))
    assert m.score > 0 and "db_integrity" in m.missing
    m = score_incident(load_runbook().incident(4), sig(vk_status=None, verification_failures=3))
    assert "vk_status" in m.missing


def test_scores_are_ordered_and_deterministic():
    picture = sig(db_integrity="failed", error_ratio=0.6, replicas=ONE_DOWN, latency_p95=1.5)
    first, second = match(picture), match(picture)
    assert first == second
    scores = [m.score for m in first]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= 1 for s in scores)


def test_more_signs_never_lower_a_score():
    inc = load_runbook().incident(2)
    base = score_incident(inc, sig(error_ratio=0.3)).score
    more = score_incident(inc, sig(error_ratio=0.3, log_counts={"generation_failed": 9})).score
    assert more > base


def test_a_check_counts_once_however_many_replicas_show_it():
    inc = load_runbook().incident(7)
    one = score_incident(inc, sig(replicas=(replica("p1", mem=3.5 * GIB), replica("p2"))))
    both = score_incident(inc, sig(replicas=(replica("p1", mem=3.5 * GIB), replica("p2", mem=3.6 * GIB))))
    assert one.score == both.score
    assert len(both.evidence) == 2  # but each replica is named


def test_score_zero_incidents_are_left_out():
    found = match(sig(vk_status="changed"))
    assert [m.incident for m in found] == [4]
    assert score_incident(load_runbook().incident(1), HEALTHY) == Match(
        1, "Service Down / Not Responding", 0.0, (), (), "service_down", "P0"
    )


def test_config_thresholds_reach_the_matcher():
    picture = sig(error_ratio=0.15)
    (default,) = match(picture)
    (lowered,) = match(picture, thresholds=SeverityThresholds(error_ratio_p1=0.10))
    assert "error ratio 15.0% > 10%" in lowered.evidence
    assert lowered.score > default.score


# ----------------------------------------------------------------- tie-break

TIE_RUNBOOK = """
[[level]]
id = "P0"
name = "Critical"
examples = ["x"]
response = "now"
resolution = "soon"
response_minutes = 15
[[level]]
id = "P1"
name = "High"
examples = ["x"]
response = "now"
resolution = "soon"
response_minutes = 60
[[level]]
id = "P2"
name = "Medium"
examples = ["x"]
response = "now"
resolution = "soon"
response_minutes = 240
[[level]]
id = "P3"
name = "Low"
examples = ["x"]
response = "now"
resolution = "soon"
response_minutes = 1440
""" + "".join(
    f"""
[[incident]]
number = {n}
id = "i{n}"
title = "Incident {n}"
severity = "{sev}"
severity_basis = "test"
[[incident.symptom]]
text = "errors"
[[incident.symptom.check]]
weight = 0.5
when = [{{ signal = "error_ratio", op = ">", value = 0.1 }}]
evidence = "errors {{value}}"
[[incident.section]]
kind = "diagnosis"
title = "Diagnosis"
step = ["look"]
"""
    for n, sev in ((1, "P2"), (2, "P1"), (3, "P2"), (4, "P1"))
)


def test_equal_scores_go_to_the_more_severe_then_the_lower_number():
    runbook = parse_runbook(TIE_RUNBOOK, "tie.toml")
    found = match(sig(error_ratio=0.3), runbook)
    assert [m.incident for m in found] == [2, 4, 1, 3]
    assert len({m.score for m in found}) == 1
