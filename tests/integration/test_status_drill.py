"""The headless status against a real process-mode drill: healthy means no severity and exit 0;
with Prometheus, rates and firing alerts come from its API, and when it goes away the status
says so and still has rates from the replicas themselves."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from x402console.config import load_config
from x402console.core.severity import assess
from x402console.status.collect import collect_signals

pytestmark = pytest.mark.timeout(120)

TRAFFIC = dict(traffic_rate=8.0, traffic_clients=300, invalid_ratio=0.0)


def test_healthy_drill_gives_every_signal_no_severity_and_exit_0(drill_factory):
    env = drill_factory(**TRAFFIC)
    time.sleep(3)
    settings = load_config(env.state.config)
    signals = collect_signals(settings, window_seconds=3, timeout=6)
    picture = repr(signals)
    assert [(r.name, r.up, r.state) for r in signals.replicas] == [
        ("prover-1", True, "running"), ("prover-2", True, "running")], picture
    for r in signals.replicas:
        assert r.memory_bytes and r.memory_limit_bytes == env.opts.memory_limit
        assert r.memory_growth_bytes_per_s == 0.0  # a healthy replica's RSS is under the noise floor
    assert signals.proof_rate is not None and signals.proof_rate > 0, picture
    assert signals.error_ratio == 0.0
    assert signals.latency_p95 is not None and signals.latency_p95 < 1.0
    assert signals.log_lines and signals.log_lines > 0
    assert signals.top_client and not signals.top_client.startswith("127.")  # probes are not clients
    assert (signals.db_integrity, signals.vk_status) == ("ok", "match")
    assert signals.unobserved == (), picture
    assert assess(signals, settings.severity, settings.targets).level is None, picture

    done = subprocess.run(
        [sys.executable, "-m", "x402console.status", "--config", str(env.state.config), "--json",
         "--window", "3", "--timeout", "6"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "ok" and report["severity"]["level"] is None
    assert report["drill"] is True
    assert [r["up"] for r in report["replicas"]] == [True, True]


def _has_rate(prometheus_url: str, seconds: int) -> bool:
    query = f'sum(rate(proof_generation_total{{job="prover"}}[{seconds}s]))'
    body = httpx.post(f"{prometheus_url}/api/v1/query", data={"query": query}, timeout=2).json()
    return bool(body["data"]["result"])


def _firing(prometheus_url: str) -> set[str]:
    body = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=2).json()
    return {a["labels"]["alertname"] for a in body["data"]["alerts"] if a["state"] == "firing"}


def test_prometheus_gives_rates_and_alerts_and_its_loss_is_reported(drill_factory):
    env = drill_factory(prometheus="on", **TRAFFIC)
    assert env.prometheus is not None
    # Prometheus' first scrape comes a few seconds after it starts; a rate needs two.
    deadline = time.monotonic() + 30
    while not _has_rate(env.prometheus.url, 4):
        assert time.monotonic() < deadline, "Prometheus never had a rate over 4 s"
        time.sleep(0.5)
    settings = load_config(env.state.config)
    assert settings.prometheus.url

    signals = collect_signals(settings, window_seconds=4, timeout=6)
    assert signals.components.get("prometheus") == "up", repr(signals)
    assert signals.proof_rate is not None and signals.proof_rate > 0, repr(signals)
    assert not any(u.startswith("prometheus") for u in signals.unobserved), signals.unobserved

    # prover-2 crashes: Prometheus' ProverServiceDown fires (drill rules, `for` shortened)
    env.control(env.replicas[1]).set_fault("crash", exit_code=2)
    deadline = time.monotonic() + 30
    while "ProverServiceDown" not in _firing(env.prometheus.url):
        assert time.monotonic() < deadline, "ProverServiceDown never fired"
        time.sleep(0.5)
    signals = collect_signals(settings, window_seconds=4, timeout=6)
    assert "ProverServiceDown" in signals.alerts_firing
    assert [r.up for r in signals.replicas] == [True, False]
    level = assess(signals, settings.severity, settings.targets).level
    assert level == "P1", level  # one of two replicas down: half the capacity

    env.prometheus.process.stop(timeout=5)
    signals = collect_signals(settings, window_seconds=4, timeout=6)
    assert signals.components.get("prometheus") == "down"
    assert any(u.startswith("prometheus:") for u in signals.unobserved), signals.unobserved
    assert signals.proof_rate is not None  # scraped from prover-1 instead
    assert signals.alerts_firing == ()
