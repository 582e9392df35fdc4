"""Log lines of the prover containers on one Docker engine, following each replica for good.

One follower thread per replica reads `GET /containers/{id}/logs?follow=1&timestamps=1` and
demultiplexes the frames itself, so every record says whether it came from stdout or stderr
(docker-py's stream helper merges them). When the container stops the daemon ends the stream;
the follower then waits for the container to run again, woken by the engine's start event or by
a cheap re-inspect every second while it is down (lazydocker re-attaches the same way), and
re-attaches, also to a new container that took over the replica's name (a re-create).

Nothing is lost or repeated across a re-attach: the follower asks for lines since a little
before the newest timestamp it delivered and drops the replayed lines it has already seen.
The window (2 s) is there because stdout and stderr are copied by separate goroutines, so
their timestamps interleave slightly out of order in the log.

Demultiplexing, line splitting, sanitising, parsing and batching happen in the follower; the
loop only receives LogBatch snapshots (see logbatch.py).
"""

from __future__ import annotations

import asyncio
import calendar
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from x402console.settings.model import DockerHost, Settings
from x402console.sources.backoff import Backoff
from x402console.sources.discovery import (
    DiscoveryError,
    discover_containers,
    event_filters,
    matches_discovery,
)
from x402console.sources.docker_source import (
    StreamSet,
    close_quietly,
    connect,
    describe_error,
    event_action,
    event_container,
)
from x402console.sources.logbatch import MAX_LINE_BYTES, LineSplitter, LogBatcher, ThreadBridge
from x402console.sources.logparse import LogRecord, parse_log_line
from x402console.sources.models import ReplicaIdentity, SourceStatus
from x402console.sources.sanitize import sanitize_line

__all__ = ["DockerLogSource", "ResumePoint", "docker_ts_ns", "open_log_frames", "DEFAULT_TAIL"]

DEFAULT_TAIL = 200
RESUME_WINDOW_NS = 2_000_000_000
_RECENT_LIMIT = 50_000
_STREAMS = {1: "stdout", 2: "stderr"}
_TS = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ")


def docker_ts_ns(line: bytes) -> int | None:
    """The `timestamps=True` prefix of a log line as integer nanoseconds since the epoch."""
    m = _TS.match(line)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    frac = m.group(7) or b""
    nanos = int(frac.ljust(9, b"0")) if frac else 0
    zone = m.group(8)
    if zone != b"Z":
        sign = 1 if zone[:1] == b"+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs * 1_000_000_000 + nanos


