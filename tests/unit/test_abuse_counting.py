"""Counting requests per client IP from both prover log shapes and from nginx's access log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from x402console.actions.abuse import count_clients, count_nginx, tail_lines
from x402console.drill.sim.logs import gin_access_line, logrus_json_line


def gin(ip: str, status: int, when: datetime, path: str = "/generate-proof") -> str:
    stamp = when.astimezone().strftime("%Y/%m/%d - %H:%M:%S")
    return gin_access_line(stamp, status, 1_234_567, ip, "POST", path).rstrip("\n")


NOW = datetime.now(timezone.utc).replace(microsecond=0)


def test_access_lines_are_counted_per_ip_with_429s_and_400s() -> None:
    lines = {
        "prover-1": [gin("203.0.113.7", 429, NOW)] * 5 + [gin("203.0.113.7", 200, NOW)] * 2
        + [gin("198.51.100.3", 400, NOW), "2026/11/26 10:00:00 Validation failed from 198.51.100.3: bad amount",
           "[GIN-debug] Listening and serving HTTP on :8080"],
        "prover-2": [gin("203.0.113.7", 429, NOW), gin("192.0.2.1", 200, NOW)],
    }
    tallies, info = count_clients(lines, None)
    attacker = tallies["203.0.113.7"]
    assert (attacker.requests, attacker.status_429, attacker.status_400) == (8, 6, 0)
    assert attacker.replicas == {"prover-1", "prover-2"}
    # the application line about the same request is not counted a second time
    assert (tallies["198.51.100.3"].requests, tallies["198.51.100.3"].status_400) == (1, 1)
    assert info["app_lines_used"] == []


def test_old_lines_fall_outside_the_window() -> None:
    old = NOW - timedelta(minutes=30)
    tallies, _ = count_clients({"p": [gin("203.0.113.7", 429, old), gin("192.0.2.1", 200, NOW)]},
                               NOW - timedelta(minutes=10))
    assert set(tallies) == {"192.0.2.1"}


def test_json_logs_without_access_lines_count_application_lines() -> None:
    ts = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        logrus_json_line("warning", "Rate limit exceeded", {"client_ip": "203.0.113.9", "operation": "rate_limit"}, ts),
        logrus_json_line("warning", "Rate limit exceeded", {"client_ip": "203.0.113.9", "operation": "rate_limit"}, ts),
        logrus_json_line("warning", "Input validation failed",
                         {"client_ip": "198.51.100.4", "operation": "validation", "field": "amount"}, ts),
        logrus_json_line("info", "Service starting", {"port": "8080"}, ts),
    ]
    tallies, info = count_clients({"prover-1": [ln.rstrip("\n") for ln in lines]}, None)
    assert info["app_lines_used"] == ["prover-1"]
    assert (tallies["203.0.113.9"].requests, tallies["203.0.113.9"].status_429) == (2, 2)
    assert tallies["198.51.100.4"].status_400 == 1


def test_nginx_combined_lines() -> None:
    stamp = NOW.strftime("%d/%b/%Y:%H:%M:%S +0000")
    lines = [
        f'127.0.0.5 - - [{stamp}] "GET /health HTTP/1.1" 403 153 "-" "python-httpx/0.27"',
        f'127.0.0.5 - - [{stamp}] "GET /health HTTP/1.1" 403 153 "-" "python-httpx/0.27"',
        f'127.0.0.6 - - [{stamp}] "POST /generate-proof HTTP/1.1" 200 812 "-" "-"',
        "garbage",
    ]
    tallies = count_nginx(lines, NOW - timedelta(minutes=1))
    assert (tallies["127.0.0.5"].requests, tallies["127.0.0.5"].status_403) == (2, 2)
    assert tallies["127.0.0.6"].requests == 1


def test_tail_lines_reads_only_the_end(tmp_path: Path) -> None:
    path = tmp_path / "prover.log"
    path.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail_lines(path, 3) == ["line 99997", "line 99998", "line 99999"]
    assert tail_lines(path, 3, max_bytes=24) == ["line 99998", "line 99999"]  # bounded: the cut line is dropped
    (tmp_path / "short.log").write_text("only\nno newline at end")
    assert tail_lines(tmp_path / "short.log", 10) == ["only", "no newline at end"]
