"""parse_log_line on both prover log shapes; filters; top clients."""

from __future__ import annotations

import io
import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from x402console.sources.logparse import (
    ERRORS,
    PRESET_FILTERS,
    RATE_LIMITING,
    VALIDATION_FAILURES,
    FilterError,
    LogFilter,
    LogRecord,
    TopClients,
    parse_go_duration,
    parse_log_line,
)
from x402console.sources.sanitize import sanitize_line

UTC = timezone.utc


def parse(line: str, **kw) -> LogRecord:
    return parse_log_line(line, "prover-1", assume_tz=UTC, **kw)


# --- gin access lines --------------------------------------------------------------------------


def test_gin_access_line_fields() -> None:
    r = parse('[GIN] 2025/11/15 - 10:30:01 | 200 |    1.234567ms |     203.0.113.7 | POST     "/generate-proof"')
    assert r.fmt == "gin"
    assert r.http_status == 200
    assert r.latency_ms == pytest.approx(1.234567)
    assert r.client_ip == "203.0.113.7"
    assert r.method == "POST"
    assert r.path == "/generate-proof"
    assert r.level == "info"
    assert r.operation == "http"
    assert r.ts == datetime(2025, 11, 15, 10, 30, 1, tzinfo=UTC)
    assert r.replica == "prover-1"


@pytest.mark.parametrize(
    "status,level,operation",
    [(200, "info", "http"), (304, "info", "http"), (400, "warning", "http"), (404, "warning", "http"),
     (429, "warning", "rate_limit"), (500, "error", "http"), (503, "error", "http")],
)
def test_gin_level_follows_status(status: int, level: str, operation: str) -> None:
    r = parse(f'[GIN] 2025/11/15 - 10:30:01 | {status} |      12.5µs |       127.0.0.1 | GET      "/health"')
    assert (r.level, r.operation, r.http_status) == (level, operation, status)


def test_gin_ipv6_and_escaped_path() -> None:
    r = parse(r'[GIN] 2025/11/15 - 10:30:01 | 404 |       850ns |             ::1 | GET      "/a\"b\\c\x1b[2J"')
    assert r.client_ip == "::1"
    assert r.latency_ms == pytest.approx(0.00085)
    # only \" and \\ are undone: the \x1b stays text, never a live escape
    assert r.path == '/a"b\\c\\x1b[2J'
    assert "\x1b" not in r.path


def test_gin_line_written_for_a_tty_parses_after_sanitising() -> None:
    raw = (
        "[GIN] 2025/11/15 - 10:30:01 |\x1b[97;41m 500 \x1b[0m|     2.001s |     198.51.100.4 |"
        '\x1b[97;46m POST    \x1b[0m "/generate-proof"'
    )
    r = parse(sanitize_line(raw))
    assert (r.http_status, r.method, r.latency_ms, r.level) == (500, "POST", pytest.approx(2001.0), "error")


def test_gin_debug_lines() -> None:
    warn = parse('[GIN-debug] [WARNING] Running in "debug" mode. Switch to "release" mode in production.')
    route = parse("[GIN-debug] POST   /generate-proof           --> main.generateProofHandler (5 handlers)")
    listen = parse("[GIN-debug] Listening and serving HTTP on :8080")
    assert (warn.fmt, warn.level) == ("gin", "warning")
    assert (route.level, route.operation, route.http_status) == ("debug", "startup", None)
    assert listen.message == "Listening and serving HTTP on :8080"


@pytest.mark.parametrize(
    "text,ms",
    [("1.234567ms", 1.234567), ("12.5µs", 0.0125), ("12.5μs", 0.0125), ("12.5us", 0.0125), ("2.001s", 2001.0),
     ("1m2.5s", 62500.0), ("1h0m0s", 3_600_000.0), ("850ns", 0.00085), ("0s", 0.0), ("  3ms ", 3.0),
     ("-1.5s", -1500.0), ("1.5", None), ("ms", None), ("", None), ("1x", None), ("1ms2", None)],
)
def test_go_durations(text: str, ms: float | None) -> None:
    got = parse_go_duration(text)
    if ms is None:
        assert got is None
    else:
        assert got == pytest.approx(ms)


