"""abuse.set_rate_limit / abuse.set_cache_size on process-mode drills: the simulator's intended
profile reads the variables (so a lower limit makes 429s appear), the coded one ignores them as
the real main.go does (and the action says so)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from x402console.actions import processes as process_actions
from x402console.actions.base import ActionContext, ActionError, Outcome, Plan, Refused, Target
from x402console.actions.registry import Registry, default_registry
from x402console.config import load_config
from x402console.settings.model import Settings

pytestmark = pytest.mark.timeout(120)

SERVICE = Target("service", "prover", {"mode": "process"})


@pytest.fixture
def registry() -> Registry:
    return default_registry(["x402console.actions.tuning", "x402console.actions.processes"])


@pytest.fixture
def started_here() -> Iterator[None]:
    """Stop what the actions started: the drill's stop knows only the processes it started itself."""
    yield
    for pid, child in list(process_actions._CHILDREN.items()):
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        process_actions._CHILDREN.pop(pid, None)


async def run(registry: Registry, ctx: ActionContext, action_id: str, target: Target,
              params: dict[str, Any] | None = None) -> tuple[Plan, Outcome]:
    plan = await registry.prepare(action_id, ctx, target, params or {})
    return plan, await registry.execute(plan, ctx.fresh())


def statuses(url: str, client_ip: str, n: int) -> list[int]:
    with httpx.Client(trust_env=False, timeout=5.0) as http:
        return [http.get(url + "/health", headers={"X-Forwarded-For": client_ip}).status_code for _ in range(n)]


def record(drill: Any, name: str) -> dict[str, Any]:
    data = json.loads(drill.state.runtime_file.read_text())
    return next(p for p in data["processes"] if p["name"] == name)


@pytest.fixture
async def intended(drill_factory, started_here) -> AsyncIterator[tuple[Any, ActionContext]]:  # type: ignore[no-untyped-def]
    drill = drill_factory(replicas=2, profile="intended")
    ctx = ActionContext(settings=load_config(drill.state.config), drill_runtime=drill.state.runtime_file)
    yield drill, ctx
    await ctx.aclose()


async def test_a_lower_rate_limit_takes_effect_in_the_intended_build(registry, intended) -> None:
    drill, ctx = intended
    r1, r2 = drill.replicas
    assert statuses(r1.url, "198.51.100.31", 3) == [200, 200, 200]
    old_pids = [record(drill, n)["pid"] for n in ("prover-1", "prover-2")]

    plan, outcome = await run(registry, ctx, "abuse.set_rate_limit", SERVICE, {"value": 2})
    assert plan.title.startswith("Set RATE_LIMIT_PER_MINUTE=2 on prover (2 replicas")
    assert not any("ignores" in w for w in plan.warnings)
    assert any(w.startswith("RATE_LIMIT_PER_MINUTE now: prover-1: unset") for w in plan.warnings)
    assert any((s.command or "").startswith("RATE_LIMIT_PER_MINUTE=2 setsid ") for s in plan.steps)
    assert outcome.status == "succeeded", outcome.summary
    assert outcome.details["observed"] == {"prover-1": 2, "prover-2": 2}

    assert [record(drill, n)["pid"] for n in ("prover-1", "prover-2")] != old_pids
    assert record(drill, "prover-1")["env"] == {"RATE_LIMIT_PER_MINUTE": "2"}
    assert statuses(r1.url, "198.51.100.32", 3) == [200, 200, 429]
    assert statuses(r2.url, "198.51.100.32", 3) == [200, 200, 429]

    # a later plain restart starts the replica with the variable again
    _, restarted = await run(registry, ctx, "process.restart", Target("replica", "prover-2"))
    assert restarted.status == "succeeded", restarted.summary
    assert statuses(r2.url, "198.51.100.33", 3) == [200, 200, 429]


async def test_cache_size_is_what_the_replicas_report_afterwards(registry, drill_factory, started_here) -> None:
    drill = drill_factory(replicas=1, profile="intended")
    ctx = ActionContext(settings=load_config(drill.state.config), drill_runtime=drill.state.runtime_file)
    try:
        _, outcome = await run(registry, ctx, "abuse.set_cache_size", SERVICE, {"value": "50"})
    finally:
        await ctx.aclose()
    assert outcome.status == "succeeded", outcome.summary
    assert outcome.details["observed"] == {"prover-1": 50}
    with httpx.Client(trust_env=False, timeout=5.0) as http:
        assert http.get(drill.replicas[0].url + "/cache/stats").json()["maxSize"] == 50


async def test_the_coded_build_ignores_the_variable_and_the_action_says_so(registry, drill_factory, started_here) -> None:
    drill = drill_factory(replicas=1, profile="coded")
    ctx = ActionContext(settings=load_config(drill.state.config), drill_runtime=drill.state.runtime_file)
    try:
        plan, outcome = await run(registry, ctx, "abuse.set_rate_limit", SERVICE, {"value": 2})
    finally:
        await ctx.aclose()
    warning = next(w for w in plan.warnings if "ignores RATE_LIMIT_PER_MINUTE" in w)
    assert "NO effect" in warning and "4.3" in warning
    assert outcome.status == "succeeded"
    assert "NO effect" in outcome.summary and "prover-1 reports 10" in outcome.summary
    # and indeed: the replica got the variable, and still lets 10 a minute through
    assert record(drill, "prover-1")["env"] == {"RATE_LIMIT_PER_MINUTE": "2"}
    assert statuses(drill.replicas[0].url, "198.51.100.41", 4) == [200, 200, 200, 200]


@pytest.mark.parametrize(
    ("params", "message"),
    [({}, "the new RATE_LIMIT_PER_MINUTE is needed"), ({"value": 0}, "outside 1..100000"),
     ({"value": "5/min"}, "whole number"), ({"value": True}, "whole number"), ({"value": -3}, "whole number"),
     ({"value": 5, "health_timeout": 0}, "health_timeout")],
)
async def test_bad_values_are_clear_errors(registry, params, message) -> None:
    ctx = ActionContext(settings=Settings())
    with pytest.raises(ActionError) as err:
        await registry.prepare("abuse.set_rate_limit", ctx, SERVICE, params)
    assert message in str(err.value)


async def test_read_only_and_security_incidents_refuse_it(registry) -> None:
    with pytest.raises(Refused, match="read-only"):
        await registry.prepare("abuse.set_cache_size", ActionContext(settings=Settings(), read_only=True), SERVICE,
                               {"value": 5})
    with pytest.raises(Refused, match="until evidence is preserved"):
        await registry.prepare("abuse.set_rate_limit", ActionContext(settings=Settings(), incident_security=True),
                               SERVICE, {"value": 5})
