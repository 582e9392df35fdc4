"""Immutable snapshots that the sources produce and the UI renders.

Data flows one way (DESIGN.md): a source builds one of these, hands it to the hub's sink, the
app stores the latest of each kind, and panes render from the store. Times are wall-clock Unix
seconds (time.time()) so they can be shown and compared across sources.
"""

from __future__ import annotations

from dataclasses import field
from typing import Mapping

from x402console.records import Record, record


@record
class SourceStatus(Record):
    """Health of one source itself (not of what it observes): shown in the affected pane."""

    name: str  # e.g. "docker:local", "prometheus", "health:prover-1", "logs:prover-2"
    ok: bool
    error: str | None = None
    updated_at: float | None = None  # newest successful sample
    retry_in: float | None = None  # seconds until the next attempt after a failure
    attempts: int = 0  # consecutive failures


@record
class ReplicaIdentity(Record):
    """A prover replica as discovered: a container, a local process, or just URLs."""

    name: str
    kind: str  # container | process | url
    health_url: str
    metrics_url: str
    container_id: str | None = None
    docker_host: str | None = None
    number: int | None = None
    pid: int | None = None
    log_file: str | None = None
    control_url: str | None = None


@record
class HealthSample(Record):
    replica: str
    ok: bool
    ts: float
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    status_text: str | None = None  # the "status" field of the health JSON


@record
class RuntimeState(Record):
    """Container or process state plus resource use, computed as `docker stats` does."""

    replica: str
    state: str  # running | exited | restarting | paused | created | dead | missing | unknown
    ts: float
    health: str | None = None  # docker healthcheck: starting | healthy | unhealthy
    restart_count: int | None = None
    started_at: float | None = None
    exit_code: int | None = None
    cpu_percent: float | None = None
    mem_used: int | None = None
    mem_limit: int | None = None
    mem_percent: float | None = None
    pids: int | None = None


@record
class FleetMetrics(Record):
    """The runbook's numbers for the whole service at one moment.

    `p95_lower_bound` is True when the 95th percentile falls in the +Inf bucket: the real
    histogram's top bucket is 2 s, so a p95 above 2 s can only be said to be "above 2 s".
    """

    ts: float
    source: str  # prometheus | scrape
    proof_rate: float | None = None  # successful proofs per second
    error_rate: float | None = None  # errors per second
    error_ratio: float | None = None  # errors / (errors + proofs)
    p50_seconds: float | None = None
    p95_seconds: float | None = None
    p95_lower_bound: bool = False
    mean_seconds: float | None = None
    rate_limited_rate: float | None = None
    active_requests: float | None = None
    rss_bytes: Mapping[str, float] = field(default_factory=dict)  # per replica
    verification_failure_rate: float | None = None


@record
class AlertState(Record):
    name: str
    state: str  # pending | firing
    severity: str | None
    summary: str | None
    active_at: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    value: str | None = None


@record
class TargetState(Record):
    instance: str
    job: str
    health: str  # up | down | unknown
    last_error: str | None = None
    last_scrape: str | None = None


@record
class ComponentState(Record):
    """State of a supporting component: Prometheus, nginx, a Docker engine."""

    name: str
    ok: bool
    detail: str = ""
    ts: float = 0.0


@record
class LogBatch(Record):
    """Log records from one or more replicas, batched so the UI absorbs high rates.

    `records` are sources.logparse.LogRecord objects, already sanitised and parsed.
    `dropped` counts lines a source had to discard under backpressure (shown, never hidden).
    """

    records: tuple = ()
    dropped: int = 0


@record
class ReplicaSet(Record):
    """The replicas currently discovered (sent whenever discovery changes)."""

    replicas: tuple[ReplicaIdentity, ...]
    ts: float = 0.0
