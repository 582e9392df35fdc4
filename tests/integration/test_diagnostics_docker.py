"""Diagnostics of docker-mode replicas: found through Docker discovery, and the memory limit
taken from the container itself (run under `flock /tmp/x402-docker.lock`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.rig.components import docker_client
from x402console.actions.base import ActionContext, Target
from x402console.actions.registry import default_registry
from x402console.config import load_config

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]


async def test_container_replicas_are_probed_and_their_memory_limit_is_the_containers(drill_factory) -> None:
    client = docker_client()
    client.close()
    drill: Any = drill_factory(mode="docker", replicas=1, memory_limit=384 * 1024 * 1024)
    registry = default_registry(["x402console.actions.diagnostics"])
    settings = load_config(drill.state.config)
    # the configured limit says otherwise, so the answer shows where the limit came from
    settings = dataclasses.replace(settings, prover=dataclasses.replace(settings.prover, memory_limit_bytes=4 * 1024**3))
    ctx = ActionContext(settings=settings, drill_runtime=drill.state.runtime_file)
    try:
        (target,) = registry.get("diag.probe_health").targets(ctx)
        assert target.name == "prover-1" and target.detail["container_id"]
        plan = await registry.prepare("diag.probe_health", ctx, target, {"timeout": 3})
        outcome = await registry.execute(plan, ctx.fresh())
        assert outcome.status == "succeeded", outcome.summary

        drill.control(drill.replicas[0]).set_fault("memory_leak", mb_per_second=8, max_mb=200)
        plan = await registry.prepare("diag.memory_trend", ctx, Target("service", "prover"),
                                      {"seconds": 4, "interval": 0.5})
        outcome = await registry.execute(plan, ctx.fresh())
    finally:
        await ctx.aclose()
    assert outcome.status == "succeeded", outcome.summary
    (entry,) = outcome.details["replicas"]
    assert entry["limit_source"] == "container memory limit"
    assert entry["limit_bytes"] == 384 * 1024 * 1024  # not [prover] memory_limit_bytes
    assert entry["verdict"] == "growing" and 0 < entry["eta_seconds"] < 600
