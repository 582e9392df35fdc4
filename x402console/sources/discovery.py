"""Which prover replicas exist: the [[replicas]] list, or containers found on a Docker engine.

Two naming worlds have to work (reference/x402-system.md section 5): the runbook's project
`x402` with one service `prover` scaled to containers x402-prover-1, -2 ... ("compose" mode),
and the real compose file's project (often `deploy`) with two services `prover-1`, `prover-2`
giving deploy-prover-1-1 and deploy-prover-2-1 ("services" mode). "pattern" mode matches
container names with globs for deployments that use neither labelling.

The selection logic is pure: it works on container attribute dicts, either the full
`docker inspect` shape (Name, Config.Labels, HostConfig, NetworkSettings.Ports) or the sparse
list shape (Names, Labels, Ports as a list), so tests need no engine. `discover_containers` is
the only function here that talks to Docker.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from x402console.settings.model import DockerHost, Replica, Settings
from x402console.sources.models import ReplicaIdentity

__all__ = [
    "LABEL_PROJECT",
    "LABEL_SERVICE",
    "LABEL_NUMBER",
    "LABEL_ONEOFF",
    "PORT_LABELS",
    "DiscoveryError",
    "discover_static",
    "discover_containers",
    "select_replicas",
    "container_filters",
    "event_filters",
    "EVENT_ACTIONS",
    "matches_discovery",
    "host_address",
    "container_name",
    "container_labels",
]

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_ONEOFF = "com.docker.compose.oneoff"
# A container may say which port its prover listens on (host networking cannot map ports, so
# each replica needs its own). The drill writes the second form.
PORT_LABELS = ("x402console.port", "x402console.drill.port")

_LOCAL_ADDRESS = "127.0.0.1"
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


class DiscoveryError(RuntimeError):
    """Listing containers failed; the message says on which host and why."""


# --------------------------------------------------------------------------- static replicas


def discover_static(settings: Settings) -> list[ReplicaIdentity]:
    """The [[replicas]] entries as identities; a pid or log file makes it a local process."""
    out = []
    for r in settings.replicas:
        out.append(
            ReplicaIdentity(
                name=r.name,
                kind="process" if (r.pid_file or r.log_file) else "url",
                health_url=r.health_url,
                metrics_url=r.metrics_url,
                docker_host=r.docker_host,
                log_file=str(r.log_file) if r.log_file else None,
                control_url=r.control_url or None,
            )
        )
    return out


# --------------------------------------------------------------------------- attrs readers


def container_name(attrs: Mapping[str, Any]) -> str:
    name = attrs.get("Name")
    if not isinstance(name, str) or not name:
        names = attrs.get("Names")
        name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else ""
    return name.lstrip("/")


def container_labels(attrs: Mapping[str, Any]) -> Mapping[str, str]:
    config = attrs.get("Config")
    labels = config.get("Labels") if isinstance(config, Mapping) else None
    if labels is None:
        labels = attrs.get("Labels")
    return labels if isinstance(labels, Mapping) else {}


def _state(attrs: Mapping[str, Any]) -> str:
    state = attrs.get("State")
    if isinstance(state, Mapping):  # inspect shape
        status = state.get("Status")
    else:  # list shape: "State": "running"
        status = state
    return status if isinstance(status, str) else "unknown"


def _created(attrs: Mapping[str, Any]) -> str:
    created = attrs.get("Created")
    # inspect gives RFC 3339 text, list an epoch int; only compared within one listing
    return f"{created:020d}" if isinstance(created, int) else str(created or "")


def _number(labels: Mapping[str, str]) -> int | None:
    raw = labels.get(LABEL_NUMBER)
    if not isinstance(raw, str) or not raw.strip().isdigit():
        return None
    number = int(raw)
    return number if number >= 1 else None


def _oneoff(labels: Mapping[str, str]) -> bool:
    return str(labels.get(LABEL_ONEOFF, "False")).lower() == "true"


def _trailing_number(name: str) -> int | None:
    found = re.search(r"[-_](\d+)$", name)
    return int(found.group(1)) if found else None


# --------------------------------------------------------------------------- addresses


def host_address(url: str) -> str:
    """The address replicas on this Docker host answer on: 127.0.0.1 for a local socket,
    the host part of tcp://, ssh:// or http(s):// URLs."""
    parts = urlsplit(url)
    if parts.scheme in ("tcp", "ssh", "http", "https") and parts.hostname:
        return parts.hostname
    return _LOCAL_ADDRESS


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _label_port(labels: Mapping[str, str]) -> int | None:
    for key in PORT_LABELS:
        raw = labels.get(key)
        if isinstance(raw, str) and raw.strip().isdigit() and 0 < int(raw) < 65536:
            return int(raw)
    return None


