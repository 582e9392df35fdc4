"""Process-replica remediation actions against a process-mode drill: real sim processes, real
pid files, log files, runtime.json and config.toml.

Processes the actions start are children of this test process but not of the drill's records in
memory, so the `drill` fixture stops whatever runtime.json names before the drill itself stops.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from x402console.actions import processes as process_actions
from x402console.actions.base import ActionContext, ActionError, Outcome, Plan, Progress, Target
from x402console.actions.registry import Registry, default_registry
from x402console.config import load_config
from x402console.drill.processes import is_same_process
from x402console.sources.process_source import read_proc

pytestmark = pytest.mark.timeout(120)

SERVICE = Target("service", "prover", {"mode": "process"})


@pytest.fixture
def registry() -> Registry:
    return default_registry(["x402console.actions.processes"])


@pytest.fixture
def drill(drill_factory) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    env = drill_factory(replicas=2)
    yield env
    # What the actions started (the drill's stop only knows the processes it started itself).
    for pid, child in list(process_actions._CHILDREN.items()):
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        process_actions._CHILDREN.pop(pid, None)


@pytest.fixture
async def ctx(drill) -> AsyncIterator[ActionContext]:  # type: ignore[no-untyped-def]
    context = ActionContext(settings=load_config(drill.state.config), drill_runtime=drill.state.runtime_file)
    yield context
    await context.aclose()


async def run(registry: Registry, ctx: ActionContext, action_id: str, target: Target,
              params: dict[str, Any] | None = None) -> tuple[Plan, Outcome, list[Progress]]:
    plan = await registry.prepare(action_id, ctx, target, params or {})
    progress: list[Progress] = []
    outcome = await registry.execute(plan, ctx.fresh(), progress.append)
    return plan, outcome, progress


def pid_of(drill: Any, name: str) -> int:
    return int((drill.state.logs / f"{name}.pid").read_text())


def runtime_record(drill: Any, name: str) -> dict[str, Any]:
    data = json.loads(drill.state.runtime_file.read_text())
    return next(p for p in data["processes"] if p["name"] == name)


def gone(pid: int, start_time: int | None) -> bool:
    """Exited: no such process, another one with the pid, or a zombie nobody reaped yet (the
    drill's children are reaped only when the drill stops)."""
    proc = read_proc(pid)
    return not is_same_process(pid, start_time) or proc is None or proc.state in ("Z", "X")


def health(url: str) -> int:
    with httpx.Client(trust_env=False, timeout=3.0) as http:
        return http.get(url).status_code


async def test_restart_gives_a_new_process_that_answers_and_logs_to_the_same_file(registry, ctx, drill):
    r1 = drill.replicas[0]
    log = drill.state.logs / "prover-1.log"
    old_pid = pid_of(drill, "prover-1")
    old_record = runtime_record(drill, "prover-1")
    old_log = log.read_bytes()
    other_pid = pid_of(drill, "prover-2")

    plan, outcome, progress = await run(registry, ctx, "process.restart", Target("replica", "prover-1"))

    assert plan.steps[0].command == f"kill -TERM {old_pid}"
    assert "***" in plan.steps[1].command and drill.control_token not in plan.steps[1].command
    assert outcome.status == "succeeded", outcome.summary
    new_pid = pid_of(drill, "prover-1")
    assert new_pid != old_pid
    assert gone(old_pid, old_record["start_time"])
    record = runtime_record(drill, "prover-1")
    assert record["pid"] == new_pid and record["argv"] == old_record["argv"]
    assert is_same_process(new_pid, record["start_time"])
    assert health(r1.url + "/health") == 200
    assert pid_of(drill, "prover-2") == other_pid
    # the log file goes on: the old content is still its beginning, the new process appended
    new_log = log.read_bytes()
    assert new_log.startswith(old_log) and len(new_log) > len(old_log)
    assert any("stopping prover-1" in p.message for p in progress)


async def test_recreate_is_a_restart_and_says_so(registry, ctx, drill):
    old_pid = pid_of(drill, "prover-2")
    plan, outcome, _ = await run(registry, ctx, "process.recreate", Target("replica", "prover-2"))
    assert any("recreate is a restart" in w for w in plan.warnings)
    assert outcome.status == "succeeded", outcome.summary
    assert pid_of(drill, "prover-2") != old_pid
    assert health(drill.replicas[1].url + "/health") == 200


async def test_restart_of_a_crashed_process_starts_it(registry, ctx, drill):
    drill.replicas[1].process.stop(timeout=5)  # it died; the pid file still names it
    plan, outcome, _ = await run(registry, ctx, "process.restart", Target("replica", "prover-2"))
    assert "not running" in plan.title
    assert outcome.status == "succeeded", outcome.summary
    assert health(drill.replicas[1].url + "/health") == 200


async def test_rolling_restart_keeps_a_replica_answering(registry, ctx, drill):
    urls = [r.url + "/health" for r in drill.replicas]
    pids = {n: pid_of(drill, n) for n in ("prover-1", "prover-2")}
    samples: list[int] = []
    stop = asyncio.Event()

    async def poll() -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=1.0) as http:
            async def up(url: str) -> bool:
                try:
                    return (await http.get(url)).status_code == 200
                except httpx.HTTPError:
                    return False

            while not stop.is_set():
                samples.append(sum(await asyncio.gather(*(up(u) for u in urls))))
                await asyncio.sleep(0.02)

    poller = asyncio.create_task(poll())
    try:
        _, outcome, _ = await run(registry, ctx, "process.restart_service", SERVICE)
    finally:
        stop.set()
        await poller
    assert outcome.status == "succeeded", outcome.summary
    assert all(pid_of(drill, n) != pid for n, pid in pids.items())
    assert min(samples) >= 1, samples
    assert 1 in samples


