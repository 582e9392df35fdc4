"""Simulated prover replicas as Docker containers that look like `docker compose` made them.

The runbook speaks of project `x402`, service `prover`, containers `x402-prover-1`... The
console finds containers by Compose's labels, so the drill creates them with exactly those
labels and names (docker/compose pkg/api/labels.go, pkg/compose/convergence.go), plus its own
`x402console.drill=<id>` so a later run can remove what a crashed one left behind without ever
touching a real deployment that happens to share the host.

Containers use host networking and listen on 127.0.0.1 only; each replica has its own port
because host networking cannot publish the same container port twice. The image is built
locally (see image.py): nothing is ever pulled.

The scale helpers at the end are pure: they encode Compose's numbering and scale-down order
for the console's scale action.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from x402console.drill.image import (
    HEALTH_INTERVAL_S,
    HEALTH_RETRIES,
    HEALTH_START_PERIOD_S,
    HEALTH_TIMEOUT_S,
    IMAGE_TAG,
    SIM_MODULE,
    ensure_image,
    health_probe,
    host_mounts,
    python_executable,
)
from x402console.drill.processes import is_same_process, proc_start_time

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_CONFIG_HASH = "com.docker.compose.config-hash"
LABEL_VERSION = "com.docker.compose.version"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_IMAGE = "com.docker.compose.image"
LABEL_DRILL = "x402console.drill"
LABEL_STATE_DIR = "x402console.drill.state-dir"
LABEL_PORT = "x402console.drill.port"
LABEL_CONTROL_PORT = "x402console.drill.control-port"
# The drill process that made the container, so a clean-up can tell a crashed drill's leftovers
# from a live drill's replicas (PID alone is not enough: PIDs are reused, and reset on reboot).
LABEL_OWNER_PID = "x402console.drill.owner-pid"
LABEL_OWNER_START = "x402console.drill.owner-start"
LABEL_OWNER_BOOT = "x402console.drill.owner-boot"

# The Compose release whose labelling is copied here; consumers only read it for display.
COMPOSE_VERSION = "2.24.0"
DEFAULT_MEMORY_LIMIT = "512m"
CONTROL_TOKEN_ENV = "X402_SIM_CONTROL_TOKEN"
LOG_MAX_SIZE = "10m"  # json-file rotation keeps a long drill's logs bounded on disk
LOG_MAX_FILES = "3"

_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # compose's project name rule
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # must also make a valid container name
_DRILL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMORY_RE = re.compile(r"^\s*(\d+)\s*([bkmg]?)(i?b)?\s*$", re.IGNORECASE)
_MIN_MEMORY = 6 * 1024 * 1024  # the Engine refuses limits below 6 MB


class DrillContainerError(RuntimeError):
    """A drill container could not be created, found or reached; the message says why."""


class ReplicasNotHealthy(DrillContainerError, TimeoutError):
    """wait_healthy gave up; the message names each replica and its last log lines."""


def parse_memory(value: int | str) -> int:
    """Bytes from 536870912, "512m", "512MiB", "4G" (binary units, like docker's --memory)."""
    if isinstance(value, bool):
        raise ValueError(f"memory limit must be bytes or a size like '512m', not {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _MEMORY_RE.match(value)
        if not match:
            raise ValueError(f"memory limit {value!r}: expected bytes or a size like '512m' or '4g'")
        size = int(match.group(1)) * 1024 ** "bkmg".index((match.group(2) or "b").lower())
    else:
        raise ValueError(f"memory limit must be bytes or a size like '512m', not {type(value).__name__}")
    if size < _MIN_MEMORY:
        raise ValueError(f"memory limit {value!r} is below Docker's minimum of 6 MiB")
    return size


@dataclass(frozen=True)
class ReplicaSpec:
    """One replica to start. `env` and `sim_args` are shared service config; the rest is placement."""

    number: int
    port: int
    control_port: int
    control_token: str
    state_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    sim_args: Sequence[str] = ()
    memory_limit: int | str = DEFAULT_MEMORY_LIMIT

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, int) or self.number < 1:
            raise ValueError(f"replica number must be an integer >= 1, not {self.number!r}")
        for name in ("port", "control_port"):
            value = getattr(self, name)
            low = 1 if name == "port" else 0
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
                raise ValueError(f"replica {self.number}: {name} must be an integer {low}..65535, not {value!r}")
        if self.control_port and not (isinstance(self.control_token, str) and self.control_token):
            raise ValueError(f"replica {self.number}: a control port needs a non-empty control token")
        if self.control_port == self.port:
            raise ValueError(f"replica {self.number}: control port and port are both {self.port}")
        try:
            state_dir = Path(self.state_dir)
        except TypeError:
            raise ValueError(f"replica {self.number}: state_dir must be a path, not {self.state_dir!r}") from None
        # Bind-mounted at the same path, so it must mean the same thing on both sides.
        object.__setattr__(self, "state_dir", state_dir.expanduser().resolve())
        if not isinstance(self.env, Mapping):
            raise ValueError(f"replica {self.number}: env must be a mapping of names to strings")
        env: dict[str, str] = {}
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
                raise ValueError(f"replica {self.number}: bad environment variable name {key!r}")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError(f"replica {self.number}: env {key} must be a string or number, not {value!r}")
            env[key] = str(value)
        object.__setattr__(self, "env", env)
        if isinstance(self.sim_args, str) or not all(isinstance(a, str) for a in self.sim_args):
            raise ValueError(f"replica {self.number}: sim_args must be a list of strings")
        object.__setattr__(self, "sim_args", tuple(self.sim_args))
        try:
            parse_memory(self.memory_limit)
        except ValueError as exc:
            raise ValueError(f"replica {self.number}: {exc}") from None

    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory_limit)