# --- stdlib lines ------------------------------------------------------------------------------

STDLIB_CASES = [
    # message, level, operation, client_ip, latency_ms
    ("Validation failed from 203.0.113.9: amount must be positive", "warning", "validation", "203.0.113.9", None),
    ("Validation failed from 2001:db8::1: bad field", "warning", "validation", "2001:db8::1", None),
    ("Invalid request from 198.51.100.2: invalid character 'x' looking for beginning of value",
     "warning", "validation", "198.51.100.2", None),
    ("Proof generation failed: constraint #12 is not satisfied", "error", "proof_generation", None, None),
    ("Proof verification failed: pairing check failed", "error", "verification", None, None),
    ("Signature verification failed: invalid signature", "error", "signature", None, None),
    ("Witness creation failed: field overflow", "error", "circuit", None, None),
    ("Public witness extraction failed: x", "error", "circuit", None, None),
    ("Failed to initialize circuit: boom", "error", "startup", None, None),
    ("Failed to start server: listen tcp :8080: bind: address already in use", "error", "startup", None, None),
    ("Failed to store proof in database: database disk image is malformed", "error", "database", None, None),
    ("Failed to cleanup expired proofs: disk I/O error", "error", "database", None, None),
    ("Failed to something else", "error", None, None, None),
    ("WARNING: No trusted setup keys found, generating new keys", "warning", "startup", None, None),
    ("Warning: Failed to save keys: permission denied", "warning", "startup", None, None),
    ("Proof generated in 734ms", "info", "proof_generation", None, 734.0),
    ("✓ Proof served from cache for 192.0.2.44", "info", "cache", "192.0.2.44", None),
    ("Generating proof for 192.0.2.45", "info", "proof_generation", "192.0.2.45", None),
    ("Starting Umbra Protocol prover service...", "info", "startup", None, None),
    ("Circuit constraints: 12873", "info", "startup", None, None),
    ("Prover service ready on :8080", "info", "startup", None, None),
    ("✓ Rate limiter initialized (10 req/min per IP)", "info", "startup", None, None),
    ("Scheduled backup failed: disk full", "error", "backup", None, None),
    ("Database backup completed successfully: /b/x.db (4096 bytes)", "info", "backup", None, None),
    ("Cleaned up 12 expired proofs", "info", "database", None, None),
    ("something unusual happened", "info", None, None, None),
    ("unexpected error in handler", "error", None, None, None),
]


@pytest.mark.parametrize("message,level,operation,ip,latency", STDLIB_CASES, ids=[c[0][:40] for c in STDLIB_CASES])
def test_stdlib_messages(message: str, level: str, operation: str | None, ip: str | None, latency: float | None) -> None:
    r = parse(f"2025/11/15 10:30:02 {message}")
    assert r.fmt == "stdlib"
    assert r.message == message
    assert (r.level, r.operation, r.client_ip, r.latency_ms) == (level, operation, ip, latency)
    assert r.ts == datetime(2025, 11, 15, 10, 30, 2, tzinfo=UTC)


def test_stdlib_timestamp_uses_assumed_zone() -> None:
    plus2 = timezone(timedelta(hours=2))
    r = parse_log_line("2025/11/15 10:30:02 Compiling circuit...", "p", assume_tz=plus2)
    assert r.ts == datetime(2025, 11, 15, 8, 30, 2, tzinfo=UTC)
    local = parse_log_line("2025/11/15 10:30:02 Compiling circuit...", "p")
    assert local.ts is not None and local.ts.tzinfo is not None


def test_impossible_date_gives_no_timestamp_but_a_record() -> None:
    r = parse("2025/13/45 10:30:02 Proof generated in 5ms")
    assert r.ts is None
    assert r.latency_ms == 5.0


