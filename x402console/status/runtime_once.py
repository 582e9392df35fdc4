"""Replica state taken once, for the headless status: local processes from their pid files and
/proc, containers from the Docker engines the settings name.

Blocking (the collector runs these in threads) and bounded: Docker calls use a client timeout
no longer than the status budget, and /proc reads are cheap.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from x402console.sources.models import ReplicaIdentity, RuntimeState
from x402console.status.trend import memory_trend

__all__ = ["ProcessReading", "sample_processes", "DockerReading", "read_docker"]


@dataclass(frozen=True)
class ProcessReading:
    states: Mapping[str, RuntimeState] = field(default_factory=dict)  # newest per replica
    growth: Mapping[str, float] = field(default_factory=dict)  # RSS bytes/s over the samples
    restarted: tuple[str, ...] = ()  # the pid changed while sampling
    problems: tuple[str, ...] = ()


def sample_processes(settings: Any, until: float, every: float = 0.5,
                     should_stop: Callable[[], bool] = lambda: False) -> ProcessReading:
    """Read every pid-file replica now and then every ``every`` seconds until ``until``
    (time.monotonic()), for the current state and the RSS trend over that time."""
    from x402console.sources.process_source import ProcessSource  # runs only in process mode

    source = ProcessSource(settings)
    if not source.replicas:
        return ProcessReading()
    series: dict[str, list[tuple[float, float]]] = {}
    starts: dict[str, set[float]] = {}
    states: dict[str, RuntimeState] = {}
    problems: dict[str, str] = {}
    while True:
        for snap in source.sample():
            if isinstance(snap, RuntimeState):
                states[snap.replica] = snap
                if snap.mem_used is not None:
                    series.setdefault(snap.replica, []).append((time.monotonic(), float(snap.mem_used)))
                if snap.started_at is not None:
                    starts.setdefault(snap.replica, set()).add(round(snap.started_at))
            elif getattr(snap, "ok", True) is False and getattr(snap, "error", None):
                problems[snap.name] = snap.error
        if time.monotonic() + every > until or should_stop():
            break
        time.sleep(every)
    growth = {}
    for name, pts in series.items():
        g = memory_trend(pts)
        if g is not None:
            growth[name] = g
    # A new start time between two readings: the replica was restarted meanwhile.
    restarted = tuple(n for n, seen in starts.items() if len(seen) > 1)
    return ProcessReading(states, growth, restarted, tuple(problems.values()))


@dataclass(frozen=True)
class DockerReading:
    host: str
    ok: bool
    replicas: tuple[ReplicaIdentity, ...] = ()
    states: Mapping[str, RuntimeState] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def read_docker(settings: Any, host: Any, timeout: float) -> DockerReading:
    """Discover the prover containers on one engine, inspect each, and take one memory reading
    of each running one (stats with one_shot: no two-sample wait)."""
    from x402console.sources import dockerstats
    from x402console.sources.discovery import DiscoveryError, discover_containers
    from x402console.sources.docker_source import DockerConnectError, connect, describe_error, inspected

    bounded = dataclasses.replace(host, timeout_seconds=max(1.0, min(float(host.timeout_seconds), timeout)))
    name = f"docker:{host.name}"
    try:
        client = connect(bounded)
        client.ping()
    except DockerConnectError as exc:
        return DockerReading(name, False, problems=(str(exc),))
    except Exception as exc:
        return DockerReading(name, False, problems=(describe_error(host, exc),))
    try:
        try:
            found = discover_containers(client, settings, host)
        except DiscoveryError as exc:
            return DockerReading(name, False, problems=(str(exc),))
        states: dict[str, RuntimeState] = {}
        problems: list[str] = []
        for identity in found:
            if not identity.container_id:
                continue
            try:
                attrs = client.api.inspect_container(identity.container_id)
            except Exception as exc:
                problems.append(f"inspect {identity.name}: {describe_error(host, exc)}")
                continue
            info = inspected(attrs)
            used = limit = None
            if info.running:
                try:
                    stats = client.api.stats(identity.container_id, stream=False, one_shot=True)
                    u, lim, _ = dockerstats.memory_usage(stats)
                    used, limit = (u or None), (lim or None)
                except Exception as exc:
                    problems.append(f"stats {identity.name}: {describe_error(host, exc)}")
            states[identity.name] = RuntimeState(
                replica=identity.name,
                state=info.state,
                ts=time.time(),
                health=info.health,
                restart_count=info.docker_restarts,
                started_at=info.started_at,
                exit_code=info.exit_code,
                mem_used=used,
                mem_limit=info.mem_limit or limit,
            )
        return DockerReading(name, True, tuple(found), states, tuple(problems))
    finally:
        try:
            client.close()
        except Exception:
            pass
