"""Prover containers on one Docker engine: which exist, their state, and their CPU and memory.

Push, not poll (DESIGN.md; reference/tui-lessons.md C.4, lazydocker PR #324): after one initial
listing, the engine's event stream drives every change. A start, die, kill, oom, health_status,
create, destroy or rename of one of our containers makes this source re-inspect that container
(or re-run discovery when the set of containers changed) and emit fresh snapshots; nothing polls
container state. Resource figures come from one streaming stats request per running container,
computed as `docker stats` does (dockerstats.py), and sent at most once per refresh interval.

Every docker-py call blocks, so the work happens in daemon threads; snapshots reach the hub's
sink on the loop thread through a ThreadBridge. Errors never leave run(): they become a
SourceStatus with the retry delay, and the source reconnects with exponential backoff (1 s
doubling to 30 s). When the event stream ends (the daemon restarted), the source reconnects and
lists again, since events during the gap are lost. Stopping closes every open stream from the
stopping thread, which is what unblocks a reader stuck in recv().

Restart count: Docker's RestartCount only counts restarts made by a restart policy, so a
`docker start` after a crash (what an engineer does with restart "no", as in the drill) leaves
it at 0. The count reported here is Docker's at first sight plus every new start this source
sees for the same replica, across re-creations (new container id, same replica name).
"""

from __future__ import annotations

import asyncio
import calendar
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from x402console.settings.model import DockerHost, Settings
from x402console.sources import dockerstats
from x402console.sources.backoff import Backoff
from x402console.sources.discovery import (
    DiscoveryError,
    discover_containers,
    event_filters,
    matches_discovery,
)
from x402console.sources.logbatch import ThreadBridge
from x402console.sources.models import ComponentState, ReplicaIdentity, ReplicaSet, RuntimeState, SourceStatus

__all__ = [
    "DockerSource",
    "DockerConnectError",
    "connect",
    "describe_error",
    "parse_docker_time",
    "StreamSet",
    "event_action",
]

STALL_SECONDS = 5.0
STOP_JOIN_SECONDS = 1.5
_ZERO_TIME = "0001-01-01T00:00:00Z"


class DockerConnectError(RuntimeError):
    """The engine cannot be reached; the message says why in words an operator can act on."""


# --------------------------------------------------------------------------- engine access


