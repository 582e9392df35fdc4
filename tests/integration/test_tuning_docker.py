"""abuse.set_rate_limit on docker-mode drill replicas: each container is recreated with the
variable in its environment (a restart cannot change it), and the intended build then limits at
the new value. Run under `flock /tmp/x402-docker.lock` (fixed container names)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.rig.components import docker_client
from x402console.actions.base import ActionContext, Target
from x402console.actions.registry import default_registry
from x402console.config import load_config

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]
SERVICE = Target("service", "prover", {"docker_host": "local"})


@pytest.fixture
async def drill_ctx(drill_factory) -> AsyncIterator[tuple[Any, ActionContext, Any]]:  # type: ignore[no-untyped-def]
    docker = docker_client()
    drill = drill_factory(mode="docker", replicas=1, profile="intended")
    ctx = ActionContext(settings=load_config(drill.state.config), drill_runtime=drill.state.runtime_file)
    try:
        yield drill, ctx, docker
    finally:
        await ctx.aclose()
        docker.close()


def statuses(url: str, client_ip: str, n: int) -> list[int]:
    with httpx.Client(trust_env=False, timeout=5.0) as http:
        return [http.get(url + "/health", headers={"X-Forwarded-For": client_ip}).status_code for _ in range(n)]


async def test_containers_are_recreated_with_the_variable_and_it_takes_effect(drill_ctx) -> None:
    drill, ctx, docker = drill_ctx
    registry = default_registry(["x402console.actions.tuning"])
    old = docker.containers.get("x402-prover-1").attrs
    assert statuses(drill.replicas[0].url, "198.51.100.51", 3) == [200, 200, 200]

    plan = await registry.prepare("abuse.set_rate_limit", ctx, SERVICE, {"value": 2})
    assert any("-e RATE_LIMIT_PER_MINUTE=2" in (s.command or "") for s in plan.steps)
    assert any("docker-compose restart prover` cannot do this" in w for w in plan.warnings)
    outcome = await registry.execute(plan, ctx.fresh())
    assert outcome.status == "succeeded", outcome.summary
    assert outcome.details["observed"] == {"prover-1": 2}

    new = docker.containers.get("x402-prover-1").attrs
    assert new["Id"] != old["Id"]
    assert "RATE_LIMIT_PER_MINUTE=2" in new["Config"]["Env"]
    # everything else of the environment is kept (the control token among it)
    assert set(old["Config"]["Env"]) <= set(new["Config"]["Env"])
    assert new["Config"]["Cmd"] == old["Config"]["Cmd"]
    assert statuses(drill.replicas[0].url, "198.51.100.52", 3) == [200, 200, 429]

    # and top_ips reads the new container's log through the engine
    abuse = default_registry(["x402console.actions.abuse"])
    top = await abuse.prepare("abuse.top_ips", ctx, Target("service", "prover"), {"minutes": 10})
    assert any((s.command or "").startswith("docker logs --since 10m --tail 5000 x402-prover-1 2>&1 | grep -F '[GIN]'")
               for s in top.steps)
    listed = await abuse.execute(top, ctx.fresh())
    row = next(c for c in listed.details["clients"] if c["ip"] == "198.51.100.52")
    assert (row["requests"], row["status_429"], row["replicas"]) == (3, 1, ["prover-1"])
