"""Remediation actions on prover containers: restart, force-recreate, scale, stop and start.

Each one is a runbook command (INCIDENT_RESPONSE.md: Incident 1 `docker-compose restart prover`
and `up -d --force-recreate prover`, Incident 3 `up -d --scale prover=3`, Incident 4
`docker-compose down`, Incident 7 restart), done through the Engine API with Compose's own
conventions (docker/compose pkg/compose/convergence.go) so the result is what Compose would have
made: names project-service-N, new numbers from max+1, scale-down removes obsolete containers
first and then the highest numbers, recreate goes through a temporary `<old id[:12]>_<name>`
container labelled com.docker.compose.replace. Neither the compose CLI nor a compose file is
needed, which matters: the real deploy/docker-compose.yml has no `prover` service at all
(reference/x402-system.md section 5), so the runbook's compose commands fail there.

Docker SDK calls block, so each runs in a worker thread; progress is reported between them.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from x402console.actions.replica_ops import Cancelled as _Cancelled
from x402console.actions.replica_ops import Failed as _Failed
from x402console.actions.replica_ops import answers as _answers
from x402console.actions.replica_ops import health_order as _health_order
from x402console.actions.replica_ops import health_timeout as _health_timeout
from x402console.actions.replica_ops import port_free as _port_free
from x402console.actions.base import (
    Action,
    ActionContext,
    ActionError,
    Outcome,
    Plan,
    PlanStep,
    Progress,
    Target,
)
from x402console.drill.containers import LABEL_CONTROL_PORT, LABEL_DRILL, next_numbers, scale_down_order
from x402console.settings.model import DockerHost, Settings
from x402console.sources.discovery import (
    LABEL_NUMBER,
    LABEL_SERVICE,
    PORT_LABELS,
    container_filters,
    select_replicas,
)

__all__ = [
    "ACTIONS",
    "RecreateContainer",
    "RecreateService",
    "RestartContainer",
    "RestartService",
    "ScaleService",
    "StartService",
    "StopService",
    "actions",
]

LABEL_REPLACE = "com.docker.compose.replace"
STOP_TIMEOUT = 10  # seconds of grace after SIGTERM, docker's and compose's default
MAX_REPLICAS = 20
_LOCAL_URLS = ("unix:///var/run/docker.sock", "unix://var/run/docker.sock")
_POLL = 0.25

# Config keys `docker create` accepts back from `docker inspect` (the rest are runtime state).
_CONFIG_KEYS = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
    "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped",
    "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled", "OnBuild", "Labels",
    "StopSignal", "StopTimeout", "Shell",
)
_SPECIAL_NETWORKS = ("host", "none", "bridge", "default")


# --------------------------------------------------------------------------- engine access


@dataclass(frozen=True)
class _Replica:
    """One replica container as listed when the plan was made."""

    name: str  # replica name as the console shows it: prover-1
    container: str  # container name: x402-prover-1
    id: str
    number: int | None
    status: str  # running | exited | created | paused | restarting | dead
    health_url: str
    config_hash: str
    created: str
    attrs: Mapping[str, Any]

    def ref(self) -> dict[str, Any]:
        """What a plan keeps about it (plain values: plans are shown and journalled)."""
        return {
            "name": self.name,
            "container": self.container,
            "id": self.id,
            "number": self.number,
            "health_url": self.health_url,
            "status": self.status,
        }


def _docker_host(settings: Settings, target: Target) -> DockerHost:
    hosts = settings.docker_hosts
    if not hosts:
        raise ActionError("no Docker host is configured ([[docker.hosts]]): container actions need one")
    wanted = (target.detail or {}).get("docker_host")
    if wanted:
        for host in hosts:
            if host.name == wanted:
                return host
        raise ActionError(f"no [[docker.hosts]] entry named {wanted!r}")
    return hosts[0]


def _cli(host: DockerHost) -> str:
    return "docker" if host.url in _LOCAL_URLS else f"docker -H {host.url}"


def _compose_cli(host: DockerHost, project: str) -> str:
    prefix = "" if host.url in _LOCAL_URLS else f"DOCKER_HOST={host.url} "
    return f"{prefix}docker compose -p {project}"


def _service_name(settings: Settings) -> str:
    d = settings.discovery
    return d.compose_service if d.mode == "compose" else "prover"


def _service_args(settings: Settings) -> str:
    d = settings.discovery
    if d.mode == "services":
        return " ".join(d.compose_services)
    return d.compose_service


def _client(ctx: ActionContext, host: DockerHost) -> Any:
    try:
        return ctx.docker(host.name)
    except Exception as exc:
        raise ActionError(f"docker host {host.name} ({host.url}): cannot reach the engine: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    explanation = getattr(exc, "explanation", None)
    if explanation:
        text = str(explanation)
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _list_replicas(client: Any, settings: Settings, host: DockerHost) -> list[_Replica]:
    """The configured replicas on this engine, stopped ones included, by number."""
    import docker.errors

    if settings.discovery.mode == "static":
        return []
    try:
        containers = client.containers.list(all=True, filters=container_filters(settings), ignore_removed=True)
    except docker.errors.DockerException as exc:
        raise _Failed(f"docker host {host.name}: cannot list containers: {_short(exc)}") from exc
    except Exception as exc:  # requests' connection errors when the engine went away
        raise _Failed(f"docker host {host.name}: cannot list containers: {_short(exc)}") from exc
    by_id = {c.id: c for c in containers}
    out = []
    for ident in select_replicas((c.attrs for c in containers), settings, host):
        c = by_id.get(ident.container_id or "")
        if c is None:
            continue
        attrs = c.attrs
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        out.append(
            _Replica(
                name=ident.name,
                container=c.name,
                id=c.id,
                number=ident.number,
                status=(attrs.get("State") or {}).get("Status", "unknown"),
                health_url=ident.health_url,
                config_hash=labels.get("com.docker.compose.config-hash", ""),
                created=str(attrs.get("Created", "")),
                attrs=attrs,
            )
        )
    return out


async def _replicas(ctx: ActionContext, host: DockerHost) -> tuple[Any, list[_Replica]]:
    client = await asyncio.to_thread(_client, ctx, host)
    try:
        return client, await asyncio.to_thread(_list_replicas, client, ctx.settings, host)
    except _Failed as exc:
        raise ActionError(str(exc)) from None


def _find(replicas: Sequence[_Replica], target: Target) -> _Replica:
    wanted_id = (target.detail or {}).get("container_id")
    for r in replicas:
        if wanted_id and r.id.startswith(str(wanted_id)):
            return r
    for r in replicas:
        if target.name in (r.name, r.container):
            return r
    names = ", ".join(r.container for r in replicas) or "none"
    raise ActionError(f"no replica container {target.name!r} on this engine (replicas found: {names})")


def _container(client: Any, ref: Mapping[str, Any]) -> Any:
    import docker.errors

    try:
        return client.containers.get(ref["id"])
    except docker.errors.NotFound:
        raise _Failed(f"container {ref['container']} ({ref['id'][:12]}) is gone: it was removed after the plan was made") from None


def _log_tail(client: Any, container_id: str, lines: int = 8) -> str:
    try:
        raw = client.api.logs(container_id, tail=lines)
    except Exception as exc:
        return f"  (no logs: {_short(exc)})"
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (no output)"


def _state(client: Any, container_id: str, name: str) -> tuple[str, int | None]:
    import docker.errors

    try:
        state = client.api.inspect_container(container_id).get("State") or {}
    except docker.errors.NotFound:
        raise _Failed(f"container {name} disappeared while waiting for it") from None
    return state.get("Status", "unknown"), state.get("ExitCode")


async def _wait_healthy(
    ctx: ActionContext, plan: Plan, client: Any, ref: Mapping[str, Any], container_id: str, timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer yet"
    while True:
        status, code = await asyncio.to_thread(_state, client, container_id, ref["container"])
        if status in ("exited", "dead"):
            tail = await asyncio.to_thread(_log_tail, client, container_id)
            raise _Failed(f"{ref['container']} exited (code {code}) instead of coming up; last log lines:\n{tail}")
        if status == "running":
            ok, last = await _answers(ctx, ref["health_url"])
            if ok:
                return
        else:
            last = f"container {status}"
        if loop.time() >= deadline:
            raise _Failed(f"{ref['container']} did not answer {ref['health_url']} within {timeout:g} s (last: {last})")
        if plan.cancellable and ctx.cancel.is_set():
            raise _Cancelled(f"stopped waiting for {ref['container']} to answer /health")
        await asyncio.sleep(_POLL)


# --------------------------------------------------------------------------- container configs


def _links_for_create(links: Any) -> list[str] | None:
    # inspect shows "/other:/this/alias"; create wants "other:alias".
    if not links:
        return None
    out = []
    for link in links:
        parts = str(link).split(":", 1)
        if len(parts) == 2:
            out.append(f"{parts[0].lstrip('/')}:{parts[1].rsplit('/', 1)[-1]}")
    return out or None


def _endpoint(settings: Mapping[str, Any], drop_aliases: set[str], rename: tuple[str, str] | None,
              keep_address: bool) -> dict[str, Any]:
    aliases = []
    for alias in settings.get("Aliases") or ():
        if alias in drop_aliases:
            continue  # the engine adds the container's short id itself
        aliases.append(rename[1] if rename and alias == rename[0] else alias)
    endpoint: dict[str, Any] = {"Aliases": aliases or None}
    if keep_address and settings.get("IPAMConfig"):
        endpoint["IPAMConfig"] = settings["IPAMConfig"]
    if settings.get("Links"):
        endpoint["Links"] = settings["Links"]
    if settings.get("DriverOpts"):
        endpoint["DriverOpts"] = settings["DriverOpts"]
    return endpoint


def _create_body(
    attrs: Mapping[str, Any],
    *,
    labels: Mapping[str, str],
    cmd: Sequence[str] | None = None,
    env: Sequence[str] | None = None,
    healthcheck: Mapping[str, Any] | None = None,
    new_name: str | None = None,
    keep_address: bool = True,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The `docker create` body that reproduces an inspected container, and the networks to
    connect after creation (API 1.41 accepts only one endpoint at create time)."""
    config = attrs.get("Config") or {}
    host_config = dict(attrs.get("HostConfig") or {})
    old_id = str(attrs.get("Id", ""))
    network_mode = str(host_config.get("NetworkMode") or "default")
    body: dict[str, Any] = {k: config[k] for k in _CONFIG_KEYS if k in config}
    # The engine sets the hostname to the short id unless one was asked for; copying it would
    # name the new container after the old one. With host networking it is the host's name.
    if network_mode == "host" or body.get("Hostname") in (old_id[:12], ""):
        body.pop("Hostname", None)
    body["Labels"] = dict(labels)
    if cmd is not None:
        body["Cmd"] = list(cmd)
    if env is not None:
        body["Env"] = list(env)
    if healthcheck is not None:
        body["Healthcheck"] = dict(healthcheck)
    host_config.pop("ContainerIDFile", None)
    host_config["Links"] = _links_for_create(host_config.get("Links"))
    body["HostConfig"] = host_config

    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    old_name = str(attrs.get("Name", "")).lstrip("/")
    rename = (old_name, new_name) if new_name else None
    drop = {old_id[:12], old_id}
    endpoints = {}
    if network_mode not in ("host", "none") and not network_mode.startswith("container:"):
        for net, net_settings in networks.items():
            if net in _SPECIAL_NETWORKS:
                endpoints[net] = {}
            else:
                endpoints[net] = _endpoint(net_settings or {}, drop, rename, keep_address)
    primary = network_mode if network_mode in endpoints else ("bridge" if network_mode == "default" else None)
    later = {}
    if primary and primary in endpoints:
        if endpoints[primary]:
            body["NetworkingConfig"] = {"EndpointsConfig": {primary: endpoints[primary]}}
        later = {n: e for n, e in endpoints.items() if n != primary}
    return body, later


