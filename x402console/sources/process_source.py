"""Provers running as local processes: their state and resources from /proc, their log files.

For [[replicas]] with a pid_file (the process-mode drill, or a host without Docker).

ProcessSource reads /proc the way `docker stats` reads cgroups, so both modes show comparable
numbers: CPU % is the process's CPU time over wall time (100 % = one core; several busy threads
on several cores go above 100), memory is resident set size (VmRSS) against the configured
memory limit (prover.memory_limit_bytes, the compose limit). Reads are chained: the next one is
scheduled `ui.refresh_seconds` after the last finished.

FileLogSource follows log files like `tail -F`: it starts with the last ~200 lines, follows
appends, and reopens the path when the file is truncated or replaced (rotation: a new inode).
Linux reports regular files as always readable to select/poll/epoll (toolong issue #17), so the
follower sleeps on an inotify watch of the files' directories (file_wake.py) and reads when one
changes, looking by itself at least once a second; where inotify is unavailable, or a file is not
there yet, it polls every 50-250 ms instead. Reads are 64 KiB at a time.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from x402console.settings.model import Replica, Settings
from x402console.sources.backoff import Backoff, sleep_or_stop
from x402console.sources.file_wake import FileWake
from x402console.sources.logbatch import MAX_LINE_BYTES, LineSplitter, LogBatcher, ThreadBridge
from x402console.sources.logparse import parse_log_line
from x402console.sources.models import RuntimeState, SourceStatus
from x402console.sources.sanitize import sanitize_line

__all__ = [
    "ProcessSource",
    "FileLogSource",
    "FileTailer",
    "ProcSample",
    "read_proc",
    "read_pid_file",
    "boot_time",
    "tail_offset",
]

CHUNK = 64 * 1024
IDLE_POLL = 0.05
# Polling a quiet file every 50 ms costs CPU for nothing: back off to this while nothing arrives.
IDLE_POLL_MAX = 0.25
# With inotify waking the follower, it still looks at its files this often by itself.
WAKE_FALLBACK_S = 1.0
DEFAULT_TAIL = 200
_MAX_TAIL_SCAN = 4 * 1024 * 1024  # how far back from the end the initial tail may look
_CHUNKS_PER_POLL = 16  # one busy file cannot starve the others of the same source
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------- /proc readers


def boot_time() -> float | None:
    """When the machine booted (Unix seconds), from the btime line of /proc/stat."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(frozen=True)
class ProcSample:
    pid: int
    state: str  # the one-letter state of /proc/PID/stat: R S D Z T t X I ...
    cpu_ticks: int  # utime + stime
    start_ticks: int  # clock ticks after boot
    rss_bytes: int | None
    threads: int | None


def read_proc(pid: int) -> ProcSample | None:
    """/proc/PID/stat and status for one process; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name (field 2) may hold spaces and ')': the fields start after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        state = fields[0].decode("ascii", "replace")
        utime, stime = int(fields[11]), int(fields[12])
        start = int(fields[19])
    except (IndexError, ValueError):
        return None
    rss: int | None = None
    threads: int | None = None
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    parts = line.split()
                    rss = int(parts[1]) * 1024 if len(parts) >= 2 else None  # always in kB
                elif line.startswith(b"Threads:"):
                    threads = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return ProcSample(pid, state, utime + stime, start, rss, threads)


def read_pid_file(path: Path) -> tuple[int | None, str | None, float | None]:
    """(pid, problem, file mtime): the pid, or None with what is wrong with the file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(64)
            mtime = os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return None, f"pid file {path} does not exist", None
    except OSError as exc:
        return None, f"cannot read pid file {path}: {exc.strerror or exc}", None
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit() or not 0 < int(text) < 2**22 + 1:
        return None, f"pid file {path} does not hold a process id ({text[:20]!r})", mtime
    return int(text), None, mtime


