"""The log pane's ring buffer, filtered index, snapshots, search and rate meter (no app needed)."""

from __future__ import annotations

import random

import pytest

from x402console.sources.logparse import (
    ERRORS,
    RATE_LIMITING,
    VALIDATION_FAILURES,
    FilterError,
    LogFilter,
    LogRecord,
    parse_log_line,
)
from x402console.ui.logs.buffer import LogBuffer, ViewFilter, find_line
from x402console.ui.logs.meter import RateMeter


def rec(i: int, text: str | None = None, replica: str = "prover-1", level: str = "info", **kw) -> LogRecord:
    message = text if text is not None else f"line {i}"
    return LogRecord(replica=replica, ts=None, level=level, message=message, raw=message, **kw)  # type: ignore[arg-type]


def shown_messages(buffer: LogBuffer) -> list[str]:
    return [buffer.record_at(i).message for i in range(buffer.shown)]


def test_buffer_and_meter_do_not_import_the_ui_stack():
    # They are the pane's pure core, unit-testable without an app; only x402console.sources and
    # the standard library may be imported.
    import ast
    from pathlib import Path

    import x402console.ui.logs.buffer as buffer_module
    import x402console.ui.logs.meter as meter_module

    for module in (buffer_module, meter_module):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        offenders = {name for name in imported if name.split(".")[0] in ("textual", "rich")}
        offenders |= {name for name in imported if name.startswith("x402console.ui")}
        assert offenders == set(), (module.__name__, offenders)


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        LogBuffer(0)


def test_buffer_is_bounded_and_keeps_the_newest():
    buffer = LogBuffer(100)
    for start in range(0, 1000, 37):
        buffer.extend(rec(i) for i in range(start, min(start + 37, 1000)))
    assert len(buffer) == 100
    assert buffer.total == 1000
    assert buffer.first_seq == 900
    assert buffer.evicted == 900
    assert buffer.get(899) is None
    assert buffer.get(900).message == "line 900"
    assert buffer.get(999).message == "line 999"
    assert buffer.get(1000) is None
    assert [r.message for r in buffer] == [f"line {i}" for i in range(900, 1000)]
    assert buffer.shown == 100
    assert buffer.record_at(0).message == "line 900"
    assert buffer.record_at(-1).message == "line 999"


def test_sequence_numbers_only_grow_even_across_clear():
    buffer = LogBuffer(3)
    seqs = [buffer.append(rec(i)) for i in range(5)]
    assert seqs == [0, 1, 2, 3, 4]
    buffer.clear()
    assert len(buffer) == 0 and buffer.shown == 0
    assert buffer.get(4) is None
    assert buffer.append(rec(5)) == 5
    assert buffer.seq_at(0) == 5


def test_a_batch_larger_than_the_buffer_keeps_its_tail():
    buffer = LogBuffer(10)
    buffer.set_filter(ViewFilter(text=LogFilter("line")))
    buffer.extend(rec(i) for i in range(25))
    assert len(buffer) == 10
    assert shown_messages(buffer) == [f"line {i}" for i in range(15, 25)]


def test_filter_index_is_correct_after_eviction():
    buffer = LogBuffer(10)
    buffer.set_filter(ViewFilter(text=LogFilter("keep")))
    buffer.extend(rec(i, f"keep {i}" if i % 3 == 0 else f"skip {i}") for i in range(35))
    # retained: seqs 25..34; of these, multiples of 3 are kept
    assert shown_messages(buffer) == ["keep 27", "keep 30", "keep 33"]
    assert [buffer.seq_at(i) for i in range(buffer.shown)] == [27, 30, 33]
    assert buffer.position_of(30) == 1
    assert buffer.position_of(28) == 1  # not shown: the next shown line
    assert buffer.position_of(3) == 0  # evicted: the first shown line
    assert buffer.position_of(99) == 3  # future: past the end
    with pytest.raises(IndexError):
        buffer.seq_at(3)


