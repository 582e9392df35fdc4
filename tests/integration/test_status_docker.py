"""The headless status against the drill's Docker mode: replicas discovered by their compose
labels, state, restart count and memory limit from the engine, log lines from `docker logs`.

Uses fixed container names (x402-prover-N): run under `flock /tmp/x402-docker.lock`.
"""

from __future__ import annotations

import time

import pytest

from tests.rig.components import docker_client
from x402console.config import load_config
from x402console.core.matcher import match
from x402console.core.severity import assess
from x402console.status.collect import collect_signals

pytestmark = pytest.mark.timeout(180)


def test_status_sees_containers_their_logs_and_a_crash(drill_factory):
    client = docker_client()
    env = drill_factory(mode="docker", replicas=1, traffic_rate=5.0, traffic_clients=300, invalid_ratio=0.0,
                        memory_limit=256 * 2**20)
    time.sleep(3)
    settings = load_config(env.state.config)
    signals = collect_signals(settings, window_seconds=3, timeout=8)
    picture = repr(signals)
    assert signals.components.get("docker:local") == "up", picture
    assert len(signals.replicas) == 1, picture
    replica = signals.replicas[0]
    assert (replica.up, replica.state, replica.restarts) == (True, "running", 0), picture
    assert replica.memory_limit_bytes == 256 * 2**20
    assert replica.memory_bytes and replica.memory_bytes < replica.memory_limit_bytes
    assert signals.log_lines and signals.log_lines > 0, picture  # from docker logs
    assert signals.proof_rate is not None and signals.proof_rate > 0
    assert (signals.db_integrity, signals.vk_status) == ("ok", "match")
    assert assess(signals, settings.severity, settings.targets).level is None, picture

    container = client.containers.get(env.replicas[0].container)
    env.control(env.replicas[0]).set_fault("crash", exit_code=2)
    deadline = time.monotonic() + 20
    while container.status != "exited":
        assert time.monotonic() < deadline, "the container did not exit"
        time.sleep(0.2)
        container.reload()
    signals = collect_signals(settings, window_seconds=3, timeout=8)
    replica = signals.replicas[0]
    assert (replica.up, replica.state) == (False, "exited"), repr(signals)
    assert assess(signals, settings.severity, settings.targets).level == "P0"
    assert match(signals, thresholds=settings.severity)[0].incident == 1