class ResumePoint:
    """What one replica's follower has delivered, so a re-attach neither repeats nor skips.

    Keeps the newest timestamp and the (timestamp, line) keys of the last RESUME_WINDOW_NS; a
    replayed line is new when it is inside the window and its key was not delivered.
    """

    def __init__(self, window_ns: int = RESUME_WINDOW_NS) -> None:
        self.window_ns = window_ns
        self.last_ns: int | None = None
        # A follower being replaced (reconnect) may still flush while its successor starts.
        self.lock = threading.Lock()
        self._recent: deque[tuple[int, int]] = deque()
        self._keys: set[tuple[int, int]] = set()

    def since(self) -> int | None:
        """The `since` (whole seconds, inclusive) to ask the daemon for on re-attach."""
        if self.last_ns is None:
            return None
        return max(1, (self.last_ns - self.window_ns) // 1_000_000_000)

    def is_new(self, ts_ns: int | None, line: bytes) -> bool:
        if ts_ns is None or self.last_ns is None:
            return True
        if ts_ns < self.last_ns - self.window_ns:
            return False
        return (ts_ns, hash(line)) not in self._keys

    def delivered(self, ts_ns: int | None, line: bytes) -> None:
        if ts_ns is None:
            return
        key = (ts_ns, hash(line))
        self._recent.append(key)
        self._keys.add(key)
        if self.last_ns is None or ts_ns > self.last_ns:
            self.last_ns = ts_ns
        cutoff = self.last_ns - self.window_ns
        recent = self._recent
        while recent and (recent[0][0] < cutoff or len(recent) > _RECENT_LIMIT):
            self._keys.discard(recent.popleft())


def open_log_frames(client: Any, container_id: str, *, tty: bool, since: int | None, tail: int | str) -> Any:
    """A closable stream of (stream name or None, bytes) from a container's log.

    docker-py's logs(stream=True) merges stdout and stderr; here the 8-byte frame headers
    (stream id, 3 pad bytes, big-endian length: docker/utils/socket.py) are read directly.
    A TTY container's log is raw bytes with no stream identity.
    """
    from docker.types.daemon import CancellableStream

    api = client.api
    params: dict[str, Any] = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": 1, "tail": tail}
    if since is not None:
        params["since"] = since
    response = api._get(api._url("/containers/{0}/logs", container_id), params=params, stream=True)
    api._raise_for_status(response)
    sock = api._get_raw_response_socket(response)
    api._disable_socket_timeout(sock)  # a quiet container may write nothing for hours

    def frames() -> Iterator[tuple[str | None, bytes]]:
        raw = response.raw
        if tty:
            while True:
                chunk = raw.read1(65536) if hasattr(raw, "read1") else raw.read(1)
                if not chunk:
                    return
                yield None, chunk
        while True:
            header = raw.read(8)
            if len(header) < 8:
                return
            stream_id, length = struct.unpack(">BxxxL", header)
            if not length:
                continue
            data = raw.read(length)
            if not data:
                return
            yield _STREAMS.get(stream_id), data

    return CancellableStream(frames(), response)


class _Follower:
    """Follows one replica's log across stops, restarts and re-creations."""

    def __init__(self, source: DockerLogSource, client: Any, replica: str) -> None:
        self.source = source
        self.client = client
        self.replica = replica
        self.cancelled = threading.Event()
        self.wake = threading.Event()
        self.stream: Any = None
        self.backoff = Backoff(1.0, 2.0, 30.0)
        self.thread = threading.Thread(target=self._run, name=f"docker-logs-{replica}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.cancelled.set()
        self.wake.set()
        close_quietly(self.stream)

    def _wait(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def _run(self) -> None:
        import docker.errors

        src = self.source
        resume = src._resume_point(self.replica)
        drained_id: str | None = None  # container whose log was read to its end while stopped
        while not self.cancelled.is_set() and not src._stopping.is_set():
            container_id = src._container_of(self.replica)
            if container_id is None:
                self._wait(src.reinspect_seconds)
                continue
            try:
                attrs = self.client.api.inspect_container(container_id)
            except docker.errors.NotFound:
                self._wait(src.reinspect_seconds)  # re-created: discovery brings the new id
                continue
            except Exception:
                self._wait(src.reinspect_seconds)
                continue
            state = attrs.get("State") or {}
            running = bool(state.get("Running"))
            if not running and drained_id == container_id:
                # Down, and everything it wrote has been read: wait for a start event, or look
                # again in a second in case the event was missed.
                self._wait(src.reinspect_seconds)
                continue
            tty = bool((attrs.get("Config") or {}).get("Tty"))
            since = resume.since()
            tail: int | str = "all" if since is not None else src.tail_lines
            try:
                self._read(container_id, tty, since, tail, resume)
            except Exception as exc:
                if self.cancelled.is_set() or src._stopping.is_set():
                    return
                # e.g. a logging driver that cannot be read back (syslog, none): say so, and
                # ask again less and less often.
                delay = self.backoff.next_delay()
                src._emit(SourceStatus(f"logs:{self.replica}", ok=False, retry_in=delay,
                                       attempts=self.backoff.failures,
                                       error=f"cannot read the log of {self.replica}: {exc}"))
                self._wait(delay)
                continue
            if self.backoff.failures:
                self.backoff.reset()
                src._emit(SourceStatus(f"logs:{self.replica}", ok=True, updated_at=time.time()))
            if not running:
                drained_id = container_id
            else:
                drained_id = None
                # It was running when we attached and the stream ended: it stopped (the next
                # inspect tells), or the daemon went away. Pause briefly so a flapping state
                # cannot spin.
                self._wait(0.2)

    def _read(self, container_id: str, tty: bool, since: int | None, tail: int | str, resume: ResumePoint) -> None:
        src = self.source
        stream = open_log_frames(self.client, container_id, tty=tty, since=since, tail=tail)
        if not src._streams.add(stream):
            return
        self.stream = stream
        if self.cancelled.is_set():
            close_quietly(stream)
        splitters: dict[str | None, LineSplitter] = {}
        try:
            for name, data in stream:
                splitter = splitters.get(name)
                if splitter is None:
                    splitter = splitters[name] = LineSplitter(src.max_line_bytes)
                self._deliver(splitter.feed(data), name, resume)
        finally:
            src._streams.discard(stream)
            self.stream = None
            close_quietly(stream)
            for name, splitter in splitters.items():
                self._deliver(splitter.flush(), name, resume)

    def _deliver(self, lines: list[bytes], stream: str | None, resume: ResumePoint) -> None:
        if not lines:
            return
        src = self.source
        fresh: list[bytes] = []
        with resume.lock:
            for line in lines:
                ts = docker_ts_ns(line)
                if resume.is_new(ts, line):
                    resume.delivered(ts, line)
                    fresh.append(line)
        records: list[LogRecord] = [
            parse_log_line(sanitize_line(line, src.max_line_length), self.replica, stream) for line in fresh
        ]
        if records:
            src.batcher.put_many(records)


class DockerLogSource:
    """LogBatch snapshots with the parsed log lines of every prover container on one engine."""

    def __init__(
        self,
        settings: Settings,
        host: DockerHost,
        *,
        tail_lines: int = DEFAULT_TAIL,
        capacity: int | None = None,
        flush_interval: float = 0.05,
        max_batch: int = 500,
        reinspect_seconds: float = 1.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.host = host
        self.name = f"logs:docker:{host.name}"
        self.tail_lines = tail_lines
        self.reinspect_seconds = reinspect_seconds
        self.max_line_bytes = MAX_LINE_BYTES
        self.max_line_length = settings.ui.max_line_length
        self.batcher = LogBatcher(capacity or settings.ui.log_buffer_lines, max_batch, flush_interval)
        self._backoff = backoff or Backoff(1.0, 2.0, 30.0)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._streams = StreamSet()
        self._bridge: ThreadBridge | None = None
        self._replicas: dict[str, ReplicaIdentity] = {}
        self._by_id: dict[str, str] = {}
        self._followers: dict[str, _Follower] = {}
        # Kept across reconnects and re-creations, so a re-attach never repeats a line.
        self._resume: dict[str, ResumePoint] = {}

    # -- the hub's contract ---------------------------------------------------------------------

    async def run(self, sink: Any, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._bridge = ThreadBridge(loop, sink)
        self._stopping.clear()
        self._streams = StreamSet()
        main = threading.Thread(target=self._main, name=f"docker-logs-{self.host.name}", daemon=True)
        main.start()
        try:
            await self.batcher.run(self._bridge.deliver_now, stop)
        finally:
            self._bridge.close()
            self._stopping.set()
            self._streams.close_all()
            followers = self._take_followers()
            for f in followers:
                f.cancel()
            deadline = time.monotonic() + 1.5
            for t in (main, *(f.thread for f in followers)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if t.is_alive():
                    await asyncio.to_thread(t.join, remaining)

    # -- shared with followers --------------------------------------------------------------------

    def _container_of(self, replica: str) -> str | None:
        with self._lock:
            identity = self._replicas.get(replica)
        return identity.container_id if identity is not None else None

    def _resume_point(self, replica: str) -> ResumePoint:
        with self._lock:
            return self._resume.setdefault(replica, ResumePoint())

    def _emit(self, snapshot: Any) -> None:
        if self._bridge is not None and not self._stopping.is_set():
            self._bridge.emit(snapshot)

    def _take_followers(self) -> list[_Follower]:
        with self._lock:
            followers = list(self._followers.values())
            self._followers.clear()
        return followers

    # -- connection -------------------------------------------------------------------------------

    def _main(self) -> None:
        while not self._stopping.is_set():
            client = None
            try:
                client = connect(self.host)
                client.ping()
                self._backoff.reset()
                self._emit(SourceStatus(self.name, ok=True, updated_at=time.time()))
                self._session(client)
                error = f"docker host {self.host.name}: event stream ended (engine restarted?); reconnecting"
            except DiscoveryError as exc:
                error = str(exc)
            except Exception as exc:
                error = describe_error(self.host, exc)
            finally:
                for f in self._take_followers():
                    f.cancel()
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        pass
            if self._stopping.is_set():
                return
            delay = self._backoff.next_delay()
            self._emit(SourceStatus(self.name, ok=False, error=error, retry_in=delay, attempts=self._backoff.failures))
            self._stopping.wait(delay)

    def _session(self, client: Any) -> None:
        events = client.events(decode=True, filters=event_filters(self.settings))
        if not self._streams.add(events):
            return
        try:
            self._rediscover(client)
            for event in events:
                if self._stopping.is_set():
                    return
                if isinstance(event, Mapping):
                    self._on_event(client, event)
        finally:
            self._streams.discard(events)
            close_quietly(events)

    def _on_event(self, client: Any, event: Mapping[str, Any]) -> None:
        action = event_action(event)
        cid, attributes = event_container(event)
        if cid is None:
            return
        with self._lock:
            replica = self._by_id.get(cid)
        if replica is None:
            if action != "destroy" and matches_discovery(
                {"Name": attributes.get("name", ""), "Labels": attributes}, self.settings
            ):
                self._rediscover(client)
            return
        if action in ("destroy", "rename"):
            self._rediscover(client)
        elif action in ("start", "restart", "unpause"):
            with self._lock:
                follower = self._followers.get(replica)
            if follower is not None:
                follower.wake.set()

    def _rediscover(self, client: Any) -> None:
        found = discover_containers(client, self.settings, self.host)
        started: list[_Follower] = []
        gone: list[_Follower] = []
        with self._lock:
            self._replicas = {r.name: r for r in found}
            self._by_id = {r.container_id: r.name for r in found if r.container_id}
            for name in list(self._followers):
                if name not in self._replicas:
                    gone.append(self._followers.pop(name))
            for name in self._replicas:
                follower = self._followers.get(name)
                if follower is None and not self._stopping.is_set():
                    follower = self._followers[name] = _Follower(self, client, name)
                    started.append(follower)
                elif follower is not None:
                    follower.wake.set()  # maybe a new container id for it
        for f in gone:
            f.cancel()
        for f in started:
            f.start()