class _ProcessTracker:
    """One replica's previous reading, for CPU deltas and restart counting."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.cpu_ticks: int | None = None
        self.wall: float | None = None
        self.restarts = 0
        self.problem: str | None = None  # last pid-file problem reported


class ProcessSource:
    """RuntimeState for each static replica that has a pid_file, every refresh interval."""

    def __init__(self, settings: Settings, replicas: Sequence[Replica] | None = None) -> None:
        self.settings = settings
        chosen = settings.replicas if replicas is None else replicas
        self.replicas = [r for r in chosen if r.pid_file]
        self.interval = max(0.05, float(settings.ui.refresh_seconds))
        self._trackers = {r.name: _ProcessTracker() for r in self.replicas}
        self._boot = boot_time()

    async def run(self, sink: Any, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                snapshots = await asyncio.to_thread(self.sample)
            except Exception as exc:  # never expected; the contract says nothing escapes
                snapshots = [SourceStatus("process", ok=False, error=f"reading /proc failed: {exc}",
                                          retry_in=self.interval)]
            if stop.is_set():
                return
            for snap in snapshots:
                sink(snap)
            if await sleep_or_stop(stop, self.interval):
                return

    def sample(self) -> list[Any]:
        """One reading of every replica (blocking; the loop runs it in a thread)."""
        out: list[Any] = []
        for replica in self.replicas:
            out.extend(self._sample_one(replica))
        return out

    def _sample_one(self, replica: Replica) -> list[Any]:
        tracker = self._trackers[replica.name]
        now_wall = time.time()
        now = time.monotonic()
        out: list[Any] = []
        pid, problem, mtime = read_pid_file(Path(replica.pid_file))  # type: ignore[arg-type]
        status_name = f"process:{replica.name}"
        if problem != tracker.problem:
            tracker.problem = problem
            out.append(SourceStatus(status_name, ok=problem is None, error=problem,
                                    updated_at=None if problem else now_wall,
                                    retry_in=self.interval if problem else None))
        if pid is None:
            tracker.cpu_ticks = tracker.wall = None
            state = "missing" if problem and "does not exist" in problem else "unknown"
            out.append(RuntimeState(replica.name, state, now_wall, restart_count=tracker.restarts,
                                    mem_limit=self._limit()))
            return out
        if tracker.pid is not None and pid != tracker.pid:
            tracker.restarts += 1
            tracker.cpu_ticks = tracker.wall = None
        tracker.pid = pid
        proc = read_proc(pid)
        started_at = None
        if proc is not None and self._boot is not None:
            started_at = self._boot + proc.start_ticks / _CLK_TCK
        # A process that started well after its pid file was written is some other process that
        # was given the recycled pid.
        reused = started_at is not None and mtime is not None and started_at > mtime + 2.0
        if proc is None or proc.state in ("Z", "X") or reused:
            tracker.cpu_ticks = tracker.wall = None
            out.append(RuntimeState(replica.name, "exited", now_wall, restart_count=tracker.restarts,
                                    mem_limit=self._limit()))
            return out
        cpu = None
        if tracker.cpu_ticks is not None and tracker.wall is not None and now > tracker.wall:
            cpu = max(0.0, (proc.cpu_ticks - tracker.cpu_ticks) / _CLK_TCK / (now - tracker.wall) * 100.0)
        tracker.cpu_ticks, tracker.wall = proc.cpu_ticks, now
        limit = self._limit()
        used = proc.rss_bytes
        out.append(
            RuntimeState(
                replica=replica.name,
                state="paused" if proc.state in ("T", "t") else "running",
                ts=now_wall,
                restart_count=tracker.restarts,
                started_at=started_at,
                cpu_percent=cpu,
                mem_used=used,
                mem_limit=limit,
                mem_percent=(used / limit * 100.0) if used is not None and limit else None,
                pids=proc.threads,
            )
        )
        return out

    def _limit(self) -> int | None:
        limit = self.settings.prover.memory_limit_bytes
        return limit if limit > 0 else None


# --------------------------------------------------------------------------- log files


def tail_offset(f: Any, size: int, lines: int) -> int:
    """Offset in an open binary file where its last `lines` lines start (looking back at most
    _MAX_TAIL_SCAN bytes; a line cut there is skipped to its end)."""
    if size <= 0 or lines <= 0:
        return size
    start = max(0, size - _MAX_TAIL_SCAN)
    f.seek(size - 1)
    # A final newline ends the last line; without one the unfinished last line counts too.
    wanted = lines + 1 if f.read(1) == b"\n" else lines
    pos = size
    buf = b""
    while pos > start:
        step = min(CHUNK, pos - start)
        pos -= step
        f.seek(pos)
        buf = f.read(step) + buf
        if buf.count(b"\n") >= wanted:
            break
    idx = len(buf)
    for _ in range(wanted):
        idx = buf.rfind(b"\n", 0, idx)
        if idx < 0:
            break
    if idx >= 0:
        return pos + idx + 1
    if pos == 0:
        return 0  # the whole file has fewer lines
    first = buf.find(b"\n")  # the scan limit fell inside a line: start at the next one
    return pos + first + 1 if first >= 0 else size


class FileTailer:
    """`tail -F` of one file, polled: returns the complete new lines on each poll()."""

    def __init__(self, path: Path, tail_lines: int = DEFAULT_TAIL, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.path = Path(path)
        self.tail_lines = tail_lines
        self.splitter = LineSplitter(max_line_bytes)
        self._f: Any = None
        self._ident: tuple[int, int] | None = None
        self._opened_once = False
        self.rotations = 0
        self.truncations = 0

    @property
    def is_open(self) -> bool:
        return self._f is not None

    def open(self) -> None:
        """Open the path (raises OSError); the first open starts at the last lines, later ones
        (a rotated-in file) at the beginning."""
        f = open(self.path, "rb", buffering=0)
        try:
            st = os.fstat(f.fileno())
            offset = tail_offset(f, st.st_size, self.tail_lines) if not self._opened_once else 0
            f.seek(offset)
        except BaseException:
            f.close()
            raise
        self._f = f
        self._ident = (st.st_dev, st.st_ino)
        self._opened_once = True

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None

    def poll(self, max_chunks: int = _CHUNKS_PER_POLL) -> tuple[list[bytes], bool]:
        """(new complete lines, whether anything was read). Raises OSError when the file
        cannot be opened; the caller retries with backoff."""
        if self._f is None:
            self.open()
        lines: list[bytes] = []
        got = False
        for _ in range(max_chunks):
            data = self._f.read(CHUNK)
            if not data:
                break
            got = True
            lines.extend(self.splitter.feed(data))
        else:
            return lines, True
        if got:
            return lines, True
        # At the end of what this handle sees: has the path moved on to another file?
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return lines, False  # rotated away and not yet recreated: keep the old handle
        position = self._f.tell()
        if (st.st_dev, st.st_ino) != self._ident:
            lines.extend(self.splitter.flush())
            self.close()
            self.rotations += 1
            self.open()
            return lines, True
        if st.st_size < position:
            lines.extend(self.splitter.flush())
            self._f.seek(0)
            self.truncations += 1
            return lines, True
        return lines, False


class FileLogSource:
    """LogBatch snapshots from the log_file of each static replica."""

    def __init__(
        self,
        settings: Settings,
        replicas: Sequence[Replica] | None = None,
        *,
        tail_lines: int = DEFAULT_TAIL,
        capacity: int | None = None,
        flush_interval: float = 0.05,
        max_batch: int = 500,
        idle_poll: float = IDLE_POLL,
    ) -> None:
        self.settings = settings
        chosen = settings.replicas if replicas is None else replicas
        self.replicas = [r for r in chosen if r.log_file]
        self.tail_lines = tail_lines
        self.idle_poll = idle_poll
        self.max_line_length = settings.ui.max_line_length
        self.batcher = LogBatcher(capacity or settings.ui.log_buffer_lines, max_batch, flush_interval)
        self._stopping = threading.Event()
        self._wake: FileWake | None = None

    async def run(self, sink: Any, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        bridge = ThreadBridge(loop, sink)
        self._stopping.clear()
        thread = threading.Thread(target=self._follow, args=(bridge,), name="file-logs", daemon=True)
        thread.start()
        try:
            await self.batcher.run(bridge.deliver_now, stop)
        finally:
            bridge.close()
            self._stopping.set()
            wake = self._wake
            if wake is not None:
                wake.interrupt()
            if thread.is_alive():
                await asyncio.to_thread(thread.join, 1.5)

    def _follow(self, bridge: ThreadBridge) -> None:
        tailers = [(r.name, FileTailer(Path(r.log_file), self.tail_lines)) for r in self.replicas]  # type: ignore[arg-type]
        backoffs = {name: Backoff(1.0, 2.0, 30.0) for name, _ in tailers}
        retry_at = {name: 0.0 for name, _ in tailers}
        healthy: dict[str, bool | None] = {name: None for name, _ in tailers}
        # Watched before the first read, so a write between a read and the wait still wakes it.
        wake = self._wake = FileWake(t.path for _, t in tailers)
        try:
            quiet = 0
            while not self._stopping.is_set():
                busy = False
                for name, tailer in tailers:
                    if self._stopping.is_set():
                        return
                    if not tailer.is_open and time.monotonic() < retry_at[name]:
                        continue
                    try:
                        lines, read = tailer.poll()
                    except OSError as exc:
                        delay = backoffs[name].next_delay()
                        retry_at[name] = time.monotonic() + delay
                        healthy[name] = False
                        bridge.emit(SourceStatus(
                            f"logs:{name}", ok=False, attempts=backoffs[name].failures, retry_in=delay,
                            error=f"cannot read log file {tailer.path}: {exc.strerror or exc}",
                        ))
                        continue
                    if healthy[name] is not True:
                        healthy[name] = True
                        backoffs[name].reset()
                        bridge.emit(SourceStatus(f"logs:{name}", ok=True, updated_at=time.time()))
                    busy = busy or read
                    if lines:
                        self.batcher.put_many(
                            parse_log_line(sanitize_line(line, self.max_line_length), name) for line in lines
                        )
                if busy:
                    quiet = 0
                elif wake.watching and all(t.is_open for _, t in tailers):
                    # inotify says when to read; the timeout keeps the rotation checks going.
                    wake.wait(WAKE_FALLBACK_S)
                else:
                    quiet += 1
                    # 50 ms right after data (a burst usually continues), up to 250 ms when quiet.
                    self._stopping.wait(min(IDLE_POLL_MAX, self.idle_poll * (1 + quiet // 4)))
        finally:
            self._wake = None
            wake.close()
            for _, tailer in tailers:
                tailer.close()