# --- logrus JSON lines -------------------------------------------------------------------------


def test_logrus_validation_line() -> None:
    line = ('{"client_ip":"203.0.113.5","field":"amount","level":"warning","message":"Input validation failed",'
            '"operation":"validation","reason":"must be positive","timestamp":"2025-11-15T10:30:00Z"}')
    r = parse(line)
    assert r.fmt == "json"
    assert (r.level, r.message, r.client_ip, r.operation) == ("warning", "Input validation failed", "203.0.113.5", "validation")
    assert r.ts == datetime(2025, 11, 15, 10, 30, tzinfo=UTC)
    assert dict(r.extra) == {"field": "amount", "reason": "must be positive"}


def test_logrus_proof_generation_line_carries_duration() -> None:
    line = json.dumps({
        "actual_amount": "5", "client_ip": "1.2.3.4", "duration_ms": 812, "level": "info", "min_amount": "1",
        "message": "Proof generated successfully", "operation": "proof_generation", "success": True,
        "timestamp": "2025-11-15T10:30:00+01:00",
    })
    r = parse(line)
    assert r.latency_ms == 812.0
    assert r.extra["success"] is True
    assert r.ts == datetime(2025, 11, 15, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "level,expected",
    [("error", "error"), ("fatal", "error"), ("panic", "error"), ("warning", "warning"), ("warn", "warning"),
     ("info", "info"), ("debug", "debug"), ("trace", "debug"), ("ERROR", "error"), ("weird", "unknown")],
)
def test_logrus_levels(level: str, expected: str) -> None:
    assert parse(json.dumps({"level": level, "message": "m"})).level == expected


def test_logrus_operation_inferred_when_missing() -> None:
    r = parse('{"error":"disk full","level":"error","message":"Failed to store proof in database","request_hash":"ab"}')
    assert r.operation == "database"
    assert r.extra["error"] == "disk full"


def test_json_strings_are_sanitised_after_decoding() -> None:
    r = parse('{"level":"warning","message":"bad \\u001b]0;pwned\\u0007 input","client_ip":"\\u202e1.2.3.4",'
              '"reason":"\\u001b[2J","nested":{"k":"\\u009b"}}')
    for text in (r.message, r.client_ip, r.extra["reason"], r.extra["nested"]):
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0x202A <= ord(c) <= 0x202E for c in text), text


@pytest.mark.parametrize("line", ['{"level":"error","message":', "{not json at all}", "[1, 2, 3]", '{"a": [[[[', "{}x"])
def test_malformed_json_is_plain(line: str) -> None:
    r = parse(line)
    assert r.fmt == "plain"
    assert r.message == line
    assert r.level == "unknown"


def test_json_array_is_plain() -> None:
    assert parse('["not", "an", "object"]').fmt == "plain"


def test_deeply_nested_json_does_not_escape() -> None:
    r = parse("{" + '"a":[' * 100_000 + "]" * 100_000 + "}")
    assert r.fmt in ("plain", "json")


# --- docker timestamps -------------------------------------------------------------------------


def test_docker_timestamp_prefix_becomes_ts() -> None:
    r = parse('2025-11-15T10:30:01.123456789Z [GIN] 2025/11/15 - 03:00:00 | 429 |   12.5µs | 1.2.3.4 | POST "/generate-proof"')
    assert r.fmt == "gin"
    assert r.http_status == 429
    # the docker stamp is exact and zoned; it wins over gin's local stamp
    assert r.ts == datetime(2025, 11, 15, 10, 30, 1, 123456, tzinfo=UTC)
    assert r.raw.startswith("2025-11-15T10:30:01.123456789Z ")