def _create(client: Any, body: Mapping[str, Any], name: str, later: Mapping[str, Mapping[str, Any]]) -> str:
    created = client.api.create_container_from_config(dict(body), name=name)
    container_id = created["Id"]
    try:
        for net, endpoint in later.items():
            ipam = endpoint.get("IPAMConfig") or {}
            client.api.connect_container_to_network(
                container_id, net,
                aliases=endpoint.get("Aliases"),
                links=endpoint.get("Links"),
                ipv4_address=ipam.get("IPv4Address") or None,
                ipv6_address=ipam.get("IPv6Address") or None,
                driver_opt=endpoint.get("DriverOpts"),
            )
    except Exception:
        _remove_quietly(client, container_id)
        raise
    return container_id


def _remove_quietly(client: Any, container_id: str) -> None:
    try:
        client.api.remove_container(container_id, force=True)
    except Exception:
        pass


def _anonymous_volumes(attrs: Mapping[str, Any]) -> list[str]:
    named = {str(m.get("Target")) for m in (attrs.get("HostConfig") or {}).get("Mounts") or ()}
    binds = {str(b).split(":")[1] for b in (attrs.get("HostConfig") or {}).get("Binds") or () if ":" in str(b)}
    return [
        str(m.get("Destination"))
        for m in attrs.get("Mounts") or ()
        if m.get("Type") == "volume"
        and len(str(m.get("Name", ""))) == 64
        and str(m.get("Destination")) not in named | binds
    ]


