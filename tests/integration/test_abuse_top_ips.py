"""abuse.top_ips on a process-mode drill under attack traffic from the real traffic generator.

The generator sends a few normal clients and one attacking IP far above the provers' 10 per
minute, round-robin over both replicas, with the client IP in X-Forwarded-For (what gin reads).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from x402console.actions.base import ActionContext, ActionError, Target
from x402console.actions.registry import Registry, default_registry
from x402console.config import load_config
from x402console.drill.traffic import TrafficConfig, generate
from x402console.settings.model import Discovery, PrometheusSettings, Replica, Settings

pytestmark = pytest.mark.timeout(120)
SERVICE = Target("service", "prover")


@pytest.fixture
def registry() -> Registry:
    return default_registry(["x402console.actions.abuse"])


async def attack(drill: Any) -> str:
    config = TrafficConfig(targets=[r.url for r in drill.replicas], rate=4.0, clients=40, ip_mode="xff",
                           invalid_ratio=0.2, attack_ips=1, attack_rate=12.0, duration=3.0, max_requests=200, seed=7)
    stats = await generate(config)
    assert stats.completed > 30, stats
    return config.client_ips()[1][0]


async def top(registry: Registry, drill: Any, **params: Any) -> Any:
    ctx = ActionContext(settings=load_config(drill.state.config), drill_runtime=drill.state.runtime_file, read_only=True)
    try:
        plan = await registry.prepare("abuse.top_ips", ctx, SERVICE, params)
        return plan, await registry.execute(plan, ctx.fresh())
    finally:
        await ctx.aclose()


async def test_the_attacker_ranks_first_with_its_429s(registry, drill_factory) -> None:
    drill = drill_factory(replicas=2)
    attacker = await attack(drill)
    plan, outcome = await top(registry, drill, minutes=10, limit=5)

    # the runbook's awk placeholder, resolved for the gin access log
    assert any("awk -F'|'" in (s.command or "") and "prover-1.log" in (s.command or "") for s in plan.steps)
    assert outcome.status == "succeeded", outcome.summary
    first, *rest = outcome.details["clients"]
    assert first["ip"] == attacker
    # 36 requests at 12/s over two replicas: each replica lets 10 through, the rest are 429
    assert first["status_429"] >= first["requests"] - 20 > 0
    assert first["share"] > 0.5 and first["replicas"] == ["prover-1", "prover-2"]
    assert all(c["status_429"] == 0 for c in rest)
    assert outcome.summary.split("top: ")[1].startswith(attacker)
    # as coded nothing counts the 429s in the metric, and the outcome says where they were counted
    note = outcome.details["metrics"]["note"]
    assert "never increments" in note and "access log" in note


async def test_the_intended_build_exports_the_limit_metric_by_ip(registry, drill_factory) -> None:
    drill = drill_factory(replicas=1, profile="intended")
    attacker = await attack(drill)
    _, outcome = await top(registry, drill, minutes=0, limit=3)
    assert outcome.details["clients"][0]["ip"] == attacker
    scrape = outcome.details["metrics"]["scrape"]
    assert scrape["exported_by"] == ["prover-1"]
    assert list(scrape["by_ip"])[0] == attacker
    assert scrape["by_ip"][attacker] == outcome.details["clients"][0]["status_429"] > 0


async def test_bad_parameters_and_missing_logs_are_clear_errors(registry, tmp_path) -> None:
    settings = Settings(replicas=(Replica("prover-1", "http://127.0.0.1:1/health", "http://127.0.0.1:1/metrics"),),
                        prometheus=PrometheusSettings(url=None), discovery=Discovery(mode="static"))
    ctx = ActionContext(settings=settings)
    try:
        with pytest.raises(ActionError, match="lines must be between 1 and 1000000"):
            await registry.prepare("abuse.top_ips", ctx, SERVICE, {"lines": 0})
        with pytest.raises(ActionError, match="minutes must be a whole number"):
            await registry.prepare("abuse.top_ips", ctx, SERVICE, {"minutes": "ten"})
        with pytest.raises(ActionError, match="no replica logs to read"):
            await registry.prepare("abuse.top_ips", ctx, SERVICE, {})
        log = tmp_path / "gone.log"
        ctx2 = ActionContext(settings=dataclasses.replace(
            settings, replicas=(dataclasses.replace(settings.replicas[0], log_file=log),)))
        plan = await registry.prepare("abuse.top_ips", ctx2, SERVICE, {})
        outcome = await registry.execute(plan, ctx2)
        assert outcome.status == "failed" and "cannot read its log" in outcome.summary
        await ctx2.aclose()
    finally:
        await ctx.aclose()
