"""Container remediation actions against the real Docker engine and docker-mode drill replicas.

Every container an action makes here carries the drill's labels (copied from the replicas), so
the drill's own stop removes it; the few containers a test makes itself are removed by it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.rig.components import docker_client as connect_docker
from tests.rig.components import free_port
from x402console.actions.base import ActionContext, ActionError, Outcome, Plan, Progress, Target
from x402console.actions.registry import Registry, default_registry
from x402console.config import load_config
from x402console.drill.containers import LABEL_CONTROL_PORT, LABEL_DRILL, LABEL_NUMBER, LABEL_PORT
from x402console.settings.model import DockerHost, Settings
from x402console.sources.discovery import LABEL_PROJECT, LABEL_SERVICE, discover_containers

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

MODULE = "x402console.actions.containers"
SERVICE = Target("service", "prover", {"docker_host": "local"})
LABEL_REPLACE = "com.docker.compose.replace"


@pytest.fixture(scope="module")
def docker() -> Iterator[Any]:
    client = connect_docker()
    yield client
    client.close()


@pytest.fixture
def registry() -> Registry:
    return default_registry([MODULE])


@pytest.fixture
def docker_drill(drill_factory, docker):  # type: ignore[no-untyped-def]
    return drill_factory(mode="docker", replicas=2)


@pytest.fixture
async def ctx(docker_drill) -> AsyncIterator[ActionContext]:  # type: ignore[no-untyped-def]
    context = ActionContext(settings=load_config(docker_drill.state.config), drill_runtime=docker_drill.state.runtime_file)
    yield context
    await context.aclose()


async def run(registry: Registry, ctx: ActionContext, action_id: str, target: Target,
              params: dict[str, Any] | None = None) -> tuple[Plan, Outcome, list[Progress]]:
    plan = await registry.prepare(action_id, ctx, target, params or {})
    progress: list[Progress] = []
    outcome = await registry.execute(plan, ctx.fresh(), progress.append)
    return plan, outcome, progress


def container(docker: Any, name: str) -> Any:
    return docker.containers.get(name)


def health(url: str) -> int:
    with httpx.Client(trust_env=False, timeout=3.0) as http:
        return http.get(url).status_code


def replica_names(docker: Any, drill: Any) -> list[str]:
    found = docker.containers.list(all=True, filters={"label": f"{LABEL_DRILL}={drill.drill_id}"})
    return sorted(c.name for c in found)


# --------------------------------------------------------------------------- restart


async def test_restart_replica_restarts_the_container_and_waits_for_health(registry, ctx, docker, docker_drill):
    before = container(docker, "x402-prover-1").attrs
    other_before = container(docker, "x402-prover-2").attrs["State"]["StartedAt"]
    plan, outcome, progress = await run(registry, ctx, "container.restart", Target("replica", "prover-1"))

    assert [s.command for s in plan.steps][0] == "docker restart x402-prover-1"
    assert plan.danger == "disruptive" and plan.cancellable
    assert outcome.status == "succeeded", outcome.summary
    after = container(docker, "x402-prover-1").attrs
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] != before["State"]["StartedAt"]
    assert after["State"]["Status"] == "running"
    assert health(docker_drill.replicas[0].url + "/health") == 200
    # only the one replica was touched
    assert container(docker, "x402-prover-2").attrs["State"]["StartedAt"] == other_before
    messages = [p.message for p in progress]
    assert any("restarting x402-prover-1" in m for m in messages)
    assert any("waiting for x402-prover-1" in m for m in messages)


async def test_rolling_restart_keeps_a_replica_answering_throughout(registry, ctx, docker, docker_drill):
    urls = [r.url + "/health" for r in docker_drill.replicas]
    started = {n: container(docker, n).attrs["State"]["StartedAt"] for n in ("x402-prover-1", "x402-prover-2")}
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
                await asyncio.sleep(0.03)

    poller = asyncio.create_task(poll())
    try:
        plan, outcome, _ = await run(registry, ctx, "container.restart_service", SERVICE)
    finally:
        stop.set()
        await poller

    assert outcome.status == "succeeded", outcome.summary
    commands = [s.command for s in plan.steps if s.command and s.command.startswith("docker restart")]
    assert sorted(commands) == ["docker restart x402-prover-1", "docker restart x402-prover-2"]
    for name, before in started.items():
        assert container(docker, name).attrs["State"]["StartedAt"] != before, f"{name} was not restarted"
    assert len(samples) > 10
    # at least one of the two answered at every sample, and at some point one of them did not
    # (otherwise the poll proved nothing about the rollout)
    assert min(samples) >= 1, samples
    assert 1 in samples


# --------------------------------------------------------------------------- recreate


async def test_force_recreate_replaces_the_container_with_the_same_configuration(registry, ctx, docker, docker_drill):
    old = container(docker, "x402-prover-2").attrs
    plan, outcome, progress = await run(registry, ctx, "container.recreate", Target("replica", "prover-2"))

    assert not plan.cancellable
    tmp_name = f"{old['Id'][:12]}_x402-prover-2"
    assert any(s.command and f"--name {tmp_name}" in s.command and f"{LABEL_REPLACE}={old['Id']}" in s.command
               for s in plan.steps)
    assert any(s.command == f"docker rename {tmp_name} x402-prover-2" for s in plan.steps)
    assert outcome.status == "succeeded", outcome.summary

    new = container(docker, "x402-prover-2").attrs
    assert new["Id"] != old["Id"]
    assert new["Name"] == "/x402-prover-2"
    with pytest.raises(Exception) as gone:
        docker.containers.get(old["Id"])
    assert type(gone.value).__name__ == "NotFound"
    with pytest.raises(Exception):
        docker.containers.get(tmp_name)  # renamed, not left behind

    old_labels, new_labels = old["Config"]["Labels"], new["Config"]["Labels"]
    assert new_labels[LABEL_REPLACE] == old["Id"]
    assert {k: v for k, v in new_labels.items() if k != LABEL_REPLACE} == old_labels
    assert new_labels[LABEL_NUMBER] == "2"
    for key in ("Image", "Cmd", "Env", "Healthcheck", "User", "WorkingDir", "StopSignal"):
        assert new["Config"].get(key) == old["Config"].get(key), key
    for key in ("NetworkMode", "Memory", "RestartPolicy", "Mounts", "Init", "LogConfig"):
        assert new["HostConfig"].get(key) == old["HostConfig"].get(key), key
    assert new["State"]["Status"] == "running"
    assert health(docker_drill.replicas[1].url + "/health") == 200
    assert any("creating " + tmp_name in p.message for p in progress)
    # the console still finds it as prover-2
    settings = ctx.settings
    found = discover_containers(docker, settings, "local")
    assert [(r.name, r.number, r.container_id) for r in found if r.name == "prover-2"] == [("prover-2", 2, new["Id"])]


# --------------------------------------------------------------------------- scale


async def test_scale_up_then_down_follows_compose_numbering(registry, ctx, docker, docker_drill):
    keep_id = container(docker, "x402-prover-1").id
    plan, outcome, _ = await run(registry, ctx, "container.scale", SERVICE, {"replicas": 3})
    assert outcome.status == "succeeded", outcome.summary
    assert any(s.command and s.command.startswith("docker create --name x402-prover-3") for s in plan.steps)

    third = container(docker, "x402-prover-3").attrs
    labels = third["Config"]["Labels"]
    assert labels[LABEL_PROJECT] == "x402" and labels[LABEL_SERVICE] == "prover"
    assert labels[LABEL_NUMBER] == "3"
    assert labels[LABEL_DRILL] == docker_drill.drill_id  # so the drill's clean-up removes it
    assert LABEL_REPLACE not in labels
    port = int(labels[LABEL_PORT])
    used = {r.port for r in docker_drill.replicas} | {r.control_port for r in docker_drill.replicas}
    assert port not in used and int(labels[LABEL_CONTROL_PORT]) not in used | {port}
    cmd = third["Config"]["Cmd"]
    assert cmd[cmd.index("--port") + 1] == str(port)
    assert cmd[cmd.index("--name") + 1] == "prover-3"
    assert str(port) in " ".join(third["Config"]["Healthcheck"]["Test"])
    assert third["State"]["Status"] == "running"
    assert health(f"http://127.0.0.1:{port}/health") == 200
    found = {r.name: r for r in discover_containers(docker, ctx.settings, "local")}
    assert found["prover-3"].number == 3 and found["prover-3"].health_url == f"http://127.0.0.1:{port}/health"

    plan, outcome, progress = await run(registry, ctx, "container.scale", SERVICE, {"replicas": 1})
    assert outcome.status == "succeeded", outcome.summary
    stops = [s.command for s in plan.steps if s.command and s.command.startswith("docker stop")]
    assert stops == ["docker stop x402-prover-3", "docker stop x402-prover-2"]  # highest first
    assert replica_names(docker, docker_drill) == ["x402-prover-1"]
    assert container(docker, "x402-prover-1").id == keep_id
    assert [p.message for p in progress if p.message.startswith("removing")] == [
        "removing x402-prover-3", "removing x402-prover-2"]


@pytest.mark.parametrize("bad", [0, 21, -1, "three", True, None, 2.5])
async def test_scale_rejects_bad_replica_counts(registry, bad):
    ctx = ActionContext(settings=Settings())
    with pytest.raises(ActionError, match="replicas"):
        await registry.prepare("container.scale", ctx, SERVICE, {"replicas": bad})


async def test_scale_is_refused_for_the_real_compose_layout(registry):
    settings = dataclasses.replace(
        Settings(), discovery=dataclasses.replace(Settings().discovery, mode="services", compose_project="deploy"))
    ctx = ActionContext(settings=settings)
    with pytest.raises(ActionError, match="host port"):
        await registry.prepare("container.scale", ctx, SERVICE, {"replicas": 3})


async def test_scale_up_is_refused_when_the_replicas_publish_host_ports(registry, docker, drill_factory):
    """A compose service with `ports: 8080:8080` cannot have a second container (created only:
    nothing is started, so nothing binds the port)."""
    from x402console.drill.image import IMAGE_TAG, ensure_image

    ensure_image(docker)
    project = f"x402t{int(time.time() * 1000) % 10**8}"
    made = docker.containers.create(
        IMAGE_TAG, command=["true"], name=f"{project}-prover-1",
        labels={LABEL_PROJECT: project, LABEL_SERVICE: "prover", LABEL_NUMBER: "1",
                "com.docker.compose.oneoff": "False", LABEL_DRILL: "test-published-ports"},
        ports={"8080/tcp": ("127.0.0.1", free_port())},
    )
    try:
        base = Settings()
        settings = dataclasses.replace(base, discovery=dataclasses.replace(base.discovery, compose_project=project))
        ctx = ActionContext(settings=settings)
        try:
            with pytest.raises(ActionError, match="fixed host port"):
                await registry.prepare("container.scale", ctx, SERVICE, {"replicas": 2})
            # scaling down is still planned (here: nothing to go down to)
            with pytest.raises(ActionError, match="already has 1"):
                await registry.prepare("container.scale", ctx, SERVICE, {"replicas": 1})
        finally:
            await ctx.aclose()
    finally:
        made.remove(force=True)


# --------------------------------------------------------------------------- stop / start


async def test_stop_service_keeps_the_containers_and_start_brings_them_back(registry, ctx, docker, docker_drill):
    ids = {n: container(docker, n).id for n in ("x402-prover-1", "x402-prover-2")}
    plan, outcome, _ = await run(registry, ctx, "container.stop_service", SERVICE)
    assert plan.danger == "destructive" and plan.confirm_text == "prover" and not plan.cancellable
    assert plan.steps[0].command == "docker stop -t 10 x402-prover-1 x402-prover-2"
    assert outcome.status == "succeeded", outcome.summary
    for name, cid in ids.items():
        c = container(docker, name)
        assert c.id == cid and c.status == "exited", (name, c.status)
    for r in docker_drill.replicas:
        with pytest.raises(httpx.HTTPError):
            health(r.url + "/health")

    with pytest.raises(ActionError, match="no replica of prover is running"):
        await registry.prepare("container.stop_service", ctx, SERVICE)

    plan, outcome, _ = await run(registry, ctx, "container.start_service", SERVICE)
    assert plan.steps[0].command == "docker start x402-prover-1 x402-prover-2"
    assert outcome.status == "succeeded", outcome.summary
    for name, cid in ids.items():
        c = container(docker, name)
        assert c.id == cid and c.status == "running"
    for r in docker_drill.replicas:
        assert health(r.url + "/health") == 200


# --------------------------------------------------------------------------- failures


async def test_a_container_removed_after_the_plan_fails_cleanly(registry, ctx, docker, docker_drill):
    plan = await registry.prepare("container.restart", ctx, Target("replica", "prover-2"))
    container(docker, "x402-prover-2").remove(force=True)
    outcome = await registry.execute(plan, ctx.fresh())
    assert outcome.status == "failed"
    assert "x402-prover-2" in outcome.summary and "gone" in outcome.summary


async def test_unknown_replica_is_a_clear_error(registry, ctx):
    with pytest.raises(ActionError, match="no replica container 'prover-9'.*x402-prover-1"):
        await registry.prepare("container.restart", ctx, Target("replica", "prover-9"))


async def test_an_unreachable_engine_is_a_clear_error_not_an_exception(registry, tmp_path):
    settings = dataclasses.replace(
        Settings(), docker_hosts=(DockerHost(name="gone", url=f"unix://{tmp_path}/no-such.sock", timeout_seconds=2),))
    ctx = ActionContext(settings=settings)
    try:
        with pytest.raises(ActionError, match="gone"):
            await registry.prepare("container.restart_service", ctx, Target("service", "prover"))
        # a plan made earlier, run after the engine went away: a failed outcome
        plan = Plan("container.restart", "Restart x", Target("replica", "prover-1", {"docker_host": "gone"}),
                    "disruptive", (), {"containers": [{"id": "0" * 64, "container": "x402-prover-1",
                                                       "name": "prover-1", "health_url": "http://127.0.0.1:1/health"}],
                                       "health_timeout": 5.0})
        outcome = await registry.execute(plan, ctx)
        assert outcome.status == "failed"
        assert "not reachable" in outcome.summary or "gone" in outcome.summary
    finally:
        await ctx.aclose()


async def test_cancel_between_replicas_stops_a_rolling_restart(registry, ctx, docker):
    plan = await registry.prepare("container.restart_service", ctx, SERVICE)
    first, second = (ref["container"] for ref in plan.params["containers"])
    started = {n: container(docker, n).attrs["State"]["StartedAt"] for n in (first, second)}
    run_ctx = ctx.fresh()

    def on_progress(p: Progress) -> None:
        if "answers /health again" in p.message:
            run_ctx.cancel.set()

    outcome = await registry.execute(plan, run_ctx, on_progress)
    assert outcome.status == "cancelled", outcome.summary
    assert container(docker, first).attrs["State"]["StartedAt"] != started[first]
    assert container(docker, second).attrs["State"]["StartedAt"] == started[second]


def test_recreate_config_reproduces_a_bridge_networked_container(docker):
    """The real compose file runs provers on a user network with published ports; the copy the
    recreate makes must keep network, aliases, ports, limits and restart policy (containers are
    only created, never started: nothing binds or sends anything)."""
    from x402console.actions.containers import _create, _create_body
    from x402console.drill.image import IMAGE_TAG, ensure_image

    ensure_image(docker)
    tag = f"x402t{int(time.time() * 1000) % 10**8}"
    api = docker.api
    net = docker.networks.create(f"{tag}-net", labels={LABEL_DRILL: tag})
    made: list[str] = []
    try:
        port = free_port()
        old_id = api.create_container(
            IMAGE_TAG, command=["true"], name=f"{tag}-prover-1", environment={"PORT": "8080"},
            labels={LABEL_PROJECT: tag, LABEL_SERVICE: "prover", LABEL_NUMBER: "1", LABEL_DRILL: tag},
            host_config=api.create_host_config(
                network_mode=net.name, port_bindings={8080: ("127.0.0.1", port)}, mem_limit="64m",
                restart_policy={"Name": "unless-stopped"}),
            networking_config=api.create_networking_config({net.name: api.create_endpoint_config(aliases=["prover"])}),
        )["Id"]
        made.append(old_id)
        old = api.inspect_container(old_id)
        labels = {**old["Config"]["Labels"], LABEL_REPLACE: old_id}
        body, later = _create_body(old, labels=labels)
        new_id = _create(docker, body, f"{old_id[:12]}_{tag}-prover-1", later)
        made.append(new_id)
        new = api.inspect_container(new_id)
        assert new["Name"] == f"/{old_id[:12]}_{tag}-prover-1"
        assert new["Config"]["Labels"] == labels
        assert new["Config"]["Hostname"] != old["Config"]["Hostname"]  # not named after the old one
        for key in ("Image", "Cmd", "Env", "ExposedPorts"):
            assert new["Config"][key] == old["Config"][key], key
        for key in ("NetworkMode", "PortBindings", "Memory", "RestartPolicy"):
            assert new["HostConfig"][key] == old["HostConfig"][key], key
        assert "prover" in (new["NetworkSettings"]["Networks"][net.name]["Aliases"] or [])
    finally:
        for cid in made:
            api.remove_container(cid, force=True)
        net.remove()