# --------------------------------------------------------------------------- action base


def _done_summary(done: Sequence[str]) -> str:
    return ("done: " + "; ".join(done)) if done else "nothing was changed"


class _DockerAction(Action):
    """Common run loop: progress from _steps(), any error becomes a failed Outcome."""

    pane: ClassVar[str] = "health"
    changes_state: ClassVar[bool] = True

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        done: list[str] = []
        try:
            host = _docker_host(ctx.settings, plan.target)
            client = await asyncio.to_thread(_client, ctx, host)
            async for item in self._steps(ctx, plan, client, done):
                yield item
        except _Cancelled as exc:
            yield Outcome("cancelled", f"cancelled: {exc}; {_done_summary(done)}", {"done": list(done)})
        except (_Failed, ActionError) as exc:
            yield Outcome("failed", str(exc), {"done": list(done)})
        except Exception as exc:  # the engine went away, refused a call, ...
            yield Outcome("failed", f"{_engine_error(exc)}; {_done_summary(done)}", {"done": list(done)})

    def _steps(self, ctx: ActionContext, plan: Plan, client: Any, done: list[str]) -> AsyncIterator[Progress | Outcome]:
        raise NotImplementedError

    def _check_cancel(self, ctx: ActionContext, plan: Plan, where: str) -> None:
        if plan.cancellable and ctx.cancel.is_set():
            raise _Cancelled(where)


def _engine_error(exc: BaseException) -> str:
    try:
        import docker.errors
        import requests

        if isinstance(exc, docker.errors.NotFound):
            return f"not found: {_short(exc)}"
        if isinstance(exc, docker.errors.APIError):
            return f"the Docker engine refused: {_short(exc)}"
        if isinstance(exc, (requests.ConnectionError, docker.errors.DockerException)):
            return f"the Docker engine is not reachable: {_short(exc)}"
    except ImportError:  # pragma: no cover - dependencies of the package
        pass
    return f"unexpected error: {type(exc).__name__}: {_short(exc)}"


def _replica_targets(ctx: ActionContext) -> list[Target]:
    out = []
    if ctx.settings.discovery.mode == "static":
        return out
    for host in ctx.settings.docker_hosts:
        try:
            client = ctx.docker(host.name)
            replicas = _list_replicas(client, ctx.settings, host)
        except Exception:
            continue  # an engine that does not answer offers nothing to act on
        for r in replicas:
            out.append(Target("replica", r.name, {"container_id": r.id, "container": r.container, "docker_host": host.name}))
    return out


def _service_targets(ctx: ActionContext) -> list[Target]:
    if ctx.settings.discovery.mode == "static" or not ctx.settings.docker_hosts:
        return []
    name = _service_name(ctx.settings)
    hosts = ctx.settings.docker_hosts
    if len(hosts) == 1:
        return [Target("service", name, {"docker_host": hosts[0].name})]
    return [Target("service", f"{name}@{h.name}", {"docker_host": h.name}) for h in hosts]


# --------------------------------------------------------------------------- restart


async def _restart_one(ctx: ActionContext, plan: Plan, client: Any, ref: Mapping[str, Any],
                       done: list[str], timeout: float) -> AsyncIterator[Progress]:
    container = await asyncio.to_thread(_container, client, ref)
    yield Progress(f"restarting {ref['container']} (SIGTERM, up to {STOP_TIMEOUT} s, then start)")
    await asyncio.to_thread(container.restart, timeout=STOP_TIMEOUT)
    done.append(f"restarted {ref['container']}")
    yield Progress(f"waiting for {ref['container']} to answer {ref['health_url']}")
    await _wait_healthy(ctx, plan, client, ref, container.id, timeout)
    yield Progress(f"{ref['container']} answers /health again")


class RestartContainer(_DockerAction):
    id: ClassVar[str] = "container.restart"
    key: ClassVar[str] = "r"
    title: ClassVar[str] = "Restart replica"
    help: ClassVar[str] = "docker restart one prover container, then wait until /health answers (runbook Incident 1, 7)"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "replica"
    security_guarded: ClassVar[bool] = True

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _replica_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = _health_timeout(params)
        host = _docker_host(ctx.settings, target)
        _, replicas = await _replicas(ctx, host)
        r = _find(replicas, target)
        warnings = []
        others = [o for o in replicas if o.id != r.id and o.status == "running"]
        if not others:
            warnings.append(f"{r.container} is the only running replica: the service is down until it answers again")
        if r.status == "running":
            warnings.append("requests in flight on this replica are cut off")
        return Plan(
            action_id=self.id,
            title=f"Restart {r.container}",
            target=target,
            danger=self.danger,
            steps=(
                PlanStep(f"Restart container {r.container} ({r.status}): SIGTERM, up to {STOP_TIMEOUT} s to exit, then start it",
                         f"{_cli(host)} restart {r.container}"),
                PlanStep(f"Wait up to {timeout:g} s until {r.name} answers /health", f"curl -f {r.health_url}"),
            ),
            params={"docker_host": host.name, "containers": [r.ref()], "health_timeout": timeout},
            warnings=tuple(warnings),
            cancellable=True,
        )

    async def _steps(self, ctx, plan, client, done):  # type: ignore[override]
        ref = plan.params["containers"][0]
        async for p in _restart_one(ctx, plan, client, ref, done, plan.params["health_timeout"]):
            yield p
        yield Outcome("succeeded", f"{ref['container']} restarted and answers /health", {"done": list(done)})


