"""LogCounter: the prover's log lines (both shapes, as the simulator writes them) counted by
runbook pattern, by client and as proof requests, over a window."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from x402console.core.signals import LOG_PATTERNS
from x402console.drill.sim.gofmt import gin_timestamp, stdlib_timestamp
from x402console.drill.sim.logs import gin_access_line, logrus_json_line
from x402console.sources.logparse import parse_log_line
from x402console.status.logcount import LogCounter, patterns_of

NOW = 1_800_000_000.0


def stamped(ts: float, text: str, replica: str = "prover-1"):
    """A line as `docker logs --timestamps` gives it: exact, so windows are easy to reason about."""
    iso = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return parse_log_line(f"{iso} {text.rstrip()}", replica)


def access(ts: float, status: int, ip: str, method: str = "POST", path: str = "/generate-proof", ms: float = 100.0):
    return stamped(ts, gin_access_line(gin_timestamp(ts), status, int(ms * 1e6), ip, method, path))


@pytest.mark.parametrize(
    "text, expected",
    [
        (gin_access_line("2026/11/26 - 10:00:00", 429, 12_000, "203.0.113.7", "POST", "/generate-proof"), {"rate_limit"}),
        (gin_access_line("2026/11/26 - 10:00:00", 400, 12_000, "203.0.113.7", "POST", "/generate-proof"), {"validation"}),
        (gin_access_line("2026/11/26 - 10:00:00", 500, 12_000, "203.0.113.7", "POST", "/generate-proof"), {"error"}),
        (gin_access_line("2026/11/26 - 10:00:00", 200, 12_000, "203.0.113.7", "POST", "/generate-proof"), set()),
        ("2026/11/26 10:00:00 Validation failed from 203.0.113.7: minAmount is required", {"validation"}),
        ("2026/11/26 10:00:00 Invalid request from 203.0.113.7: unexpected EOF", {"validation"}),
        ("2026/11/26 10:00:00 Proof generation failed: groth16: msm: cannot allocate memory",
         {"error", "generation_failed", "out_of_memory"}),
        ("2026/11/26 10:00:00 Proof verification failed: pairing check failed", {"error", "verification_failed"}),
        ("panic: runtime error: invalid memory address or nil pointer dereference", {"error", "panic"}),
        ("fatal error: runtime: out of memory", {"error", "panic", "out_of_memory"}),
        (logrus_json_line("error", "Failed to store proof in database", {"error": "database disk image is malformed"},
                          "2026-11-26T10:00:00Z"), {"error", "db_error"}),
        (logrus_json_line("warning", "Rate limit exceeded", {"client_ip": "203.0.113.7"}, "2026-11-26T10:00:00Z"),
         {"rate_limit"}),
        (logrus_json_line("warning", "Input validation failed", {"client_ip": "203.0.113.7"}, "2026-11-26T10:00:00Z"),
         {"validation"}),
        (logrus_json_line("info", "Proof generated in 120ms", {"client_ip": "203.0.113.7"}, "2026-11-26T10:00:00Z"), set()),
        ("2026/11/26 10:00:00 Generating proof for 203.0.113.7", set()),
    ],
)
def test_patterns_of_reads_both_log_shapes(text, expected):
    record = parse_log_line(text.rstrip("\n"), "prover-1")
    assert set(patterns_of(record)) == expected
    assert set(patterns_of(record)) <= set(LOG_PATTERNS)


def test_snapshot_counts_only_the_window_and_every_pattern_id_is_present():
    counter = LogCounter(clock=lambda: NOW)
    for ts in (NOW - 100, NOW - 10, NOW - 1):
        counter.feed(stamped(ts, "2026/11/26 10:00:00 Proof generation failed: witness error"))
    snap = counter.snapshot(30, NOW)
    assert snap.lines == 2
    assert snap.counts["generation_failed"] == 2 and snap.counts["error"] == 2
    assert set(snap.counts) == set(LOG_PATTERNS)
    assert counter.snapshot(300, NOW).counts["generation_failed"] == 3


def test_whole_second_stamps_count_when_most_of_their_second_is_inside():
    # stdlib stamps are truncated to the second: a stamp s covers [s, s+1)
    base = 1_800_000_100.0
    counter = LogCounter()
    for s in (base - 1, base, base + 1):
        counter.feed(parse_log_line(f"{stdlib_timestamp(s)} Proof generation failed: x", "prover-1"))
    now = base + 10.2
    assert counter.snapshot(10.0, now).lines == 2  # starts at base+0.2: most of base's second is in
    assert counter.snapshot(10.8, now).lines == 3  # starts at base-0.6: most of base-1's second is in


def test_top_client_leaves_out_successful_health_checks_and_scrapes():
    counter = LogCounter(clock=lambda: NOW)
    for i in range(50):
        counter.feed(access(NOW - 5 + i * 0.01, 200, "127.0.0.1", "GET", "/health", ms=0.1))
        counter.feed(access(NOW - 5 + i * 0.01, 200, "127.0.0.1", "GET", "/metrics", ms=0.1))
    for i in range(6):
        counter.feed(access(NOW - 4 + i * 0.1, 200, "203.0.113.7"))
    for i in range(2):
        counter.feed(access(NOW - 3 + i * 0.1, 200, "198.51.100.2"))
    snap = counter.snapshot(60, NOW)
    assert snap.top_client == "203.0.113.7"
    assert snap.top_client_requests == 6
    assert snap.requests == 8
    assert snap.top_client_share == pytest.approx(0.75)
    # a flood on /health is refused with 429s, and those do count
    for i in range(20):
        counter.feed(access(NOW - 2 + i * 0.05, 429, "192.0.2.9", "GET", "/health", ms=0.01))
    snap = counter.snapshot(60, NOW)
    assert snap.top_client == "192.0.2.9" and snap.rate_limited == 20


def test_proof_requests_give_attempts_failures_latency_and_rate_limited():
    counter = LogCounter(clock=lambda: NOW)
    latencies = [0.1, 0.2, 0.3, 0.4, 6.5]
    for i, s in enumerate(latencies):
        counter.feed(access(NOW - 9 + i, 200, "203.0.113.1", ms=s * 1000))
    counter.feed(access(NOW - 3, 400, "203.0.113.2"))
    counter.feed(access(NOW - 3, 500, "203.0.113.3"))
    counter.feed(access(NOW - 2, 429, "203.0.113.4"))  # refused before the handler: not an attempt
    counter.feed(access(NOW - 2, 404, "203.0.113.4", "POST", "/prove"))
    snap = counter.snapshot(10, NOW)
    assert (snap.proof_attempts, snap.proof_failures, snap.proof_successes) == (7, 2, 5)
    assert snap.error_ratio == pytest.approx(2 / 7)
    assert snap.proof_latencies == pytest.approx(tuple(latencies))
    assert snap.latency_quantile(0.5) == pytest.approx(0.3)
    assert snap.latency_quantile(0.95) == pytest.approx(6.5)
    assert snap.rate_limited == 1
    assert snap.span_seconds == pytest.approx(9.0)
    assert snap.rate_limited_rate == pytest.approx(1 / 9)
    assert snap.proof_rate == pytest.approx(5 / 9)


def test_no_proof_requests_means_no_ratio_and_no_latency():
    counter = LogCounter(clock=lambda: NOW)
    counter.feed(stamped(NOW - 1, "2026/11/26 10:00:00 Generating proof for 203.0.113.7"))
    snap = counter.snapshot(10, NOW)
    assert snap.error_ratio is None and snap.latency_quantile(0.95) is None and snap.top_client is None


def test_a_line_without_a_timestamp_belongs_to_the_line_before_it():
    counter = LogCounter(clock=lambda: NOW + 1000)  # the clock would put it far outside
    counter.feed(stamped(NOW - 2, "2026/11/26 10:00:00 Generating proof for 203.0.113.7"))
    for text in ("panic: runtime error: index out of range", "goroutine 7 [running]:", "main.generateProofHandler()"):
        counter.feed(parse_log_line(text, "prover-1"))
    snap = counter.snapshot(10, NOW)
    assert snap.lines == 4
    assert snap.counts["panic"] == 1


def test_early_proof_rate_is_the_first_half_of_the_span():
    counter = LogCounter(clock=lambda: NOW)
    for i in range(20):  # 20 proofs in the first 5 s, then 2 in the last 5 s
        counter.feed(access(NOW - 10 + i * 0.2, 200, f"203.0.113.{i}"))
    counter.feed(access(NOW - 3, 200, "198.51.100.1"))
    counter.feed(access(NOW - 1, 200, "198.51.100.2"))
    snap = counter.snapshot(10, NOW)
    assert snap.early_proof_rate == pytest.approx(20 / 5, rel=0.15)
    assert snap.proof_rate == pytest.approx(22 / 10)
    assert LogCounter(clock=lambda: NOW).snapshot(10, NOW).early_proof_rate is None


def test_memory_stays_bounded_by_entries_and_by_age():
    counter = LogCounter(max_window=60, max_entries=100, clock=lambda: NOW)
    for i in range(1000):  # 10 seconds of 100 requests from 100 clients each
        counter.feed(access(NOW - 30 + i * 0.01, 200, f"203.0.113.{i % 100}"))
    assert len(counter) <= 100  # the oldest seconds went
    snap = counter.snapshot(60, NOW)
    assert snap.lines == len(counter) and snap.proof_successes == len(counter)
    counter.feed(access(NOW + 120, 200, "203.0.113.1"))  # everything else is now too old
    assert len(counter) == 1
    counter.feed(access(NOW, 200, "203.0.113.1"))  # older than the window kept: ignored
    assert len(counter) == 1
    assert counter.fed == 1002


def test_a_spoofed_address_flood_is_counted_but_not_named_beyond_the_cap():
    counter = LogCounter(clock=lambda: NOW, max_clients_per_second=10)
    for i in range(100):  # one second, 100 different addresses
        counter.feed(access(NOW - 1 + i * 0.001, 429, f"198.51.100.{i}"))
    for i in range(5):
        counter.feed(access(NOW - 1 + i * 0.001, 429, "198.51.100.0"))
    snap = counter.snapshot(10, NOW)
    assert snap.requests == 105 and snap.rate_limited == 105
    assert snap.top_client == "198.51.100.0" and snap.top_client_requests == 6


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        LogCounter(max_window=0)
    with pytest.raises(ValueError):
        LogCounter(max_entries=0)