def _network_mode(attrs: Mapping[str, Any]) -> str:
    host_config = attrs.get("HostConfig")
    mode = host_config.get("NetworkMode") if isinstance(host_config, Mapping) else None
    return mode if isinstance(mode, str) else ""


def _published(attrs: Mapping[str, Any], port: int) -> tuple[str, int] | None:
    """(host ip, host port) where container port `port`/tcp is published, IPv4 first."""
    bindings: list[tuple[str, int]] = []
    settings = attrs.get("NetworkSettings")
    ports = settings.get("Ports") if isinstance(settings, Mapping) else None
    if isinstance(ports, Mapping):  # inspect shape
        for entry in ports.get(f"{port}/tcp") or ():
            if isinstance(entry, Mapping) and str(entry.get("HostPort", "")).isdigit():
                bindings.append((str(entry.get("HostIp") or ""), int(entry["HostPort"])))
    listed = attrs.get("Ports")
    if isinstance(listed, list):  # list shape
        for entry in listed:
            if (
                isinstance(entry, Mapping)
                and entry.get("PrivatePort") == port
                and entry.get("Type", "tcp") == "tcp"
                and isinstance(entry.get("PublicPort"), int)
            ):
                bindings.append((str(entry.get("IP") or ""), entry["PublicPort"]))
    if not bindings:
        return None
    bindings.sort(key=lambda b: ":" in b[0])  # IPv4 (and wildcard "") before IPv6
    return bindings[0]


def _container_ip(attrs: Mapping[str, Any]) -> str | None:
    settings = attrs.get("NetworkSettings")
    if not isinstance(settings, Mapping):
        return None
    if isinstance(settings.get("IPAddress"), str) and settings["IPAddress"]:
        return settings["IPAddress"]
    networks = settings.get("Networks")
    if isinstance(networks, Mapping):
        for net in networks.values():
            if isinstance(net, Mapping) and isinstance(net.get("IPAddress"), str) and net["IPAddress"]:
                return net["IPAddress"]
    return None


def _endpoint(attrs: Mapping[str, Any], settings: Settings, host: DockerHost) -> tuple[str, int]:
    """(address, port) the console reaches this container's prover on."""
    labels = container_labels(attrs)
    address = host_address(host.url)
    inner_port = _label_port(labels) or settings.prover.port
    if _network_mode(attrs) == "host":
        return address, inner_port
    published = _published(attrs, inner_port)
    if published is not None:
        bound_ip, host_port = published
        # A port bound to one address is reachable there; on a remote engine a loopback binding
        # only answers on that machine, so the engine's address is the best guess.
        if bound_ip not in _WILDCARDS and (address == _LOCAL_ADDRESS or not bound_ip.startswith("127.")):
            return bound_ip.strip("[]"), host_port
        return address, host_port
    # Not published: a bridge network address is routable from the engine's own machine only.
    ip = _container_ip(attrs)
    if ip and address == _LOCAL_ADDRESS:
        return ip, inner_port
    return address, inner_port


# --------------------------------------------------------------------------- selection


def matches_discovery(attrs: Mapping[str, Any], settings: Settings) -> bool:
    """Whether a container (attrs, or an event's Actor.Attributes wrapped as
    {"Name": name, "Labels": attributes}) belongs to the configured replicas."""
    d = settings.discovery
    labels = container_labels(attrs)
    if d.mode == "compose":
        ok = labels.get(LABEL_PROJECT) == d.compose_project and labels.get(LABEL_SERVICE) == d.compose_service
    elif d.mode == "services":
        ok = labels.get(LABEL_PROJECT) == d.compose_project and labels.get(LABEL_SERVICE) in d.compose_services
    elif d.mode == "pattern":
        name = container_name(attrs)
        ok = bool(name) and any(fnmatch.fnmatchcase(name, p) for p in d.name_patterns)
    else:
        return False
    if ok and d.mode != "pattern" and _oneoff(labels) and not d.include_oneoff:
        return False
    return ok


def _static_by_name(settings: Settings, host: DockerHost) -> dict[str, Replica]:
    return {r.name: r for r in settings.replicas if r.docker_host in (None, host.name)}


