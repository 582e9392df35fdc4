"""Fleet numbers computed from scraped exposition texts, as Prometheus would compute them."""

from __future__ import annotations

import math

import pytest

from x402console.settings.model import MetricNames
from x402console.sources.exposition import parse_exposition
from x402console.sources.scrape import FleetWindow, read_exposition

NAMES = MetricNames()
LES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2)


def expo(
    proofs: float,
    errors: float,
    *,
    observations: dict[float, int] | None = None,
    duration_sum: float = 0.0,
    active: float = 0,
    rss: float = 50e6,
    start: float = 1000.0,
    limited: dict[str, float] | None = None,
    verification: float | None = None,
) -> str:
    """A /metrics body shaped like the prover's; ``observations`` maps a bucket's upper bound
    (float('inf') for above 2 s) to how many observations fell in it (not cumulative)."""
    observations = observations or {}
    lines = [
        "# HELP active_requests Number of requests currently being processed",
        "# TYPE active_requests gauge",
        f"active_requests {active}",
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
        f"process_resident_memory_bytes {rss}",
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {start}",
        "# HELP proof_generation_duration_seconds Time taken to generate a proof",
        "# TYPE proof_generation_duration_seconds histogram",
    ]
    cumulative = 0
    for le in LES:
        cumulative += observations.get(le, 0)
        lines.append(f'proof_generation_duration_seconds_bucket{{le="{le}"}} {cumulative}')
    cumulative += observations.get(math.inf, 0)
    lines += [
        f'proof_generation_duration_seconds_bucket{{le="+Inf"}} {cumulative}',
        f"proof_generation_duration_seconds_sum {duration_sum}",
        f"proof_generation_duration_seconds_count {cumulative}",
        "# HELP proof_generation_errors_total Total number of proof generation errors",
        "# TYPE proof_generation_errors_total counter",
        f"proof_generation_errors_total {errors}",
        "# HELP proof_generation_total Total number of proofs generated",
        "# TYPE proof_generation_total counter",
        f"proof_generation_total {proofs}",
    ]
    if limited is not None:
        lines += ["# HELP rate_limit_exceeded_total Number of rate limit violations by IP",
                  "# TYPE rate_limit_exceeded_total counter"]
        lines += [f'rate_limit_exceeded_total{{ip="{ip}"}} {v}' for ip, v in limited.items()]
    if verification is not None:
        lines += ["# TYPE verification_failures_total counter", f"verification_failures_total {verification}"]
    return "\n".join(lines) + "\n"


def feed(window: FleetWindow, replica: str, ts: float, text: str) -> bool:
    parsed = parse_exposition(text)
    assert parsed.ok, parsed.errors
    return window.observe(replica, ts, read_exposition(parsed, NAMES))


def test_reading_picks_the_runbook_numbers_and_sums_rate_limits_over_ips():
    parsed = parse_exposition(expo(10, 2, observations={0.1: 3, 2: 1}, duration_sum=2.5, active=4,
                                   limited={"203.0.113.7": 5, "198.51.100.2": 2}, verification=1))
    r = read_exposition(parsed, NAMES)
    assert r.counters["proofs"] == 10
    assert r.counters["errors"] == 2
    assert r.counters["rate_limited"] == 7
    assert r.counters["verification_failures"] == 1
    assert r.counters["duration_count"] == 4
    assert r.counters["duration_sum"] == 2.5
    assert r.active_requests == 4
    assert r.rss_bytes == 50e6
    assert r.start_time == 1000.0
    assert dict(r.buckets)[0.1] == 3 and dict(r.buckets)[math.inf] == 4


def test_reading_of_the_coded_build_has_no_rate_limit_counter():
    r = read_exposition(parse_exposition(expo(1, 0)), NAMES)
    assert "rate_limited" not in r.counters and "verification_failures" not in r.counters