def test_filtered_index_matches_brute_force_under_random_traffic():
    rng = random.Random(402)
    buffer = LogBuffer(50)
    words = ["alpha", "beta", "gamma", "ERROR here", "rate limit"]
    filters = [
        ViewFilter(),
        ViewFilter(text=LogFilter("alpha")),
        ViewFilter(text=LogFilter("a", invert=True)),
        ViewFilter(text=LogFilter(r"^(beta|gamma)", regex=True)),
        ViewFilter(preset=ERRORS),
        ViewFilter(replica="prover-2"),
        ViewFilter(text=LogFilter("e"), replica="prover-1"),
    ]
    counter = 0
    for _ in range(300):
        if rng.random() < 0.1:
            buffer.set_filter(rng.choice(filters))
        batch = []
        for _ in range(rng.randint(0, 40)):
            batch.append(rec(counter, f"{rng.choice(words)} {counter}", replica=rng.choice(["prover-1", "prover-2"])))
            counter += 1
        buffer.extend(batch)
        expected = [r.message for r in buffer if buffer.filter.matches(r)]
        assert shown_messages(buffer) == expected
    # the index never holds much more than the window, however long this runs
    assert len(buffer._index) <= 2 * buffer.capacity + 4096


def test_index_memory_stays_bounded_over_many_appends():
    buffer = LogBuffer(100)
    buffer.set_filter(ViewFilter(text=LogFilter("line")))
    for start in range(0, 200_000, 1000):
        buffer.extend(rec(i) for i in range(start, start + 1000))
    assert buffer.shown == 100
    assert len(buffer._index) <= 100 + 4096 * 2


def test_invert_shows_what_does_not_match():
    buffer = LogBuffer(100)
    buffer.extend([rec(0, "GET /health 200"), rec(1, "POST /generate-proof 500"), rec(2, "GET /health 200")])
    buffer.set_filter(ViewFilter(text=LogFilter("/health", invert=True)))
    assert shown_messages(buffer) == ["POST /generate-proof 500"]
    buffer.extend([rec(3, "GET /health 200"), rec(4, "POST /generate-proof 429")])
    assert shown_messages(buffer) == ["POST /generate-proof 500", "POST /generate-proof 429"]


def test_filter_is_case_insensitive_unless_asked():
    buffer = LogBuffer(10)
    buffer.extend([rec(0, "Proof Generation Failed"), rec(1, "ok")])
    buffer.set_filter(ViewFilter(text=LogFilter("generation failed")))
    assert shown_messages(buffer) == ["Proof Generation Failed"]
    buffer.set_filter(ViewFilter(text=LogFilter("generation failed", case_sensitive=True)))
    assert shown_messages(buffer) == []


def test_substring_filter_treats_regex_characters_literally():
    buffer = LogBuffer(10)
    buffer.extend([rec(0, "cost (ms)"), rec(1, "cost ms")])
    buffer.set_filter(ViewFilter(text=LogFilter("(ms)")))
    assert shown_messages(buffer) == ["cost (ms)"]


@pytest.mark.parametrize("regex", [False, True])
@pytest.mark.parametrize("case_sensitive", [False, True])
@pytest.mark.parametrize("invert", [False, True])
def test_view_filter_answers_exactly_like_log_filter(regex, case_sensitive, invert):
    # ViewFilter takes a faster path for plain substrings; it must never disagree with the
    # LogFilter it was built from, including Unicode case folding (Kelvin sign, long s, dotted I).
    texts = [
        "Proof generation failed", "PROOF served", "status 429", "ſtatus", "ſ", "\u212a", "\u212a kelvin", "İstanbul",
        "istanbul", "ÉCOLE école", "straße STRASSE", "cost (ms)", "", "[GIN] 200 | 1.2µs",
    ]
    patterns = ["proof", "PROOF", "s", "k", "é", "İ", "i", "(ms)", "", "µs", "ss", "strasse"]
    for pattern in patterns:
        reference = LogFilter(pattern, regex=regex, invert=invert, case_sensitive=case_sensitive)
        fast = ViewFilter(text=reference).matches
        for i, text in enumerate(texts):
            record = rec(i, text)
            assert fast(record) == reference.matches(record), (pattern, text)


