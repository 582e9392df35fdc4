"""Signals: one frozen picture of what the console can see, the input of severity and matching.

Both the live console (from its observation store) and the headless `status` command (from a
one-shot collection) build a `Signals`; the severity engine and the incident matcher read only
this, so their rules are tested as plain tables without any component running.

Every field may be unknown (None / empty): a rule that needs an unknown signal does not fire,
and the reason list says which signals were missing instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Log pattern ids counted into Signals.log_counts (the runbook's greps and the prover's messages).
LOG_PATTERNS = (
    "error",  # level error/fatal/panic lines
    "validation",  # "validation failed" / 400s
    "rate_limit",  # 429 / "rate limit exceeded"
    "generation_failed",  # "Proof generation failed"
    "verification_failed",  # "Proof verification failed" / "generated proof is invalid"
    "db_error",  # database is locked / malformed / disk image / SQLITE errors
    "panic",  # Go panics, fatal errors
    "out_of_memory",  # OOM, "cannot allocate memory"
)

VK_STATES = ("match", "changed", "missing")
DB_INTEGRITY_STATES = ("ok", "failed")
COMPONENT_STATES = ("up", "down", "unknown")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class ReplicaSignal:
    name: str
    up: bool | None = None  # health endpoint answered 200 OK (None: not probed)
    state: str | None = None  # container/process state: running, exited, restarting, paused, dead, gone
    restarts: int | None = None
    memory_bytes: float | None = None  # resident memory
    memory_limit_bytes: float | None = None  # container limit, or the configured prover limit
    memory_growth_bytes_per_s: float | None = None  # slope over the window (None: too little history)

    @property
    def memory_ratio(self) -> float | None:
        if self.memory_bytes is None or not self.memory_limit_bytes:
            return None
        return self.memory_bytes / self.memory_limit_bytes


@dataclass(frozen=True)
class Signals:
    taken_at: float  # unix time the picture was taken
    replicas: tuple[ReplicaSignal, ...] = ()
    # Rates over the metrics window, all replicas together.
    proof_rate: float | None = None  # proof attempts per second (proof_generation_total)
    proof_rate_baseline: float | None = None  # typical rate earlier in the window: tells a drop from a quiet system
    error_ratio: float | None = None  # errors / attempts, 0..1
    latency_p50: float | None = None  # seconds
    latency_p95: float | None = None  # seconds
    latency_p95_at_least: bool = False  # p95 fell in the +Inf bucket: the value is a lower bound
    rate_limited_rate: float | None = None  # 429s per second (metric when exported, else from logs)
    active_requests: float | None = None
    verification_failures: int = 0  # invalid proofs seen in the window (logs or verification_failures_total)
    log_counts: Mapping[str, int] = field(default_factory=dict)  # LOG_PATTERNS id -> lines in window
    log_lines: int | None = None  # lines seen in the window (None: no log source)
    top_client: str | None = None  # busiest client IP in the window's logs
    top_client_share: float | None = None  # its share of request lines, 0..1
    top_client_requests: int | None = None
    db_integrity: str | None = None  # DB_INTEGRITY_STATES, None: not checked
    db_error: str | None = None  # the error text when proofs.db could not be read/checked
    vk_status: str | None = None  # VK_STATES, None: not compared
    components: Mapping[str, str] = field(default_factory=dict)  # "prometheus", "nginx", "docker:local" -> COMPONENT_STATES
    alerts_firing: tuple[str, ...] = ()  # Prometheus alert names
    unobserved: tuple[str, ...] = ()  # what could not be observed, with the error

    def __post_init__(self) -> None:
        # Frozen all the way down: a Signals is shared by the severity engine, the matcher and the UI.
        object.__setattr__(self, "log_counts", _frozen(self.log_counts))
        object.__setattr__(self, "components", _frozen(self.components))
        object.__setattr__(self, "replicas", tuple(self.replicas))
        object.__setattr__(self, "alerts_firing", tuple(self.alerts_firing))
        object.__setattr__(self, "unobserved", tuple(self.unobserved))

    @property
    def replicas_known(self) -> int:
        return len(self.replicas)

    @property
    def replicas_up(self) -> int:
        return sum(1 for r in self.replicas if r.up)

    @property
    def all_replicas_down(self) -> bool:
        """Every known replica was probed and none answered (False when none is known)."""
        probed = [r for r in self.replicas if r.up is not None]
        return bool(self.replicas) and len(probed) == len(self.replicas) and not any(r.up for r in probed)

    def log_count(self, pattern: str) -> int:
        return int(self.log_counts.get(pattern, 0))