@dataclass(frozen=True)
class ReplicaInfo:
    """A replica container as the Engine reports it now."""

    name: str
    id: str
    number: int
    config_hash: str
    status: str  # created | running | paused | restarting | exited | dead
    health: str | None  # starting | healthy | unhealthy, None without a healthcheck
    exit_code: int | None
    restart_count: int
    port: int | None
    control_port: int | None
    state_dir: str | None
    oneoff: bool = False


def config_hash(spec: ReplicaSpec, image: str = IMAGE_TAG, health_interval: float = HEALTH_INTERVAL_S) -> str:
    """sha256 of the service-level config, the way Compose hashes a service.

    Compose gives every replica of a service the same hash and changes it when the service
    config changes, which is what marks containers obsolete. Placement (number, ports, state
    dir, token) therefore stays out; env, arguments, image, limits and healthcheck go in.
    """
    config = {
        "image": image,
        "module": SIM_MODULE,
        "environment": dict(sorted(spec.env.items())),
        "command": list(spec.sim_args),
        "mem_limit": spec.memory_bytes,
        "healthcheck": {"interval": health_interval, "timeout": HEALTH_TIMEOUT_S, "retries": HEALTH_RETRIES},
        "network_mode": "host",
        "restart": "no",
    }
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    try:
        return int(labels[key])
    except (KeyError, TypeError, ValueError):
        return None


def _info(container: Any) -> ReplicaInfo | None:
    """ReplicaInfo from an inspected container; None when its number label is missing or invalid."""
    attrs = container.attrs
    labels = attrs.get("Config", {}).get("Labels") or {}
    number = _int_label(labels, LABEL_NUMBER)
    if number is None or number < 1:
        return None  # compose warns about and skips these too
    state = attrs.get("State", {})
    health = (state.get("Health") or {}).get("Status")
    return ReplicaInfo(
        name=container.name,
        id=container.id,
        number=number,
        config_hash=labels.get(LABEL_CONFIG_HASH, ""),
        status=state.get("Status", "unknown"),
        health=health,
        exit_code=state.get("ExitCode") if state.get("Status") in ("exited", "dead") else None,
        restart_count=int(attrs.get("RestartCount") or 0),
        port=_int_label(labels, LABEL_PORT),
        control_port=_int_label(labels, LABEL_CONTROL_PORT) or None,
        state_dir=labels.get(LABEL_STATE_DIR),
        oneoff=labels.get(LABEL_ONEOFF, "False") == "True",
    )


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _owner_labels() -> dict[str, str]:
    pid = os.getpid()
    return {
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: str(proc_start_time(pid) or ""),
        LABEL_OWNER_BOOT: _boot_id(),
    }


def owner_alive(labels: Mapping[str, str]) -> bool:
    """Whether the drill process that created a container (per its labels) still runs."""
    pid = _int_label(labels, LABEL_OWNER_PID)
    start = _int_label(labels, LABEL_OWNER_START)
    boot = labels.get(LABEL_OWNER_BOOT, "")
    if pid is None or start is None or not boot or boot != _boot_id():
        return False
    return is_same_process(pid, start)


def _docker_errors() -> Any:
    import docker.errors

    return docker.errors