def select_replicas(
    containers: Iterable[Mapping[str, Any]], settings: Settings, host: DockerHost
) -> list[ReplicaIdentity]:
    """The replicas among `containers` (attrs dicts), named and ordered for display.

    compose: `<service>-<number>` (prover-1), by container number; services: the service name
    (prover-1; a service scaled beyond one adds `-<number>` from the second container on), in
    the configured order; pattern: the container name, in natural order. Containers without a
    valid number label are skipped in the compose modes, as Compose itself skips them; one-off
    (`compose run`) containers only count with include_oneoff. When two containers claim one
    replica (a recreate in progress: Compose makes the new one under a temporary name), the
    running one wins, then the one with the canonical name, then the newest.
    """
    d = settings.discovery
    candidates: dict[str, list[tuple[tuple[Any, ...], ReplicaIdentity]]] = {}
    order: dict[str, tuple[Any, ...]] = {}
    for attrs in containers:
        if not isinstance(attrs, Mapping) or not matches_discovery(attrs, settings):
            continue
        labels = container_labels(attrs)
        name = container_name(attrs)
        number = _number(labels)
        service = labels.get(LABEL_SERVICE, "")
        if d.mode == "compose":
            if number is None:
                continue
            display = f"{service}-{number}"
            sort_key: tuple[Any, ...] = (number,)
            canonical = f"{d.compose_project}-{service}-{number}"
        elif d.mode == "services":
            if number is None:
                continue
            display = service if number == 1 else f"{service}-{number}"
            sort_key = (d.compose_services.index(service), number)
            canonical = f"{d.compose_project}-{service}-{number}"
        else:
            display = name
            sort_key = tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
            canonical = name
            number = _trailing_number(name)
        address, port = _endpoint(attrs, settings, host)
        base = f"http://{_url_host(address)}:{port}"
        cid = attrs.get("Id")
        identity = ReplicaIdentity(
            name=display,
            kind="container",
            health_url=base + settings.prover.health_path,
            metrics_url=base + settings.prover.metrics_path,
            container_id=cid if isinstance(cid, str) else None,
            docker_host=host.name,
            number=number,
        )
        preference = (_state(attrs) == "running", name == canonical, _created(attrs))
        candidates.setdefault(display, []).append((preference, identity))
        order[display] = sort_key

    static = _static_by_name(settings, host)
    chosen: list[ReplicaIdentity] = []
    for display in sorted(candidates, key=lambda n: order[n]):
        identity = max(candidates[display], key=lambda c: c[0])[1]
        extra = static.get(display)
        if extra is not None:
            # Explicit [[replicas]] entries for the same name say more than a guess from labels
            # (the drill lists each container's real URLs and its fault-control endpoint).
            identity = replace(
                identity,
                health_url=extra.health_url,
                metrics_url=extra.metrics_url,
                control_url=extra.control_url or None,
                log_file=str(extra.log_file) if extra.log_file else None,
            )
        chosen.append(identity)
    return chosen


def container_filters(settings: Settings) -> dict[str, list[str]]:
    """Engine-side list filters that narrow the listing before select_replicas decides."""
    d = settings.discovery
    if d.mode == "compose":
        return {"label": [f"{LABEL_PROJECT}={d.compose_project}", f"{LABEL_SERVICE}={d.compose_service}"]}
    if d.mode == "services":
        return {"label": [f"{LABEL_PROJECT}={d.compose_project}"]}
    return {}


EVENT_ACTIONS = (
    "create", "start", "restart", "die", "stop", "kill", "oom", "destroy", "rename",
    "pause", "unpause", "health_status",
)


def event_filters(settings: Settings) -> dict[str, Any]:
    """Filters for the engine's event stream: container lifecycle actions of our replicas only.

    exec_* events are left out: a healthcheck probe makes three of them every interval. The
    engine matches "health_status" against "health_status: healthy" by prefix (moby#25798).
    """
    filters: dict[str, Any] = {"type": ["container"], "event": list(EVENT_ACTIONS)}
    filters.update(container_filters(settings))
    return filters


def discover_containers(client: Any, settings: Settings, host_name: str | DockerHost) -> list[ReplicaIdentity]:
    """List the engine's containers (stopped ones too) and select the replicas among them.

    `host_name` names a [[docker.hosts]] entry, or is the entry itself. Raises DiscoveryError
    when the engine cannot be asked; an empty list means none match.
    """
    if isinstance(host_name, DockerHost):
        host = host_name
    else:
        found = next((h for h in settings.docker_hosts if h.name == host_name), None)
        if found is None:
            raise DiscoveryError(f"no [[docker.hosts]] entry named {host_name!r}")
        host = found
    if settings.discovery.mode == "static":
        return []
    try:
        import docker.errors

        try:
            containers = client.containers.list(all=True, filters=container_filters(settings), ignore_removed=True)
        except docker.errors.DockerException as exc:
            raise DiscoveryError(f"docker host {host.name}: cannot list containers: {exc}") from exc
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DiscoveryError(f"docker SDK not importable: {exc}") from exc
    return select_replicas((c.attrs for c in containers), settings, host)
