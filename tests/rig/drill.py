"""Fixtures for the drill environment: a whole simulated x402 system on loopback per test."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from x402console.drill.environment import DrillEnvironment, DrillOptions
from x402console.drill.nginx_env import find_nginx
from x402console.drill.prometheus_env import find_prometheus
from tests.rig.components import missing


def require_prometheus() -> str:
    path = find_prometheus()
    if not path:
        missing("prometheus", "no prometheus binary (Debian package `prometheus`)")
    return path  # type: ignore[return-value]


def require_nginx() -> str:
    path = find_nginx()
    if not path:
        missing("nginx", "no nginx binary (Debian package `nginx-light`)")
    return path  # type: ignore[return-value]


def drill_options(tmp: Path, **kw) -> DrillOptions:
    """Options for a fast test drill: random free ports, short alert windows, light traffic."""
    base = dict(
        state_dir=tmp / "drill",
        prover_port=0,
        prometheus_port=0,
        nginx_port=0,
        prometheus="off",
        nginx="off",
        traffic_rate=0.0,
        for_scale=0.1,
        scrape_interval=1.0,
        backup_interval=0,
        scenario_delay=3600,
    )
    base.update(kw)
    return DrillOptions(**base)


@pytest.fixture
def drill_factory(tmp_path: Path) -> Iterator:
    """Start drill environments with `drill_factory(**options)`; all are stopped at the end."""
    started: list[DrillEnvironment] = []

    def make(**kw) -> DrillEnvironment:
        if kw.get("prometheus") == "on":
            require_prometheus()
        if kw.get("nginx") == "on":
            require_nginx()
        env = DrillEnvironment(drill_options(tmp_path, **kw))
        started.append(env)
        env.start()
        return env

    yield make
    for env in started:
        env.stop()