def test_invalid_regex_is_reported_and_leaves_the_buffer_as_it_was():
    buffer = LogBuffer(10)
    buffer.extend([rec(0, "a"), rec(1, "b")])
    before = ViewFilter(text=LogFilter("a"))
    buffer.set_filter(before)
    with pytest.raises(FilterError) as info:
        buffer.set_filter(ViewFilter(text=LogFilter("(unclosed", regex=True)))
    assert "invalid regular expression" in str(info.value)
    assert "(unclosed" in str(info.value)
    assert buffer.filter is before
    assert shown_messages(buffer) == ["a"]


def test_presets_select_the_runbook_lines():
    lines = [
        '[GIN] 2024/01/01 - 12:00:01 | 429 |  12.5µs |  203.0.113.7 | POST "/generate-proof"',
        '[GIN] 2024/01/01 - 12:00:01 | 200 |  1.2s |  203.0.113.8 | POST "/generate-proof"',
        "2024/01/01 12:00:02 Validation failed from 198.51.100.4: amount must be positive",
        "2024/01/01 12:00:03 Proof generation failed: witness error",
        '{"level":"warning","message":"Rate limit exceeded","client_ip":"192.0.2.1"}',
        '{"level":"info","message":"Input validation failed","client_ip":"192.0.2.2"}',
        "2024/01/01 12:00:04 Proof generated in 812ms",
    ]
    buffer = LogBuffer(100)
    buffer.extend(parse_log_line(line, "prover-1") for line in lines)

    def shown_raw() -> list[str]:
        return [buffer.record_at(i).raw for i in range(buffer.shown)]

    buffer.set_filter(ViewFilter(preset=ERRORS))
    assert shown_raw() == [lines[3]]
    buffer.set_filter(ViewFilter(preset=VALIDATION_FAILURES))
    assert shown_raw() == [lines[2], lines[5]]
    buffer.set_filter(ViewFilter(preset=RATE_LIMITING))
    assert shown_raw() == [lines[0], lines[4]]
    # preset AND text filter
    buffer.set_filter(ViewFilter(preset=RATE_LIMITING, text=LogFilter("GIN")))
    assert shown_raw() == [lines[0]]


def test_replica_filter():
    buffer = LogBuffer(10)
    buffer.extend([rec(0, "a", replica="prover-1"), rec(1, "b", replica="prover-2"), rec(2, "c", replica="prover-1")])
    assert buffer.replicas == ["prover-1", "prover-2"]
    buffer.set_filter(ViewFilter(replica="prover-2"))
    assert shown_messages(buffer) == ["b"]
    buffer.extend([rec(3, "d", replica="prover-2"), rec(4, "e", replica="prover-3")])
    assert shown_messages(buffer) == ["b", "d"]
    assert buffer.replicas == ["prover-1", "prover-2", "prover-3"]


def test_matched_total_counts_new_lines_even_when_they_were_evicted():
    buffer = LogBuffer(5)
    buffer.set_filter(ViewFilter(text=LogFilter("x")))
    buffer.extend([rec(0, "x0"), rec(1, "y1")])
    baseline = buffer.matched_total
    buffer.extend(rec(i, f"x{i}" if i % 2 else f"y{i}") for i in range(2, 42))
    assert buffer.matched_total - baseline == 20  # odd i in 2..41
    assert buffer.shown <= 5


