"""Drill replicas as compose-labelled containers, against the real Docker engine and the real sim.

Containers use host networking on 127.0.0.1 ports. Each test removes what it creates through
drill-id labels (fixture finalizers), also when it fails.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rig.components import free_port
from tests.rig.docker_rig import docker_client, drills, require_sim, unique_id  # noqa: F401
from x402console.drill import image as image_mod
from x402console.drill.containers import (
    LABEL_DRILL,
    LABEL_NUMBER,
    LABEL_ONEOFF,
    LABEL_PROJECT,
    LABEL_SERVICE,
    DockerReplicas,
    DrillContainerError,
    ReplicaSpec,
    cleanup_leftovers,
    config_hash,
    owner_alive,
    parse_memory,
)

TOKEN = "test-token"
HEALTH_INTERVAL = 1.0  # the default 30 s would make docker's health status wait 30 s


def spec(number: int, state_dir: Path, **kw: Any) -> ReplicaSpec:
    kw.setdefault("control_port", free_port())
    kw.setdefault("sim_args", ("--exempt-ip", "127.0.0.1"))
    return ReplicaSpec(number, free_port(), kw.pop("control_port"), TOKEN, state_dir, **kw)


def http() -> httpx.Client:
    return httpx.Client(timeout=5.0, trust_env=False)


# -- input checks (no engine needed) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"number": 0}, "replica number"),
        ({"number": "1"}, "replica number"),
        ({"port": 70000}, "port must be"),
        ({"port": 0}, "port must be"),
        ({"control_port": -1}, "control_port must be"),
        ({"control_token": ""}, "control token"),
        ({"env": {"BAD-NAME": "1"}}, "environment variable name"),
        ({"env": {"X": None}}, "env X"),
        ({"sim_args": "--pprof"}, "sim_args"),
        ({"memory_limit": "lots"}, "memory limit"),
        ({"memory_limit": 1024}, "minimum"),
    ],
)
def test_bad_replica_spec_is_a_clear_error(tmp_path, kwargs, message):
    base = {"number": 1, "port": 18080, "control_port": 18090, "control_token": TOKEN, "state_dir": tmp_path}
    with pytest.raises(ValueError, match=message):
        ReplicaSpec(**{**base, **kwargs})


def test_control_port_zero_needs_no_token(tmp_path):
    s = ReplicaSpec(1, 18080, 0, "", tmp_path)
    assert s.control_port == 0 and s.state_dir == tmp_path.resolve()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("512m", 512 * 2**20), ("512MiB", 512 * 2**20), ("4G", 4 * 2**30), (8_000_000, 8_000_000), ("7000k", 7000 * 1024)],
)
def test_parse_memory(value, expected):
    assert parse_memory(value) == expected


def test_bad_names_are_clear_errors():
    with pytest.raises(ValueError, match="project name"):
        DockerReplicas(None, project="X402 prod")
    with pytest.raises(ValueError, match="service name"):
        DockerReplicas(None, service="pro/ver")
    with pytest.raises(ValueError, match="drill id"):
        DockerReplicas(None, drill_id="a b")


def test_start_refuses_duplicate_ports_before_touching_docker(tmp_path):
    a = ReplicaSpec(1, 18080, 18090, TOKEN, tmp_path)
    b = ReplicaSpec(2, 18090, 0, TOKEN, tmp_path)
    with pytest.raises(ValueError, match="port 18090"):
        DockerReplicas(None).start([a, b])


def test_config_hash_covers_service_config_not_placement(tmp_path):
    a = ReplicaSpec(1, 18080, 18090, TOKEN, tmp_path / "a", env={"RATE_LIMIT_PER_MINUTE": "5"})
    b = ReplicaSpec(2, 18081, 18091, "other", tmp_path / "b", env={"RATE_LIMIT_PER_MINUTE": "5"})
    c = ReplicaSpec(1, 18080, 18090, TOKEN, tmp_path / "a", env={"RATE_LIMIT_PER_MINUTE": "10"})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)
    assert len(config_hash(a)) == 64


def test_host_mounts_cover_the_running_interpreter_and_package():
    mounts = image_mod.host_mounts()
    targets = [m.target for m in mounts]

    def visible(path: str) -> bool:
        return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)

    assert visible(sys.base_prefix) and visible(sys.prefix) and visible("/usr")
    assert visible(str(image_mod.package_root()))
    assert all(m.source == os.path.realpath(m.source) for m in mounts)
    assert len(targets) == len(set(targets))


# -- image ------------------------------------------------------------------------------------


@pytest.mark.docker
def test_image_builds_locally_and_is_not_rebuilt(docker_client):
    tag = f"x402console-sim:{unique_id('test-')}"
    try:
        started = time.monotonic()
        first = image_mod.ensure_image(docker_client, tag)
        print(f"image build: {time.monotonic() - started:.2f}s")
        img = docker_client.images.get(tag)
        assert img.id == first
        assert img.labels[image_mod.LABEL_IMAGE_VERSION] == image_mod.IMAGE_VERSION
        assert img.labels[image_mod.LABEL_PYTHON] == image_mod.python_executable()
        # FROM scratch: one layer of our own skeleton, no parent image pulled from anywhere.
        assert len(img.attrs["RootFS"]["Layers"]) == 1
        assert img.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"
        # Builds use no cache, so a rebuild would give a new id: the same id means none happened.
        assert image_mod.ensure_image(docker_client, tag) == first
        # A stale version label triggers a rebuild, and the stale image is removed.
        stale = image_mod.build_image(docker_client, tag, version="stale-test")
        assert stale != first
        fresh = image_mod.ensure_image(docker_client, tag)
        assert fresh != stale
        assert docker_client.images.get(tag).labels[image_mod.LABEL_IMAGE_VERSION] == image_mod.IMAGE_VERSION
        assert not [i for i in docker_client.images.list() if i.id == stale]
    finally:
        try:
            docker_client.images.remove(tag, force=True)
        except Exception:
            pass


# -- a running pair, shared by the read-only tests -----------------------------------------------


@pytest.fixture(scope="module")
def pair(docker_client, tmp_path_factory) -> Any:
    """x402-prover-1 and -2 with the real sim, healthy; removed at module end whatever happens."""
    require_sim()
    replicas = DockerReplicas(docker_client, drill_id=unique_id("test-pair-"), health_interval=HEALTH_INTERVAL)
    state = tmp_path_factory.mktemp("pair-state")
    specs = [spec(1, state / "p1", env={"RATE_LIMIT_PER_MINUTE": "5"}), spec(2, state / "p2")]
    try:
        t0 = time.monotonic()
        replicas.start(specs)
        t1 = time.monotonic()
        replicas.wait_healthy(timeout=60)
        t2 = time.monotonic()
        replicas.wait_healthy(timeout=30, docker_health=True)
        t3 = time.monotonic()
        print(f"start {t1 - t0:.2f}s, answering /health {t2 - t1:.2f}s, docker healthy {t3 - t1:.2f}s")
        yield replicas, specs
    finally:
        cleanup_leftovers(docker_client, replicas.drill_id)


@pytest.mark.docker
def test_replicas_have_compose_names_and_labels(pair, docker_client):
    replicas, specs = pair
    infos = replicas.list()
    assert [r.name for r in infos] == ["x402-prover-1", "x402-prover-2"]
    for s in specs:
        c = docker_client.containers.get(f"x402-prover-{s.number}")
        labels = c.labels
        assert labels[LABEL_PROJECT] == "x402"
        assert labels[LABEL_SERVICE] == "prover"
        assert labels[LABEL_NUMBER] == str(s.number)
        assert labels[LABEL_ONEOFF] == "False"
        assert labels["com.docker.compose.config-hash"] == replicas.config_hash(s)
        assert labels["com.docker.compose.version"]
        assert labels["com.docker.compose.project.working_dir"] == replicas.working_dir
        assert labels[LABEL_DRILL] == replicas.drill_id
        assert labels["x402console.drill.state-dir"] == str(s.state_dir)
        assert owner_alive(labels)  # made by this (live) process
        host = c.attrs["HostConfig"]
        assert host["NetworkMode"] == "host"
        assert host["RestartPolicy"]["Name"] == "no"
        assert host["LogConfig"]["Type"] == "json-file"
        assert host["Memory"] == 512 * 2**20
        rw = [m for m in c.attrs["Mounts"] if m["Destination"] == str(s.state_dir)]
        assert rw and rw[0]["RW"] and rw[0]["Source"] == str(s.state_dir)
        assert all(not m["RW"] for m in c.attrs["Mounts"] if m["Destination"] != str(s.state_dir))
        # the token travels in env, not on the command line anyone can read with ps
        assert TOKEN not in c.attrs["Args"]
    env1 = docker_client.containers.get("x402-prover-1").attrs["Config"]["Env"]
    assert "RATE_LIMIT_PER_MINUTE=5" in env1


@pytest.mark.docker
def test_replicas_answer_health_on_their_loopback_ports(pair):
    replicas, specs = pair
    with http() as client:
        for s in specs:
            r = client.get(f"http://127.0.0.1:{s.port}/health")
            assert r.status_code == 200
            assert r.json()["status"] == "healthy"
    assert [r.health for r in replicas.list()] == ["healthy", "healthy"]
    assert all(r.status == "running" and r.restart_count == 0 for r in replicas.list())


@pytest.mark.docker
def test_docker_logs_hold_the_sims_log_lines(pair, docker_client):
    _replicas, specs = pair
    with http() as client:
        client.get(f"http://127.0.0.1:{specs[0].port}/no-such-route-for-logs")
    container = docker_client.containers.get("x402-prover-1")
    deadline = time.monotonic() + 10
    while True:
        logs = container.logs().decode(errors="replace")
        if "/no-such-route-for-logs" in logs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "/no-such-route-for-logs" in logs
    assert "/no-such-route-for-logs" not in docker_client.containers.get("x402-prover-2").logs().decode(errors="replace")


@pytest.mark.docker
def test_stats_memory_limit_is_the_replica_limit(pair, docker_client):
    stats = docker_client.containers.get("x402-prover-2").stats(stream=False)
    assert stats["memory_stats"]["limit"] == 512 * 2**20
    assert 0 < stats["memory_stats"]["usage"] < stats["memory_stats"]["limit"]


@pytest.mark.docker
def test_list_skips_oneoff_and_unnumbered_containers(pair, docker_client):
    replicas, specs = pair
    labels = {
        LABEL_PROJECT: "x402", LABEL_SERVICE: "prover", LABEL_DRILL: replicas.drill_id,
    }
    extra = []
    try:
        # `docker compose run prover` makes a one-off numbered like a replica; list() must skip it.
        extra.append(docker_client.containers.create(
            image_mod.IMAGE_TAG, name=f"x402-prover-run-{unique_id()}", network_mode="host",
            labels={**labels, LABEL_NUMBER: "0", LABEL_ONEOFF: "True"},
        ))
        extra.append(docker_client.containers.create(
            image_mod.IMAGE_TAG, name=f"x402-prover-oneoff-{unique_id()}", network_mode="host",
            labels={**labels, LABEL_NUMBER: "3", LABEL_ONEOFF: "True"},
        ))
        extra.append(docker_client.containers.create(
            image_mod.IMAGE_TAG, name=f"x402-prover-nonumber-{unique_id()}", network_mode="host",
            labels={**labels, LABEL_NUMBER: "not-a-number", LABEL_ONEOFF: "False"},
        ))
        assert [r.number for r in replicas.list()] == [1, 2]
    finally:
        for c in extra:
            c.remove(force=True)


@pytest.mark.docker
def test_start_refuses_a_name_that_already_exists(pair, docker_client, drills, tmp_path):
    other = drills(health_interval=HEALTH_INTERVAL)
    with pytest.raises(DrillContainerError, match=r"x402-prover-1 already exists \(left by drill"):
        other.start([spec(1, tmp_path)])
    assert docker_client.containers.get("x402-prover-1").labels[LABEL_DRILL] == pair[0].drill_id


# -- containers that change state -------------------------------------------------------------


@pytest.mark.docker
def test_crashed_replica_stays_down_and_stop_all_stops_the_rest(drills, docker_client, tmp_path):
    require_sim()
    from x402console.drill.sim.control_client import SimControl

    project = unique_id("crash")
    replicas = drills(project=project, health_interval=HEALTH_INTERVAL)
    specs = [spec(1, tmp_path / "1"), spec(2, tmp_path / "2")]
    replicas.start(specs)
    replicas.wait_healthy(timeout=60)
    try:
        SimControl(f"http://127.0.0.1:{specs[0].control_port}", TOKEN).set_fault("crash", exit_code=3)
    except Exception:
        pass  # the process may die before it answers
    crashed = docker_client.containers.get(f"{project}-prover-1")
    assert crashed.wait(timeout=20)["StatusCode"] == 3
    with pytest.raises(DrillContainerError, match=f"{project}-prover-1 exited with code 3"):
        replicas.wait_healthy(timeout=5)
    # Several health intervals later, still down: restart policy "no" leaves it to the trainee.
    time.sleep(3 * HEALTH_INTERVAL)
    first, second = replicas.list()
    assert (first.status, first.exit_code, first.restart_count) == ("exited", 3, 0)
    assert second.status == "running"

    assert replicas.stop_all(timeout=10) == [f"{project}-prover-2"]
    second = replicas.list()[1]
    assert second.status == "exited"
    assert second.exit_code == 0  # the sim's clean stop on SIGTERM, forwarded by docker-init
    assert sorted(replicas.remove_all()) == [f"{project}-prover-1", f"{project}-prover-2"]
    assert replicas.list() == []


@pytest.mark.docker
def test_cleanup_leftovers_removes_only_the_crashed_drills_containers(drills, docker_client, tmp_path):
    require_sim()
    crashed = drills(project=unique_id("left"), health_interval=HEALTH_INTERVAL)
    alive = drills(project=unique_id("keep"), health_interval=HEALTH_INTERVAL)
    crashed.start([spec(1, tmp_path / "c1"), spec(2, tmp_path / "c2")])
    alive.start([spec(1, tmp_path / "a")])
    crashed_id, names = crashed.drill_id, [r.name for r in crashed.list()]
    del crashed  # the drill process "dies": nothing but the labels remembers its containers

    assert sorted(cleanup_leftovers(docker_client, crashed_id)) == sorted(names)
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_DRILL}={crashed_id}"})
    assert [r.number for r in alive.list()] == [1]
    assert cleanup_leftovers(docker_client, crashed_id) == []


@pytest.mark.docker
def test_cleanup_orphans_only_keeps_containers_of_a_live_drill(drills, docker_client, tmp_path):
    from x402console.drill.containers import LABEL_OWNER_START

    replicas = drills(project=unique_id("orph"))
    image_id = image_mod.ensure_image(docker_client)
    live_labels = replicas.labels_for(spec(1, tmp_path), image_id)
    # Same PID as ours but another start time: the PID was reused, its drill is gone.
    dead_labels = {**replicas.labels_for(spec(2, tmp_path), image_id),
                   LABEL_OWNER_START: str(int(live_labels[LABEL_OWNER_START]) + 1)}
    for number, labels in ((1, live_labels), (2, dead_labels)):
        docker_client.containers.create(image_mod.IMAGE_TAG, name=replicas.name_for(number),
                                        network_mode="host", labels=labels)

    assert cleanup_leftovers(docker_client, replicas.drill_id, orphans_only=True) == [replicas.name_for(2)]
    assert [r.number for r in replicas.list()] == [1]
    assert cleanup_leftovers(docker_client, replicas.drill_id) == [replicas.name_for(1)]