def test_metric_names_come_from_settings():
    text = "# TYPE my_proofs_total counter\nmy_proofs_total 9\n"
    r = read_exposition(parse_exposition(text), MetricNames(proofs_total="my_proofs_total"))
    assert r.counters == {"proofs": 9}


def test_rates_over_the_window_summed_over_replicas():
    w = FleetWindow(window_seconds=60)
    feed(w, "prover-1", 100.0, expo(100, 10))
    feed(w, "prover-2", 100.5, expo(50, 0))
    feed(w, "prover-1", 110.0, expo(200, 20))  # 10 proofs/s, 1 error/s
    feed(w, "prover-2", 110.5, expo(100, 0))  # 5 proofs/s
    m = w.metrics(111.0)
    assert m.source == "scrape"
    assert m.proof_rate == pytest.approx(15.0)
    assert m.error_rate == pytest.approx(1.0)
    assert m.error_ratio == pytest.approx(1 / 16)
    assert m.rate_limited_rate is None  # not exported by either replica


def test_quantiles_and_mean_come_from_the_increase_over_the_window():
    w = FleetWindow(window_seconds=60)
    # before the window's first sample: 1000 slow observations that must not count
    feed(w, "a", 0.0, expo(0, 0, observations={math.inf: 1000}, duration_sum=5000))
    feed(w, "a", 100.0, expo(0, 0, observations={math.inf: 1000}, duration_sum=5000))
    feed(w, "a", 110.0, expo(100, 0, observations={math.inf: 1000, 0.1: 100}, duration_sum=5000 + 100 * 0.08))
    m = w.metrics(110.0)
    # all 100 new observations lie in (0.05, 0.1]: p50 interpolates to the middle of it
    assert m.p50_seconds == pytest.approx(0.075)
    assert m.p95_seconds == pytest.approx(0.0975)
    assert m.p95_lower_bound is False
    assert m.mean_seconds == pytest.approx(0.08)


def test_p95_in_the_inf_bucket_is_a_lower_bound_of_two_seconds():
    w = FleetWindow(window_seconds=60)
    feed(w, "a", 0.0, expo(0, 0))
    feed(w, "a", 10.0, expo(100, 0, observations={0.2: 80, math.inf: 20}, duration_sum=80 * 0.18 + 20 * 7.0))
    m = w.metrics(10.0)
    assert m.p95_seconds == 2.0
    assert m.p95_lower_bound is True
    # the mean still sees how slow the slow ones are (above the 2 s top bucket)
    assert m.mean_seconds == pytest.approx((80 * 0.18 + 20 * 7.0) / 100)


def test_a_restart_resets_counters_without_a_negative_rate():
    w = FleetWindow(window_seconds=60)
    assert feed(w, "a", 0.0, expo(1000, 100, observations={0.1: 1000}, start=500.0)) is False
    assert feed(w, "a", 10.0, expo(1100, 110, observations={0.1: 1100}, start=500.0)) is False
    # restarted: a new process whose counters began again at zero
    assert feed(w, "a", 20.0, expo(30, 3, observations={0.1: 30}, start=515.0)) is True
    m = w.metrics(20.0)
    # 100 proofs before the restart plus 30 after, over 20 s
    assert m.proof_rate == pytest.approx(130 / 20)
    assert m.error_rate == pytest.approx(13 / 20)
    assert m.p50_seconds is not None and 0.05 < m.p50_seconds <= 0.1
    assert w.restarts == {"a": 1}


def test_a_restart_seen_only_through_the_start_time_is_not_missed():
    """Between two scrapes the new process already counted past the old value."""
    w = FleetWindow(window_seconds=60)
    feed(w, "a", 0.0, expo(10, 0, start=500.0))
    feed(w, "a", 10.0, expo(20, 0, start=500.0))
    assert feed(w, "a", 20.0, expo(25, 0, start=512.0)) is True
    # 10 before the restart + 25 after, not 25 - 20 = 5
    assert w.metrics(20.0).proof_rate == pytest.approx(35 / 20)


