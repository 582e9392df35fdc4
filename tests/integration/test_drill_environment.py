"""The drill environment against real processes, a real Prometheus and a real nginx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.rig.components import free_port
from tests.rig.drill import require_nginx, require_prometheus
from x402console.config import load_config
from x402console.drill.payment import make_request
from x402console.drill.processes import is_same_process


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # the component may still be starting
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def test_process_mode_starts_replicas_writes_config_and_stops_clean(drill_factory):
    env = drill_factory()
    assert [r.name for r in env.replicas] == ["prover-1", "prover-2"]
    for r in env.replicas:
        body = httpx.get(f"{r.url}/health", timeout=5).json()
        assert body["status"] == "healthy"
    settings = load_config(env.state.config)
    assert settings.environment.drill is True
    assert [r.name for r in settings.replicas] == ["prover-1", "prover-2"]
    assert settings.replicas[0].health_url == f"{env.replicas[0].url}/health"
    assert settings.discovery.mode == "static"
    runtime = json.loads(env.state.runtime_file.read_text())
    recorded = {p["name"]: p for p in runtime["processes"]}
    assert set(recorded) >= {"prover-1", "prover-2"}
    # the keys the provers started with are kept as the trusted copy (runbook's backup/)
    assert (env.state.keys / "backup" / "verification_key.json").read_bytes() == \
        (env.state.keys / "verification_key.json").read_bytes()
    env.stop()
    for p in recorded.values():
        assert not is_same_process(p["pid"], p["start_time"]), p["name"]
    assert not env.state.runtime_file.exists()


def test_both_replicas_share_one_real_proofs_db(drill_factory):
    import sqlite3

    env = drill_factory()
    for r in env.replicas:
        resp = httpx.post(f"{r.url}/generate-proof", json=make_request(), headers={"X-Forwarded-For": "203.0.113.9"},
                          timeout=10)
        assert resp.status_code == 200, resp.text
    con = sqlite3.connect(env.state.db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM proofs").fetchone()[0] == 2
    finally:
        con.close()


def test_nginx_in_front_blocks_a_source_address_for_real(drill_factory):
    require_nginx()
    env = drill_factory(nginx="on")
    assert env.nginx is not None
    settings = load_config(env.state.config)
    assert Path(settings.nginx.deny_file) == env.nginx.deny_file

    def get_from(source: str) -> int:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, timeout=5) as c:
            return c.get(f"{env.nginx.url}/health").status_code

    assert get_from("127.0.0.7") == 200
    env.nginx.deny_file.write_text("deny 127.0.0.7;\n")
    subprocess.run(list(settings.nginx.test_command), check=True, capture_output=True)
    subprocess.run(list(settings.nginx.reload_command), check=True, capture_output=True)
    wait_for(lambda: get_from("127.0.0.7") == 403, 10, "the block to take effect")
    assert get_from("127.0.0.8") == 200  # other clients still served
    # nginx passes the client address on: the prover logs 127.0.0.8, not nginx's 127.0.0.1
    logs = "".join((env.state.logs / f"{r.name}.log").read_text() for r in env.replicas)
    assert "127.0.0.8" in logs


def _alerts(prom_url: str) -> dict[str, str]:
    data = httpx.get(f"{prom_url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    out: dict[str, str] = {}
    for a in data:
        name = a["labels"]["alertname"]
        if out.get(name) != "firing":
            out[name] = a["state"]
    return out


def test_prometheus_scrapes_every_replica(drill_factory):
    require_prometheus()
    env = drill_factory(prometheus="on")
    url = env.prometheus.url

    def targets_up():
        active = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return len(active) == 2 and all(t["health"] == "up" for t in active)

    wait_for(targets_up, 30, "both prover targets up")
    q = httpx.get(f"{url}/api/v1/query", params={"query": "proof_generation_total"}, timeout=5).json()
    assert q["status"] == "success"
    assert {s["metric"]["instance"] for s in q["data"]["result"]} == {f"127.0.0.1:{r.port}" for r in env.replicas}
    assert load_config(env.state.config).prometheus.url == url


ALERT_CASES = [
    # (alert, drill options, faults to set on every replica)
    ("ProverServiceDown", {}, [("crash", {})]),
    ("ProverHighErrorRate", {"traffic_rate": 8.0, "traffic_clients": 200}, [("error_ratio", {"ratio": 0.6})]),
    ("HighProofGenerationTime", {"traffic_rate": 8.0, "traffic_clients": 200}, [("latency", {"seconds": 6.0, "jitter": 0.1})]),
    ("ProverMemoryHigh", {"memory_limit": 160 << 20}, [("memory_leak", {"mb_per_second": 40, "max_mb": 150})]),
    ("LowProofRate", {}, []),
    ("HighVerificationFailureRate", {"profile": "intended", "traffic_rate": 5.0, "traffic_clients": 200},
     [("invalid_proofs", {})]),
]


@pytest.mark.parametrize("alert, options, faults", ALERT_CASES, ids=[c[0] for c in ALERT_CASES])
def test_alert_fires_under_its_fault(drill_factory, alert, options, faults):
    require_prometheus()
    env = drill_factory(prometheus="on", **options)
    for r in env.replicas:
        for fault, params in faults:
            try:
                env.control(r).set_fault(fault, **params)
            except httpx.HTTPError:
                assert fault == "crash"  # the replica died before it could answer
    wait_for(lambda: _alerts(env.prometheus.url).get(alert) == "firing", 90, f"{alert} firing", interval=1)


def test_scenario_service_down_takes_every_replica_down(drill_factory):
    env = drill_factory(scenario="service_down", scenario_delay=0.5)
    wait_for(lambda: env.scenario_armed_at is not None, 15, "the scenario to arm")
    p1, p2 = env.replicas
    wait_for(lambda: not p1.process.alive(), 10, "prover-1 to exit")
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{p2.url}/health", timeout=1.5)  # accepts, never answers


def test_a_killed_drill_leaves_nothing_that_stops_the_next_one(tmp_path):
    state = tmp_path / "state"
    port = free_port()
    argv = [sys.executable, "-m", "x402console", "drill", "--headless", "--state-dir", str(state),
            "--port", str(port), "--prometheus", "off", "--nginx", "off", "--rate", "2"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: (state / "runtime.json").exists() and
                 len(json.loads((state / "runtime.json").read_text())["processes"]) >= 3, 60, "first drill up")
        runtime = json.loads((state / "runtime.json").read_text())
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        second = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
                     and json.loads((state / "runtime.json").read_text())["drill_id"] != runtime["drill_id"],
                     60, "second drill up on the same ports")
            for p in runtime["processes"]:
                assert not is_same_process(p["pid"], p["start_time"]), f"leftover {p['name']}"
        finally:
            second.send_signal(signal.SIGTERM)
            out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
        assert not (state / "runtime.json").exists()
    finally:
        if first.poll() is None:
            first.kill()


def test_headless_drill_prints_what_runs_and_stops_on_sigterm(tmp_path):
    state = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "x402console", "drill", "--headless", "--state-dir", str(state), "--port", "0",
         "--prometheus", "off", "--nginx", "off", "--rate", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()
        assert "config" in first and str(state) in first
        lines = [proc.stdout.readline() for _ in range(2)]
        assert "prover-1" in lines[0] and "running" in lines[0]
        assert "prover-2" in lines[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_docker_mode_runs_compose_named_containers(drill_factory):
    from tests.rig.components import docker_client

    client = docker_client()
    env = drill_factory(mode="docker")
    names = sorted(c.name for c in client.containers.list(filters={"label": "com.docker.compose.project=x402"}))
    assert names == ["x402-prover-1", "x402-prover-2"]
    c = client.containers.get("x402-prover-1")
    assert c.labels["com.docker.compose.service"] == "prover"
    assert c.labels["com.docker.compose.container-number"] == "1"
    assert c.attrs["HostConfig"]["NetworkMode"] == "host"
    for r in env.replicas:
        assert httpx.get(f"{r.url}/health", timeout=5).status_code == 200
    settings = load_config(env.state.config)
    assert settings.discovery.mode == "compose"
    env.stop()
    assert client.containers.list(all=True, filters={"label": "com.docker.compose.project=x402"}) == []
