"""Prover log lines -> LogRecord, plus the filters and counters the log pane needs.

The prover writes two shapes (reference/x402-system.md section 3), often interleaved in one
`docker logs` stream:
- as coded: Go stdlib `log` lines `2006/01/02 15:04:05 <message>` with no level field, gin's
  access log `[GIN] 2006/01/02 - 15:04:05 | 429 |  12.5µs |  203.0.113.7 | POST "/generate-proof"`
  and gin's `[GIN-debug]` banner;
- as intended: logrus JSON objects with `timestamp`, `level`, `message`, `client_ip`, `operation`.
The level of a stdlib line is inferred from its (as-coded) message, the level of an access line
from its status. Text is expected to be sanitised already (sanitize.sanitize_line); strings that
come out of JSON decoding are sanitised again here because `\\u001b` in JSON decodes to ESC.

Timestamps: the docker `timestamps=True` prefix (RFC3339Nano, UTC) wins when present, because it
is exact and comparable across replicas. Stdlib and gin stamps carry no zone; they are read in
`assume_tz` (default: this machine's local zone, which is what the drill's simulator writes;
containers usually log UTC, and there the docker prefix is available). Every `ts` is aware.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping

from x402console.sources.sanitize import sanitize_line

__all__ = [
    "LogRecord",
    "parse_log_line",
    "parse_go_duration",
    "LogFilter",
    "FilterError",
    "PresetFilter",
    "ERRORS",
    "VALIDATION_FAILURES",
    "RATE_LIMITING",
    "PRESET_FILTERS",
    "TopClients",
    "ClientCount",
]

_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})

Level = Literal["error", "warning", "info", "debug", "unknown"]
Format = Literal["gin", "stdlib", "json", "plain"]


@dataclass(frozen=True, slots=True)
class LogRecord:
    replica: str
    ts: datetime | None
    level: Level
    message: str
    client_ip: str | None = None
    operation: str | None = None
    http_status: int | None = None
    method: str | None = None
    path: str | None = None
    latency_ms: float | None = None
    fmt: Format = "plain"
    raw: str = ""
    stream: str | None = None
    # JSON fields besides the ones above, values sanitised (nested values as compact JSON text)
    extra: Mapping[str, Any] = field(default_factory=lambda: _NO_EXTRA, hash=False, compare=False)


# --- timestamps ------------------------------------------------------------------------------

_DOCKER_TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) ")


def _iso(text: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)


# Consecutive lines mostly share their second; resolving a local time costs more than the rest
# of a stdlib line's parse, so the last answer is kept.
_last_stamp: tuple[tuple[str, ...], tzinfo | None, datetime | None] = ((), None, None)


def _local(y: str, mo: str, d: str, h: str, mi: str, s: str, tz: tzinfo | None) -> datetime | None:
    global _last_stamp
    key = (y, mo, d, h, mi, s)
    cached_key, cached_tz, cached = _last_stamp
    if cached_key == key and cached_tz is tz:
        return cached
    try:
        naive = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
    except ValueError:
        stamp = None
    else:
        # astimezone() on a naive datetime reads it as local time, DST included.
        stamp = naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()
    _last_stamp = (key, tz, stamp)
    return stamp


# --- Go durations ----------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_go_duration(text: str) -> float | None:
    """time.Duration.String() text (1.234567ms, 12.5µs, 2.001s, 1m2.5s, 0s) -> milliseconds."""
    text = text.strip()
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _DURATION_MS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        return None
    return sign * total


# --- message classification -----------------------------------------------------------------

# An IP may be IPv6 (colons inside), so "from <ip>: <err>" ends at the last ": " of the token.
_IP_COLON = r"(\S+):(?:\s|$)"
_IP_END = r"(\S+)$"
# (regex matched at the start of the message, level, operation, what group 1 holds); first wins.
_STDLIB_RULES: tuple[tuple[re.Pattern[str], Level, str | None, str | None], ...] = tuple(
    (re.compile(p), lvl, op, grp)  # type: ignore[misc]
    for p, lvl, op, grp in (
        (rf"Validation failed from {_IP_COLON}", "warning", "validation", "ip"),
        (rf"Invalid request from {_IP_COLON}", "warning", "validation", "ip"),
        (rf"(?:✓ )?Proof served from cache for {_IP_END}", "info", "cache", "ip"),
        (rf"Generating proof for {_IP_END}", "info", "proof_generation", "ip"),
        (r"Proof generated in (\d+(?:\.\d+)?)ms", "info", "proof_generation", "latency"),
        (r"Signature verification failed\b", "error", "signature", None),
        (r"Witness creation failed\b", "error", "circuit", None),
        (r"Public witness extraction failed\b", "error", "circuit", None),
        (r"Proof generation failed\b", "error", "proof_generation", None),
        (r"Proof verification failed\b", "error", "verification", None),
        (r"Circuit operation failed\b", "error", "circuit", None),
        (r"Failed to (?:initialize circuit|start server)\b", "error", "startup", None),
        (r"Failed to \S+ (?:\S+ )?(?:proofs?|database)\b", "error", "database", None),
        (
            r"(?:Initial|Scheduled) backup failed|Backup cleanup failed|Failed to (?:create backup|delete old backup)",
            "error",
            "backup",
            None,
        ),
        (r"Failed to ", "error", None, None),
        (r"(?:WARNING|Warning): ", "warning", "startup", None),
        (r"\[Recovery\]", "error", "panic", None),
        (r"Rate limit exceeded\b", "warning", "rate_limit", None),
        (r"Input validation failed\b", "warning", "validation", None),
        (
            r"(?:Backup worker started|Database backup completed|Cleanup of old backups|Deleted old backup"
            r"|Current database backed up|Database restored)",
            "info",
            "backup",
            None,
        ),
        (
            r"(?:Cleaned up \d* ?expired proofs|Database initialized|Database cleanup worker"
            r"|Proof stored in database|Proof retrieved from database)",
            "info",
            "database",
            None,
        ),
        (
            r"(?:Starting |Compiling circuit|Circuit constraints:|Loading (?:proving|verification) key|Keys "
            r"|Circuit compiled|✓ |Rate limiter initialized|Proof cache initialized|Prover service ready"
            r"|Logger initialized|Service starting|Service is ready)",
            "info",
            "startup",
            None,
        ),
    )
)
_ERROR_WORD = re.compile(r"\b(?:error|errors|fail|failed|failure|panic|fatal)\b", re.IGNORECASE)
_WARN_WORD = re.compile(r"\bwarn(?:ing)?\b", re.IGNORECASE)


def _classify(message: str) -> tuple[Level, str | None, str | None, float | None]:
    """(level, operation, client_ip, latency_ms) for an as-coded message."""
    for rule, level, operation, group in _STDLIB_RULES:
        match = rule.match(message)
        if match is None:
            continue
        if group == "ip":
            return level, operation, match.group(1), None
        if group == "latency":
            return level, operation, None, float(match.group(1))
        return level, operation, None, None
    if _ERROR_WORD.search(message):
        return "error", None, None, None
    if _WARN_WORD.search(message):
        return "warning", None, None, None
    return "info", None, None, None


# --- the line shapes -------------------------------------------------------------------------

_GIN = re.compile(
    r"\[GIN\] (\d{4})/(\d\d)/(\d\d) - (\d\d):(\d\d):(\d\d) \|\s*(\d{3})\s*\|\s*([^|]*?)\s*\|"
    r"\s*([^|]*?)\s*\|\s*([A-Za-z]+)\s+(.*?)\s*$"
)
_STDLIB = re.compile(r"(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d) (.*)$", re.DOTALL)
_SERVER_ACCESS = re.compile(
    r"(?:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) )?- (\S+) - ([A-Z]+) (\S+)\s*$"
)
_GO_ESCAPE = re.compile(r'\\(.)')
_JSON_LEVELS: dict[str, Level] = {
    "error": "error", "fatal": "error", "panic": "error", "critical": "error", "err": "error",
    "warning": "warning", "warn": "warning",
    "info": "info", "information": "info", "notice": "info",
    "debug": "debug", "trace": "debug",
}
_JSON_CORE = frozenset({"timestamp", "time", "ts", "level", "lvl", "message", "msg", "client_ip", "operation"})


def _go_unquote(text: str) -> str:
    """A %#v string: only \\" and \\\\ are undone; other escapes stay as text so control bytes an
    attacker put in a path never come back to life."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return _GO_ESCAPE.sub(lambda m: m.group(1) if m.group(1) in '"\\' else m.group(0), text[1:-1])
    return text


