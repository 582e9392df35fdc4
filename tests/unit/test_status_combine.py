"""Choosing between metric and access-log figures, counter increases between two scrapes, and
the memory trend's noise floor."""

from __future__ import annotations

import pytest

from x402console.sources.scrape import ERRORS, PROOFS, ReplicaReading
from x402console.status.combine import choose_error_ratio, choose_latency, choose_proof_rate
from x402console.status.logcount import LogSnapshot
from x402console.status.metrics_once import replica_increase
from x402console.status.trend import NOISE_FLOOR_BYTES, memory_trend

MIB = 2**20


def _logs(attempts: int = 0, failures: int = 0, latencies: tuple[float, ...] = (), span: float = 60.0) -> LogSnapshot:
    return LogSnapshot(window_seconds=60, span_seconds=span, lines=attempts * 2, proof_attempts=attempts,
                       proof_failures=failures, proof_successes=attempts - failures, proof_latencies=latencies)


def test_a_lower_bound_p95_yields_to_real_durations_from_the_log():
    chosen = choose_latency(1.8, 2.0, True, 40, _logs(5, 0, (5.8, 6.0, 6.2, 6.4, 6.6)))
    assert chosen.source == "logs" and chosen.p95 == pytest.approx(6.6) and not chosen.at_least


def test_the_figure_with_more_requests_behind_it_wins():
    assert choose_latency(0.2, 0.4, False, 10, _logs(50, 0, (0.1,) * 50)).source == "logs"
    assert choose_latency(0.2, 0.4, False, 500, _logs(50, 0, (0.1,) * 50)).source == "metrics"
    assert choose_latency(0.2, 0.4, False, None, _logs(50, 0, (0.1,) * 50)).source == "metrics"  # unknown count: many
    assert choose_latency(None, None, False, None, _logs(2, 0, (0.1, 0.2))).source == "none"  # too few in the log
    assert choose_error_ratio(0.0, 8, _logs(200, 60)) == pytest.approx(0.3)
    assert choose_error_ratio(0.1, 1000, _logs(200, 60)) == 0.1
    assert choose_error_ratio(None, None, _logs(3, 3)) is None  # under the minimum: no log ratio either
    assert choose_proof_rate(None, None, _logs(120, 0, span=60)) == pytest.approx(2.0)
    assert choose_proof_rate(5.0, None, None) == 5.0


def test_counter_increase_between_two_scrapes_survives_a_restart():
    before = ReplicaReading(counters={PROOFS: 100.0, ERRORS: 5.0}, start_time=1000.0)
    same = ReplicaReading(counters={PROOFS: 130.0, ERRORS: 5.0}, start_time=1000.0)
    assert replica_increase(before, same, PROOFS) == 30.0
    assert replica_increase(before, same, ERRORS) == 0.0
    # restarted in between and already past its old value: the start time tells
    restarted = ReplicaReading(counters={PROOFS: 140.0}, start_time=1500.0)
    assert replica_increase(before, restarted, PROOFS) == 140.0
    # no start time exported, counter went down: reset
    assert replica_increase(ReplicaReading(counters={PROOFS: 100.0}), ReplicaReading(counters={PROOFS: 7.0}), PROOFS) == 7.0
    assert replica_increase(before, same, "rate_limited") is None


def test_memory_trend_has_a_noise_floor():
    assert memory_trend([(0.0, 50 * MIB), (2.0, 50 * MIB + NOISE_FLOOR_BYTES // 2)]) == 0.0
    assert memory_trend([(0.0, 50 * MIB), (2.0, 70 * MIB)]) == pytest.approx(10 * MIB)
    assert memory_trend([(0.0, 50 * MIB)]) is None
    assert memory_trend([(0.0, 50 * MIB), (0.1, 90 * MIB)]) is None  # too short a span to say
    assert memory_trend([(0.0, 90 * MIB), (2.0, 60 * MIB)]) == pytest.approx(-15 * MIB)