def test_snapshot_does_not_move_when_the_buffer_does():
    buffer = LogBuffer(10)
    buffer.extend(rec(i) for i in range(10))
    frozen = buffer.snapshot()
    buffer.extend(rec(i) for i in range(10, 30))
    assert len(frozen) == 10
    assert [frozen.record_at(i).message for i in range(10)] == [f"line {i}" for i in range(10)]
    assert frozen.seq_at(3) == 3
    assert frozen.position_of(5) == 5
    assert buffer.live.seq_at(0) == 20
    assert len(buffer.live) == 10


def test_find_line_forwards_backwards_and_wrapping():
    buffer = LogBuffer(100)
    buffer.extend(rec(i, "hit" if i in (2, 5, 9) else "miss") for i in range(12))
    is_hit = lambda r: r.message == "hit"  # noqa: E731
    assert find_line(buffer.live, is_hit, -1) == 2
    assert find_line(buffer.live, is_hit, 2) == 5
    assert find_line(buffer.live, is_hit, 9) == 2  # wraps
    assert find_line(buffer.live, is_hit, 9, wrap=False) is None
    assert find_line(buffer.live, is_hit, 5, backwards=True) == 2
    assert find_line(buffer.live, is_hit, 2, backwards=True) == 9  # wraps
    assert find_line(buffer.live, is_hit, 12, backwards=True) == 9
    assert find_line(buffer.live, lambda r: False, 0) is None
    assert find_line(LogBuffer(3).live, is_hit, -1) is None


def test_longest_message_tracks_the_widest_line():
    buffer = LogBuffer(10)
    buffer.extend([rec(0, "abc"), rec(1, "x" * 300), rec(2, "d")])
    assert buffer.longest_message == 300


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_meter_reports_recent_lines_per_second_and_decays():
    clock = FakeClock()
    meter = RateMeter(window=2.0, resolution=0.25, clock=clock)
    for _ in range(40):  # 4 s at 500 lines per 0.1 s
        clock.now += 0.1
        meter.add(500)
    assert meter.rate() == pytest.approx(5000, rel=0.15)
    clock.now += 10
    assert meter.rate() == 0


def test_rate_meter_is_not_understated_right_after_start():
    clock = FakeClock()
    meter = RateMeter(window=2.0, resolution=0.25, clock=clock)
    clock.now += 0.5
    meter.add(1000)
    assert meter.rate() == pytest.approx(2000)
    with pytest.raises(ValueError):
        RateMeter(window=1, resolution=2)


def test_hiding_probe_lines_keeps_failed_probes_and_everything_else() -> None:
    lines = [
        '[GIN] 2024/01/01 - 12:00:01 | 200 |  310µs |  127.0.0.1 | GET      "/health"',
        '[GIN] 2024/01/01 - 12:00:01 | 200 |  1.2ms |  127.0.0.1 | GET      "/metrics"',
        '[GIN] 2024/01/01 - 12:00:02 | 500 |  2.0ms |  127.0.0.1 | GET      "/health"',
        '[GIN] 2024/01/01 - 12:00:02 | 429 |  12.5µs |  127.0.0.1 | GET      "/metrics"',
        '[GIN] 2024/01/01 - 12:00:03 | 200 |  1.2s |  203.0.113.8 | POST     "/generate-proof"',
        "2024/01/01 12:00:03 Failed to store proof: database is locked",
    ]
    records = [parse_log_line(line, "prover-1") for line in lines]
    assert [r.path for r in records[:5]] == ["/health", "/metrics", "/health", "/metrics", "/generate-proof"]
    buffer = LogBuffer(100)
    buffer.set_filter(ViewFilter(hide_paths=frozenset({"/health", "/metrics"})))
    buffer.extend(records)
    shown = [buffer.record_at(i) for i in range(buffer.shown)]
    assert [(r.path, r.http_status) for r in shown] == [
        ("/health", 500), ("/metrics", 429), ("/generate-proof", 200), (None, None)]
    assert len(buffer) == 6  # hidden, not dropped: showing them again brings them back
    buffer.set_filter(ViewFilter())
    assert buffer.shown == 6
