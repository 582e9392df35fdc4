"""The prover's Prometheus metrics on a dedicated registry, exposed like promhttp.Handler().

The eight custom metrics keep the names, types, buckets and help texts of metrics.go. The Go
runtime's default collectors cannot exist in Python, so:
- process_* come from prometheus_client's ProcessCollector (same names, read from /proc);
- go_goroutines counts what plays the goroutine role here: Python threads plus asyncio tasks
  (net/http runs one goroutine per connection; the simulator runs one task per connection), so
  a hang or connection pile-up moves it the way it moves on the real prover;
- go_threads is the OS thread count of the process, which is what the Go metric reports.
Families without samples are omitted and families are sorted by name, as client_golang does.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CIRCUIT_CONSTRAINTS = 28547  # circuits/build/circuit_info.json

PROOF_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2)
VERIFY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)
WITNESS_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _os_threads() -> int:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return threading.active_count()


class GoRuntimeCollector:
    """go_goroutines and go_threads, computed at scrape time."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop

    def collect(self) -> Iterable[Metric]:
        tasks = 0
        if self.loop is not None:
            try:
                tasks = len(asyncio.all_tasks(self.loop))
            except RuntimeError:
                tasks = 0
        yield GaugeMetricFamily(
            "go_goroutines", "Number of goroutines that currently exist.", value=threading.active_count() + tasks
        )
        yield GaugeMetricFamily("go_threads", "Number of OS threads created.", value=_os_threads())


class _SortedView:
    """What generate_latest reads: the registry's families, non-empty, sorted by name."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        families = [m for m in self.registry.collect() if m.samples]
        yield from sorted(families, key=lambda m: m.name + ("_total" if m.type == "counter" else ""))


class ProverMetrics:
    def __init__(self, *, intended: bool = False, loop: asyncio.AbstractEventLoop | None = None) -> None:
        disable_created_metrics()
        self.intended = intended
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.proof_duration = Histogram(
            "proof_generation_duration_seconds", "Time taken to generate a proof", buckets=PROOF_BUCKETS, registry=r
        )
        self.proofs_total = Counter("proof_generation_total", "Total number of proofs generated", registry=r)
        self.errors_total = Counter(
            "proof_generation_errors_total", "Total number of proof generation errors", registry=r
        )
        self.verify_duration = Histogram(
            "proof_verification_duration_seconds", "Time taken to verify a proof", buckets=VERIFY_BUCKETS, registry=r
        )
        self.rate_limited = Counter(
            "rate_limit_exceeded_total", "Number of rate limit violations by IP", ["ip"], registry=r
        )
        self.active_requests = Gauge(
            "active_requests", "Number of requests currently being processed", registry=r
        )
        self.circuit_constraints = Gauge(
            "circuit_constraints_total", "Total number of constraints in the circuit", registry=r
        )
        self.witness_duration = Histogram(
            "witness_generation_duration_seconds", "Time taken to generate witness", buckets=WITNESS_BUCKETS, registry=r
        )
        self.verification_failures: Counter | None = None
        if intended:
            # alerts.yml's HighVerificationFailureRate reads this; only the intended build has it.
            self.verification_failures = Counter(
                "verification_failures_total", "Total number of proof verification failures", registry=r
            )
            self.circuit_constraints.set(CIRCUIT_CONSTRAINTS)
        self.scrapes = Counter(
            "promhttp_metric_handler_requests_total",
            "Total number of scrapes by HTTP status code.",
            ["code"],
            registry=r,
        )
        for code in ("200", "500", "503"):
            self.scrapes.labels(code=code)
        self.scrapes_in_flight = Gauge(
            "promhttp_metric_handler_requests_in_flight", "Current number of scrapes being served.", registry=r
        )
        ProcessCollector(registry=r)
        self.runtime = GoRuntimeCollector(loop)
        r.register(self.runtime)

    def note_rate_limited(self, ip: str) -> None:
        if self.intended:
            self.rate_limited.labels(ip=ip).inc()

    def note_verification_failure(self) -> None:
        if self.verification_failures is not None:
            self.verification_failures.inc()

    def scrape(self, accept_encoding: str = "") -> tuple[bytes, bool]:
        """The exposition text (gzipped when the client accepts it, like promhttp)."""
        self.scrapes_in_flight.inc()
        try:
            body = generate_latest(_SortedView(self.registry))  # type: ignore[arg-type]
        finally:
            self.scrapes_in_flight.dec()
        # promhttp counts a scrape after serving it, so a scrape never sees itself counted.
        self.scrapes.labels(code="200").inc()
        if "gzip" in accept_encoding.lower():
            return gzip.compress(body, compresslevel=1), True
        return body, False
