"""Diagnostics (health probes, pprof, memory trend) against a real process-mode drill: real
simulated provers, one hung with the hang fault, one stopped, one leaking real memory."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rig.components import free_port
from tests.rig.raw_server import RawServer
from tests.rig.sim import sim_factory  # noqa: F401  (fixture)
from x402console.actions.base import ActionContext, ActionError, Outcome, Plan, Progress, Target
from x402console.actions.diagnostics import diagnostics_dir
from x402console.actions.registry import Registry, default_registry
from x402console.config import load_config
from x402console.settings.model import Discovery, PrometheusSettings, Replica, Settings

pytestmark = pytest.mark.timeout(120)

SERVICE = Target("service", "prover")


@pytest.fixture
def registry() -> Registry:
    return default_registry(["x402console.actions.diagnostics"])


async def run(registry: Registry, ctx: ActionContext, action_id: str, target: Target,
              params: dict[str, Any] | None = None) -> tuple[Plan, Outcome, list[Progress]]:
    plan = await registry.prepare(action_id, ctx, target, params or {})
    progress: list[Progress] = []
    outcome = await registry.execute(plan, ctx, progress.append)
    return plan, outcome, progress


@pytest.fixture
async def drill3(drill_factory) -> AsyncIterator[tuple[Any, ActionContext]]:  # type: ignore[no-untyped-def]
    env = drill_factory(replicas=3)
    ctx = ActionContext(settings=load_config(env.state.config), drill_runtime=env.state.runtime_file)
    yield env, ctx
    await ctx.aclose()


# --------------------------------------------------------------------------- health


async def test_probe_all_reports_healthy_hung_and_down_replicas_in_plain_words(registry, drill3) -> None:
    drill, ctx = drill3
    names = [t.name for t in registry.get("diag.probe_health").targets(ctx)]
    assert names == ["prover-1", "prover-2", "prover-3"]
    assert [t.name for t in registry.get("diag.probe_health_all").targets(ctx)] == ["prover"]
    drill.control(drill.replicas[1]).set_fault("hang")
    drill.replicas[2].process.stop()

    plan, outcome, progress = await run(registry, ctx, "diag.probe_health_all", SERVICE, {"timeout": 1})

    assert plan.changes_state is False and plan.danger == "safe"
    assert [s.command for s in plan.steps] == [
        f"curl -sS -m 1 -w '\\nHTTP %{{http_code}} in %{{time_total}}s\\n' {r.url}/health" for r in drill.replicas]
    assert outcome.status == "failed"
    assert outcome.summary.startswith("2 of 3 replicas unhealthy")
    by_name = {r["replica"]: r for r in outcome.details["replicas"]}
    ok = by_name["prover-1"]
    assert ok["ok"] and ok["status_code"] == 200 and ok["status"] == "healthy"
    assert '"status":"healthy"' in ok["body"] and ok["latency_ms"] is not None
    hung = by_name["prover-2"]
    assert not hung["ok"] and hung["error_kind"] == "hung" and hung["status_code"] is None
    assert "timed out after 1 s waiting for an answer" in hung["error"] and "(hung)" in hung["error"]
    down = by_name["prover-3"]
    assert down["error_kind"] == "refused"
    assert f"connection refused: nothing listens on 127.0.0.1:{drill.replicas[2].port}" in down["error"]
    assert "prover-2: timed out" in outcome.summary and "prover-3: connection refused" in outcome.summary
    assert any(p.message.startswith("prover-1: healthy, HTTP 200") for p in progress)

    # one replica: healthy succeeds, hung fails, and the hang ends when the fault is cleared
    _, one, _ = await run(registry, ctx, "diag.probe_health", Target("replica", "prover-1"), {"timeout": 1})
    assert one.status == "succeeded" and one.summary.startswith("prover-1: healthy, HTTP 200 in ")
    drill.control(drill.replicas[1]).clear_fault("hang")
    _, again, _ = await run(registry, ctx, "diag.probe_health", Target("replica", "prover-2"), {"timeout": 2})
    assert again.status == "succeeded", again.summary


async def test_probe_is_cancellable_and_checks_its_input(registry, drill3) -> None:
    drill, ctx = drill3
    drill.control(drill.replicas[0]).set_fault("hang")
    plan = await registry.prepare("diag.probe_health", ctx, Target("replica", "prover-1"), {"timeout": 30})
    run_ctx = ctx.fresh()
    task = asyncio.ensure_future(registry.execute(plan, run_ctx))
    await asyncio.sleep(0.5)
    run_ctx.cancel.set()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.status == "cancelled"

    with pytest.raises(ActionError, match="no replica named 'prover-9'.*known: prover-1, prover-2, prover-3"):
        await registry.prepare("diag.probe_health", ctx, Target("replica", "prover-9"))
    with pytest.raises(ActionError, match="timeout must be between"):
        await registry.prepare("diag.probe_health", ctx, Target("replica", "prover-2"), {"timeout": -1})
    with pytest.raises(ActionError, match="timeout must be a number"):
        await registry.prepare("diag.probe_health", ctx, Target("replica", "prover-2"), {"timeout": "soon"})
    # read-only consoles may diagnose
    ro = dataclasses.replace(ctx, read_only=True, cancel=asyncio.Event())
    _, outcome, _ = await run(registry, ro, "diag.probe_health", Target("replica", "prover-2"), {"timeout": 2})
    assert outcome.status == "succeeded"


# --------------------------------------------------------------------------- pprof


async def test_pprof_saves_goroutine_and_heap_profiles_without_overwriting(registry, drill_factory) -> None:
    drill = drill_factory(replicas=1, profile="intended")  # the intended build serves pprof
    ctx = ActionContext(settings=load_config(drill.state.config))
    try:
        assert ctx.settings.prover.pprof is True
        target = Target("replica", "prover-1")
        plan, first, progress = await run(registry, ctx, "diag.pprof", target, {"timeout": 20})
        assert first.status == "succeeded", first.summary
        directory = drill.state.root / "evidence" / "diagnostics"
        assert diagnostics_dir(ctx.settings) == directory
        assert plan.steps[1].command.startswith(f"curl -sS -m 20 '{drill.replicas[0].url}/debug/pprof/goroutine?debug=2' > ")
        assert len(first.artifacts) == 2
        goroutine, heap = (Path(a) for a in first.artifacts)
        assert goroutine.parent == heap.parent == directory
        assert goroutine.name.startswith("prover-1-goroutine-") and goroutine.suffix == ".txt"
        assert heap.name.startswith("prover-1-heap-")
        assert goroutine.read_text().startswith("goroutine 1 [")
        assert heap.read_text().startswith("heap profile: ")
        assert (goroutine.stat().st_mode & 0o777) == 0o600
        profiles = {p["profile"]: p for p in first.details["profiles"]}
        assert profiles["goroutine"]["goroutines"] >= 2
        assert profiles["heap"]["in_use_bytes"] > 0
        assert "goroutines" in first.summary
        before = {p: p.read_bytes() for p in (goroutine, heap)}

        # the same second again: new names, the first files untouched
        _, second, _ = await run(registry, ctx, "diag.pprof", target, {"timeout": 20})
        assert second.status == "succeeded"
        assert not set(second.artifacts) & set(first.artifacts)
        assert all(p.read_bytes() == data for p, data in before.items())
        assert sorted(x.name for x in directory.iterdir() if x.name.startswith(".")) == []  # no partial files left
    finally:
        await ctx.aclose()


async def test_pprof_on_a_build_without_it_is_a_clear_message(registry, drill_factory) -> None:
    drill = drill_factory(replicas=1)  # coded: as the real prover, no pprof routes
    settings = load_config(drill.state.config)
    ctx = ActionContext(settings=settings)
    try:
        with pytest.raises(ActionError, match=r"\[prover\] pprof = false.*404"):
            await registry.prepare("diag.pprof", ctx, Target("replica", "prover-1"))
        # configured as if it had pprof: the 404 is found and said, nothing is written
        lying = dataclasses.replace(settings, prover=dataclasses.replace(settings.prover, pprof=True))
        ctx2 = ActionContext(settings=lying)
        try:
            _, outcome, _ = await run(registry, ctx2, "diag.pprof", Target("replica", "prover-1"))
        finally:
            await ctx2.aclose()
        assert outcome.status == "failed"
        assert outcome.summary.startswith("prover-1 serves no /debug/pprof (HTTP 404 '404 page not found')")
        assert "Traceback" not in outcome.summary and "traceback" not in outcome.details
        assert outcome.artifacts == ()
        assert not (drill.state.root / "evidence" / "diagnostics").exists()
    finally:
        await ctx.aclose()


# --------------------------------------------------------------------------- memory trend


async def test_memory_trend_sees_a_real_leak_and_a_flat_replica(registry, drill_factory) -> None:
    drill = drill_factory(replicas=2)
    ctx = ActionContext(settings=load_config(drill.state.config))
    try:
        assert not ctx.settings.prometheus.url  # the drill runs without Prometheus here
        drill.control(drill.replicas[0]).set_fault("memory_leak", mb_per_second=8, max_mb=300)
        plan, outcome, progress = await run(registry, ctx, "diag.memory_trend", SERVICE, {"seconds": 5, "interval": 0.5})
    finally:
        await ctx.aclose()
    assert plan.params["source"] == "scrape"
    assert plan.steps[0].command == f"curl -sS {drill.replicas[0].url}/metrics | grep '^process_resident_memory_bytes'"
    assert outcome.status == "succeeded", outcome.summary
    assert outcome.details["source"] == "scrape"
    by_name = {r["replica"]: r for r in outcome.details["replicas"]}
    leak, flat = by_name["prover-1"], by_name["prover-2"]
    assert leak["verdict"] == "growing", leak
    assert leak["points"] >= 8
    assert 2 < leak["mib_per_minute"] / 60 < 16  # about 8 MB/s, with a loaded machine's slack
    assert leak["limit_bytes"] == 512 * 1024 * 1024 and leak["limit_source"] == "[prover] memory_limit_bytes"
    assert 0 < leak["eta_seconds"] < 600
    assert leak["last_bytes"] > leak["first_bytes"] + 10 * 1024 * 1024
    assert flat["verdict"] == "not growing", flat
    assert flat["eta_seconds"] is None and flat["points"] >= 8
    assert outcome.summary.startswith("memory growing on prover-1 (direct /metrics samples):")
    assert "prover-1: growing" in outcome.summary and "limit in ~" in outcome.summary
    assert "prover-2: not growing" in outcome.summary
    assert any(p.message.startswith("sampling ") for p in progress)


async def test_memory_trend_falls_back_from_an_unreachable_prometheus_and_reports_a_down_replica(
        registry, drill_factory) -> None:
    drill = drill_factory(replicas=2)
    settings = load_config(drill.state.config)
    dead = f"http://127.0.0.1:{free_port()}"
    settings = dataclasses.replace(settings, prometheus=dataclasses.replace(settings.prometheus, url=dead, timeout_seconds=1))
    drill.replicas[1].process.stop()
    ctx = ActionContext(settings=settings)
    try:
        plan, outcome, _ = await run(registry, ctx, "diag.memory_trend", SERVICE, {"seconds": 3, "interval": 0.5})
    finally:
        await ctx.aclose()
    assert plan.params["source"] == "auto"
    assert "query_range" in plan.steps[0].command
    assert outcome.status == "succeeded", outcome.summary
    assert outcome.details["source"] == "scrape"
    assert any(dead in n and "cannot reach" in n for n in outcome.details["notes"])
    by_name = {r["replica"]: r for r in outcome.details["replicas"]}
    assert by_name["prover-1"]["verdict"] == "not growing"
    down = by_name["prover-2"]
    assert down["verdict"] == "too few points" and "connection refused" in down["problems"]


@pytest.mark.prometheus
async def test_memory_trend_from_prometheus_history(registry, drill_factory) -> None:
    drill = drill_factory(replicas=1, prometheus="on", scrape_interval=1.0)
    drill.control(drill.replicas[0]).set_fault("memory_leak", mb_per_second=10, max_mb=300)
    settings = load_config(drill.state.config)
    assert settings.prometheus.url
    # wait until Prometheus holds several leaking samples
    query = settings.prometheus.url + "/api/v1/query"
    deadline = time.monotonic() + 40
    with httpx.Client(trust_env=False, timeout=5) as http:
        while time.monotonic() < deadline:
            r = http.get(query, params={"query": 'count_over_time(process_resident_memory_bytes{job="prover"}[1m])'})
            result = r.json()["data"]["result"] if r.status_code == 200 else []
            if result and float(result[0]["value"][1]) >= 6:
                break
            time.sleep(0.5)
        else:
            pytest.fail("Prometheus did not collect 6 samples in 40 s")
    ctx = ActionContext(settings=settings)
    try:
        _, outcome, _ = await run(registry, ctx, "diag.memory_trend", SERVICE, {"window_minutes": 1})
    finally:
        await ctx.aclose()
    assert outcome.status == "succeeded", outcome.summary
    assert outcome.details["source"] == "prometheus" and outcome.details["notes"] == []
    (entry,) = outcome.details["replicas"]
    assert entry["replica"] == "prover-1"  # the instance label mapped back to the replica's name
    assert entry["verdict"] == "growing" and entry["points"] >= 6 and entry["eta_seconds"] > 0
    assert "(Prometheus)" in outcome.summary


async def test_memory_trend_checks_its_parameters(registry, drill3) -> None:
    _, ctx = drill3
    for params, message in (
        ({"source": "statsd"}, "source must be auto, prometheus or scrape"),
        ({"source": "prometheus"}, r"no Prometheus is configured \(\[prometheus\] url\)"),
        ({"seconds": 1}, "seconds must be between 2 and 600"),
        ({"seconds": 4, "interval": 3}, "fewer than 3 samples"),
    ):
        with pytest.raises(ActionError, match=message):
            await registry.prepare("diag.memory_trend", ctx, SERVICE, params)


async def test_memory_sampling_of_a_rate_limited_prover_says_so(registry, sim_factory) -> None:
    # As coded, the prover's limiter covers /metrics: 10 requests per minute per address.
    sim = sim_factory()  # no --exempt-ip: 127.0.0.1 is limited like any client
    settings = Settings(
        discovery=Discovery(mode="static"),
        prometheus=PrometheusSettings(url=None),
        replicas=(Replica("prover-1", sim.url + "/health", sim.url + "/metrics"),),
    )
    ctx = ActionContext(settings=settings)
    try:
        plan, outcome, _ = await run(registry, ctx, "diag.memory_trend", SERVICE, {"seconds": 3, "interval": 0.2})
    finally:
        await ctx.aclose()
    assert any("rate-limits /metrics too" in w for w in plan.warnings)
    (entry,) = outcome.details["replicas"]
    assert entry["points"] == 10  # the first ten answers, then 429s
    assert entry["failed_samples"] >= 4 and "HTTP 429 (rate limited)" in entry["problems"]
    assert entry["verdict"] == "not growing"
    assert "samples failed: HTTP 429 (rate limited)" in outcome.summary


def dying_server(reset: bool) -> RawServer:
    """Reads each request and then drops the connection: with a reset (SO_LINGER 0, as a killed
    process's socket) or a plain close."""

    def drop(conn: socket.socket) -> None:
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return RawServer(drop)


@pytest.mark.parametrize(("reset", "kind", "words"), [
    (True, "reset", "connection reset by 127.0.0.1:{port} before it answered"),
    (False, "closed", "127.0.0.1:{port} closed the connection without a valid answer"),
])
async def test_a_connection_dropped_mid_request_is_said_plainly(registry, reset, kind, words) -> None:
    server = dying_server(reset)
    url = f"http://127.0.0.1:{server.port}"
    settings = Settings(discovery=Discovery(mode="static"), replicas=(Replica("prover-1", url + "/health", url + "/metrics"),))
    ctx = ActionContext(settings=settings)
    try:
        _, outcome, _ = await run(registry, ctx, "diag.probe_health", Target("replica", "prover-1"), {"timeout": 2})
    finally:
        await ctx.aclose()
        server.close()
    assert outcome.status == "failed"
    (result,) = outcome.details["replicas"]
    assert result["error_kind"] == kind
    assert outcome.summary.startswith("prover-1: " + words.format(port=server.port))