class RestartService(_DockerAction):
    id: ClassVar[str] = "container.restart_service"
    key: ClassVar[str] = "R"
    title: ClassVar[str] = "Restart service (rolling)"
    help: ClassVar[str] = "Restart every replica one after another, waiting for /health in between (runbook Incident 1, 7)"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "service"
    security_guarded: ClassVar[bool] = True

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = _health_timeout(params)
        host = _docker_host(ctx.settings, target)
        _, replicas = await _replicas(ctx, host)
        if not replicas:
            raise ActionError(f"no replica containers of {target.name} on docker host {host.name}")
        ordered = await _health_order(ctx, replicas)
        steps = []
        for r in ordered:
            steps.append(PlanStep(f"Restart {r.container} ({r.status})", f"{_cli(host)} restart {r.container}"))
            steps.append(PlanStep(f"Wait up to {timeout:g} s until {r.name} answers /health", f"curl -f {r.health_url}"))
        compose = f"{_compose_cli(host, ctx.settings.discovery.compose_project)} restart {_service_args(ctx.settings)}"
        warnings = [f"`{compose}` restarts every replica at once; this restarts one at a time so the others keep serving"]
        if len(replicas) == 1:
            warnings.append("there is only one replica: the service is down while it restarts")
        if any(not r.status == "running" for r in replicas):
            warnings.append("replicas that are not running or not answering go first")
        return Plan(
            action_id=self.id,
            title=f"Rolling restart of {target.name} ({len(replicas)} replicas)",
            target=target,
            danger=self.danger,
            steps=tuple(steps),
            params={"docker_host": host.name, "containers": [r.ref() for r in ordered], "health_timeout": timeout},
            warnings=tuple(warnings),
            cancellable=True,
        )

    async def _steps(self, ctx, plan, client, done):  # type: ignore[override]
        refs = plan.params["containers"]
        for i, ref in enumerate(refs):
            self._check_cancel(ctx, plan, f"before restarting {ref['container']}")
            async for p in _restart_one(ctx, plan, client, ref, done, plan.params["health_timeout"]):
                yield Progress(p.message, i / len(refs))
        yield Outcome("succeeded", f"restarted {len(refs)} replicas one by one; all answer /health", {"done": list(done)})


# --------------------------------------------------------------------------- recreate


def _recreate_steps(host: DockerHost, r: _Replica, timeout: float) -> list[PlanStep]:
    tmp = f"{r.id[:12]}_{r.container}"
    cli = _cli(host)
    image = (r.attrs.get("Config") or {}).get("Image", "?")
    return [
        PlanStep(f"Read the configuration of {r.container} (image, command, env, labels, mounts, network, limits, restart policy)",
                 f"{cli} inspect {r.container}"),
        PlanStep(f"Create the replacement under a temporary name, same configuration and number {r.number}",
                 f"{cli} create --name {tmp} --label {LABEL_REPLACE}={r.id} <configuration of {r.container}> {image}"),
        PlanStep(f"Stop the old container (SIGTERM, up to {STOP_TIMEOUT} s)", f"{cli} stop {r.container}"),
        PlanStep("Remove the old container (its volumes are kept)", f"{cli} rm {r.id[:12]}"),
        PlanStep("Give the new container the old name", f"{cli} rename {tmp} {r.container}"),
        PlanStep("Start it", f"{cli} start {r.container}"),
        PlanStep(f"Wait up to {timeout:g} s until {r.name} answers /health", f"curl -f {r.health_url}"),
    ]


def with_env(env: Sequence[str], overrides: Mapping[str, str]) -> list[str]:
    """A container's Env list (KEY=value items) with `overrides` replacing or added."""
    out = [e for e in env if str(e).split("=", 1)[0] not in overrides]
    return out + [f"{k}={v}" for k, v in overrides.items()]


async def _recreate_one(ctx: ActionContext, plan: Plan, client: Any, ref: Mapping[str, Any],
                        done: list[str], timeout: float,
                        env_overrides: Mapping[str, str] | None = None) -> AsyncIterator[Progress]:
    old = await asyncio.to_thread(_container, client, ref)
    attrs = old.attrs
    name = old.name
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    labels[LABEL_REPLACE] = old.id
    env = with_env((attrs.get("Config") or {}).get("Env") or [], env_overrides) if env_overrides else None
    body, later = _create_body(attrs, labels=labels, env=env)
    tmp = f"{old.id[:12]}_{name}"
    yield Progress(f"creating {tmp} with the configuration of {name}")
    try:
        new_id = await asyncio.to_thread(_create, client, body, tmp, later)
    except Exception as exc:
        raise _Failed(f"could not create the replacement for {name}: {_engine_error(exc)}; {name} is untouched") from None
    yield Progress(f"stopping {name}")
    try:
        await asyncio.to_thread(old.stop, timeout=STOP_TIMEOUT)
        yield Progress(f"removing {name} ({old.id[:12]})")
        await asyncio.to_thread(old.remove)
    except Exception as exc:
        await asyncio.to_thread(_remove_quietly, client, new_id)
        raise _Failed(f"could not stop and remove {name}: {_engine_error(exc)}; the replacement was removed again "
                      f"(start {name} with `docker start {name}` if it is stopped)") from None
    done.append(f"removed old {name} ({old.id[:12]})")
    try:
        await asyncio.to_thread(client.api.rename, new_id, name)
    except Exception as exc:
        raise _Failed(f"{name} was removed but its replacement {tmp} could not be renamed: {_engine_error(exc)}; "
                      f"finish by hand: `docker rename {tmp} {name} && docker start {name}`") from None
    yield Progress(f"starting {name} ({new_id[:12]})")
    try:
        await asyncio.to_thread(client.api.start, new_id)
    except Exception as exc:
        tail = await asyncio.to_thread(_log_tail, client, new_id)
        raise _Failed(f"the new {name} ({new_id[:12]}) was created but does not start: {_engine_error(exc)}\n{tail}") from None
    done.append(f"recreated {name} as {new_id[:12]}")
    yield Progress(f"waiting for {name} to answer {ref['health_url']}")
    await _wait_healthy(ctx, plan, client, ref, new_id, timeout)
    yield Progress(f"{name} recreated ({new_id[:12]}) and answers /health")


