"""Log lines counted the way severity and matching need them: per runbook pattern, per client,
and the proof requests seen in gin's access log (which both log shapes keep).

Pure: records come in already parsed (sources.logparse.LogRecord), nothing here reads a file.
The live console feeds every record of its log stream to one LogCounter and asks for a
snapshot of the last minutes whenever it builds Signals; the headless `status` command feeds
the tail of each replica's log and asks once. Counts are kept per second of log time and
bounded (see LogCounter).

Why the access log matters beyond counting: a direct /metrics scrape a few seconds apart sees
few requests and the prover's duration histogram tops out at 2 s, so over a longer window the
access lines give the better error ratio and the real latency of slow proofs (a 6 s proof
shows as 6 s there, as "more than 2 s" in the histogram).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

from x402console.core.signals import LOG_PATTERNS
from x402console.sources.logparse import LogRecord

__all__ = ["LogCounter", "LogSnapshot", "patterns_of", "PROOF_PATH"]

PROOF_PATH = "/generate-proof"

# Substrings of the lower-cased line, per LOG_PATTERNS id: plain `in` tests, which cost a
# fraction of a case-insensitive regex (the live console counts thousands of lines a second).
_TEXT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("validation", ("validation failed", "invalid request from", "invalid request format")),
    ("rate_limit", ("rate_limit", "rate limit")),
    ("generation_failed", ("proof generation failed",)),
    ("verification_failed", ("proof verification failed", "generated proof is invalid")),
    ("db_error", ("database is locked", "malformed", "disk image", "file is not a database", "no such table",
                  "database or disk is full", "sqlite_busy", "sqlite_locked", "sqlite_corrupt", "sqlite_ioerr",
                  "sqlite_full")),
    ("panic", ("[recovery]", "panic recovered")),
    ("out_of_memory", ("out of memory", "cannot allocate memory", "oom-kill", "oomkill")),
)
_OOM_WORD = re.compile(r"\boom\b")
_HALF = 0.5
_BIT = {name: 1 << i for i, name in enumerate(LOG_PATTERNS)}


def _bits(record: LogRecord) -> int:
    bits = 0
    status = record.http_status
    if status is not None:
        # An access line: its text is the request (a path the client chose), so only the
        # status says anything about the service.
        if record.level == "error":
            bits |= _BIT["error"]
        if status == 400:
            bits |= _BIT["validation"]
        elif status == 429:
            bits |= _BIT["rate_limit"]
        return bits
    if record.level == "error":
        bits |= _BIT["error"]
    if record.operation == "validation":
        bits |= _BIT["validation"]
    elif record.operation == "rate_limit":
        bits |= _BIT["rate_limit"]
    elif record.operation == "panic":
        bits |= _BIT["panic"]
    elif record.operation == "database" and record.level == "error":
        bits |= _BIT["db_error"]
    text = (record.raw or record.message).lower()
    for name, needles in _TEXT:
        for needle in needles:
            if needle in text:
                bits |= _BIT[name]
                break
    if text.lstrip().startswith(("panic: ", "fatal error: ")):
        bits |= _BIT["panic"]
    if "oom" in text and _OOM_WORD.search(text):
        bits |= _BIT["out_of_memory"]
    return bits


def patterns_of(record: LogRecord) -> tuple[str, ...]:
    """The LOG_PATTERNS ids one record matches (case-insensitive, both log shapes)."""
    bits = _bits(record)
    return tuple(name for name, bit in _BIT.items() if bits & bit)


@dataclass(frozen=True)
class LogSnapshot:
    """What the log lines of one window say. Counts are lines, like `grep -c`."""

    window_seconds: float
    span_seconds: float  # the part of the window the lines cover (less when logs start later)
    lines: int
    counts: Mapping[str, int] = field(default_factory=dict)  # every LOG_PATTERNS id
    requests: int = 0  # access lines with a client IP
    rate_limited: int = 0  # access lines with status 429
    top_client: str | None = None
    top_client_requests: int | None = None
    top_client_share: float | None = None
    proof_attempts: int = 0  # POST /generate-proof answered with anything but 404/429
    proof_failures: int = 0  # ... of which with a 4xx/5xx
    proof_successes: int = 0
    proof_latencies: tuple[float, ...] = ()  # seconds, successful proofs, sorted
    early_proof_rate: float | None = None  # successful proofs/s in the first half of the span

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", MappingProxyType(dict(self.counts)))

    @property
    def verification_failures(self) -> int:
        return int(self.counts.get("verification_failed", 0))

    @property
    def error_ratio(self) -> float | None:
        return self.proof_failures / self.proof_attempts if self.proof_attempts else None

    @property
    def proof_rate(self) -> float | None:
        if self.span_seconds <= 0:
            return None
        return self.proof_successes / self.span_seconds

    @property
    def rate_limited_rate(self) -> float | None:
        return self.rate_limited / self.span_seconds if self.span_seconds > 0 else None

    def latency_quantile(self, q: float) -> float | None:
        """Nearest-rank quantile of the successful proofs' latencies; None without any."""
        values = self.proof_latencies
        if not values:
            return None
        rank = max(1, min(len(values), int(-(-q * len(values) // 1))))
        return values[rank - 1]


class _Second:
    """Everything counted for the lines stamped within one second."""

    __slots__ = ("lines", "counts", "clients", "other", "limited", "attempts", "failures", "successes", "latencies")

    def __init__(self) -> None:
        self.lines = 0
        self.counts = [0] * len(LOG_PATTERNS)
        self.clients: dict[str, int] = {}
        self.other = 0  # requests of clients beyond the per-second cap
        self.limited = 0
        self.attempts = 0
        self.failures = 0
        self.successes = 0
        self.latencies: list[float] = []

    @property
    def weight(self) -> int:
        return 1 + len(self.clients) + len(self.latencies)


class LogCounter:
    """Accumulates parsed log records; ``snapshot(window)`` counts the last ``window`` seconds.

    Counts are kept per second of log time, so a snapshot costs one step per second of the
    window (plus its clients), not one per line: the live console asks every refresh while an
    attack writes thousands of lines a second. A second is in a window when most of it is, the
    rule that suits the prover's whole-second stamps (a stamp s covers [s, s+1)).

    A record without a timestamp (a panic's goroutine dump, a plain line) takes the timestamp of
    the record before it from the same replica, or the clock when there is none: such lines
    belong to the event just logged.

    Clients are counted from access lines (one per request in both log shapes), leaving out
    successful GETs of ``monitoring_paths``: the console's and Prometheus' own probes would
    otherwise be the busiest "client" of a quiet system.

    Memory is bounded: seconds older than ``max_window`` before the newest are dropped, at most
    ``max_clients_per_second`` distinct clients are kept per second (the rest are counted, not
    named: a spoofed X-Forwarded-For flood must not grow the console), and when the kept
    clients and latencies pass ``max_entries`` the oldest seconds go.
    """

    OTHER = "(other)"

    def __init__(
        self,
        max_window: float = 3600.0,
        max_entries: int = 200_000,
        clock: Callable[[], float] = time.time,
        monitoring_paths: tuple[str, ...] = ("/health", "/metrics"),
        max_clients_per_second: int = 500,
    ) -> None:
        if max_window <= 0:
            raise ValueError("max_window must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_window = float(max_window)
        self.max_entries = max_entries
        self.max_clients_per_second = max(1, max_clients_per_second)
        self.clock = clock
        self.monitoring_paths = frozenset(monitoring_paths)
        self._seconds: dict[int, _Second] = {}
        self._newest: int | None = None
        self._weight = 0
        self._last_ts: dict[str, float] = {}
        self.fed = 0

    def __len__(self) -> int:
        """Lines held (in the seconds still kept)."""
        return sum(b.lines for b in self._seconds.values())

    def clear(self) -> None:
        self._seconds.clear()
        self._last_ts.clear()
        self._newest = None
        self._weight = 0

    def feed(self, record: LogRecord) -> None:
        self.fed += 1
        if record.ts is not None:
            ts = record.ts.timestamp()
            self._last_ts[record.replica] = ts
        else:
            ts = self._last_ts.get(record.replica, self.clock())
        sec = math.floor(ts)
        if self._newest is not None and sec < self._newest - self.max_window:
            return  # older than anything kept
        bucket = self._seconds.get(sec)
        if bucket is None:
            bucket = self._seconds[sec] = _Second()
            self._weight += bucket.weight
        before = bucket.weight
        bucket.lines += 1
        bits = _bits(record)
        if bits:
            for i, bit in enumerate(_BIT.values()):
                if bits & bit:
                    bucket.counts[i] += 1
        status = record.http_status
        if status is not None:
            if status == 429:
                bucket.limited += 1
            client = record.client_ip
            if client and not (status == 200 and record.method == "GET" and (record.path or "") in self.monitoring_paths):
                if client in bucket.clients:
                    bucket.clients[client] += 1
                elif len(bucket.clients) < self.max_clients_per_second:
                    bucket.clients[client] = 1
                else:
                    bucket.other += 1
            if record.method == "POST" and (record.path or "").split("?")[0] == PROOF_PATH and status not in (404, 429):
                bucket.attempts += 1
                if status >= 400:
                    bucket.failures += 1
                else:
                    bucket.successes += 1
                    if record.latency_ms is not None and record.latency_ms >= 0:
                        bucket.latencies.append(record.latency_ms / 1000.0)
        self._weight += bucket.weight - before
        if self._newest is None or sec > self._newest:
            self._newest = sec
            self._expire()
        if self._weight > self.max_entries:
            self._shed()

    def feed_many(self, records: Iterable[LogRecord]) -> None:
        for record in records:
            self.feed(record)

    def _drop(self, sec: int) -> None:
        self._weight -= self._seconds.pop(sec).weight

    def _expire(self) -> None:
        assert self._newest is not None
        horizon = self._newest - self.max_window
        for sec in [s for s in self._seconds if s < horizon]:
            self._drop(sec)

    def _shed(self) -> None:
        for sec in sorted(self._seconds):
            if self._weight <= self.max_entries or len(self._seconds) == 1:
                break
            self._drop(sec)

    def snapshot(self, window: float, now: float | None = None) -> LogSnapshot:
        now = self.clock() if now is None else now
        window = max(0.0, min(float(window), self.max_window))
        start = now - window
        inside = sorted(s for s in self._seconds if start < s + _HALF <= now + _HALF)
        counts = [0] * len(LOG_PATTERNS)
        clients: dict[str, int] = {}
        lines = other = limited = attempts = failures = successes = 0
        latencies: list[float] = []
        for sec in inside:
            b = self._seconds[sec]
            lines += b.lines
            for i, n in enumerate(b.counts):
                counts[i] += n
            for ip, n in b.clients.items():
                clients[ip] = clients.get(ip, 0) + n
            other += b.other
            limited += b.limited
            attempts += b.attempts
            failures += b.failures
            successes += b.successes
            latencies.extend(b.latencies)
        span = 0.0
        if inside:
            span = max(0.0, now - max(start, float(inside[0])))
            # A lone line or a burst within one second still describes about a second.
            span = max(span, min(1.0, window))
        requests = sum(clients.values()) + other
        top = max(clients.items(), key=lambda kv: (kv[1], kv[0])) if clients else None
        return LogSnapshot(
            window_seconds=window,
            span_seconds=span,
            lines=lines,
            counts=dict(zip(LOG_PATTERNS, counts)),
            requests=requests,
            rate_limited=limited,
            top_client=top[0] if top else None,
            top_client_requests=top[1] if top else None,
            top_client_share=(top[1] / requests) if top and requests else None,
            proof_attempts=attempts,
            proof_failures=failures,
            proof_successes=successes,
            proof_latencies=tuple(sorted(latencies)),
            early_proof_rate=self._early_rate(inside, now, span),
        )

    def _early_rate(self, inside: list[int], now: float, span: float) -> float | None:
        """Successful proofs per second in the first half of the covered span: what the service
        did before whatever is happening now (None when the span is too short to say)."""
        if span < 4.0:
            return None
        middle = now - span / 2
        n = sum(self._seconds[s].successes for s in inside if s + _HALF <= middle)
        return n / (span / 2)