def test_docker_timestamp_before_stdlib_and_json() -> None:
    std = parse("2025-11-15T10:30:01.5Z 2025/11/15 10:30:01 Proof generated in 9ms")
    js = parse('2025-11-15T10:30:01.000000001+00:00 {"level":"info","message":"x","timestamp":"2020-01-01T00:00:00Z"}')
    assert std.fmt == "stdlib" and std.ts == datetime(2025, 11, 15, 10, 30, 1, 500000, tzinfo=UTC)
    assert js.fmt == "json" and js.ts == datetime(2025, 11, 15, 10, 30, 1, tzinfo=UTC)


def test_stream_is_kept() -> None:
    assert parse("2025/11/15 10:30:01 x", stream="stderr").stream == "stderr"


# --- other shapes ------------------------------------------------------------------------------


def test_x402_server_access_line() -> None:
    r = parse("2025-11-15T10:30:00.000Z - ::ffff:10.0.0.3 - POST /api/pay")
    assert (r.client_ip, r.method, r.path, r.operation) == ("::ffff:10.0.0.3", "POST", "/api/pay", "http")
    assert r.ts == datetime(2025, 11, 15, 10, 30, tzinfo=UTC)


def test_go_panic_is_an_error() -> None:
    assert parse("panic: runtime error: invalid memory address or nil pointer dereference").level == "error"
    assert parse("goroutine 7 [running]:").level == "unknown"


