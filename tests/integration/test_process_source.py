"""ProcessSource and FileLogSource against real processes and real files.

The drill (process mode) starts real simulator replicas with pid files and log files; the file
tests drive a real writer (a thread appending, rotating and truncating a temp file).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from x402console.config import load_config
from x402console.settings.model import Replica, Settings, UISettings
from x402console.sources.logbatch import MAX_LINE_BYTES
from x402console.sources.models import LogBatch, RuntimeState, SourceStatus
from x402console.sources.process_source import FileLogSource, ProcessSource


class Collector:
    """The sink: keeps every snapshot and checks it is called on the loop thread."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.thread = threading.get_ident()
        self.wrong_thread = 0

    def __call__(self, snapshot: Any) -> None:
        if threading.get_ident() != self.thread:
            self.wrong_thread += 1
        self.items.append(snapshot)

    def of(self, kind: type) -> list[Any]:
        return [s for s in self.items if isinstance(s, kind)]

    def records(self) -> list[Any]:
        return [r for b in self.of(LogBatch) for r in b.records]

    async def until(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last items: {self.items[-5:]}")
            await asyncio.sleep(0.02)


async def start(source: Any) -> tuple[Collector, asyncio.Event, asyncio.Task]:
    sink = Collector()
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(sink, stop))
    return sink, stop, task


async def finish(sink: Collector, stop: asyncio.Event, task: asyncio.Task) -> None:
    stop.set()
    await asyncio.wait_for(task, 2.0)  # the contract: stopping is prompt
    assert sink.wrong_thread == 0


def fast(settings: Settings, **ui: Any) -> Settings:
    return dataclasses.replace(settings, ui=dataclasses.replace(settings.ui, refresh_seconds=0.2, **ui))


def latest(sink: Collector, replica: str) -> RuntimeState | None:
    states = [s for s in sink.of(RuntimeState) if s.replica == replica]
    return states[-1] if states else None


# --------------------------------------------------------------------------- ProcessSource


async def test_process_source_reports_drill_replicas_and_a_kill(drill_factory):
    env = drill_factory()
    settings = fast(load_config(env.state.config))
    source = ProcessSource(settings)
    assert [r.name for r in source.replicas] == ["prover-1", "prover-2"]
    sink, stop, task = await start(source)
    try:
        def both_measured():
            states = [latest(sink, n) for n in ("prover-1", "prover-2")]
            return all(s is not None and s.state == "running" and s.cpu_percent is not None for s in states) and states

        states = await sink.until(both_measured, 15, "both replicas running with a CPU figure")
        for s, r in zip(states, env.replicas):
            assert s.mem_used is not None and s.mem_used > 1024 * 1024  # a Python process has MiBs resident
            assert s.mem_limit == env.opts.memory_limit
            assert s.mem_percent == pytest.approx(s.mem_used / s.mem_limit * 100)
            assert s.cpu_percent >= 0
            assert s.started_at is not None and abs(s.started_at - time.time()) < 300
            assert s.restart_count == 0 and s.pids and s.pids >= 1

        victim = env.replicas[0]
        os.kill(victim.process.pid, signal.SIGKILL)  # stays a zombie of this test process: still "exited"
        await sink.until(lambda: (s := latest(sink, "prover-1")) and s.state in ("exited", "missing"), 10,
                         "prover-1 reported exited")
        gone = latest(sink, "prover-1")
        assert gone.cpu_percent is None and gone.mem_used is None
        assert latest(sink, "prover-2").state == "running"
    finally:
        await finish(sink, stop, task)


async def test_new_pid_counts_as_a_restart_and_bad_pid_files_are_reported(tmp_path):
    pid_file = tmp_path / "p.pid"
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    second = None
    try:
        pid_file.write_text(f"{first.pid}\n")
        garbage = tmp_path / "garbage.pid"
        garbage.write_text("not a pid")
        replicas = (
            Replica("p", "http://127.0.0.1:1/health", "http://127.0.0.1:1/metrics", pid_file=pid_file),
            Replica("nofile", "http://127.0.0.1:2/health", "http://127.0.0.1:2/metrics", pid_file=tmp_path / "none.pid"),
            Replica("junk", "http://127.0.0.1:3/health", "http://127.0.0.1:3/metrics", pid_file=garbage),
        )
        settings = Settings(replicas=replicas, ui=UISettings(refresh_seconds=0.1))
        sink, stop, task = await start(ProcessSource(settings))
        try:
            await sink.until(lambda: (s := latest(sink, "p")) and s.state == "running", 5, "p running")
            assert latest(sink, "nofile").state == "missing"
            assert latest(sink, "junk").state == "unknown"
            errors = {s.name: s.error for s in sink.of(SourceStatus) if not s.ok}
            assert "does not exist" in errors["process:nofile"]
            assert "does not hold a process id" in errors["process:junk"]

            second = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            pid_file.write_text(f"{second.pid}\n")
            await sink.until(lambda: (s := latest(sink, "p")) and s.restart_count == 1, 5, "restart counted")
            assert latest(sink, "p").state == "running"
            first.kill()
            first.wait()
            await asyncio.sleep(0.3)
            assert latest(sink, "p").state == "running"  # the old pid's death is not ours any more
        finally:
            await finish(sink, stop, task)
    finally:
        for p in (first, second):
            if p is not None:
                p.kill()
                p.wait()