def connect(host: DockerHost) -> Any:
    """A docker.DockerClient for one [[docker.hosts]] entry; raises DockerConnectError."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DockerConnectError(f"docker SDK not importable: {exc}") from exc
    kwargs: dict[str, Any] = {"base_url": host.url, "timeout": host.timeout_seconds}
    if host.url.startswith("ssh://"):
        try:
            import paramiko  # noqa: F401
        except ImportError:
            raise DockerConnectError(
                f"{host.url}: ssh:// Docker hosts need the paramiko package, which is not installed "
                "(pip install paramiko), or reach the engine through a tcp:// or unix:// URL"
            ) from None
        kwargs["use_ssh_client"] = False
    if host.tls_verify and host.url.startswith(("tcp://", "https://")):
        from docker.tls import TLSConfig

        cert_dir = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
        cert, key, ca = (os.path.join(cert_dir, n) for n in ("cert.pem", "key.pem", "ca.pem"))
        kwargs["tls"] = TLSConfig(
            client_cert=(cert, key) if os.path.exists(cert) and os.path.exists(key) else None,
            ca_cert=ca if os.path.exists(ca) else None,
            verify=True,
        )
    try:
        return docker.DockerClient(**kwargs)
    except Exception as exc:
        raise DockerConnectError(describe_error(host, exc)) from exc


def describe_error(host: DockerHost, exc: BaseException) -> str:
    if isinstance(exc, DockerConnectError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    if "No such file or directory" in text or "FileNotFoundError" in text:
        text = f"no Docker socket there ({text})"
    elif "Permission denied" in text:
        text = f"permission denied on the Docker socket; is this user in the docker group? ({text})"
    elif "Connection refused" in text:
        text = f"connection refused ({text})"
    return f"docker host {host.name} ({host.url}): {text}"


def parse_docker_time(text: Any) -> float | None:
    """RFC 3339 with nanoseconds (2024-05-01T12:00:00.123456789Z) -> Unix seconds; None for
    the zero time Docker reports for "never", and for junk."""
    if not isinstance(text, str) or not text or text.startswith("0001-01-01"):
        return None
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$", text)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        secs = float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None
    frac = m.group(7)
    if frac:
        secs += int(frac) / 10 ** len(frac)
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs


def event_action(event: Mapping[str, Any]) -> str:
    """'health_status: healthy' -> 'health_status'; exec events carry their command too."""
    action = event.get("Action") or event.get("status") or ""
    return str(action).split(":", 1)[0].strip()


def event_container(event: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    actor = event.get("Actor")
    attributes: Mapping[str, Any] = {}
    cid = None
    if isinstance(actor, Mapping):
        cid = actor.get("ID")
        if isinstance(actor.get("Attributes"), Mapping):
            attributes = actor["Attributes"]
    cid = cid or event.get("id")
    return (cid if isinstance(cid, str) else None), attributes


class StreamSet:
    """The open CancellableStreams of a source, so stop() can close them from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: set[Any] = set()
        self.closed = False

    def add(self, stream: Any) -> bool:
        """Track `stream`; False (and the stream closed) when the set is already closed."""
        with self._lock:
            if not self.closed:
                self._streams.add(stream)
                return True
        close_quietly(stream)
        return False

    def discard(self, stream: Any) -> None:
        with self._lock:
            self._streams.discard(stream)

    def close_all(self) -> None:
        with self._lock:
            self.closed = True
            streams = list(self._streams)
            self._streams.clear()
        for stream in streams:
            close_quietly(stream)


def close_quietly(stream: Any) -> None:
    if stream is None:
        return
    try:
        stream.close()
    except Exception:
        # SSH channels refuse CancellableStream.close(); dropping the response still ends it.
        try:
            stream._response.close()
        except Exception:
            pass


def open_stats(client: Any, container_id: str) -> Any:
    """A closable stream of decoded stats samples (docker-py's own stats() generator cannot be
    closed from another thread, which a prompt stop and the stall watchdog need)."""
    from docker.types.daemon import CancellableStream

    api = client.api
    response = api._get(api._url("/containers/{0}/stats", container_id), params={"stream": True}, stream=True)
    api._raise_for_status(response)
    return CancellableStream(api._stream_helper(response, decode=True), response)


# --------------------------------------------------------------------------- state


@dataclass
class _Inspected:
    container_id: str
    state: str
    health: str | None
    started_at: float | None
    started_raw: str | None
    exit_code: int | None
    docker_restarts: int
    mem_limit: int | None

    @property
    def running(self) -> bool:
        return self.state == "running"


def inspected(attrs: Mapping[str, Any]) -> _Inspected:
    state = attrs.get("State") if isinstance(attrs.get("State"), Mapping) else {}
    status = state.get("Status") if isinstance(state.get("Status"), str) else "unknown"
    health = state.get("Health")
    health_status = health.get("Status") if isinstance(health, Mapping) else None
    started_raw = state.get("StartedAt") if isinstance(state.get("StartedAt"), str) else None
    if started_raw == _ZERO_TIME:
        started_raw = None
    exit_code = state.get("ExitCode")
    host_config = attrs.get("HostConfig") if isinstance(attrs.get("HostConfig"), Mapping) else {}
    memory = host_config.get("Memory")
    restarts = attrs.get("RestartCount")
    return _Inspected(
        container_id=str(attrs.get("Id") or ""),
        state=status,
        health=health_status if isinstance(health_status, str) and health_status != "none" else None,
        started_at=parse_docker_time(started_raw),
        started_raw=started_raw,
        exit_code=exit_code if status in ("exited", "dead") and isinstance(exit_code, int) else None,
        docker_restarts=restarts if isinstance(restarts, int) else 0,
        mem_limit=memory if isinstance(memory, int) and memory > 0 else None,
    )