def test_parser_never_raises_on_junk() -> None:
    rng = random.Random(402)
    alphabet = '[]{}"\\|/:-0123456789 GINTZ.µs\x1b\n\t' + "".join(chr(c) for c in range(0x20, 0x7F))
    prefixes = ["", "[GIN] ", "[GIN-debug] ", "2025/11/15 10:30:02 ", "{", "2025-11-15T10:30:01Z ", "[GIN] 2025/11/15 - 10:30:01 |"]
    for _ in range(3000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        line = rng.choice(prefixes) + body
        record = parse_log_line(line, "p")
        assert isinstance(record, LogRecord)
        assert record.raw == line


# --- what the drill's simulator writes ---------------------------------------------------------


def _sim_lines(fmt: str) -> list[str]:
    from x402console.drill.sim.logs import ROUTES, Streams, make_log

    out, err = io.BytesIO(), io.BytesIO()
    log = make_log(fmt, Streams(out, err), log_level_env="debug")
    req = {"minAmount": "1", "actualAmount": "5"}
    log.startup(8080, 12873, keys_loaded=False, keys_saved_error=None)
    log.ready(8080, ROUTES)
    log.access(200, 1_234_567, "203.0.113.7", "POST", "/generate-proof")
    log.access(429, 12_500, "203.0.113.7", "POST", "/generate-proof")
    log.bind_failed("198.51.100.2", "invalid character 'x'")
    log.validation_failed("198.51.100.3", "amount", "amount must be positive")
    log.cache_hit("192.0.2.4")
    log.generating("192.0.2.5")
    log.signature_failed("192.0.2.6", "invalid signature")
    log.stage_failed("192.0.2.7", req, "Proof generation", "constraint not satisfied", 5_000_000)
    log.generated("192.0.2.8", req, 734)
    log.rate_limited("203.0.113.7")
    log.db_store_failed("database disk image is malformed", "abc")
    log.db_cleanup(3)
    log.backup_done("/tmp/b.db", 4096)
    log.backup_failed("Scheduled backup failed", "disk full")
    text = out.getvalue().decode() + err.getvalue().decode()
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("fmt", ["gin", "json"])
def test_every_simulator_line_is_understood(fmt: str) -> None:
    lines = _sim_lines(fmt)
    records = [parse_log_line(sanitize_line(line), "sim") for line in lines]
    # gin's debug banner has continuation lines (" - using env: ...", "Please check ...")
    unplaced = [r.raw for r in records if r.fmt == "plain" and not r.raw.startswith((" - ", "Please check"))]
    assert unplaced == []
    statuses = sorted(r.http_status for r in records if r.http_status is not None)
    assert statuses == [200, 429]
    assert any(r.level == "error" for r in records)
    assert any(r.operation == "validation" and r.client_ip == "198.51.100.3" for r in records)
    assert [r for r in records if r.level == "unknown" and r.fmt != "plain"] == []


def test_runbook_greps_find_the_simulated_incident_in_both_shapes() -> None:
    for fmt in ("gin", "json"):
        records = [parse_log_line(sanitize_line(line), "sim") for line in _sim_lines(fmt)]
        assert any(ERRORS.matches(r) for r in records), fmt
        assert any(VALIDATION_FAILURES.matches(r) for r in records), fmt
        assert any(RATE_LIMITING.matches(r) for r in records), fmt


# --- filters -----------------------------------------------------------------------------------

GIN_200 = parse('[GIN] 2025/11/15 - 10:30:01 | 200 |   1ms |  1.2.3.4 | POST     "/generate-proof"')
GIN_429 = parse('[GIN] 2025/11/15 - 10:30:01 | 429 |   1ms |  1.2.3.4 | POST     "/generate-proof"')
GIN_500 = parse('[GIN] 2025/11/15 - 10:30:01 | 500 |   1ms |  1.2.3.4 | POST     "/generate-proof"')
STD_VALID = parse("2025/11/15 10:30:02 Validation failed from 1.2.3.4: bad")
STD_PROOF_FAIL = parse("2025/11/15 10:30:02 Proof generation failed: boom")
STD_OK = parse("2025/11/15 10:30:02 Proof generated in 12ms")
JSON_VALID = parse('{"level":"warning","message":"Input validation failed","operation":"validation"}')
JSON_RL = parse('{"client_ip":"1.2.3.4","level":"warning","message":"Rate limit exceeded","operation":"rate_limit"}')
JSON_ERR = parse('{"level":"error","message":"Circuit operation failed","operation":"circuit"}')
JSON_INFO = parse('{"level":"info","message":"Service starting"}')
ALL = [GIN_200, GIN_429, GIN_500, STD_VALID, STD_PROOF_FAIL, STD_OK, JSON_VALID, JSON_RL, JSON_ERR, JSON_INFO]


def _hits(f) -> list[LogRecord]:
    return [r for r in ALL if f.matches(r)]


def test_errors_preset() -> None:
    assert _hits(ERRORS) == [GIN_500, STD_PROOF_FAIL, JSON_ERR]


def test_validation_preset_is_case_insensitive_across_shapes() -> None:
    assert _hits(VALIDATION_FAILURES) == [STD_VALID, JSON_VALID]


def test_rate_limit_preset_sees_429s_and_json() -> None:
    assert _hits(RATE_LIMITING) == [GIN_429, JSON_RL]


def test_presets_are_registered_by_name() -> None:
    assert set(PRESET_FILTERS) == {"errors", "validation", "rate_limit"}


def test_substring_filter_is_case_insensitive_by_default() -> None:
    assert _hits(LogFilter("VALIDATION FAILED")) == [STD_VALID, JSON_VALID]
    assert _hits(LogFilter("Validation failed", case_sensitive=True)) == [STD_VALID]
    # literal, not regex: the dot must not match anything
    assert _hits(LogFilter("1.2.3.4:")) == [STD_VALID]
    assert _hits(LogFilter("1x2")) == []


def test_regex_and_invert() -> None:
    f = LogFilter(r"\| (4\d\d|5\d\d) \|", regex=True)
    assert _hits(f) == [GIN_429, GIN_500]
    inv = LogFilter(r"\| (4\d\d|5\d\d) \|", regex=True, invert=True)
    assert len(_hits(inv)) == len(ALL) - 2
    assert LogFilter("").matches(GIN_200)
    assert not LogFilter("", invert=True).matches(GIN_200)


@pytest.mark.parametrize("pattern", ["(unclosed", "[a-", "*x", "a{2,1}", "(?P<n>a)(?P<n>b)"])
def test_invalid_regex_is_a_filter_error(pattern: str) -> None:
    with pytest.raises(FilterError) as info:
        LogFilter(pattern, regex=True)
    assert "invalid regular expression" in str(info.value)
    assert pattern in str(info.value)


def test_invalid_regex_is_fine_as_a_literal() -> None:
    assert LogFilter("(unclosed").matches(parse("2025/11/15 10:30:02 oops (unclosed paren"))


# --- top clients -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def gin(ip: str, status: int = 200) -> LogRecord:
    return parse(f'[GIN] 2025/11/15 - 10:30:01 | {status} | 1ms | {ip} | POST "/generate-proof"')


def test_top_clients_ranks_and_breaks_down_429s() -> None:
    clock = FakeClock()
    top = TopClients(window_seconds=60, clock=clock)
    for _ in range(5):
        top.add(gin("203.0.113.1", 429))
    for _ in range(3):
        top.add(gin("203.0.113.1"))
    for _ in range(4):
        top.add(gin("198.51.100.2"))
    top.add(gin("192.0.2.3"))
    ranked = top.top(2)
    assert [(c.ip, c.count, c.rate_limited) for c in ranked] == [("203.0.113.1", 8, 5), ("198.51.100.2", 4, 0)]
    assert top.total() == 13


def test_top_clients_window_slides() -> None:
    clock = FakeClock(1000.0)
    top = TopClients(window_seconds=60, clock=clock)
    top.add(gin("203.0.113.1"))
    top.add(gin("203.0.113.1"))
    clock.t = 1030.0
    top.add(gin("198.51.100.2"))
    assert [c.ip for c in top.top()] == ["203.0.113.1", "198.51.100.2"]
    clock.t = 1061.5
    assert [(c.ip, c.count) for c in top.top()] == [("198.51.100.2", 1)]
    clock.t = 1200.0
    assert top.top() == []
    assert top.total() == 0


def test_top_clients_counts_access_lines_only_by_default() -> None:
    top = TopClients(clock=FakeClock())
    assert not top.add(STD_VALID)  # also has an IP, but the [GIN] line counts that request
    assert not top.add(JSON_RL)
    assert top.add(gin("1.2.3.4"))
    assert top.total() == 1


def test_top_clients_app_line_mode_counts_json_rate_limits() -> None:
    top = TopClients(clock=FakeClock(), count_app_lines=True)
    top.add(JSON_RL)
    top.add(STD_VALID)
    assert [(c.ip, c.count, c.rate_limited) for c in top.top()] == [("1.2.3.4", 2, 1)]


def test_top_clients_memory_is_bounded() -> None:
    top = TopClients(clock=FakeClock(), max_ips=3)
    for i in range(10):
        top.add(gin(f"10.0.0.{i}"))
    ranked = top.top(10)
    assert len(ranked) == 4
    assert ranked[0].ip == TopClients.OTHER and ranked[0].count == 7


def test_bytes_are_sanitised_before_parsing() -> None:
    r = parse_log_line(b"2025/11/15 10:30:02 Proof generation failed: \x1b]0;x\x07 \xff", "p", assume_tz=UTC)
    assert r.fmt == "stdlib" and r.level == "error"
    assert "\x1b" not in r.raw and "\\xff" in r.raw


def test_records_are_immutable() -> None:
    r = parse('{"level":"info","message":"m","k":"v"}')
    with pytest.raises(TypeError):
        r.extra["k"] = "changed"  # type: ignore[index]
    with pytest.raises(AttributeError):
        r.level = "error"  # type: ignore[misc]


def test_filters_never_raise_on_odd_input() -> None:
    f = LogFilter("x")
    assert f.matches(object()) is False  # type: ignore[arg-type]
    assert LogFilter("x", invert=True).matches(object()) is True  # type: ignore[arg-type]
    assert ERRORS.matches(object()) is False  # type: ignore[arg-type]
