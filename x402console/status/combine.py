"""Choosing between a metrics figure and the same figure read from the access log.

The figure resting on more requests wins. Metrics from two scrapes a couple of seconds apart
see a handful of requests, the access log of the window sees all of them; Prometheus over the
window sees as many as the log. Latency is special: the prover's duration histogram tops out at
2 s, so a p95 in its +Inf bucket is only "at least 2 s", while the access log has the real
durations; a lower bound therefore yields to a log figure with a few samples behind it.
"""

from __future__ import annotations

from typing import NamedTuple

from x402console.status.logcount import LogSnapshot

__all__ = ["Latency", "choose_latency", "choose_error_ratio", "choose_proof_rate", "MIN_LOG_LATENCIES", "MIN_LOG_ATTEMPTS"]

MIN_LOG_LATENCIES = 3
MIN_LOG_ATTEMPTS = 5


class Latency(NamedTuple):
    p50: float | None
    p95: float | None
    at_least: bool
    source: str  # "metrics" | "logs" | "none"


def choose_latency(
    p50: float | None, p95: float | None, at_least: bool, observations: float | None, logs: LogSnapshot | None
) -> Latency:
    """``observations``: histogram observations behind p50/p95 (None: unknown, taken as many)."""
    n_logs = len(logs.proof_latencies) if logs is not None else 0
    metric_known = p95 is not None
    use_logs = n_logs >= MIN_LOG_LATENCIES and (
        not metric_known or at_least or (observations is not None and n_logs > observations)
    )
    if use_logs and logs is not None:
        return Latency(logs.latency_quantile(0.5), logs.latency_quantile(0.95), False, "logs")
    if metric_known or p50 is not None:
        return Latency(p50, p95, at_least, "metrics")
    return Latency(None, None, False, "none")


def choose_error_ratio(ratio: float | None, attempts: float | None, logs: LogSnapshot | None) -> float | None:
    """``attempts``: proofs + errors behind the metric ratio (None: unknown, taken as many)."""
    if logs is None or logs.proof_attempts < MIN_LOG_ATTEMPTS:
        return ratio
    if ratio is None or (attempts is not None and logs.proof_attempts > attempts):
        return logs.error_ratio
    return ratio


def choose_proof_rate(rate: float | None, attempts: float | None, logs: LogSnapshot | None) -> float | None:
    if logs is None or logs.proof_attempts < MIN_LOG_ATTEMPTS:
        return rate
    if rate is None or (attempts is not None and logs.proof_attempts > attempts):
        return logs.proof_rate
    return rate