async def test_busy_process_cpu_is_measured(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"])
    try:
        pid_file = tmp_path / "busy.pid"
        pid_file.write_text(str(busy.pid))
        settings = Settings(replicas=(Replica("busy", "http://x/h", "http://x/m", pid_file=pid_file),),
                            ui=UISettings(refresh_seconds=0.3))
        sink, stop, task = await start(ProcessSource(settings))
        try:
            # a spinning loop uses most of a core; a loaded machine gives it less, never nothing
            await sink.until(lambda: (s := latest(sink, "busy")) and (s.cpu_percent or 0) > 10, 10, "busy CPU")
        finally:
            await finish(sink, stop, task)
    finally:
        busy.kill()
        busy.wait()


# --------------------------------------------------------------------------- FileLogSource


async def test_file_logs_of_drill_replicas_under_traffic(drill_factory):
    env = drill_factory(traffic_rate=5, traffic_clients=100)
    settings = load_config(env.state.config)
    sink, stop, task = await start(FileLogSource(settings))
    try:
        def traffic_from_both():
            names = {r.replica for r in sink.records() if r.fmt == "gin" and r.path == "/generate-proof"}
            return names >= {"prover-1", "prover-2"}

        await sink.until(traffic_from_both, 30, "traffic's access log records from both replicas")
        access = [r for r in sink.records() if r.http_status is not None]
        assert all(r.method in ("GET", "POST") and r.path for r in access)
        assert all(r.ts is not None and r.client_ip for r in access)
        assert any(s.ok for s in sink.of(SourceStatus) if s.name == "logs:prover-1")
    finally:
        await finish(sink, stop, task)


class Writer:
    """Appends numbered lines to a file from a thread, like a process writing its log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = open(path, "ab", buffering=0)
        self.n = 0

    def line(self, text: str | None = None) -> str:
        self.n += 1
        text = text or f"line {self.n}"
        self.f.write(text.encode() + b"\n")
        return text

    def reopen(self) -> None:
        self.f.close()
        self.f = open(self.path, "ab", buffering=0)

    def close(self) -> None:
        self.f.close()


def file_settings(path: Path, **ui: Any) -> Settings:
    return Settings(replicas=(Replica("r1", "http://x/h", "http://x/m", log_file=path),), ui=UISettings(**ui))


def messages(sink: Collector) -> list[str]:
    return [r.message for r in sink.records()]


async def test_tail_starts_at_the_last_lines_then_follows(tmp_path):
    path = tmp_path / "app.log"
    w = Writer(path)
    for _ in range(1000):
        w.line()
    sink, stop, task = await start(FileLogSource(file_settings(path)))
    try:
        await sink.until(lambda: len(messages(sink)) >= 200, 5, "the initial tail")
        await asyncio.sleep(0.2)
        assert messages(sink) == [f"line {i}" for i in range(801, 1001)]
        w.f.write(b"half a li")
        await asyncio.sleep(0.2)
        assert len(messages(sink)) == 200  # the partial line waits for its newline
        w.f.write(b"ne\n")
        await sink.until(lambda: messages(sink)[-1:] == ["half a line"], 5, "the completed line")
        assert all(r.replica == "r1" and r.stream is None for r in sink.records())
    finally:
        await finish(sink, stop, task)
        w.close()


async def test_rotation_and_truncation_lose_and_repeat_nothing(tmp_path):
    path = tmp_path / "app.log"
    w = Writer(path)
    w.line()
    sink, stop, task = await start(FileLogSource(file_settings(path)))
    expected = ["line 1"]
    try:
        await sink.until(lambda: messages(sink) == expected, 5, "the first line")
        for _ in range(50):
            expected.append(w.line())
        await sink.until(lambda: len(messages(sink)) == 51, 5, "appended lines")

        # logrotate's default: rename, then the writer reopens a new file at the same path
        expected.append(w.line("last words of the old file"))
        os.rename(path, tmp_path / "app.log.1")
        await asyncio.sleep(0.15)
        expected.append(w.line("written to the renamed file"))  # the writer still holds the old inode
        w.reopen()
        for _ in range(20):
            expected.append(w.line())
        await sink.until(lambda: len(messages(sink)) == len(expected), 5, "lines across the rotation")
        assert messages(sink) == expected

        # copytruncate: same inode, size drops to zero, writing restarts at the top
        w.close()
        with open(path, "r+b") as f:
            f.truncate(0)
        await asyncio.sleep(0.2)
        w = Writer(path)
        w.n = 1000
        for _ in range(5):
            expected.append(w.line())
        await sink.until(lambda: len(messages(sink)) == len(expected), 5, "lines after the truncation")
        assert messages(sink) == expected
    finally:
        await finish(sink, stop, task)
        w.close()


async def test_escape_sequences_and_invalid_utf8_arrive_sanitised(tmp_path):
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    sink, stop, task = await start(FileLogSource(file_settings(path)))
    try:
        await asyncio.sleep(0.1)
        with open(path, "ab") as f:
            f.write(b"2026/01/02 03:04:05 Proof generation failed: \x1b]0;pwned\x07bad \xff\xfe bytes \x1b[2J\r\n")
            f.write(b"\x1b[31mred\x1b[0m \x9b plain\n")
        await sink.until(lambda: len(sink.records()) == 2, 5, "two records")
        first, second = sink.records()
        assert first.fmt == "stdlib" and first.level == "error"
        assert "\x1b" not in first.raw and "\x07" not in first.raw and "pwned" not in first.raw
        assert "\\xff\\xfe" in first.message and "\u241b" in first.message
        assert not first.raw.endswith("\r")
        assert second.message.startswith("red ")
        assert all(ch.isprintable() for r in (first, second) for ch in r.raw)
    finally:
        await finish(sink, stop, task)


async def test_overlong_line_is_cut_and_the_next_line_survives(tmp_path):
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    sink, stop, task = await start(FileLogSource(file_settings(path, max_line_length=100)))
    try:
        await asyncio.sleep(0.1)
        with open(path, "ab") as f:
            f.write(b"A" * (3 * MAX_LINE_BYTES) + b"\nafter\n")
        await sink.until(lambda: len(sink.records()) == 2, 5, "two records")
        long, after = sink.records()
        assert long.raw.startswith("A" * 100) and long.raw.endswith(f"…[+{MAX_LINE_BYTES - 100} chars]")
        assert after.message == "after"
    finally:
        await finish(sink, stop, task)


async def test_missing_file_is_reported_then_followed_once_it_appears(tmp_path):
    path = tmp_path / "later.log"
    sink, stop, task = await start(FileLogSource(file_settings(path)))
    try:
        failure = await sink.until(
            lambda: next((s for s in sink.of(SourceStatus) if s.name == "logs:r1" and not s.ok), None), 5,
            "a failure status")
        assert "later.log" in failure.error and failure.retry_in and failure.retry_in > 0
        path.write_bytes(b"hello\n")
        # retried after the backoff (about 1 s, then 2 s)
        await sink.until(lambda: messages(sink) == ["hello"], 8, "the line once the file exists")
        assert sink.of(SourceStatus)[-1].ok
    finally:
        await finish(sink, stop, task)


async def test_flood_is_batched_and_bounded(tmp_path):
    path = tmp_path / "flood.log"
    path.write_bytes(b"")
    source = FileLogSource(file_settings(path), capacity=1000, max_batch=500)
    sink, stop, task = await start(source)
    try:
        await asyncio.sleep(0.1)
        with open(path, "ab") as f:
            f.write(b"".join(f"flood {i}\n".encode() for i in range(20_000)))
        await sink.until(lambda: len(sink.records()) + sum(b.dropped for b in sink.of(LogBatch)) >= 20_000, 20,
                         "all lines delivered or counted as dropped")
        batches = sink.of(LogBatch)
        assert all(len(b.records) <= 500 for b in batches)
        delivered = [r.message for r in sink.records()]
        # what arrives is in order and ends with the newest line, whatever was dropped
        numbers = [int(m.split()[1]) for m in delivered]
        assert numbers == sorted(numbers) and numbers[-1] == 19_999
        assert len(delivered) + sum(b.dropped for b in batches) == 20_000
    finally:
        await finish(sink, stop, task)
