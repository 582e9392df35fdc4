"""Line splitting, the bounded batch queue, and the docker re-attach bookkeeping (pure parts)."""

from __future__ import annotations

import asyncio
import io
import threading

import pytest

from x402console.sources.docker_logs import ResumePoint, docker_ts_ns
from x402console.sources.docker_source import parse_docker_time
from x402console.sources.logbatch import LineSplitter, LogBatcher
from x402console.sources.process_source import tail_offset


# --------------------------------------------------------------------------- LineSplitter


def test_partial_lines_wait_for_their_newline():
    s = LineSplitter()
    assert s.feed(b"first li") == []
    assert s.pending == 8
    assert s.feed(b"ne\nsecond\r\nthi") == [b"first line", b"second"]
    assert s.feed(b"rd\n\n") == [b"third", b""]
    assert s.flush() == []


def test_flush_returns_the_unfinished_line():
    s = LineSplitter()
    s.feed(b"a\npartial")
    assert s.flush() == [b"partial"]
    assert s.pending == 0


def test_long_line_is_cut_and_its_remainder_dropped():
    s = LineSplitter(max_bytes=10)
    out = s.feed(b"0123456789ABCDEF")  # no newline yet, already over the cap
    assert out == [b"0123456789"]
    assert s.pending == 0
    assert s.feed(b"GHIJ") == []  # still the same line: discarded
    assert s.feed(b"KL\nnext\n") == [b"next"]
    assert s.cut_lines == 1
    # a long line that arrives whole is cut the same way
    assert s.feed(b"x" * 25 + b"\nok\n") == [b"x" * 10, b"ok"]
    assert s.cut_lines == 2


def test_splitter_memory_stays_bounded_without_newlines():
    s = LineSplitter(max_bytes=1024)
    for _ in range(1000):
        s.feed(b"y" * 512)
        assert s.pending <= 1024


# --------------------------------------------------------------------------- LogBatcher


def test_take_caps_batches_and_reports_drops():
    b = LogBatcher(capacity=5, max_batch=3)
    b.put_many(range(8))  # 0..2 pushed out by the bounded queue
    first = b.take()
    assert first.records == (3, 4, 5) and first.dropped == 3
    second = b.take()
    assert second.records == (6, 7) and second.dropped == 0
    assert b.take() is None
    assert b.total_dropped == 3