class DockerReplicas:
    """The prover replicas of one drill, as compose-labelled containers.

    Every call filters on project, service and this drill's id, so nothing outside the drill is
    ever listed, stopped or removed.
    """

    def __init__(
        self,
        client: Any,
        project: str = "x402",
        service: str = "prover",
        drill_id: str | None = None,
        *,
        image_tag: str = IMAGE_TAG,
        health_interval: float = HEALTH_INTERVAL_S,
        working_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(project, str) or not _PROJECT_RE.match(project):
            raise ValueError(f"compose project name {project!r}: lowercase letters, digits, '-' and '_' only")
        if not isinstance(service, str) or not _SERVICE_RE.match(service):
            raise ValueError(f"service name {service!r}: letters, digits, '.', '-' and '_' only")
        drill_id = drill_id if drill_id is not None else uuid.uuid4().hex[:12]
        if not isinstance(drill_id, str) or not _DRILL_ID_RE.match(drill_id):
            raise ValueError(f"drill id {drill_id!r}: 1-64 letters, digits, '.', ':', '-', '_'")
        if isinstance(health_interval, bool) or not isinstance(health_interval, (int, float)) or not 0.1 <= health_interval <= 3600:
            raise ValueError(f"health interval {health_interval!r}: seconds between 0.1 and 3600")
        self.client = client
        self.project = project
        self.service = service
        self.drill_id = drill_id
        self.image_tag = image_tag
        self.health_interval = float(health_interval)
        self.working_dir = str(Path(working_dir or os.getcwd()).resolve())

    # -- naming and configuration -------------------------------------------------------------

    def name_for(self, number: int) -> str:
        return f"{self.project}-{self.service}-{number}"  # Compose v2: api.Separator is "-"

    def config_hash(self, spec: ReplicaSpec) -> str:
        return config_hash(spec, self.image_tag, self.health_interval)

    def command_for(self, spec: ReplicaSpec) -> list[str]:
        argv = [
            python_executable(), "-m", SIM_MODULE,
            "--host", "127.0.0.1", "--port", str(spec.port),
            "--name", f"{self.service}-{spec.number}",
            "--state-dir", str(spec.state_dir),
        ]
        if spec.control_port:
            argv += ["--control-port", str(spec.control_port)]  # the token goes in env, not argv
        return argv + list(spec.sim_args)

    def labels_for(self, spec: ReplicaSpec, image_id: str) -> dict[str, str]:
        return {
            LABEL_PROJECT: self.project,
            LABEL_SERVICE: self.service,
            LABEL_NUMBER: str(spec.number),
            LABEL_ONEOFF: "False",
            LABEL_CONFIG_HASH: self.config_hash(spec),
            LABEL_VERSION: COMPOSE_VERSION,
            LABEL_WORKING_DIR: self.working_dir,
            LABEL_IMAGE: image_id,
            LABEL_DRILL: self.drill_id,
            LABEL_STATE_DIR: str(spec.state_dir),
            LABEL_PORT: str(spec.port),
            LABEL_CONTROL_PORT: str(spec.control_port),
            **_owner_labels(),
        }

    def _filters(self) -> dict[str, list[str]]:
        return {
            "label": [
                f"{LABEL_PROJECT}={self.project}",
                f"{LABEL_SERVICE}={self.service}",
                f"{LABEL_DRILL}={self.drill_id}",
            ]
        }

    def _containers(self) -> list[Any]:
        errors = _docker_errors()
        try:
            return self.client.containers.list(all=True, filters=self._filters(), ignore_removed=True)
        except errors.APIError as exc:
            raise DrillContainerError(f"cannot list containers: {exc}") from exc

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, specs: Sequence[ReplicaSpec]) -> list[ReplicaInfo]:
        """Create and start one container per spec; on any failure remove the ones this call made."""
        specs = list(specs)
        _check_distinct(specs)
        errors = _docker_errors()
        for spec in specs:
            name = self.name_for(spec.number)
            try:
                existing = self.client.containers.get(name)
            except errors.NotFound:
                continue
            except errors.APIError as exc:
                raise DrillContainerError(f"cannot inspect {name}: {exc}") from exc
            owner = (existing.labels or {}).get(LABEL_DRILL)
            hint = (
                f"left by drill {owner}; remove it with cleanup_leftovers()" if owner
                else "not a drill container; refusing to touch it"
            )
            raise DrillContainerError(f"container {name} already exists ({hint})")
        image_id = ensure_image(self.client, self.image_tag)
        mounts = [m.as_docker() for m in host_mounts()]
        created: list[Any] = []
        try:
            for spec in specs:
                spec.state_dir.mkdir(parents=True, exist_ok=True)
                container = self._create(spec, image_id, mounts)
                created.append(container)
                container.start()
        except (errors.APIError, OSError) as exc:
            for container in created:
                try:
                    container.remove(force=True)
                except errors.APIError:
                    pass
            raise DrillContainerError(f"starting replica failed: {exc}") from exc
        numbers = {s.number for s in specs}
        return [r for r in self.list() if r.number in numbers]

    def _create(self, spec: ReplicaSpec, image_id: str, base_mounts: list[Any]) -> Any:
        from docker.types import LogConfig, Mount

        env = {**spec.env}
        if spec.control_port:
            env[CONTROL_TOKEN_ENV] = spec.control_token
        mounts = [*base_mounts, Mount(target=str(spec.state_dir), source=str(spec.state_dir), type="bind")]
        return self.client.containers.create(
            image=self.image_tag,
            command=self.command_for(spec),
            name=self.name_for(spec.number),
            labels=self.labels_for(spec, image_id),
            network_mode="host",
            # Compose's file says unless-stopped, but a drill's service_down fault must stay down
            # until the trainee acts: an engine restart would "fix" the incident for them.
            restart_policy={"Name": "no"},
            mem_limit=spec.memory_bytes,  # a real limit, so memory % in stats means something
            environment=env,
            mounts=mounts,
            working_dir=str(spec.state_dir),
            # The host user's ids: files in the state dir stay theirs, and the bind-mounted
            # Python is readable by the one who installed it.
            user=f"{os.getuid()}:{os.getgid()}",
            # docker-init as PID 1 forwards SIGTERM and reaps; Python as PID 1 would ignore an
            # unhandled SIGTERM and every stop would wait for the kill timeout.
            init=True,
            healthcheck={
                "test": health_probe(spec.port, HEALTH_TIMEOUT_S),
                "interval": int(self.health_interval * 1e9),
                "timeout": int(HEALTH_TIMEOUT_S * 1e9),  # probes never overlap, so a short interval is fine
                "retries": HEALTH_RETRIES,
                "start_period": int(HEALTH_START_PERIOD_S * 1e9),
            },
            log_config=LogConfig(type="json-file", config={"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILES}),
            stop_signal="SIGTERM",
        )

    def list(self) -> list[ReplicaInfo]:
        """This drill's replicas by container number; one-offs and unnumbered containers skipped."""
        infos = [info for c in self._containers() if (info := _info(c)) is not None and not info.oneoff]
        return sorted(infos, key=lambda r: r.number)

    def stop_all(self, timeout: float = 10) -> list[str]:
        """Stop every running container of this drill (in parallel); returns their names."""
        errors = _docker_errors()
        running = [c for c in self._containers() if c.status in ("running", "restarting", "paused")]

        def stop(container: Any) -> None:
            try:
                container.stop(timeout=max(0, math.ceil(timeout)))
            except errors.NotFound:
                pass

        if running:
            with ThreadPoolExecutor(max_workers=min(8, len(running))) as pool:
                list(pool.map(stop, running))
        return [c.name for c in running]

    def remove_all(self) -> list[str]:
        """Remove every container of this drill, running or not; returns their names."""
        return _remove(self._containers())

    def wait_healthy(self, timeout: float = 30.0, *, docker_health: bool = False) -> list[ReplicaInfo]:
        """Wait until every replica answers GET /health on 127.0.0.1:<port>.

        A 429 counts as an answer: as coded, the prover's limiter covers /health, and a limited
        answer still proves the server is up. With docker_health the Engine's healthcheck must
        also report healthy (it first probes one interval after start). Fails at once when a
        container has exited, with its last log lines.
        """
        import httpx

        deadline = time.monotonic() + timeout
        answered: set[int] = set()
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while True:
                replicas = self.list()
                if not replicas:
                    raise DrillContainerError(f"no replicas of {self.project}/{self.service} in drill {self.drill_id}")
                waiting = []
                for r in replicas:
                    if r.status in ("exited", "dead"):
                        raise DrillContainerError(
                            f"{r.name} exited with code {r.exit_code}:\n{self.log_tail(r.name)}"
                        )
                    if r.number not in answered and r.port is not None:
                        try:
                            if http.get(f"http://127.0.0.1:{r.port}/health").status_code in (200, 429):
                                answered.add(r.number)
                        except httpx.HTTPError:
                            pass
                    if r.number not in answered or (docker_health and r.health != "healthy"):
                        waiting.append(r)
                if not waiting:
                    return replicas
                if time.monotonic() >= deadline:
                    detail = "\n".join(
                        f"{r.name} (port {r.port}, {r.status}, health {r.health}):\n{self.log_tail(r.name)}"
                        for r in waiting
                    )
                    raise ReplicasNotHealthy(f"not healthy after {timeout:g}s:\n{detail}")
                time.sleep(0.2)

    def log_tail(self, name: str, lines: int = 10) -> str:
        errors = _docker_errors()
        try:
            raw = self.client.containers.get(name).logs(tail=lines)
        except errors.APIError as exc:
            return f"  (no logs: {exc})"
        return "\n".join("  " + line for line in raw.decode(errors="replace").splitlines()) or "  (no output)"


def _check_distinct(specs: Sequence[ReplicaSpec]) -> None:
    seen_numbers: set[int] = set()
    seen_ports: dict[int, int] = {}
    for spec in specs:
        if not isinstance(spec, ReplicaSpec):
            raise ValueError(f"expected ReplicaSpec, got {type(spec).__name__}")
        if spec.number in seen_numbers:
            raise ValueError(f"replica number {spec.number} given twice")
        seen_numbers.add(spec.number)
        for port in (spec.port, spec.control_port):
            if port and port in seen_ports:
                raise ValueError(f"port {port} used by replicas {seen_ports[port]} and {spec.number}")
            if port:
                seen_ports[port] = spec.number


def _name(container: Any) -> str:
    # Sparse list results carry "Names": ["/x402-prover-1"] instead of "Name".
    if container.name:
        return container.name
    names = container.attrs.get("Names") or [container.short_id]
    return names[0].lstrip("/")


def _remove(containers: Iterable[Any]) -> list[str]:
    errors = _docker_errors()
    removed = []
    for container in containers:
        name = _name(container)
        try:
            container.remove(force=True)
            removed.append(name)
        except errors.NotFound:
            pass
        except errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise DrillContainerError(f"cannot remove {name}: {exc}") from exc
    return removed


def cleanup_leftovers(client: Any, drill_id: str | None = None, *, orphans_only: bool = False) -> list[str]:
    """Remove containers a crashed drill left: those of `drill_id`, or of any drill when None.

    Only containers carrying the x402console.drill label are touched, never a real deployment.
    With orphans_only, a container whose creating drill process still runs is kept: a drill
    starting up should not take down another one that is running on the same engine.
    """
    errors = _docker_errors()
    label = LABEL_DRILL if drill_id is None else f"{LABEL_DRILL}={drill_id}"
    try:
        containers = client.containers.list(all=True, filters={"label": label}, sparse=True)
    except errors.APIError as exc:
        raise DrillContainerError(f"cannot list containers: {exc}") from exc
    if orphans_only:
        containers = [c for c in containers if not owner_alive(c.attrs.get("Labels") or {})]
    return _remove(containers)


# -- compose scale semantics (pure) --------------------------------------------------------------


class _Numbered(Protocol):
    @property
    def number(self) -> int: ...

    @property
    def config_hash(self) -> str: ...


def next_numbers(existing_numbers: Iterable[int], target_count: int) -> list[int]:
    """Numbers of the containers to create to reach target_count (Compose scale-up).

    New numbers start after the highest existing one; gaps left by removed replicas are not
    refilled (compose nextContainerNumber).
    """
    if isinstance(target_count, bool) or not isinstance(target_count, int) or target_count < 0:
        raise ValueError(f"target count must be an integer >= 0, not {target_count!r}")
    numbers = list(existing_numbers)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in numbers):
        raise ValueError(f"container numbers must be integers >= 1: {numbers!r}")
    missing = target_count - len(numbers)
    if missing <= 0:
        return []
    start = max(numbers, default=0) + 1
    return list(range(start, start + missing))


_T = TypeVar("_T", bound=_Numbered)


def scale_down_order(containers: Iterable[_T], current_hash: str | None = None) -> list[_T]:
    """Containers in the order Compose removes them when scaling down.

    Obsolete ones (config hash differs from `current_hash`) first, then the highest numbers, so
    low numbers survive. With no current hash nothing counts as obsolete.
    """

    def key(c: _T) -> tuple[int, int]:
        obsolete = current_hash is not None and c.config_hash != current_hash
        return (0 if obsolete else 1, -c.number)

    return sorted(containers, key=key)


@dataclass(frozen=True)
class ScalePlan:
    create: tuple[int, ...]  # container numbers to create
    remove: tuple[Any, ...]  # containers to stop and remove, in order


def plan_scale(containers: Sequence[_Numbered], target_count: int, current_hash: str | None = None) -> ScalePlan:
    """What `docker compose up --scale service=N` would create or remove (not recreate)."""
    create = next_numbers([c.number for c in containers], target_count)
    excess = len(containers) - target_count
    remove = scale_down_order(containers, current_hash)[:excess] if excess > 0 else []
    return ScalePlan(create=tuple(create), remove=tuple(remove))