def _status_level(status: int) -> Level:
    if status >= 500:
        return "error"
    if status >= 400:
        return "warning"
    return "info"


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return sanitize_line(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    try:
        return sanitize_line(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    except (TypeError, ValueError):
        return sanitize_line(repr(value))


def _parse_json(obj: dict[str, Any], base: dict[str, Any]) -> LogRecord:
    level_text = obj.get("level", obj.get("lvl"))
    level: Level = _JSON_LEVELS.get(str(level_text).lower(), "unknown") if level_text is not None else "unknown"
    message_value = obj.get("message", obj.get("msg"))
    message = "" if message_value is None else str(_safe(message_value))
    if base["ts"] is None:
        stamp = obj.get("timestamp", obj.get("time", obj.get("ts")))
        if isinstance(stamp, str):
            base["ts"] = _iso(stamp)
    ip = obj.get("client_ip")
    operation = obj.get("operation")
    operation = _safe(operation) if isinstance(operation, str) and operation else None
    if operation is None:
        operation = _classify(message)[1]
    latency = obj.get("duration_ms")
    path = obj.get("path")
    method = obj.get("method")
    status = obj.get("status")
    extra = MappingProxyType({_safe(str(k)): _safe(v) for k, v in obj.items() if k not in _JSON_CORE})
    return LogRecord(
        level=level,
        message=message,
        client_ip=_safe(ip) if isinstance(ip, str) and ip else None,
        operation=operation,
        http_status=status if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599 else None,
        method=_safe(method) if isinstance(method, str) else None,
        path=_safe(path) if isinstance(path, str) else None,
        latency_ms=float(latency) if isinstance(latency, (int, float)) and not isinstance(latency, bool) else None,
        fmt="json",
        extra=extra,
        **base,
    )


def parse_log_line(
    text: str, replica: str, stream: str | None = None, *, assume_tz: tzinfo | None = None
) -> LogRecord:
    """Never raises for any text; lines it cannot place come back as fmt="plain"."""
    if not isinstance(text, str):
        text = sanitize_line(text) if isinstance(text, (bytes, bytearray, memoryview)) else sanitize_line(str(text))
    raw = text
    body = text.rstrip("\r\n")
    base: dict[str, Any] = {"replica": replica, "ts": None, "raw": raw, "stream": stream}

    match = _DOCKER_TS.match(body)
    if match is not None:
        stamp = _iso(match.group(1))
        if stamp is not None:
            base["ts"] = stamp
            body = body[match.end():]

    first = body[:1]
    if first == "{":
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            return _parse_json(obj, base)
    elif first == "[":
        if body.startswith("[GIN] "):
            gin = _GIN.match(body)
            if gin is not None:
                return _parse_gin(gin, base, assume_tz)
        elif body.startswith("[GIN-debug] "):
            message = body[12:]
            level: Level = "debug"
            if message.startswith("[WARNING]"):
                level = "warning"
            elif message.startswith("[ERROR]"):
                level = "error"
            return LogRecord(level=level, message=message, operation="startup", fmt="gin", **base)
    elif first.isdigit():
        std = _STDLIB.match(body)
        if std is not None:
            if base["ts"] is None:
                base["ts"] = _local(*std.group(1, 2, 3, 4, 5, 6), assume_tz)
            message = std.group(7)
            level, operation, ip, latency = _classify(message)
            return LogRecord(
                level=level, message=message, client_ip=ip, operation=operation, latency_ms=latency,
                fmt="stdlib", **base,
            )
    return _parse_plain(body, base)


def _parse_gin(gin: re.Match[str], base: dict[str, Any], assume_tz: tzinfo | None) -> LogRecord:
    if base["ts"] is None:
        base["ts"] = _local(*gin.group(1, 2, 3, 4, 5, 6), assume_tz)
    status = int(gin.group(7))
    latency_text, ip, method, quoted = gin.group(8, 9, 10, 11)
    path = _go_unquote(quoted)
    return LogRecord(
        level=_status_level(status),
        message=f"{status} {method} {path} {latency_text} {ip}".rstrip(),
        client_ip=ip or None,
        operation="rate_limit" if status == 429 else "http",
        http_status=status,
        method=method.upper(),
        path=path,
        latency_ms=parse_go_duration(latency_text),
        fmt="gin",
        **base,
    )


def _parse_plain(body: str, base: dict[str, Any]) -> LogRecord:
    access = _SERVER_ACCESS.match(body)
    if access is not None:
        # the x402 Express server: "<ISO-8601> - <ip> - <METHOD> <path>"
        if base["ts"] is None and access.group(1):
            base["ts"] = _iso(access.group(1))
        return LogRecord(
            level="info", message=body, client_ip=access.group(2), operation="http",
            method=access.group(3), path=access.group(4), **base,
        )
    level: Level = "unknown"
    operation = None
    if body.startswith(("panic: ", "fatal error: ")):
        level, operation = "error", "panic"
    elif body.startswith(("Server error:", "Error #")):
        level = "error"
    return LogRecord(level=level, message=body, operation=operation, **base)


# --- filters ---------------------------------------------------------------------------------


class FilterError(ValueError):
    """A filter the user typed cannot be used; str() says why, for the status line."""


class LogFilter:
    """grep for records: substring or regex, case-insensitive unless asked, optionally inverted.

    Matches the record's raw line, like `docker logs | grep` would. An empty pattern matches
    everything.
    """

    __slots__ = ("pattern", "regex", "invert", "case_sensitive", "_search")

    def __init__(self, pattern: str, regex: bool = False, invert: bool = False, case_sensitive: bool = False) -> None:
        if not isinstance(pattern, str):
            raise FilterError("filter pattern must be text")
        self.pattern = pattern
        self.regex = regex
        self.invert = invert
        self.case_sensitive = case_sensitive
        flags = 0 if case_sensitive else re.IGNORECASE
        try:
            compiled = re.compile(pattern if regex else re.escape(pattern), flags)
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            where = f" at position {exc.pos}" if isinstance(exc, re.error) and exc.pos is not None else ""
            reason = exc.msg if isinstance(exc, re.error) else str(exc)
            raise FilterError(f"invalid regular expression {pattern!r}: {reason}{where}") from None
        self._search = compiled.search

    def matches(self, record: LogRecord | str) -> bool:
        text = record if isinstance(record, str) else getattr(record, "raw", "")
        try:
            found = self._search(text) is not None
        except (TypeError, RecursionError):
            found = False
        return found != self.invert

    def __repr__(self) -> str:
        return (
            f"LogFilter({self.pattern!r}, regex={self.regex}, invert={self.invert}, "
            f"case_sensitive={self.case_sensitive})"
        )


@dataclass(frozen=True)
class PresetFilter:
    """One of the runbook's greps, done the way it was meant (case-insensitive, both log shapes)."""

    name: str
    description: str
    predicate: Callable[[LogRecord], bool]
    invert: bool = False

    def matches(self, record: LogRecord) -> bool:
        try:
            return bool(self.predicate(record)) != self.invert
        except Exception:  # a predicate is ours, but a bad record must not break the log pane
            return self.invert


_ERROR_TEXT = re.compile("error", re.IGNORECASE)
_VALIDATION_TEXT = re.compile("validation failed", re.IGNORECASE)
_RATE_LIMIT_TEXT = re.compile("rate[_ ]limit", re.IGNORECASE)

ERRORS = PresetFilter(
    "errors",
    'level error, or "error" anywhere in the line (runbook: grep "ERROR", which matches nothing as coded)',
    lambda r: r.level == "error" or _ERROR_TEXT.search(r.raw) is not None,
)
VALIDATION_FAILURES = PresetFilter(
    "validation",
    '"validation failed" in any case: "Validation failed from <ip>" and "Input validation failed"',
    lambda r: _VALIDATION_TEXT.search(r.raw) is not None,
)
RATE_LIMITING = PresetFilter(
    "rate_limit",
    '"rate_limit" or "rate limit" in any case, or an HTTP 429 (the only trace of a 429 as coded)',
    lambda r: r.http_status == 429 or _RATE_LIMIT_TEXT.search(r.raw) is not None,
)
PRESET_FILTERS: dict[str, PresetFilter] = {f.name: f for f in (ERRORS, VALIDATION_FAILURES, RATE_LIMITING)}


# --- top clients -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientCount:
    ip: str
    count: int
    rate_limited: int


class TopClients:
    """Requests per client IP over a sliding window: the runbook's `grep | awk | uniq -c | sort -rn`.

    By default only access lines (records with an HTTP status) count: both log shapes have
    exactly one per request, while app lines ("Generating proof for <ip>") would count some
    requests twice. `count_app_lines=True` counts every record with a client IP instead, for
    sources that have no access log; then a record with operation "rate_limit" counts as a 429.

    Memory is bounded: counts live in one-second buckets, and at most `max_ips` distinct IPs are
    tracked; further new IPs are pooled under OTHER (a spoofed X-Forwarded-For flood must not
    grow the console).
    """

    OTHER = "(other)"

    def __init__(
        self,
        window_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_ips: int = 10_000,
        count_app_lines: bool = False,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.window = float(window_seconds)
        self.clock = clock
        self.max_ips = max_ips
        self.count_app_lines = count_app_lines
        self._buckets: deque[tuple[int, dict[str, list[int]]]] = deque()
        self._totals: dict[str, list[int]] = {}

    def add(self, record: LogRecord) -> bool:
        """Count a record; True when it was counted."""
        ip = record.client_ip
        if not ip:
            return False
        if record.http_status is not None:
            limited = record.http_status == 429
        elif self.count_app_lines:
            limited = record.operation == "rate_limit"
        else:
            return False
        now = self.clock()
        self._expire(now)
        if ip not in self._totals and len(self._totals) >= self.max_ips:
            ip = self.OTHER
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, {}))
        counts = self._buckets[-1][1].setdefault(ip, [0, 0])
        total = self._totals.setdefault(ip, [0, 0])
        counts[0] += 1
        total[0] += 1
        if limited:
            counts[1] += 1
            total[1] += 1
        return True

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        buckets = self._buckets
        while buckets and buckets[0][0] + 1 <= horizon:
            _, counts = buckets.popleft()
            for ip, (n, limited) in counts.items():
                total = self._totals[ip]
                total[0] -= n
                total[1] -= limited
                if total[0] <= 0:
                    del self._totals[ip]

    def top(self, n: int = 10) -> list[ClientCount]:
        self._expire(self.clock())
        ranked = sorted(self._totals.items(), key=lambda item: (-item[1][0], item[0]))
        return [ClientCount(ip, c[0], c[1]) for ip, c in ranked[: max(n, 0)]]

    def total(self) -> int:
        self._expire(self.clock())
        return sum(c[0] for c in self._totals.values())

    def clear(self) -> None:
        self._buckets.clear()
        self._totals.clear()