class _RestartCounter:
    """Docker's RestartCount at first sight, plus each new start seen afterwards."""

    def __init__(self) -> None:
        self.count: int | None = None
        self._started: str | None = None

    def update(self, info: _Inspected) -> int:
        if self.count is None:
            self.count = info.docker_restarts
        elif info.started_raw is not None and self._started is not None and info.started_raw != self._started:
            self.count += 1
        if info.started_raw is not None:
            self._started = info.started_raw
        self.count = max(self.count, info.docker_restarts)
        return self.count


@dataclass
class _Resources:
    cpu_percent: float | None
    mem_used: int | None
    mem_limit: int | None
    mem_percent: float | None
    pids: int | None


class _StatsWorker:
    """One streaming stats request for one running container, reopened after a stall."""

    def __init__(self, source: DockerSource, client: Any, replica: str, container_id: str) -> None:
        self.source = source
        self.client = client
        self.replica = replica
        self.container_id = container_id
        self.cancelled = threading.Event()
        self.stream: Any = None
        self.last_sample = time.monotonic()
        self.stalled = False
        self.thread = threading.Thread(target=self._run, name=f"docker-stats-{replica}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.cancelled.set()
        close_quietly(self.stream)

    def watch(self, now: float, limit: float) -> None:
        """Called by the watchdog: a stream silent for `limit` seconds is closed and reopened."""
        if self.stream is not None and not self.stalled and now - self.last_sample > limit:
            self.stalled = True
            close_quietly(self.stream)

    def _run(self) -> None:
        src = self.source
        last_emit = 0.0
        while not self.cancelled.is_set() and not src._stopping.is_set():
            previous: Mapping[str, Any] | None = None
            try:
                stream = open_stats(self.client, self.container_id)
                if not src._streams.add(stream):
                    return
                self.stream = stream
                self.last_sample = time.monotonic()
                if self.cancelled.is_set():
                    close_quietly(stream)
                try:
                    for sample in stream:
                        self.last_sample = time.monotonic()
                        if self.cancelled.is_set():
                            break
                        if not isinstance(sample, Mapping) or not sample.get("memory_stats"):
                            continue  # a stopped container streams empty samples
                        summary = dockerstats.summarize(sample, previous)
                        previous = sample
                        now = time.monotonic()
                        if now - last_emit >= src._interval * 0.9:  # samples come ~1 s apart, with jitter
                            last_emit = now
                            src._set_resources(self.replica, self.container_id, summary)
                finally:
                    src._streams.discard(stream)
                    self.stream = None
                    close_quietly(stream)
            except Exception:
                # Gone, or the engine is going away: the event stream reports that; a running
                # container is retried below.
                pass
            if self.cancelled.is_set() or src._stopping.is_set():
                return
            if self.stalled:
                self.stalled = False
                src._mark_stale(self.replica, self.container_id)
            self.cancelled.wait(0.5)


# --------------------------------------------------------------------------- the source


class DockerSource:
    """State and resources of the prover containers on one Docker engine (one per host)."""

    def __init__(self, settings: Settings, host: DockerHost, *, stall_seconds: float = STALL_SECONDS,
                 backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.host = host
        self.name = f"docker:{host.name}"
        self._interval = max(0.05, float(settings.ui.refresh_seconds))
        self._stall = stall_seconds
        self._backoff = backoff or Backoff(1.0, 2.0, 30.0)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._streams = StreamSet()
        self._bridge: ThreadBridge | None = None
        self._replicas: dict[str, ReplicaIdentity] = {}
        self._by_id: dict[str, str] = {}
        self._inspected: dict[str, _Inspected] = {}
        self._resources: dict[str, _Resources] = {}
        self._restarts: dict[str, _RestartCounter] = {}
        self._workers: dict[str, _StatsWorker] = {}

    # -- the hub's contract ---------------------------------------------------------------------

    async def run(self, sink: Any, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._bridge = ThreadBridge(loop, sink)
        self._stopping.clear()
        self._streams = StreamSet()
        main = threading.Thread(target=self._main, name=f"docker-{self.host.name}", daemon=True)
        watchdog = threading.Thread(target=self._watchdog, name=f"docker-watch-{self.host.name}", daemon=True)
        main.start()
        watchdog.start()
        try:
            await stop.wait()
        finally:
            self._bridge.close()
            self._stopping.set()
            self._streams.close_all()
            with self._lock:
                workers = list(self._workers.values())
            for w in workers:
                w.cancel()
            deadline = time.monotonic() + STOP_JOIN_SECONDS
            for t in (main, watchdog, *(w.thread for w in workers)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if t.is_alive():
                    # A call already in flight (an inspect, a connect) ends on its own timeout;
                    # the threads are daemons and emit nothing after the bridge closed.
                    await asyncio.to_thread(t.join, remaining)

    # -- emitting -------------------------------------------------------------------------------

    def _emit(self, snapshot: Any) -> None:
        if self._bridge is not None and not self._stopping.is_set():
            self._bridge.emit(snapshot)

    def _runtime(self, replica: str) -> RuntimeState | None:
        with self._lock:
            info = self._inspected.get(replica)
            res = self._resources.get(replica) if info is not None and info.running else None
            restarts = self._restarts.get(replica)
        if info is None:
            return None
        return RuntimeState(
            replica=replica,
            state=info.state,
            ts=time.time(),
            health=info.health,
            restart_count=restarts.count if restarts else info.docker_restarts,
            started_at=info.started_at,
            exit_code=info.exit_code,
            cpu_percent=res.cpu_percent if res else None,
            mem_used=res.mem_used if res else None,
            mem_limit=(res.mem_limit if res and res.mem_limit else info.mem_limit),
            mem_percent=res.mem_percent if res else None,
            pids=res.pids if res else None,
        )

    def _emit_runtime(self, replica: str) -> None:
        state = self._runtime(replica)
        if state is not None:
            self._emit(state)

    def _set_resources(self, replica: str, container_id: str, s: dockerstats.StatsSummary) -> None:
        with self._lock:
            info = self._inspected.get(replica)
            if info is None or info.container_id != container_id or not info.running:
                return  # a late sample from a container that has since stopped or been replaced
            self._resources[replica] = _Resources(
                cpu_percent=s.cpu_percent,
                mem_used=s.memory_used,
                mem_limit=s.memory_limit or None,
                mem_percent=s.memory_percent if s.memory_limit else None,
                pids=s.pids,
            )
        self._emit_runtime(replica)

    def _mark_stale(self, replica: str, container_id: str) -> None:
        with self._lock:
            info = self._inspected.get(replica)
            res = self._resources.get(replica)
            if info is None or info.container_id != container_id or res is None:
                return
            res.cpu_percent = None
        self._emit_runtime(replica)

    def _status_ok(self) -> None:
        self._emit(SourceStatus(self.name, ok=True, updated_at=time.time()))

    # -- threads --------------------------------------------------------------------------------

    def _watchdog(self) -> None:
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            with self._lock:
                workers = list(self._workers.values())
            for w in workers:
                w.watch(now, self._stall)

    def _main(self) -> None:
        while not self._stopping.is_set():
            client = None
            try:
                client = connect(self.host)
                version = client.version()
                self._backoff.reset()
                detail = f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
                self._emit(ComponentState(self.name, True, detail, time.time()))
                self._status_ok()
                self._session(client)
                error = f"docker host {self.host.name}: event stream ended (engine restarted?); reconnecting"
            except DiscoveryError as exc:
                error = str(exc)
            except Exception as exc:
                error = describe_error(self.host, exc)
            finally:
                self._stop_workers()
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        pass
            if self._stopping.is_set():
                return
            delay = self._backoff.next_delay()
            now = time.time()
            self._emit(SourceStatus(self.name, ok=False, error=error, retry_in=delay, attempts=self._backoff.failures))
            self._emit(ComponentState(self.name, False, error, now))
            self._stopping.wait(delay)

    def _session(self, client: Any) -> None:
        # Subscribe before listing: an event in between is then seen (and handled twice, which is
        # harmless), never lost.
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

    # -- reacting -------------------------------------------------------------------------------

    def _on_event(self, client: Any, event: Mapping[str, Any]) -> None:
        action = event_action(event)
        cid, attributes = event_container(event)
        if cid is None:
            return
        with self._lock:
            replica = self._by_id.get(cid)
        if replica is not None:
            if action in ("destroy", "rename"):
                self._rediscover(client)
            else:
                self._refresh(client, replica)
        elif action != "destroy" and matches_discovery(
            {"Name": attributes.get("name", ""), "Labels": attributes}, self.settings
        ):
            self._rediscover(client)

    def _rediscover(self, client: Any) -> None:
        found = discover_containers(client, self.settings, self.host)
        with self._lock:
            before = dict(self._replicas)
            self._replicas = {r.name: r for r in found}
            self._by_id = {r.container_id: r.name for r in found if r.container_id}
            for name in set(before) - set(self._replicas):
                self._inspected.pop(name, None)
                self._resources.pop(name, None)
                self._restarts.pop(name, None)
        for name in set(before) - set(self._replicas):
            self._stop_worker(name)
        self._status_ok()
        if self.settings.discovery.mode != "static":
            # In static mode the [[replicas]] list is the replica set; this engine adds nothing.
            self._emit(ReplicaSet(tuple(found), time.time()))
        for r in found:
            self._refresh(client, r.name)

    def _refresh(self, client: Any, replica: str) -> None:
        import docker.errors

        with self._lock:
            identity = self._replicas.get(replica)
        if identity is None or not identity.container_id:
            return
        try:
            attrs = client.api.inspect_container(identity.container_id)
        except docker.errors.NotFound:
            # Removed under us: the destroy event re-runs discovery; until then it is missing.
            with self._lock:
                self._resources.pop(replica, None)
                old = self._inspected.get(replica)
                if old is not None:
                    self._inspected[replica] = _Inspected(
                        identity.container_id, "missing", None, None, None, None, old.docker_restarts, None
                    )
            self._stop_worker(replica)
            self._emit_runtime(replica)
            return
        info = inspected(attrs)
        with self._lock:
            previous = self._inspected.get(replica)
            if previous is not None and (previous.container_id != info.container_id or not info.running):
                self._resources.pop(replica, None)
            self._inspected[replica] = info
            self._restarts.setdefault(replica, _RestartCounter()).update(info)
        if info.running:
            self._ensure_worker(client, replica, info.container_id)
        else:
            self._stop_worker(replica)
        self._emit_runtime(replica)

    def _ensure_worker(self, client: Any, replica: str, container_id: str) -> None:
        with self._lock:
            worker = self._workers.get(replica)
            if worker is not None and worker.container_id == container_id and worker.thread.is_alive():
                return
            if worker is not None:
                worker.cancel()
            if self._stopping.is_set():
                return
            worker = _StatsWorker(self, client, replica, container_id)
            self._workers[replica] = worker
        worker.start()

    def _stop_worker(self, replica: str) -> None:
        with self._lock:
            worker = self._workers.pop(replica, None)
        if worker is not None:
            worker.cancel()

    def _stop_workers(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            w.cancel()