async def test_scale_up_adds_a_replica_to_the_config_and_scale_down_removes_it(registry, ctx, drill):
    plan, outcome, _ = await run(registry, ctx, "process.scale", SERVICE, {"replicas": 3})
    assert outcome.status == "succeeded", outcome.summary

    settings = load_config(drill.state.config)
    third = next(r for r in settings.replicas if r.name == "prover-3")
    assert third.pid_file == drill.state.logs / "prover-3.pid"
    assert third.log_file == drill.state.logs / "prover-3.log"
    used = {r.port for r in drill.replicas}
    port = int(third.health_url.rsplit(":", 1)[1].split("/")[0])
    assert port not in used
    assert health(third.health_url) == 200
    pid = pid_of(drill, "prover-3")
    record = runtime_record(drill, "prover-3")
    assert record["pid"] == pid
    assert record["argv"][record["argv"].index("--name") + 1] == "prover-3"
    assert json.loads(drill.state.runtime_file.read_text())["ports"]["prover-3"] == port
    assert (drill.state.logs / "prover-3.log").stat().st_size > 0
    # the console sees it the way it sees the others
    targets = [t.name for t in registry.get("process.restart").targets(ActionContext(settings=settings))]
    assert targets == ["prover-1", "prover-2", "prover-3"]

    ctx2 = ActionContext(settings=settings, drill_runtime=drill.state.runtime_file)
    try:
        plan, outcome, _ = await run(registry, ctx2, "process.scale", SERVICE, {"replicas": 2})
    finally:
        await ctx2.aclose()
    assert outcome.status == "succeeded", outcome.summary
    assert plan.steps[0].command == f"kill -TERM {pid}"
    assert gone(pid, record["start_time"])
    assert [r.name for r in load_config(drill.state.config).replicas] == ["prover-1", "prover-2"]
    assert not (drill.state.logs / "prover-3.pid").exists()
    assert "prover-3" not in json.loads(drill.state.runtime_file.read_text())["ports"]
    assert health(drill.replicas[0].url + "/health") == 200