def _recreate_warnings(replicas: Sequence[_Replica]) -> list[str]:
    warnings = []
    for r in replicas:
        anon = _anonymous_volumes(r.attrs)
        if anon:
            warnings.append(f"{r.container}: anonymous volumes at {', '.join(anon)} are not carried over "
                            f"(they are kept on the engine, detached)")
    return warnings


class RecreateContainer(_DockerAction):
    id: ClassVar[str] = "container.recreate"
    key: ClassVar[str] = "f"
    title: ClassVar[str] = "Force-recreate replica"
    help: ClassVar[str] = "Replace one container by a fresh one with the same configuration and number (runbook Incident 1)"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "replica"
    security_guarded: ClassVar[bool] = True

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _replica_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = _health_timeout(params)
        host = _docker_host(ctx.settings, target)
        _, replicas = await _replicas(ctx, host)
        r = _find(replicas, target)
        compose = f"{_compose_cli(host, ctx.settings.discovery.compose_project)} up -d --force-recreate --no-deps {_service_args(ctx.settings)}"
        warnings = [f"the runbook's `{compose}` recreates every replica of the service; this recreates {r.container} only",
                    *_recreate_warnings([r])]
        return Plan(
            action_id=self.id,
            title=f"Force-recreate {r.container}",
            target=target,
            danger=self.danger,
            steps=tuple(_recreate_steps(host, r, timeout)),
            params={"docker_host": host.name, "containers": [r.ref()], "health_timeout": timeout},
            warnings=tuple(warnings),
            # Between create and rename two containers claim the replica: stopping half-way
            # would leave the temporary one behind.
            cancellable=False,
        )

    async def _steps(self, ctx, plan, client, done):  # type: ignore[override]
        ref = plan.params["containers"][0]
        async for p in _recreate_one(ctx, plan, client, ref, done, plan.params["health_timeout"]):
            yield p
        yield Outcome("succeeded", f"{ref['container']} recreated with the same configuration and answers /health",
                      {"done": list(done)})


class RecreateService(_DockerAction):
    id: ClassVar[str] = "container.recreate_service"
    key: ClassVar[str] = "F"
    title: ClassVar[str] = "Force-recreate service (rolling)"
    help: ClassVar[str] = "docker compose up -d --force-recreate, one replica at a time, waiting for /health in between"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "service"
    security_guarded: ClassVar[bool] = True

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = _health_timeout(params)
        host = _docker_host(ctx.settings, target)
        _, replicas = await _replicas(ctx, host)
        if not replicas:
            raise ActionError(f"no replica containers of {target.name} on docker host {host.name}")
        ordered = await _health_order(ctx, replicas)
        steps = [s for r in ordered for s in _recreate_steps(host, r, timeout)]
        compose = f"{_compose_cli(host, ctx.settings.discovery.compose_project)} up -d --force-recreate --no-deps {_service_args(ctx.settings)}"
        warnings = [f"equivalent of `{compose}`, but one replica at a time so the others keep serving",
                    *_recreate_warnings(replicas)]
        if len(replicas) == 1:
            warnings.append("there is only one replica: the service is down while it is recreated")
        return Plan(
            action_id=self.id,
            title=f"Rolling force-recreate of {target.name} ({len(replicas)} replicas)",
            target=target,
            danger=self.danger,
            steps=tuple(steps),
            params={"docker_host": host.name, "containers": [r.ref() for r in ordered], "health_timeout": timeout},
            warnings=tuple(warnings),
            cancellable=True,  # only between replicas: each recreate runs to its end
        )

    async def _steps(self, ctx, plan, client, done):  # type: ignore[override]
        refs = plan.params["containers"]
        inner = _no_cancel(plan)
        for i, ref in enumerate(refs):
            self._check_cancel(ctx, plan, f"before recreating {ref['container']}")
            async for p in _recreate_one(ctx, inner, client, ref, done, plan.params["health_timeout"]):
                yield Progress(p.message, i / len(refs))
        yield Outcome("succeeded", f"recreated {len(refs)} replicas one by one; all answer /health", {"done": list(done)})


def _no_cancel(plan: Plan) -> Plan:
    import dataclasses

    return dataclasses.replace(plan, cancellable=False)


# --------------------------------------------------------------------------- scale


def _replicas_param(params: Mapping[str, Any]) -> int:
    raw = params.get("replicas")
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ActionError(f"replicas: a whole number from 1 to {MAX_REPLICAS} is needed, not {raw!r}")
    if not 1 <= raw <= MAX_REPLICAS:
        raise ActionError(f"replicas: {raw} is outside 1..{MAX_REPLICAS}")
    return raw


def _port_label(labels: Mapping[str, str]) -> tuple[str, int] | None:
    for key in PORT_LABELS:
        raw = labels.get(key)
        if isinstance(raw, str) and raw.isdigit():
            return key, int(raw)
    return None


def _published_ports(attrs: Mapping[str, Any]) -> list[str]:
    out = []
    for port, bindings in ((attrs.get("HostConfig") or {}).get("PortBindings") or {}).items():
        for b in bindings or ():
            if b and str(b.get("HostPort") or ""):
                out.append(f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}->{port}")
    return out


