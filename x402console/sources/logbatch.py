"""From reader threads to the event loop: log lines cut and batched, snapshots handed over.

Log readers (Docker log streams, tailed files) block, so they run in threads; the hub's sink
must be called on the event loop thread. Lines can arrive by the thousand per second during an
attack, and one message per line would swamp the UI (reference/tui-lessons.md C.1, C.3), so
records are queued here and leave as one LogBatch every 50 ms or every 500 records. The queue is
bounded: when the loop falls behind, the oldest records go and `dropped` says how many, so the
pane can show the gap rather than hide it.

LineSplitter is where a byte stream becomes lines: partial lines wait for their newline, and one
line is cut at 64 KiB before anything decodes it, so a writer that never sends a newline cannot
grow memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from x402console.sources.models import LogBatch

__all__ = [
    "MAX_LINE_BYTES",
    "FLUSH_INTERVAL",
    "MAX_BATCH",
    "LineSplitter",
    "LogBatcher",
    "ThreadBridge",
]

MAX_LINE_BYTES = 64 * 1024
FLUSH_INTERVAL = 0.05
MAX_BATCH = 500
DEFAULT_CAPACITY = 10_000

log = logging.getLogger(__name__)


class LineSplitter:
    """Bytes chunks in, complete lines out (without the newline and a trailing CR).

    A line longer than `max_bytes` comes out as its first `max_bytes` bytes, as soon as that
    much has arrived; the rest of it, up to the next newline, is discarded.
    """

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._skipping = False  # inside the discarded remainder of a cut line
        self.cut_lines = 0

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held back."""
        return len(self._buf)

    def _line(self, raw: bytes | bytearray) -> bytes:
        if len(raw) > self.max_bytes:
            self.cut_lines += 1
            raw = raw[: self.max_bytes]
        elif raw.endswith(b"\r"):
            raw = raw[:-1]
        return bytes(raw)

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        start = 0
        size = len(data)
        while start < size:
            nl = data.find(b"\n", start)
            if nl < 0:
                if not self._skipping:
                    self._buf += data[start:]
                    if len(self._buf) > self.max_bytes:
                        out.append(self._line(self._buf))
                        self._buf.clear()
                        self._skipping = True
                break
            if self._skipping:
                self._skipping = False
            elif self._buf:
                self._buf += data[start:nl]
                out.append(self._line(self._buf))
                self._buf.clear()
            else:
                out.append(self._line(data[start:nl]))
            start = nl + 1
        return out

    def flush(self) -> list[bytes]:
        """The unfinished line, if any, as a line of its own (the stream or file ended)."""
        self._skipping = False
        if not self._buf:
            return []
        line = self._line(self._buf)
        self._buf.clear()
        return [line]

    def reset(self) -> None:
        self._buf.clear()
        self._skipping = False


class ThreadBridge:
    """Calls `sink(snapshot)` on the loop thread for snapshots made in worker threads.

    After close() nothing more reaches the sink, also not callbacks already scheduled: a source
    that has returned from run() must stay silent.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[Any], None]) -> None:
        self._loop = loop
        self._sink = sink
        self.closed = False

    def emit(self, snapshot: Any) -> None:
        if self.closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, snapshot)
        except RuntimeError:  # loop closed: the app is gone
            self.closed = True

    def deliver_now(self, snapshot: Any) -> None:
        """For code already on the loop thread."""
        self._deliver(snapshot)

    def _deliver(self, snapshot: Any) -> None:
        if self.closed:
            return
        try:
            self._sink(snapshot)
        except Exception:  # a broken sink must not kill the source
            log.exception("sink failed for %s", type(snapshot).__name__)

    def close(self) -> None:
        self.closed = True


class LogBatcher:
    """Thread-safe bounded queue of log records, drained into LogBatch snapshots on the loop.

    put() may be called from any thread. run() is the loop side: it sends a batch every
    `interval` seconds when records are waiting, at once when `max_batch` are waiting (and for
    the first records it sees), and never more than `max_batch` records in one LogBatch.
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        max_batch: int = MAX_BATCH,
        interval: float = FLUSH_INTERVAL,
    ) -> None:
        if capacity < 1 or max_batch < 1:
            raise ValueError("capacity and max_batch must be at least 1")
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.capacity = capacity
        self.max_batch = max_batch
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: deque[Any] = deque()
        self._dropped = 0
        self._wake: Callable[[], None] | None = None
        self._woken = False
        self.total_dropped = 0

    def put(self, record: Any) -> None:
        self.put_many((record,))

    def put_many(self, records: Iterable[Any]) -> None:
        wake = None
        with self._lock:
            pending = self._pending
            was_empty = not pending and not self._dropped
            for record in records:
                if len(pending) >= self.capacity:
                    pending.popleft()
                    self._dropped += 1
                    self.total_dropped += 1
                pending.append(record)
            # The loop sleeps until told: on the first record into an empty queue (it then waits
            # one interval to gather more) and again when a full batch is waiting.
            full = len(pending) >= self.max_batch
            if pending and (was_empty or full) and not self._woken and self._wake is not None:
                self._woken = True
                wake = self._wake
        if wake is not None:
            wake()

    def take(self) -> LogBatch | None:
        """The next batch, or None when nothing (records or drops) is waiting."""
        with self._lock:
            self._woken = False
            if not self._pending and not self._dropped:
                return None
            n = min(self.max_batch, len(self._pending))
            records = tuple(self._pending.popleft() for _ in range(n))
            dropped, self._dropped = self._dropped, 0
        return LogBatch(records=records, dropped=dropped)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    async def run(self, sink: Callable[[LogBatch], None], stop: asyncio.Event) -> None:
        """Sends batches until `stop`. An idle console must cost nothing here, so the loop does
        not tick: it sleeps until put_many() wakes it, then waits one interval (unless a full
        batch is already waiting) so that a trickle of lines leaves as one batch."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:
                pass

        with self._lock:
            self._wake = wake
            self._woken = bool(self._pending or self._dropped)
        if self._woken:
            ready.set()  # records put before run() started
        stopper = asyncio.ensure_future(stop.wait())
        first = True
        try:
            while not stop.is_set():
                waiter = asyncio.ensure_future(ready.wait())
                await asyncio.wait((waiter, stopper), return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if stop.is_set():
                    break
                # The first batch (the tail read at start-up) leaves at once: it is whole
                # already, and the log pane is the last to show data when the console opens.
                if not first and len(self) < self.max_batch:
                    await asyncio.wait((stopper,), timeout=self.interval)
                first = False
                ready.clear()
                # Full batches go out back to back, yielding between them so the UI keeps up.
                while (batch := self.take()) is not None:
                    try:
                        sink(batch)
                    except Exception:
                        log.exception("log sink failed")
                    if len(batch.records) < self.max_batch:
                        break
                    await asyncio.sleep(0)
        finally:
            self._wake = None
            stopper.cancel()