async def test_stop_then_start_service(registry, ctx, drill):
    old = {n: pid_of(drill, n) for n in ("prover-1", "prover-2")}
    plan, outcome, _ = await run(registry, ctx, "process.stop_service", SERVICE)
    assert plan.danger == "destructive" and plan.confirm_text == "prover" and not plan.cancellable
    assert outcome.status == "succeeded", outcome.summary
    for r in drill.replicas:
        assert not r.process.alive() or r.process.proc.poll() is not None
        with pytest.raises(httpx.HTTPError):
            health(r.url + "/health")
    with pytest.raises(ActionError, match="no process of prover is running"):
        await registry.prepare("process.stop_service", ctx, SERVICE)

    plan, outcome, _ = await run(registry, ctx, "process.start_service", SERVICE)
    assert outcome.status == "succeeded", outcome.summary
    for r in drill.replicas:
        assert health(r.url + "/health") == 200
        assert pid_of(drill, r.name) != old[r.name]


async def test_start_fails_clearly_when_the_port_is_taken(registry, ctx, drill):
    await run(registry, ctx, "process.stop_service", SERVICE)
    port = drill.replicas[0].port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        _, outcome, _ = await run(registry, ctx, "process.start_service", SERVICE)
    assert outcome.status == "failed"
    assert f"port {port} is busy" in outcome.summary


async def test_bad_requests_are_clear_errors(registry, ctx, drill, tmp_path):
    with pytest.raises(ActionError, match="no process replica 'prover-7'"):
        await registry.prepare("process.restart", ctx, Target("replica", "prover-7"))
    for bad in (0, 21, "x", None):
        with pytest.raises(ActionError, match="replicas"):
            await registry.prepare("process.scale", ctx, SERVICE, {"replicas": bad})
    with pytest.raises(ActionError, match="already has 2"):
        await registry.prepare("process.scale", ctx, SERVICE, {"replicas": 2})
    # no runtime record and the process is gone: its command line is unknown
    drill.replicas[1].process.stop(timeout=5)
    no_runtime = ActionContext(settings=ctx.settings, drill_runtime=tmp_path / "absent.json")
    with pytest.raises(ActionError, match="command line is unknown"):
        await registry.prepare("process.restart", no_runtime, Target("replica", "prover-2"))


async def test_without_runtime_record_the_command_line_comes_from_proc(registry, ctx, drill, tmp_path):
    pid = pid_of(drill, "prover-2")
    no_runtime = ActionContext(settings=ctx.settings, drill_runtime=tmp_path / "absent.json")
    try:
        plan, outcome, _ = await run(registry, no_runtime, "process.restart", Target("replica", "prover-2"))
    finally:
        await no_runtime.aclose()
    assert f"/proc/{pid}/cmdline" in plan.steps[1].description
    assert outcome.status == "succeeded", outcome.summary
    new_pid = pid_of(drill, "prover-2")
    assert new_pid != pid and health(drill.replicas[1].url + "/health") == 200
    # recorded in the runtime file it was given, so a later clean-up finds it
    data = json.loads((tmp_path / "absent.json").read_text())
    assert data["processes"][0]["pid"] == new_pid


async def test_a_process_replaced_after_the_plan_is_refused_at_run_time(registry, ctx, drill):
    plan = await registry.prepare("process.restart", ctx, Target("replica", "prover-1"))
    await run(registry, ctx, "process.restart", Target("replica", "prover-1"))
    outcome = await registry.execute(plan, ctx.fresh())
    assert outcome.status == "failed" and "changed since the plan" in outcome.summary


async def test_cancel_between_replicas_stops_a_rolling_restart(registry, ctx, drill):
    plan = await registry.prepare("process.restart_service", ctx, SERVICE)
    assert plan.cancellable
    first, second = (ref["name"] for ref in plan.params["processes"])
    pids = {n: pid_of(drill, n) for n in (first, second)}
    run_ctx = ctx.fresh()

    def on_progress(p: Progress) -> None:
        if "answers /health again" in p.message:
            run_ctx.cancel.set()

    outcome = await registry.execute(plan, run_ctx, on_progress)
    assert outcome.status == "cancelled", outcome.summary
    assert f"before restarting {second}" in outcome.summary
    assert pid_of(drill, first) != pids[first]
    assert pid_of(drill, second) == pids[second]
