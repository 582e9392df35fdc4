"""One bounded look at the whole system, for `x402console status` and other headless callers.

Everything is looked at concurrently, within ``timeout`` seconds in total:
- the health endpoint of every replica (static [[replicas]], or containers discovered on the
  configured Docker engines);
- fleet metrics from Prometheus over the window when it is configured and answers, else from
  two direct /metrics scrapes ``scrape_interval`` apart (Prometheus' firing alerts with it);
- container state (Docker) or process state (pid files and /proc, sampled over the scrape
  interval, which also gives the RSS trend);
- the last lines of each replica's log (log file, or `docker logs`), counted by LOG_PATTERNS
  over the window;
- PRAGMA quick_check of proofs.db on a read-only connection with a short busy timeout;
- the verification key against its trusted copy (sha256).
Whatever fails or does not finish in time is named in ``Signals.unobserved``; nothing raises.
Blocking work runs in daemon threads, so one that overruns the budget is abandoned, never
waited for.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from x402console.core.signals import ReplicaSignal, Signals
from x402console.sources.models import HealthSample, ReplicaIdentity
from x402console.status.checks import TAIL_LINES, DbCheck, VkCheck, check_database, compare_vk, parse_lines, read_log_tail
from x402console.status.combine import choose_error_ratio, choose_latency, choose_proof_rate
from x402console.status.from_store import merge_rate_limited
from x402console.status.logcount import LogCounter, LogSnapshot
from x402console.status.metrics_once import MetricsOutcome, query_prometheus, scrape_twice
from x402console.status.runtime_once import DockerReading, ProcessReading, read_docker, sample_processes

__all__ = ["collect_signals", "collect_signals_async", "DEFAULT_WINDOW_SECONDS", "DEFAULT_TIMEOUT_SECONDS"]

DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_SCRAPE_INTERVAL = 2.0

T = TypeVar("T")


def _in_daemon_thread(fn: Callable[..., T], *args: Any) -> "asyncio.Future[T]":
    """Run blocking ``fn`` in a daemon thread: unlike asyncio.to_thread, an overrunning call
    does not hold up the end of asyncio.run (which waits for its executor's threads)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def deliver(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def body() -> None:
        try:
            result = fn(*args)
            ok, value = True, result
        except BaseException as exc:  # handed to the awaiting coroutine
            ok, value = False, exc
        try:
            loop.call_soon_threadsafe(deliver, ok, value)
        except RuntimeError:
            pass  # the loop is gone: nobody waits for this any more

    threading.Thread(target=body, name=f"status:{getattr(fn, '__name__', 'work')}", daemon=True).start()
    return fut


class _Budget:
    def __init__(self, timeout: float) -> None:
        self.timeout = float(timeout)
        self.deadline = time.monotonic() + self.timeout

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def run(self, what: str, awaitable: Awaitable[T], unobserved: list[str]) -> T | None:
        try:
            return await asyncio.wait_for(awaitable, timeout=max(0.01, self.left()))
        except asyncio.TimeoutError:
            unobserved.append(f"{what}: not finished within the {self.timeout:g} s status budget")
        except Exception as exc:  # an observation that broke is reported, never raised
            unobserved.append(f"{what}: {type(exc).__name__}: {exc}")
        return None


def _static_replicas(settings: Any) -> list[ReplicaIdentity]:
    from x402console.sources.hub import static_replicas

    return list(static_replicas(settings))


def _read_file_logs(replicas: list[ReplicaIdentity], tail: int, max_len: int) -> tuple[list[Any], list[str]]:
    records: list[Any] = []
    problems: list[str] = []
    for r in replicas:
        if not r.log_file:
            continue
        try:
            raw = read_log_tail(Path(r.log_file), tail)
        except OSError as exc:
            problems.append(f"logs of {r.name}: cannot read {r.log_file}: {exc.strerror or exc}")
            continue
        records.extend(parse_lines(raw, r.name, max_len))
    return records, problems


def _read_container_logs(settings: Any, host: Any, replicas: list[ReplicaIdentity], since: float,
                         tail: int, timeout: float, max_len: int) -> tuple[list[Any], list[str]]:
    import dataclasses

    from x402console.sources.docker_source import connect, describe_error

    records: list[Any] = []
    problems: list[str] = []
    try:
        client = connect(dataclasses.replace(host, timeout_seconds=max(1.0, min(host.timeout_seconds, timeout))))
    except Exception as exc:
        return [], [f"logs on docker:{host.name}: {exc}"]
    try:
        for r in replicas:
            if not r.container_id:
                continue
            try:
                raw = client.api.logs(r.container_id, stdout=True, stderr=True, timestamps=True,
                                      tail=tail, since=int(since))
            except Exception as exc:
                problems.append(f"logs of {r.name}: {describe_error(host, exc)}")
                continue
            lines = raw.split(b"\n") if isinstance(raw, (bytes, bytearray)) else []
            records.extend(parse_lines((ln for ln in lines if ln), r.name, max_len))
    finally:
        try:
            client.close()
        except Exception:
            pass
    return records, problems


async def collect_signals_async(
    settings: Any,
    *,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    scrape_interval: float | None = None,
    tail_lines: int = TAIL_LINES,
) -> Signals:
    """See the module docstring. ``window_seconds``: logs and Prometheus rates look this far
    back. ``timeout``: the whole collection's budget. ``scrape_interval``: the time between the
    two direct scrapes (default 2 s, at most half the budget)."""
    window = max(1.0, float(window_seconds))
    budget = _Budget(max(1.0, float(timeout)))
    interval = float(scrape_interval) if scrape_interval else DEFAULT_SCRAPE_INTERVAL
    interval = max(0.2, min(interval, budget.timeout / 2))
    # Two rounds of probes must fit after the interval.
    probe_timeout = max(0.3, min(float(settings.prover.health_timeout_seconds), (budget.timeout - interval) / 2.5))
    max_len = int(settings.ui.max_line_length)
    unobserved: list[str] = []
    components: dict[str, str] = {}

    # ---------------------------------------------------------------- which replicas
    replicas = _static_replicas(settings)
    docker_hosts = tuple(settings.docker_hosts) if settings.discovery.mode != "static" else ()
    docker_readings: list[DockerReading] = []
    if docker_hosts:
        outcomes = await asyncio.gather(*(
            budget.run(f"docker:{h.name}", _in_daemon_thread(read_docker, settings, h, probe_timeout * 2), unobserved)
            for h in docker_hosts
        ))
        for host, reading in zip(docker_hosts, outcomes):
            if reading is None:
                components[f"docker:{host.name}"] = "unknown"
                continue
            docker_readings.append(reading)
            components[reading.host] = "up" if reading.ok else "down"
            unobserved.extend(reading.problems)
        discovered = [r for reading in docker_readings for r in reading.replicas]
        known = {r.name for r in discovered}
        replicas = discovered + [r for r in replicas if r.name not in known]
    if not replicas:
        unobserved.append("replicas: none configured or discovered")

    # ---------------------------------------------------------------- concurrent looks
    from x402console.sources.health import HealthProber, make_client

    urls = [settings.prometheus.url or "", settings.nginx.url or ""] + [r.health_url for r in replicas]
    client = make_client(probe_timeout + 1.0, max(16, 4 * len(replicas)), tls=any(u.startswith("https:") for u in urls))
    started_wall = time.time()
    try:
        prober = HealthProber(settings, lambda: tuple(replicas), client=client)
        prober.timeout = probe_timeout

        async def health() -> list[HealthSample]:
            return list(await asyncio.gather(*(prober.probe(client, r) for r in replicas)))

        async def prometheus() -> MetricsOutcome | None:
            if not settings.prometheus.url:
                return None
            return await query_prometheus(settings, replicas, client, window_seconds=window, timeout=probe_timeout)

        async def scrape() -> MetricsOutcome | None:
            if not replicas:
                return None
            return await scrape_twice(settings, replicas, client, interval=interval, timeout=probe_timeout)

        stop_sampling = threading.Event()
        process_until = time.monotonic() + interval

        async def logs() -> tuple[list[Any], list[str], float]:
            # Read at the end of the scrape interval, so the logs reach as far as the metrics.
            await asyncio.sleep(max(0.0, process_until - time.monotonic()))
            read_at = time.time()
            records, problems = await _in_daemon_thread(_read_file_logs, replicas, tail_lines, max_len)
            for reading in docker_readings:
                host = next(h for h in docker_hosts if f"docker:{h.name}" == reading.host)
                more, trouble = await _in_daemon_thread(
                    _read_container_logs, settings, host, list(reading.replicas), started_wall - window - 2,
                    tail_lines, probe_timeout * 2, max_len,
                )
                records.extend(more)
                problems.extend(trouble)
            return records, problems, read_at

        async def nginx() -> Any:
            if not settings.nginx.url:
                return None
            from x402console.sources.components import ComponentProbe

            return await ComponentProbe(settings, client=client).nginx(client)

        db_budget = max(0.5, min(3.0, budget.timeout / 3))
        results = await asyncio.gather(
            budget.run("health", health(), unobserved),
            budget.run("prometheus", prometheus(), unobserved),
            budget.run("metrics", scrape(), unobserved),
            budget.run("process state", _in_daemon_thread(sample_processes, settings, process_until, 0.5,
                                                          stop_sampling.is_set), unobserved),
            budget.run("logs", logs(), unobserved),
            budget.run("proofs.db", _in_daemon_thread(check_database, Path(settings.database.path), db_budget,
                                                      min(1.0, db_budget / 2)), unobserved),
            budget.run("verification key", _in_daemon_thread(compare_vk, Path(settings.circuits.verification_key),
                                                             Path(settings.circuits.trusted_verification_key)), unobserved),
            budget.run("nginx", nginx(), unobserved),
        )
        stop_sampling.set()
    finally:
        try:
            await asyncio.wait_for(client.aclose(), timeout=1.0)
        except Exception:
            pass
    health_samples, prom, scraped, processes, log_result, db, vk, nginx_state = results
    now = time.time()

    # ---------------------------------------------------------------- metrics
    metrics: MetricsOutcome | None = None
    if settings.prometheus.url:
        if prom is not None and prom.prometheus_up:
            components["prometheus"] = "up"
        elif prom is not None:
            components["prometheus"] = "down"
        else:
            components["prometheus"] = "unknown"
        if prom is not None:
            unobserved.extend(prom.unobserved)
            if prom.has_fleet_data:
                metrics = prom
    if scraped is not None:
        if metrics is None:
            metrics = scraped if scraped.has_fleet_data else metrics
            unobserved.extend(scraped.unobserved)
    if metrics is None and replicas:
        unobserved.append("metrics: no rates (no answer from Prometheus or from two scrapes of any replica)")
    if nginx_state is not None:
        components["nginx"] = "up" if nginx_state.ok else "down"

    # ---------------------------------------------------------------- logs
    snap: LogSnapshot | None = None
    if log_result is not None:
        records, problems, read_at = log_result
        unobserved.extend(problems)
        has_source = any(r.log_file for r in replicas) or any(r.container_id for r in replicas)
        if has_source:
            counter = LogCounter(max_window=window + 120.0, clock=lambda: read_at,
                                 monitoring_paths=(settings.prover.health_path, settings.prover.metrics_path))
            counter.feed_many(records)
            snap = counter.snapshot(window, read_at)
        else:
            unobserved.append("logs: no log file or container to read")

    # ---------------------------------------------------------------- replicas
    health_by = {h.replica: h for h in (health_samples or [])}
    runtime_by: dict[str, Any] = {}
    for reading in docker_readings:
        runtime_by.update(reading.states)
    proc: ProcessReading = processes or ProcessReading()
    unobserved.extend(proc.problems)
    for name, state in proc.states.items():
        runtime_by.setdefault(name, state)
    default_limit = float(settings.prover.memory_limit_bytes) if settings.prover.memory_limit_bytes > 0 else None
    replica_signals: list[ReplicaSignal] = []
    for r in replicas:
        sample = health_by.get(r.name)
        rt = runtime_by.get(r.name)
        restarts = rt.restart_count if rt is not None and r.container_id else None
        restarted = r.name in proc.restarted or (metrics is not None and r.name in metrics.restarted)
        if restarted:
            restarts = max(1, restarts or 0)
        memory = float(rt.mem_used) if rt is not None and rt.mem_used else None
        if memory is None and metrics is not None and r.name in metrics.rss:
            memory = float(metrics.rss[r.name])
        limit = float(rt.mem_limit) if rt is not None and rt.mem_limit and r.container_id else default_limit
        growth = None
        if metrics is not None and metrics.source == "prometheus" and r.name in metrics.rss_growth:
            growth = metrics.rss_growth[r.name]
        elif r.name in proc.growth and r.name not in proc.restarted:
            growth = proc.growth[r.name]
        elif scraped is not None and r.name in scraped.rss_growth:
            growth = scraped.rss_growth[r.name]
        replica_signals.append(ReplicaSignal(
            name=r.name,
            up=sample.ok if sample is not None else None,
            state=rt.state if rt is not None else None,
            restarts=restarts,
            memory_bytes=memory,
            memory_limit_bytes=limit,
            memory_growth_bytes_per_s=growth if growth is None or math.isfinite(growth) else None,
        ))

    # ---------------------------------------------------------------- checks
    db_check: DbCheck | None = db
    if db_check is not None and not db_check.observed:
        unobserved.append(f"proofs.db: {db_check.error}")
    vk_check: VkCheck | None = vk
    if vk_check is not None and not vk_check.observed:
        unobserved.append(f"verification key: {vk_check.detail}")

    # ---------------------------------------------------------------- figures
    m = metrics
    latency = choose_latency(
        m.p50 if m else None, m.p95 if m else None, m.p95_at_least if m else False,
        m.latency_observations if m else None, snap,
    )
    if m is not None and m.source == "prometheus":
        baseline = m.proof_rate_baseline
    else:
        baseline = snap.early_proof_rate if snap is not None and snap.early_proof_rate is not None else (
            m.proof_rate_baseline if m else None)
    verification = max(snap.verification_failures if snap else 0, (m.verification_failures or 0) if m else 0)
    alerts = prom.alerts_firing if prom is not None else ()
    return Signals(
        taken_at=now,
        replicas=tuple(replica_signals),
        proof_rate=choose_proof_rate(m.proof_rate if m else None, m.attempts if m else None, snap),
        proof_rate_baseline=baseline,
        error_ratio=choose_error_ratio(m.error_ratio if m else None, m.attempts if m else None, snap),
        latency_p50=latency.p50,
        latency_p95=latency.p95,
        latency_p95_at_least=latency.at_least,
        rate_limited_rate=merge_rate_limited(m.rate_limited_rate if m else None,
                                             snap.rate_limited_rate if snap else None),
        active_requests=m.active_requests if m else None,
        verification_failures=verification,
        log_counts=dict(snap.counts) if snap else {},
        log_lines=snap.lines if snap else None,
        top_client=snap.top_client if snap else None,
        top_client_share=snap.top_client_share if snap else None,
        top_client_requests=snap.top_client_requests if snap else None,
        db_integrity=db_check.integrity if db_check else None,
        db_error=db_check.error if db_check and db_check.integrity != "ok" and not db_check.absent else None,
        vk_status=vk_check.status if vk_check else None,
        components=components,
        alerts_firing=alerts,
        unobserved=tuple(dict.fromkeys(unobserved)),
    )


def collect_signals(
    settings: Any,
    *,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    scrape_interval: float | None = None,
    tail_lines: int = TAIL_LINES,
) -> Signals:
    """Blocking form of collect_signals_async (own event loop; from inside a running loop it
    runs on a helper thread)."""
    def run() -> Signals:
        return asyncio.run(collect_signals_async(
            settings, window_seconds=window_seconds, timeout=timeout, scrape_interval=scrape_interval,
            tail_lines=tail_lines,
        ))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = run()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=body, name="status:collect", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