async def test_run_batches_records_put_from_threads():
    b = LogBatcher(capacity=10_000, max_batch=100, interval=0.02)
    got = []
    stop = asyncio.Event()
    loop_thread = threading.get_ident()
    threads_seen = set()

    def sink(batch):
        threads_seen.add(threading.get_ident())
        got.append(batch)

    task = asyncio.create_task(b.run(sink, stop))

    def produce():
        for i in range(1000):
            b.put(i)

    producers = [threading.Thread(target=produce) for _ in range(3)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()

    async def until_all():
        while sum(len(x.records) for x in got) < 3000:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(until_all(), 10)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert threads_seen == {loop_thread}
    assert all(len(x.records) <= 100 for x in got)
    assert sum(x.dropped for x in got) == 0
    assert sorted(r for x in got for r in x.records) == sorted(list(range(1000)) * 3)


async def test_run_stops_promptly():
    b = LogBatcher(interval=10.0)
    stop = asyncio.Event()
    task = asyncio.create_task(b.run(lambda batch: None, stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 1.0)


class CountingBatcher(LogBatcher):
    takes = 0

    def take(self):
        self.takes += 1
        return super().take()


async def test_idle_run_does_not_tick():
    # An idle console must cost nothing: with no records the loop never wakes to look.
    b = CountingBatcher(interval=0.01)
    stop = asyncio.Event()
    got = []
    task = asyncio.create_task(b.run(got.append, stop))
    await asyncio.sleep(0.3)
    assert b.takes == 0 and got == []
    threading.Thread(target=b.put_many, args=(range(3),)).start()
    for _ in range(200):
        if got:
            break
        await asyncio.sleep(0.01)
    assert [r for x in got for r in x.records] == [0, 1, 2]
    takes = b.takes
    await asyncio.sleep(0.3)
    assert b.takes == takes  # asleep again once the queue is empty
    stop.set()
    await asyncio.wait_for(task, 1.0)


async def test_the_first_records_leave_at_once_and_a_trickle_after_them_is_batched():
    b = LogBatcher(interval=2.0)
    b.put_many(["tail-1", "tail-2"])  # what a source read before run() started: the start-up tail
    got = []
    stop = asyncio.Event()
    task = asyncio.create_task(b.run(got.append, stop))
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    assert [x.records for x in got] == [("tail-1", "tail-2")]  # within half an interval
    b.put("second")
    await asyncio.sleep(0.05)
    b.put("third")  # inside the gathering interval: leaves with "second"
    for _ in range(400):
        if len(got) > 1:
            break
        await asyncio.sleep(0.01)
    assert [x.records for x in got] == [("tail-1", "tail-2"), ("second", "third")]
    stop.set()
    await asyncio.wait_for(task, 1.0)


async def test_stop_during_the_gathering_interval_is_prompt():
    b = LogBatcher(interval=10.0)
    stop = asyncio.Event()
    task = asyncio.create_task(b.run(lambda batch: None, stop))
    await asyncio.sleep(0.01)
    b.put("x")
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 1.0)


# --------------------------------------------------------------------------- docker timestamps


def test_docker_ts_ns_reads_nanoseconds_and_zones():
    assert docker_ts_ns(b"2026-01-02T03:04:05.123456789Z msg") == 1767323045_123456789
    assert docker_ts_ns(b"2026-01-02T03:04:05.5Z msg") == 1767323045_500000000
    assert docker_ts_ns(b"2026-01-02T03:04:05Z msg") == 1767323045_000000000
    assert docker_ts_ns(b"2026-01-02T05:04:05.1+02:00 msg") == 1767323045_100000000
    assert docker_ts_ns(b"no stamp here") is None
    assert docker_ts_ns(b"2026-01-02T03:04:05.1Zmissing-space") is None


def test_parse_docker_time():
    assert parse_docker_time("2026-01-02T03:04:05.25Z") == pytest.approx(1767323045.25)
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("junk") is None
    assert parse_docker_time(None) is None


def test_resume_point_skips_replayed_lines_only():
    r = ResumePoint(window_ns=2_000_000_000)
    base = 1767323045_000000000
    lines = [(base + i * 300_000_000, f"line {i}".encode()) for i in range(10)]
    for ts, line in lines:
        assert r.is_new(ts, line)
        r.delivered(ts, line)
    # re-attach: the daemon replays from 2 s before the newest line, in whole seconds
    assert r.since() == (lines[-1][0] - 2_000_000_000) // 1_000_000_000
    replay = [(ts, line) for ts, line in lines if ts >= r.since() * 1_000_000_000]
    assert all(not r.is_new(ts, line) for ts, line in replay)
    # a line with the same stamp but other text, or newer, is new
    assert r.is_new(lines[-1][0], b"another line at the same nanosecond")
    assert r.is_new(lines[-1][0] + 1, b"line 9")
    # older than the window: already delivered (or from before we attached)
    assert not r.is_new(base - 10_000_000_000, b"ancient")


def test_resume_point_without_history_accepts_everything():
    r = ResumePoint()
    assert r.since() is None
    assert r.is_new(None, b"x") and r.is_new(5, b"y")


# --------------------------------------------------------------------------- tail offset


@pytest.mark.parametrize("final_newline", [True, False])
def test_tail_offset_finds_the_last_lines(final_newline):
    body = b"".join(f"line {i}\n".encode() for i in range(1000))
    if not final_newline:
        body += b"partial"
    f = io.BytesIO(body)
    off = tail_offset(f, len(body), 3)
    expected = b"line 997\nline 998\nline 999\n" if final_newline else b"line 998\nline 999\npartial"
    assert body[off:] == expected
    assert tail_offset(io.BytesIO(body), len(body), 5000) == 0
    assert tail_offset(io.BytesIO(b""), 0, 3) == 0