def test_a_reset_without_a_start_time_is_corrected_per_series():
    w = FleetWindow(window_seconds=60)
    feed(w, "a", 0.0, expo(10, 0).replace("process_start_time_seconds 1000.0\n", ""))
    feed(w, "a", 10.0, expo(40, 0).replace("process_start_time_seconds 1000.0\n", ""))
    assert feed(w, "a", 20.0, expo(5, 0).replace("process_start_time_seconds 1000.0\n", "")) is True
    # +30, then a reset: the new process's 5 count in full
    assert w.metrics(20.0).proof_rate == pytest.approx(35 / 20)


def test_a_labelled_counter_appearing_later_counts_from_zero():
    w = FleetWindow(window_seconds=60)
    feed(w, "a", 0.0, expo(0, 0))  # intended build before any client hit the limit: no series
    feed(w, "a", 10.0, expo(0, 0, limited={"203.0.113.7": 20}))
    assert w.metrics(10.0).rate_limited_rate == pytest.approx(2.0)


def test_samples_older_than_the_window_stop_counting():
    w = FleetWindow(window_seconds=60, gauge_max_age=15)
    feed(w, "a", 0.0, expo(0, 0, active=3))
    feed(w, "a", 10.0, expo(100, 0, active=3))
    assert w.metrics(10.0).proof_rate == pytest.approx(10.0)
    late = w.metrics(200.0)
    assert late.proof_rate is None
    # a replica that stopped answering adds neither its active requests nor its memory
    assert late.active_requests is None and late.rss_bytes == {}


def test_gauges_are_per_replica_rss_and_summed_active_requests():
    w = FleetWindow(window_seconds=60)
    feed(w, "prover-1", 1.0, expo(0, 0, active=2, rss=100.0))
    feed(w, "prover-2", 1.0, expo(0, 0, active=5, rss=300.0))
    m = w.metrics(2.0)
    assert m.active_requests == 7
    assert m.rss_bytes == {"prover-1": 100.0, "prover-2": 300.0}


def test_no_traffic_gives_no_ratio_and_no_quantiles():
    w = FleetWindow(window_seconds=60)
    feed(w, "a", 0.0, expo(5, 1))
    feed(w, "a", 10.0, expo(5, 1))
    m = w.metrics(10.0)
    assert m.proof_rate == 0 and m.error_rate == 0
    assert m.error_ratio is None  # "no traffic", never "0 % errors"
    assert m.p50_seconds is None and m.p95_seconds is None and m.mean_seconds is None


def test_one_sample_gives_no_rate_yet():
    w = FleetWindow(window_seconds=60)
    feed(w, "a", 0.0, expo(5, 1))
    m = w.metrics(0.0)
    assert m.proof_rate is None and m.error_ratio is None


def test_out_of_order_and_repeated_scrapes_are_ignored():
    w = FleetWindow(window_seconds=60)
    feed(w, "a", 10.0, expo(100, 0))
    feed(w, "a", 20.0, expo(200, 0))
    assert w.observe("a", 20.0, read_exposition(parse_exposition(expo(999, 0)), NAMES)) is False
    assert w.observe("a", 5.0, read_exposition(parse_exposition(expo(0, 0)), NAMES)) is False
    assert w.metrics(20.0).proof_rate == pytest.approx(10.0)


def test_forget_drops_a_replica():
    w = FleetWindow(window_seconds=60)
    feed(w, "a", 0.0, expo(0, 0))
    feed(w, "a", 10.0, expo(100, 0))
    w.forget("a")
    assert w.replicas() == []
    assert w.metrics(10.0).proof_rate is None


def test_malformed_exposition_still_yields_what_parsed():
    text = expo(50, 5) + "garbage line {{{\nproof_generation_total 60\n"
    parsed = parse_exposition(text)
    assert not parsed.ok
    r = read_exposition(parsed, NAMES)
    # a duplicated series is read once (the first), not summed into a jump
    assert r.counters["proofs"] == 50
    assert r.counters["errors"] == 5