def _used_ports(replicas: Sequence[_Replica]) -> set[int]:
    used = set()
    for r in replicas:
        labels = (r.attrs.get("Config") or {}).get("Labels") or {}
        for key in (*PORT_LABELS, LABEL_CONTROL_PORT):
            raw = labels.get(key)
            if isinstance(raw, str) and raw.isdigit():
                used.add(int(raw))
    return used


def _free_port(avoid: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            avoid.add(port)
            return port


def _replace_flag(argv: Sequence[str], flag: str, value: str) -> tuple[list[str], bool]:
    out = list(argv)
    found = False
    for i, arg in enumerate(out):
        if arg == flag and i + 1 < len(out):
            out[i + 1] = value
            found = True
        elif arg.startswith(flag + "="):
            out[i] = f"{flag}={value}"
            found = True
    return out, found


def _drop_flag(argv: Sequence[str], flag: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = True
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return out


@dataclass(frozen=True)
class _NewReplica:
    number: int
    container: str
    port: int | None
    control_port: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "container": self.container, "port": self.port, "control_port": self.control_port}


def _template(replicas: Sequence[_Replica]) -> _Replica:
    # The newest running container reflects the service's current configuration best.
    running = [r for r in replicas if r.status == "running"] or list(replicas)
    return max(running, key=lambda r: (r.created, r.number or 0))


def _scale_body(
    template: Mapping[str, Any], new: _NewReplica, service: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Create body for replica `new`, copied from `template` with number and ports changed."""
    config = template.get("Config") or {}
    labels = dict(config.get("Labels") or {})
    labels[LABEL_NUMBER] = str(new.number)
    labels.pop(LABEL_REPLACE, None)
    cmd = list(config.get("Cmd") or [])
    env = list(config.get("Env") or [])
    healthcheck = dict(config.get("Healthcheck") or {}) or None
    label = _port_label(labels)
    if new.port is not None and label is not None:
        old_port = label[1]
        labels[label[0]] = str(new.port)
        cmd, _ = _replace_flag(cmd, "--port", str(new.port))
        env = [f"PORT={new.port}" if e == f"PORT={old_port}" else e for e in env]
        if healthcheck and healthcheck.get("Test"):
            healthcheck["Test"] = [
                re.sub(rf"(127\.0\.0\.1|localhost):{old_port}\b", rf"\g<1>:{new.port}", t) for t in healthcheck["Test"]
            ]
        if new.control_port is not None:
            labels[LABEL_CONTROL_PORT] = str(new.control_port)
            cmd, _ = _replace_flag(cmd, "--control-port", str(new.control_port))
    old_number = (config.get("Labels") or {}).get(LABEL_NUMBER)
    if old_number:
        cmd = [f"{service}-{new.number}" if a == f"{service}-{old_number}" else a for a in cmd]
    if LABEL_DRILL in labels:
        # The drill gives scheduled backups to one replica only: two would write the same files.
        cmd = _drop_flag(cmd, "--backup-interval")
    return _create_body(template, labels=labels, cmd=cmd, env=env, healthcheck=healthcheck,
                        new_name=new.container, keep_address=False)


class ScaleService(_DockerAction):
    id: ClassVar[str] = "container.scale"
    key: ClassVar[str] = "s"
    title: ClassVar[str] = "Scale service"
    help: ClassVar[str] = "docker compose up -d --scale prover=N: add or remove replicas (runbook Incident 3)"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "service"
    security_guarded: ClassVar[bool] = True
    param_help: ClassVar[Mapping[str, str]] = {"replicas": f"how many replicas to run (1..{MAX_REPLICAS})"}

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx) if ctx.settings.discovery.mode == "compose" else []

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        wanted = _replicas_param(params)
        timeout = _health_timeout(params)
        d = ctx.settings.discovery
        if d.mode != "compose":
            raise ActionError(
                f"scaling needs one compose service with numbered replicas (discovery mode 'compose'); mode "
                f"{d.mode!r} has none: the real deploy/docker-compose.yml declares prover-1 and prover-2 as two "
                f"services, each pinned to its own host port, so neither can have a second replica"
            )
        host = _docker_host(ctx.settings, target)
        _, replicas = await _replicas(ctx, host)
        if not replicas:
            raise ActionError(f"no containers of {d.compose_project}/{d.compose_service} on docker host {host.name}: "
                              f"nothing to copy the configuration from; start the service first")
        current = len(replicas)
        if wanted == current:
            raise ActionError(f"{target.name} already has {current} replicas")
        cli = _cli(host)
        compose = f"{_compose_cli(host, d.compose_project)} up -d --no-recreate --scale {d.compose_service}={wanted} {d.compose_service}"
        warnings = [f"compose equivalent: `{compose}`"]
        steps: list[PlanStep] = []
        params_out: dict[str, Any] = {"docker_host": host.name, "replicas": wanted, "health_timeout": timeout}
        if wanted > current:
            template = _template(replicas)
            published = _published_ports(template.attrs)
            if published:
                raise ActionError(
                    f"cannot scale {target.name} up: {template.container} publishes fixed host port(s) "
                    f"{', '.join(published)}, and a second container cannot bind the same host port. This is the "
                    f"compose file's limitation (each prover service pins a host port); remove the host port "
                    f"mapping or put the replicas behind nginx first. Scaling down still works."
                )
            labels = (template.attrs.get("Config") or {}).get("Labels") or {}
            host_net = (template.attrs.get("HostConfig") or {}).get("NetworkMode") == "host"
            label = _port_label(labels)
            if host_net and label is None:
                raise ActionError(
                    f"cannot scale {target.name} up: its containers use host networking and no x402console.port "
                    f"label says which port each listens on, so a new replica would collide on port "
                    f"{ctx.settings.prover.port}"
                )
            cmd = list((template.attrs.get("Config") or {}).get("Cmd") or [])
            if host_net and label and not _replace_flag(cmd, "--port", "0")[1]:
                raise ActionError(f"cannot scale {target.name} up: {template.container}'s command has no --port "
                                  f"argument to give a new replica its own port")
            numbers = next_numbers([r.number for r in replicas if r.number], wanted)
            avoid = _used_ports(replicas)
            news = []
            has_control = bool(labels.get(LABEL_CONTROL_PORT, "0").strip("0"))
            for n in numbers:
                port = _free_port(avoid) if host_net else None
                control = _free_port(avoid) if host_net and has_control else None
                news.append(_NewReplica(n, f"{d.compose_project}-{d.compose_service}-{n}", port, control))
            image = (template.attrs.get("Config") or {}).get("Image", "?")
            for new in news:
                where = f" listening on 127.0.0.1:{new.port}" if new.port else ""
                steps.append(PlanStep(
                    f"Create {new.container} (number {new.number}){where} with the configuration of {template.container}",
                    f"{cli} create --name {new.container} --label {LABEL_NUMBER}={new.number} "
                    f"<configuration of {template.container}> {image}"))
                steps.append(PlanStep(f"Start {new.container}", f"{cli} start {new.container}"))
            for new in news:
                url = f"http://127.0.0.1:{new.port}/health" if new.port else f"{new.container} /health"
                steps.append(PlanStep(f"Wait up to {timeout:g} s until {new.container} answers /health", f"curl -f {url}"))
            warnings.append("load balancer and Prometheus targets are not changed (runbook: 'Update load balancer "
                            "to distribute traffic')")
            stopped = [r.container for r in replicas if r.status != "running"]
            if stopped:
                warnings.append(f"{', '.join(stopped)} count toward the {wanted} but are not running")
            params_out.update(template=template.ref(), create=[n.as_dict() for n in news])
            title = f"Scale {target.name} from {current} to {wanted} replicas"
        else:
            newest = max(replicas, key=lambda r: r.created)
            order = scale_down_order(replicas, newest.config_hash or None)[: current - wanted]
            for r in order:
                why = " (obsolete configuration)" if newest.config_hash and r.config_hash != newest.config_hash else ""
                steps.append(PlanStep(f"Stop {r.container}{why}", f"{cli} stop {r.container}"))
                steps.append(PlanStep(f"Remove {r.container}", f"{cli} rm {r.container}"))
            kept = sorted((r for r in replicas if r not in order), key=lambda r: r.number or 0)
            warnings.append(f"keeps {', '.join(r.container for r in kept)}; requests in flight on the removed ones are cut off")
            params_out["remove"] = [r.ref() for r in order]
            title = f"Scale {target.name} from {current} down to {wanted} replicas"
        return Plan(
            action_id=self.id,
            title=title,
            target=target,
            danger=self.danger,
            steps=tuple(steps),
            params=params_out,
            warnings=tuple(warnings),
            cancellable=True,  # between containers; each one is whole
        )

    async def _steps(self, ctx, plan, client, done):  # type: ignore[override]
        if "create" in plan.params:
            async for item in self._scale_up(ctx, plan, client, done):
                yield item
        else:
            async for item in self._scale_down(ctx, plan, client, done):
                yield item

    async def _scale_up(self, ctx, plan, client, done):  # type: ignore[no-untyped-def]
        import docker.errors

        template_ref = plan.params["template"]
        template = await asyncio.to_thread(_container, client, template_ref)
        service = (template.attrs.get("Config") or {}).get("Labels", {}).get(LABEL_SERVICE, "")
        news = [_NewReplica(**n) for n in plan.params["create"]]
        avoid = _used_ports(await asyncio.to_thread(_list_replicas, client, ctx.settings, _docker_host(ctx.settings, plan.target)))
        started: list[tuple[_NewReplica, str]] = []
        total = len(news)
        for i, new in enumerate(news):
            self._check_cancel(ctx, plan, f"before creating {new.container}")
            try:
                await asyncio.to_thread(client.api.inspect_container, new.container)
                raise _Failed(f"a container named {new.container} already exists; {_done_summary(done)}")
            except docker.errors.NotFound:
                pass
            for attr in ("port", "control_port"):
                port = getattr(new, attr)
                if port is not None and (port in avoid or not _port_free(port)):
                    replacement = _free_port(avoid)
                    yield Progress(f"port {port} planned for {new.container} is busy now; using {replacement}")
                    new = _NewReplica(**{**new.as_dict(), attr: replacement})
            body, later = _scale_body(template.attrs, new, service)
            yield Progress(f"creating {new.container}", i / total)
            new_id = await asyncio.to_thread(_create, client, body, new.container, later)
            yield Progress(f"starting {new.container}", i / total)
            try:
                await asyncio.to_thread(client.api.start, new_id)
            except Exception as exc:
                tail = await asyncio.to_thread(_log_tail, client, new_id)
                raise _Failed(f"{new.container} was created but does not start: {_engine_error(exc)}\n{tail}\n"
                              f"{_done_summary(done)}") from None
            done.append(f"started {new.container}")
            started.append((new, new_id))
        for new, new_id in started:
            url = (f"http://127.0.0.1:{new.port}/health" if new.port
                   else await asyncio.to_thread(_health_url_of, ctx, client, new_id, plan))
            ref = {"container": new.container, "health_url": url}
            yield Progress(f"waiting for {new.container} to answer {url}")
            await _wait_healthy(ctx, plan, client, ref, new_id, plan.params["health_timeout"])
        names = ", ".join(n.container for n, _ in started)
        yield Outcome("succeeded", f"scaled to {plan.params['replicas']} replicas: {names} answer /health",
                      {"done": list(done), "created": [n.as_dict() for n, _ in started]})

    async def _scale_down(self, ctx, plan, client, done):  # type: ignore[no-untyped-def]
        import docker.errors

        refs = plan.params["remove"]
        for i, ref in enumerate(refs):
            self._check_cancel(ctx, plan, f"before removing {ref['container']}")
            try:
                container = await asyncio.to_thread(_container, client, ref)
            except _Failed:
                done.append(f"{ref['container']} was already gone")
                continue
            yield Progress(f"stopping {ref['container']}", i / len(refs))
            await asyncio.to_thread(container.stop, timeout=STOP_TIMEOUT)
            yield Progress(f"removing {ref['container']}", (i + 0.5) / len(refs))
            try:
                await asyncio.to_thread(container.remove)
            except docker.errors.NotFound:
                pass
            done.append(f"removed {ref['container']}")
        yield Outcome("succeeded", f"scaled down to {plan.params['replicas']} replicas; removed "
                      f"{', '.join(r['container'] for r in refs)}", {"done": list(done)})


def _health_url_of(ctx: ActionContext, client: Any, container_id: str, plan: Plan) -> str:
    host = _docker_host(ctx.settings, plan.target)
    for r in _list_replicas(client, ctx.settings, host):
        if r.id == container_id:
            return r.health_url
    raise _Failed(f"the new container {container_id[:12]} is not found among the replicas")


# --------------------------------------------------------------------------- stop / start


class StopService(_DockerAction):
    id: ClassVar[str] = "container.stop_service"
    key: ClassVar[str] = "X"
    title: ClassVar[str] = "Stop service (all replicas)"
    help: ClassVar[str] = "Stop every prover container at once, keeping them for evidence (runbook Incident 4: STOP SERVICE IMMEDIATELY)"
    danger: ClassVar[str] = "destructive"
    target_kind: ClassVar[str] = "service"
    security_guarded: ClassVar[bool] = True

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        host = _docker_host(ctx.settings, target)
        _, replicas = await _replicas(ctx, host)
        running = [r for r in replicas if r.status in ("running", "restarting", "paused")]
        if not running:
            raise ActionError(f"no replica of {target.name} is running on docker host {host.name}")
        names = " ".join(r.container for r in running)
        compose = _compose_cli(host, ctx.settings.discovery.compose_project)
        return Plan(
            action_id=self.id,
            title=f"Stop {target.name}: {len(running)} replicas",
            target=target,
            danger=self.danger,
            steps=(
                PlanStep(f"Stop every replica at once (SIGTERM, up to {STOP_TIMEOUT} s, then SIGKILL); "
                         f"the containers and their logs are kept", f"{_cli(host)} stop -t {STOP_TIMEOUT} {names}"),
            ),
            params={"docker_host": host.name, "containers": [r.ref() for r in running]},
            warnings=(
                f"the service stops answering completely until it is started again",
                f"the runbook's `docker-compose down` would also remove the containers and their logs; this is "
                f"`{compose} stop {_service_args(ctx.settings)}`, which keeps them as evidence",
            ),
            confirm_text=target.name,
            cancellable=False,  # a half-stopped service after a "stop immediately" helps nobody
        )

    async def _steps(self, ctx, plan, client, done):  # type: ignore[override]
        refs = plan.params["containers"]
        yield Progress(f"stopping {', '.join(r['container'] for r in refs)}")

        async def stop(ref: Mapping[str, Any]) -> str | None:
            try:
                container = await asyncio.to_thread(_container, client, ref)
                await asyncio.to_thread(container.stop, timeout=STOP_TIMEOUT)
                done.append(f"stopped {ref['container']}")
                return None
            except _Failed as exc:
                return str(exc)
            except Exception as exc:
                return f"{ref['container']}: {_engine_error(exc)}"

        problems = [p for p in await asyncio.gather(*(stop(r) for r in refs)) if p]
        if problems:
            yield Outcome("failed", "; ".join(problems) + f"; {_done_summary(done)}", {"done": list(done)})
            return
        yield Outcome("succeeded", f"stopped {len(refs)} replicas; containers kept for evidence (docker ps -a)",
                      {"done": list(done)})


class StartService(_DockerAction):
    id: ClassVar[str] = "container.start_service"
    key: ClassVar[str] = "u"
    title: ClassVar[str] = "Start service"
    help: ClassVar[str] = "docker start the stopped prover containers and wait until each answers /health"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "service"

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = _health_timeout(params)
        host = _docker_host(ctx.settings, target)
        _, replicas = await _replicas(ctx, host)
        compose = _compose_cli(host, ctx.settings.discovery.compose_project)
        if not replicas:
            raise ActionError(f"no containers of {target.name} exist on docker host {host.name} (removed, e.g. by "
                              f"`docker compose down`): create them with `{compose} up -d {_service_args(ctx.settings)}`")
        stopped = [r for r in replicas if r.status in ("exited", "created", "dead")]
        if not stopped:
            raise ActionError(f"every replica of {target.name} is already running")
        steps = [PlanStep(f"Start {', '.join(r.container for r in stopped)}",
                          f"{_cli(host)} start {' '.join(r.container for r in stopped)}")]
        steps += [PlanStep(f"Wait up to {timeout:g} s until {r.name} answers /health", f"curl -f {r.health_url}") for r in stopped]
        return Plan(
            action_id=self.id,
            title=f"Start {target.name}: {len(stopped)} replicas",
            target=target,
            danger=self.danger,
            steps=tuple(steps),
            params={"docker_host": host.name, "containers": [r.ref() for r in stopped], "health_timeout": timeout},
            warnings=(f"compose equivalent: `{compose} start {_service_args(ctx.settings)}`",),
            cancellable=True,
        )

    async def _steps(self, ctx, plan, client, done):  # type: ignore[override]
        refs = plan.params["containers"]
        ids = []
        for ref in refs:
            container = await asyncio.to_thread(_container, client, ref)
            yield Progress(f"starting {ref['container']}")
            await asyncio.to_thread(container.start)
            done.append(f"started {ref['container']}")
            ids.append(container.id)
        for ref, cid in zip(refs, ids):
            yield Progress(f"waiting for {ref['container']} to answer {ref['health_url']}")
            await _wait_healthy(ctx, plan, client, ref, cid, plan.params["health_timeout"])
        yield Outcome("succeeded", f"started {len(refs)} replicas; all answer /health", {"done": list(done)})


ACTIONS: tuple[type[Action], ...] = (
    RestartContainer,
    RestartService,
    RecreateContainer,
    RecreateService,
    ScaleService,
    StopService,
    StartService,
)


def actions() -> list[Action]:
    return [cls() for cls in ACTIONS]
