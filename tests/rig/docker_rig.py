"""Docker for tests: a client (or skip/fail by the rig's rule) and drills that always clean up.

Import the fixtures into a test module: `from tests.rig.docker_rig import docker_client, drills`.
Every container a test makes through `drills` carries a drill id unique to the test, and the
finalizer removes by that label, so a failing test (or a replica object it dropped) leaves
nothing behind and never touches another test's or a real deployment's containers.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.rig import components


def docker_or_skip() -> Any:
    """A connected docker SDK client; skips locally / fails under CI=true without an engine."""
    client = components.docker_client()
    try:
        info = client.info()
    except Exception as exc:  # the ping answered but the engine is unusable
        components.missing("docker", f"engine info failed: {exc}")
    if info.get("OSType") not in (None, "linux"):
        components.missing("docker", f"needs a Linux engine, this one is {info.get('OSType')}")
    return client


def require_sim() -> None:
    """The simulator package must exist for containers to run anything."""
    if importlib.util.find_spec("x402console.drill.sim.main") is None:
        components.missing("simulator", "x402console.drill.sim.main is not importable")


def unique_id(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    client = docker_or_skip()
    yield client
    client.close()


@pytest.fixture
def drills(docker_client: Any) -> Iterator[Callable[..., Any]]:
    """Factory for DockerReplicas with a fresh drill id; all their containers go at teardown."""
    from x402console.drill.containers import DockerReplicas, cleanup_leftovers

    made: list[str] = []

    def make(**kwargs: Any) -> DockerReplicas:
        kwargs.setdefault("drill_id", unique_id("test-"))
        made.append(kwargs["drill_id"])
        return DockerReplicas(docker_client, **kwargs)

    yield make
    for drill_id in made:
        cleanup_leftovers(docker_client, drill_id)
