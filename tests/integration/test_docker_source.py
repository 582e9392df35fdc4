"""DockerSource and DockerLogSource against the real Docker engine and real simulator containers.

Replicas are started as compose-labelled containers (host networking, 127.0.0.1 ports) under a
project name unique to the test, so parallel runs and a real x402 deployment on the same engine
are never touched; the `drills` fixture removes them, also when a test fails. The last tests use
a scripted Engine API server on loopback for what the shared engine cannot be made to do (see
the section comment there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rig.components import free_port
from tests.rig.docker_rig import docker_client, drills, require_sim  # noqa: F401  (fixtures)
from x402console.config import load_config
from x402console.drill.containers import ReplicaSpec, parse_memory
from x402console.settings.model import Discovery, DockerHost, Settings, UISettings
from x402console.sources.docker_logs import DockerLogSource
from x402console.sources.docker_source import DockerSource
from x402console.sources.sanitize import sanitize_line
from x402console.sources.models import ComponentState, LogBatch, ReplicaSet, RuntimeState, SourceStatus

pytestmark = pytest.mark.docker

MEMORY = "256m"


class Collector:
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

    def latest(self, replica: str) -> RuntimeState | None:
        states = [s for s in self.of(RuntimeState) if s.replica == replica]
        return states[-1] if states else None

    def records(self) -> list[Any]:
        return [r for b in self.of(LogBatch) for r in b.records]

    async def until(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {self.items[-6:]}")
            await asyncio.sleep(0.05)


async def start(source: Any) -> tuple[Collector, asyncio.Event, asyncio.Task]:
    sink = Collector()
    stop = asyncio.Event()
    return sink, stop, asyncio.create_task(source.run(sink, stop))


async def finish(sink: Collector, stop: asyncio.Event, task: asyncio.Task) -> None:
    stop.set()
    await asyncio.wait_for(task, 2.0)  # prompt stop: open streams are closed, not waited out
    count = len(sink.items)
    await asyncio.sleep(0.3)
    assert len(sink.items) == count, "a stopped source kept emitting"
    assert sink.wrong_thread == 0


def compose_settings(project: str, *, mode: str = "compose", **discovery: Any) -> Settings:
    return Settings(
        docker_hosts=(DockerHost(),),
        discovery=Discovery(mode=mode, compose_project=project, **discovery),
        ui=UISettings(refresh_seconds=0.5),
    )


def start_replicas(drills: Callable[..., Any], tmp_path: Path, project: str, numbers=(1, 2), service: str = "prover"):
    require_sim()
    replicas = drills(project=project, service=service, health_interval=1.0)
    specs = [
        ReplicaSpec(n, free_port(), 0, "", tmp_path / f"{service}-{n}", sim_args=("--exempt-ip", "127.0.0.1"),
                    memory_limit=MEMORY)
        for n in numbers
    ]
    infos = replicas.start(specs)
    replicas.wait_healthy(30)
    return replicas, infos, specs


def project_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- DockerSource


async def test_state_and_resources_follow_events(drills, docker_client, tmp_path):
    project = project_name()
    replicas, infos, specs = start_replicas(drills, tmp_path, project)
    source = DockerSource(compose_settings(project), DockerHost())
    sink, stop, task = await start(source)
    try:
        replica_set = await sink.until(lambda: sink.of(ReplicaSet), 10, "a replica set")
        ids = [r for r in replica_set[-1].replicas]
        assert [r.name for r in ids] == ["prover-1", "prover-2"]
        assert [r.container_id for r in ids] == [i.id for i in infos]
        assert [r.health_url for r in ids] == [f"http://127.0.0.1:{s.port}/health" for s in specs]
        assert sink.of(ComponentState)[0].ok and "Docker" in sink.of(ComponentState)[0].detail

        def measured(name: str):
            s = sink.latest(name)
            return s if s and s.state == "running" and s.cpu_percent is not None and s.mem_used else None

        for name in ("prover-1", "prover-2"):
            s = await sink.until(lambda: measured(name), 15, f"{name} running with stats")
            assert s.mem_limit == parse_memory(MEMORY)
            assert 0 < s.mem_used < s.mem_limit
            assert s.mem_percent == pytest.approx(s.mem_used / s.mem_limit * 100)
            assert s.cpu_percent >= 0 and s.pids and s.pids >= 1
            assert s.restart_count == 0 and s.started_at is not None
        first_start = sink.latest("prover-1").started_at

        container = docker_client.containers.get(infos[0].id)
        container.kill()
        dead = await sink.until(
            lambda: (s := sink.latest("prover-1")) and s.state == "exited" and s, 10, "prover-1 exited")
        assert dead.exit_code == 137 and dead.cpu_percent is None and dead.mem_used is None
        assert sink.latest("prover-2").state == "running"

        container.start()
        back = await sink.until(
            lambda: (s := sink.latest("prover-1")) and s.state == "running" and s.cpu_percent is not None and s,
            15, "prover-1 running again with stats")
        assert back.started_at > first_start
        assert back.restart_count == 1  # docker's RestartCount stays 0 for a manual start
        assert not [s for s in sink.of(SourceStatus) if not s.ok]
    finally:
        await finish(sink, stop, task)


async def test_docker_mode_drill_config_is_understood(drill_factory, docker_client):
    require_sim()  # the docker_client fixture has already skipped (or failed, in CI) without an engine
    env = drill_factory(mode="docker")
    settings = dataclasses.replace(load_config(env.state.config), ui=UISettings(refresh_seconds=0.5))
    sink, stop, task = await start(DockerSource(settings, settings.docker_hosts[0]))
    try:
        replica_set = await sink.until(lambda: sink.of(ReplicaSet), 10, "a replica set")
        found = replica_set[-1].replicas
        assert [r.name for r in found] == ["prover-1", "prover-2"]
        assert [r.health_url for r in found] == [f"{r.url}/health" for r in env.replicas]
        assert [r.control_url for r in found] == [r.control_url for r in env.replicas]
        for name in ("prover-1", "prover-2"):
            s = await sink.until(
                lambda: (s := sink.latest(name)) and s.state == "running" and s.mem_used and s, 15, f"{name} stats")
            assert s.mem_limit == env.opts.memory_limit
    finally:
        await finish(sink, stop, task)


async def test_new_and_removed_containers_change_the_replica_set(drills, docker_client, tmp_path):
    project = project_name()
    replicas, infos, _ = start_replicas(drills, tmp_path, project, numbers=(1,))
    sink, stop, task = await start(DockerSource(compose_settings(project), DockerHost()))
    try:
        await sink.until(lambda: sink.of(ReplicaSet) and len(sink.of(ReplicaSet)[-1].replicas) == 1, 10, "one replica")
        spec = ReplicaSpec(2, free_port(), 0, "", tmp_path / "p2", sim_args=("--exempt-ip", "127.0.0.1"),
                           memory_limit=MEMORY)
        added = replicas.start([spec])
        await sink.until(
            lambda: [r.name for r in sink.of(ReplicaSet)[-1].replicas] == ["prover-1", "prover-2"], 10,
            "prover-2 discovered from its events")
        await sink.until(lambda: (s := sink.latest("prover-2")) and s.state == "running", 10, "prover-2 running")
        docker_client.containers.get(added[0].id).remove(force=True)
        await sink.until(lambda: [r.name for r in sink.of(ReplicaSet)[-1].replicas] == ["prover-1"], 10,
                         "prover-2 gone after destroy")
    finally:
        await finish(sink, stop, task)


async def test_services_mode_names_like_the_real_compose_file(drills, tmp_path):
    project = project_name()
    start_replicas(drills, tmp_path, project, numbers=(1,), service="prover-1")
    start_replicas(drills, tmp_path, project, numbers=(1,), service="prover-2")
    settings = compose_settings(project, mode="services", compose_services=("prover-1", "prover-2"))
    sink, stop, task = await start(DockerSource(settings, DockerHost()))
    try:
        replica_set = await sink.until(lambda: sink.of(ReplicaSet), 10, "a replica set")
        assert [r.name for r in replica_set[-1].replicas] == ["prover-1", "prover-2"]
        await sink.until(lambda: all((s := sink.latest(n)) and s.state == "running" for n in ("prover-1", "prover-2")),
                         10, "both running")
    finally:
        await finish(sink, stop, task)


async def test_dead_socket_reports_and_backs_off_without_raising():
    host = DockerHost(name="dead", url="unix:///tmp/nonexistent.sock", timeout_seconds=2)
    sink, stop, task = await start(DockerSource(compose_settings("x402"), host))
    try:
        failures = await sink.until(
            lambda: (f := [s for s in sink.of(SourceStatus) if not s.ok]) and len(f) >= 2 and f, 8, "two failures")
        first, second = failures[:2]
        assert first.name == "docker:dead" and "nonexistent.sock" in first.error
        assert first.attempts == 1 and second.attempts == 2
        assert 0.5 <= first.retry_in <= 1.5 and second.retry_in > first.retry_in  # 1 s, then about 2 s
        assert any(isinstance(s, ComponentState) and not s.ok for s in sink.items)
        assert not task.done()  # still retrying
    finally:
        await finish(sink, stop, task)


async def test_ssh_host_without_paramiko_says_so():
    try:
        import paramiko  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("paramiko is installed here; the message for its absence cannot be shown")
    host = DockerHost(name="remote", url="ssh://ops@127.0.0.1:1")
    sink, stop, task = await start(DockerSource(compose_settings("x402"), host))
    try:
        failure = await sink.until(lambda: next((s for s in sink.of(SourceStatus) if not s.ok), None), 5, "a failure")
        assert "paramiko" in failure.error
    finally:
        await finish(sink, stop, task)


# --------------------------------------------------------------------------- DockerLogSource


def get(port: int, marker: str) -> None:
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        assert http.get(f"http://127.0.0.1:{port}/health?m={marker}").status_code == 200


async def test_logs_follow_a_restart_without_duplicates(drills, docker_client, tmp_path):
    project = project_name()
    replicas, infos, specs = start_replicas(drills, tmp_path, project)
    source = DockerLogSource(compose_settings(project), DockerHost())
    sink, stop, task = await start(source)
    port = specs[0].port
    try:
        get(port, "before")

        def marked(marker: str):
            return [r for r in sink.records() if r.replica == "prover-1" and r.path == f"/health?m={marker}"]

        await sink.until(lambda: marked("before"), 15, "the first marked request")
        startup = [r for r in sink.records() if r.replica == "prover-1"]
        assert {r.stream for r in startup} >= {"stdout", "stderr"}  # gin banner on stdout, stdlib log on stderr
        assert all(r.ts is not None and r.ts.tzinfo is not None for r in startup)
        assert any(r.fmt == "stdlib" for r in startup) and any(r.fmt == "gin" for r in startup)
        access = marked("before")[0]
        assert access.stream == "stdout" and access.http_status == 200 and access.method == "GET"
        await sink.until(lambda: any(r.replica == "prover-2" for r in sink.records()), 10, "prover-2's log")

        container = docker_client.containers.get(infos[0].id)
        container.restart(timeout=2)
        replicas.wait_healthy(30)
        get(port, "after")
        await sink.until(lambda: marked("after"), 20, "a request after the restart")
        # The health probes keep logging; wait until the stream has caught up with what the
        # daemon holds now (a fixed sleep raced with the newest probe's line).
        held = [sanitize_line(line) for line in container.logs(timestamps=True).splitlines()]
        await sink.until(lambda: len([r for r in sink.records() if r.replica == "prover-1"]) >= len(held),
                         10, "the stream to catch up with the daemon's log")

        raws = [r.raw for r in sink.records() if r.replica == "prover-1"]
        assert len(raws) == len(set(raws)), "a line was delivered twice across the re-attach"
        assert len(marked("before")) == 1 and len(marked("after")) == 1
        # the restarted process logged its start-up again and that arrived too
        banners = [r for r in sink.records() if r.replica == "prover-1" and "Listening and serving" in r.message]
        assert len(banners) == 2
        # everything the daemon holds for the container arrived, in order, exactly once
        assert raws[: len(held)] == held
    finally:
        await finish(sink, stop, task)


async def test_logs_follow_a_recreated_container(drills, docker_client, tmp_path):
    project = project_name()
    replicas, infos, specs = start_replicas(drills, tmp_path, project, numbers=(1,))
    sink, stop, task = await start(DockerLogSource(compose_settings(project), DockerHost()))
    try:
        get(specs[0].port, "old")
        await sink.until(lambda: any(r.path == "/health?m=old" for r in sink.records()), 15, "the old container's line")
        docker_client.containers.get(infos[0].id).remove(force=True)
        new = replicas.start([specs[0]])
        assert new[0].id != infos[0].id
        replicas.wait_healthy(30)
        get(specs[0].port, "new")
        await sink.until(lambda: any(r.path == "/health?m=new" for r in sink.records()), 20,
                         "the new container's line under the same replica")
        assert {r.replica for r in sink.records()} == {"prover-1"}
    finally:
        await finish(sink, stop, task)


async def test_log_source_on_a_dead_socket_reports_and_stops_promptly():
    host = DockerHost(name="dead", url="unix:///tmp/nonexistent.sock")
    sink, stop, task = await start(DockerLogSource(compose_settings("x402"), host))
    try:
        failure = await sink.until(lambda: next((s for s in sink.of(SourceStatus) if not s.ok), None), 5, "a failure")
        assert failure.name == "logs:docker:dead" and failure.retry_in and "nonexistent.sock" in failure.error
    finally:
        await finish(sink, stop, task)


async def test_unreadable_log_driver_is_reported_per_replica(docker_client):
    from docker.types import LogConfig

    from x402console.drill.image import IMAGE_TAG, ensure_image

    require_sim()
    ensure_image(docker_client)
    project = project_name()
    labels = {
        "com.docker.compose.project": project,
        "com.docker.compose.service": "prover",
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
    }
    # never started: discovery and the log reader only need it to exist
    container = docker_client.containers.create(IMAGE_TAG, name=f"{project}-prover-1", labels=labels,
                                                log_config=LogConfig(type="none"), network_mode="host")
    try:
        sink, stop, task = await start(DockerLogSource(compose_settings(project), DockerHost()))
        try:
            failure = await sink.until(
                lambda: next((s for s in sink.of(SourceStatus) if s.name == "logs:prover-1" and not s.ok), None),
                10, "a per-replica failure")
            assert "prover-1" in failure.error and failure.retry_in > 0
            assert "does not support reading" in failure.error
        finally:
            await finish(sink, stop, task)
    finally:
        container.remove(force=True)


# --------------------------------------------------------------------------- engine failures
#
# A daemon restart and a stalled stats stream cannot be caused on the shared engine, so these
# tests speak to a small Engine API server on loopback: real HTTP, real docker-py, with the
# engine's side scripted (the responses copy the shapes the real engine returned above).


class ScriptedEngine:
    """Just enough of the Engine API (v1.41) for DockerSource: ping, version, list, inspect,
    a streaming /events that the test can end, and /stats that sends `stats_samples` samples
    and then goes silent."""

    def __init__(self, stats_samples: int = 3) -> None:
        import http.server
        import json
        import queue

        self.containers: dict[str, dict] = {}
        self.requests: dict[str, int] = {}
        self.stats_samples = stats_samples
        self.stats_requests = 0
        self.event_streams = 0
        self._events: list[queue.Queue] = []
        self._closing = threading.Event()
        engine = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, obj: Any, status: int = 200) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, obj: Any) -> None:
                data = json.dumps(obj).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _start_stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

            def do_HEAD(self) -> None:
                self._json({})

            def do_GET(self) -> None:  # noqa: C901 - one branch per endpoint
                path = self.path.split("?")[0]
                path = path[path.index("/", 1):] if path.startswith("/v1.") else path
                kind = "inspect" if path.endswith("/json") and path != "/containers/json" else path
                engine.requests[kind] = engine.requests.get(kind, 0) + 1
                if path == "/_ping":
                    body = b"OK"
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/version":
                    self._json({"Version": "scripted", "ApiVersion": "1.41", "MinAPIVersion": "1.12"})
                elif path == "/containers/json":
                    self._json([{"Id": cid, "Names": [a["Name"]], "Labels": a["Config"]["Labels"]}
                                for cid, a in engine.containers.items()])
                elif path.startswith("/containers/") and path.endswith("/json"):
                    attrs = engine.containers.get(path.split("/")[2])
                    self._json(attrs) if attrs else self._json({"message": "No such container"}, 404)
                elif path.startswith("/containers/") and path.endswith("/stats"):
                    engine.stats_requests += 1
                    self._start_stream()
                    for i in range(engine.stats_samples):
                        self._chunk(stats_sample(i))
                        time.sleep(0.2)
                    engine._closing.wait(30)  # then silence: a stalled stream
                elif path == "/events":
                    events: queue.Queue = queue.Queue()
                    engine._events.append(events)
                    engine.event_streams += 1
                    self._start_stream()
                    while not engine._closing.is_set():
                        try:
                            item = events.get(timeout=0.1)
                        except queue.Empty:
                            continue
                        if item is None:  # the daemon goes away: the stream ends
                            self.wfile.write(b"0\r\n\r\n")
                            self.close_connection = True
                            return
                        self._chunk(item)
                else:
                    self._json({"message": f"not scripted: {path}"}, 404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"tcp://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, number: int, project: str = "x402") -> str:
        cid = f"{number:064x}"
        self.containers[cid] = {
            "Id": cid,
            "Name": f"/{project}-prover-{number}",
            "State": {"Status": "running", "Running": True, "ExitCode": 0,
                      "StartedAt": "2026-01-02T03:04:05.123456789Z", "Health": {"Status": "healthy"}},
            "RestartCount": 0,
            "Config": {"Labels": {"com.docker.compose.project": project, "com.docker.compose.service": "prover",
                                  "com.docker.compose.container-number": str(number),
                                  "com.docker.compose.oneoff": "False", "x402console.port": str(18080 + number)}},
            "HostConfig": {"NetworkMode": "host", "Memory": 268435456},
            "NetworkSettings": {"Ports": {}},
        }
        return cid

    def push(self, event: dict) -> None:
        for q in self._events:
            q.put(event)

    def end_event_streams(self) -> None:
        for q in self._events:
            q.put(None)
        self._events.clear()

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()


def stats_sample(i: int) -> dict:
    def cpu(n: int) -> dict:
        return {"cpu_usage": {"total_usage": 1_000_000_000 + n * 50_000_000},
                "system_cpu_usage": 100_000_000_000 + n * 1_000_000_000, "online_cpus": 2}

    return {
        "read": "2026-01-02T03:04:06Z",
        "cpu_stats": cpu(i + 1),
        "precpu_stats": cpu(i) if i else {"cpu_usage": {"total_usage": 0}},
        "memory_stats": {"usage": 100 * 1024 * 1024, "limit": 268435456, "stats": {"inactive_file": 0}},
        "pids_stats": {"current": 7},
    }


@pytest.fixture
def engine():
    e = ScriptedEngine()
    yield e
    e.close()


async def test_events_not_polling_drive_state_and_an_engine_restart_relists(engine):
    engine.add(1)
    host = DockerHost(name="scripted", url=engine.url, timeout_seconds=5)
    settings = compose_settings("x402")
    sink, stop, task = await start(DockerSource(settings, host))
    try:
        await sink.until(lambda: sink.of(ReplicaSet), 10, "the first listing")
        assert [r.name for r in sink.of(ReplicaSet)[-1].replicas] == ["prover-1"]
        assert sink.of(ReplicaSet)[-1].replicas[0].health_url == "http://127.0.0.1:18081/health"
        await sink.until(lambda: (s := sink.latest("prover-1")) and s.state == "running", 5, "prover-1 running")

        # push, not poll: while nothing happens, nothing is listed or inspected again
        before = (engine.requests.get("/containers/json"), engine.requests.get("inspect"))
        await asyncio.sleep(1.5)
        assert (engine.requests.get("/containers/json"), engine.requests.get("inspect")) == before
        # and an event is what makes the source look again
        cid = next(iter(engine.containers))
        engine.containers[cid]["State"] = {"Status": "exited", "Running": False, "ExitCode": 2,
                                           "StartedAt": "2026-01-02T03:04:05.123456789Z"}
        engine.push({"Type": "container", "Action": "die", "Actor": {"ID": cid, "Attributes": {"exitCode": "2"}}})
        dead = await sink.until(lambda: (s := sink.latest("prover-1")) and s.state == "exited" and s, 5, "exited")
        assert dead.exit_code == 2 and dead.health is None and dead.cpu_percent is None
        assert engine.requests["inspect"] == before[1] + 1

        # while the daemon is "down" a container appears; no event will ever say so
        engine.add(2)
        engine.end_event_streams()
        lost = await sink.until(lambda: next((s for s in sink.of(SourceStatus) if not s.ok), None), 5, "a failure")
        assert "event stream ended" in lost.error and lost.retry_in and lost.retry_in <= 1.5
        await sink.until(lambda: [r.name for r in sink.of(ReplicaSet)[-1].replicas] == ["prover-1", "prover-2"],
                         10, "the listing after reconnecting")
        assert engine.event_streams == 2
        assert sink.of(SourceStatus)[-1].ok
    finally:
        await finish(sink, stop, task)


async def test_stalled_stats_stream_goes_stale_and_is_reopened(engine):
    engine.add(1)
    host = DockerHost(name="scripted", url=engine.url, timeout_seconds=30)
    settings = dataclasses.replace(compose_settings("x402"), ui=UISettings(refresh_seconds=0.1))
    sink, stop, task = await start(DockerSource(settings, host, stall_seconds=1.0))
    try:
        measured = await sink.until(
            lambda: (s := sink.latest("prover-1")) and s.cpu_percent is not None and s, 10, "a CPU figure")
        # (50 ms of 1 s system time) x 2 CPUs = 10 %
        assert measured.cpu_percent == pytest.approx(10.0)
        assert measured.mem_used == 100 * 1024 * 1024 and measured.mem_limit == 268435456
        assert measured.health == "healthy" and measured.pids == 7
        index = sink.items.index(measured)
        await sink.until(
            lambda: any(isinstance(s, RuntimeState) and s.cpu_percent is None for s in sink.items[index:]), 10,
            "the figures marked stale after the stall")
        stale = next(s for s in sink.items[index:] if isinstance(s, RuntimeState) and s.cpu_percent is None)
        assert stale.state == "running" and stale.mem_used == measured.mem_used
        await sink.until(lambda: engine.stats_requests >= 2, 5, "the stats stream reopened")
    finally:
        await finish(sink, stop, task)
