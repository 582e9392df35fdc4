"""Prometheus HTTP API responses (already JSON-decoded) -> dataclasses.

Pure: the HTTP client lives elsewhere and hands over ``response.json()`` (and the status code,
for the error message). Every malformed shape becomes a PromAPIError that says what was wrong,
so a proxy's error page, a version difference or a truncated body never surfaces as a
KeyError in the UI. Facts relied on: reference/ops-apis.md C1 (values are strings such as
"NaN", "+Inf", "-Inf", "1e-07"; timestamps are float seconds; a vector entry may carry a native
``histogram`` instead of ``value``; errors carry ``errorType``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from x402console.sources.exposition import parse_float

__all__ = [
    "PromAPIError",
    "Envelope",
    "VectorSample",
    "Series",
    "QueryResult",
    "Alert",
    "AlertsResult",
    "Target",
    "TargetsResult",
    "parse_envelope",
    "parse_sample_value",
    "parse_query_response",
    "parse_alerts",
    "parse_targets",
]


class PromAPIError(Exception):
    """An error answer from Prometheus, or an answer that is not what the API documents."""

    def __init__(self, message: str, error_type: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status_code = status_code

    def __str__(self) -> str:
        parts = ["Prometheus"]
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.error_type:
            parts.append(self.error_type)
        return f"{' '.join(parts)}: {self.message}"


@dataclass(frozen=True)
class Envelope:
    status: str
    data: Any
    warnings: tuple[str, ...] = ()
    infos: tuple[str, ...] = ()


@dataclass(frozen=True)
class VectorSample:
    metric: Mapping[str, str]
    ts: float
    value: float


@dataclass(frozen=True)
class Series:
    metric: Mapping[str, str]
    values: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class QueryResult:
    result_type: str
    vector: tuple[VectorSample, ...] = ()
    matrix: tuple[Series, ...] = ()
    scalar: tuple[float, float] | None = None
    string: tuple[float, str] | None = None
    warnings: tuple[str, ...] = ()
    infos: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # things we skipped on purpose, e.g. native histograms

    def first_value(self) -> float | None:
        """The single number a panel usually wants: first vector sample, or the scalar."""
        if self.vector:
            return self.vector[0].value
        if self.scalar is not None:
            return self.scalar[1]
        return None


@dataclass(frozen=True)
class Alert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    state: str
    active_at: datetime | None
    value: float | None
    value_text: str
    keep_firing_since: datetime | None = None

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class AlertsResult:
    alerts: tuple[Alert, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    labels: Mapping[str, str]
    scrape_url: str
    health: str
    last_error: str
    last_scrape: datetime | None
    last_scrape_duration: float | None
    scrape_pool: str = ""
    global_url: str = ""
    scrape_interval: str = ""
    scrape_timeout: str = ""
    discovered_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetsResult:
    active: tuple[Target, ...]
    dropped_count: int = 0
    warnings: tuple[str, ...] = ()


# --- small readers ---------------------------------------------------------------------------


def _fail(message: str, status_code: int | None = None) -> PromAPIError:
    return PromAPIError(message, "bad_response", status_code)


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def _strings(obj: Any, what: str) -> tuple[str, ...]:
    if obj is None:
        return ()
    if not isinstance(obj, list):
        raise _fail(f"{what} is not a list: {_short(obj)}")
    return tuple(str(x) for x in obj)


def _labels(obj: Any, what: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise _fail(f"{what} is not an object: {_short(obj)}")
    out: dict[str, str] = {}
    for key, val in obj.items():
        if not isinstance(val, str):
            raise _fail(f"{what}: value of {key!r} is not a string: {_short(val)}")
        out[str(key)] = val
    return out


def _number(obj: Any, what: str) -> float:
    if isinstance(obj, bool):
        raise _fail(f"{what} is not a number: {_short(obj)}")
    if isinstance(obj, (int, float)):
        return float(obj)
    if isinstance(obj, str):
        parsed = parse_float(obj.strip())
        if parsed is not None:
            return parsed
    raise _fail(f"{what} is not a number: {_short(obj)}")


def parse_sample_value(obj: Any) -> float:
    """A sample value as the API writes it: a string ("1", "NaN", "+Inf", "-Inf", "1e-07")."""
    return _number(obj, "sample value")


def _pair(obj: Any, what: str) -> tuple[float, Any]:
    if not isinstance(obj, list) or len(obj) != 2:
        raise _fail(f"{what} is not a [timestamp, value] pair: {_short(obj)}")
    return _number(obj[0], f"{what} timestamp"), obj[1]


def _rfc3339(obj: Any) -> datetime | None:
    """RFC3339 (nanoseconds allowed) -> aware datetime; Go's zero time and junk -> None."""
    if not isinstance(obj, str) or not obj or obj.startswith("0001-01-01"):
        return None
    try:
        stamp = datetime.fromisoformat(obj)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)


# --- envelope and results --------------------------------------------------------------------


def histogram_buckets(result: QueryResult) -> list[tuple[float, float]]:
    """(le, cumulative count) of a `sum by (le) (...)` vector; NaN and unparsable `le` left out."""
    buckets = []
    for smp in result.vector:
        le = parse_float(smp.metric.get("le", "").strip())
        if le is not None and not math.isnan(le) and not math.isnan(smp.value):
            buckets.append((le, smp.value))
    return buckets


def parse_envelope(obj: Any, status_code: int | None = None) -> Envelope:
    """Check the common envelope; raise PromAPIError for ``status: error`` or a wrong shape."""
    if not isinstance(obj, dict):
        raise _fail(f"response is not a JSON object: {_short(obj)}", status_code)
    status = obj.get("status")
    if status == "error":
        error_type = obj.get("errorType")
        message = obj.get("error")
        raise PromAPIError(
            str(message) if message not in (None, "") else "error without a message",
            str(error_type) if error_type not in (None, "") else None,
            status_code,
        )
    if status != "success":
        raise _fail(f"unexpected status {_short(status)}", status_code)
    try:
        warnings = _strings(obj.get("warnings"), "warnings")
        infos = _strings(obj.get("infos"), "infos")
    except PromAPIError as exc:
        exc.status_code = status_code
        raise
    if "data" not in obj:
        raise _fail("success response without data", status_code)
    return Envelope("success", obj["data"], warnings, infos)


def parse_query_response(obj: Any, status_code: int | None = None) -> QueryResult:
    """/api/v1/query and /api/v1/query_range."""
    env = parse_envelope(obj, status_code)
    data = env.data
    if not isinstance(data, dict):
        raise _fail(f"data is not an object: {_short(data)}", status_code)
    result_type = data.get("resultType")
    result = data.get("result")
    notes: list[str] = []
    try:
        if result_type == "vector":
            if not isinstance(result, list):
                raise _fail(f"vector result is not a list: {_short(result)}")
            vector = []
            for i, entry in enumerate(result):
                if not isinstance(entry, dict):
                    raise _fail(f"vector entry {i} is not an object: {_short(entry)}")
                metric = _labels(entry.get("metric"), f"vector entry {i} metric")
                if "value" not in entry:
                    if "histogram" in entry:
                        notes.append(f"native histogram skipped for {metric or '{}'}")
                        continue
                    raise _fail(f"vector entry {i} has neither value nor histogram")
                ts, raw = _pair(entry["value"], f"vector entry {i} value")
                vector.append(VectorSample(metric, ts, parse_sample_value(raw)))
            return QueryResult("vector", vector=tuple(vector), warnings=env.warnings, infos=env.infos, notes=tuple(notes))
        if result_type == "matrix":
            if not isinstance(result, list):
                raise _fail(f"matrix result is not a list: {_short(result)}")
            matrix = []
            for i, entry in enumerate(result):
                if not isinstance(entry, dict):
                    raise _fail(f"matrix entry {i} is not an object: {_short(entry)}")
                metric = _labels(entry.get("metric"), f"matrix entry {i} metric")
                raw_values = entry.get("values")
                if raw_values is None:
                    if "histograms" in entry:
                        notes.append(f"native histogram series skipped for {metric or '{}'}")
                        continue
                    raise _fail(f"matrix entry {i} has neither values nor histograms")
                if not isinstance(raw_values, list):
                    raise _fail(f"matrix entry {i} values is not a list")
                if "histograms" in entry:
                    notes.append(f"native histogram points skipped for {metric or '{}'}")
                points = []
                for pair in raw_values:
                    ts, raw = _pair(pair, f"matrix entry {i} point")
                    points.append((ts, parse_sample_value(raw)))
                matrix.append(Series(metric, tuple(points)))
            return QueryResult("matrix", matrix=tuple(matrix), warnings=env.warnings, infos=env.infos, notes=tuple(notes))
        if result_type == "scalar":
            ts, raw = _pair(result, "scalar result")
            return QueryResult("scalar", scalar=(ts, parse_sample_value(raw)), warnings=env.warnings, infos=env.infos)
        if result_type == "string":
            ts, raw = _pair(result, "string result")
            if not isinstance(raw, str):
                raise _fail("string result value is not a string")
            return QueryResult("string", string=(ts, raw), warnings=env.warnings, infos=env.infos)
    except PromAPIError as exc:
        exc.status_code = status_code
        raise
    raise _fail(f"unknown resultType {_short(result_type)}", status_code)


def parse_alerts(obj: Any, status_code: int | None = None) -> AlertsResult:
    """/api/v1/alerts."""
    env = parse_envelope(obj, status_code)
    data = env.data
    raw_alerts = data.get("alerts") if isinstance(data, dict) else None
    if not isinstance(raw_alerts, list):
        raise _fail("data.alerts is missing or not a list", status_code)
    alerts = []
    try:
        for i, entry in enumerate(raw_alerts):
            if not isinstance(entry, dict):
                raise _fail(f"alert {i} is not an object: {_short(entry)}")
            value_raw = entry.get("value")
            value_text = "" if value_raw is None else str(value_raw)
            try:
                value = None if value_raw is None else parse_sample_value(value_raw)
            except PromAPIError:
                value = None  # the value is informative only; keep the alert
            state = entry.get("state")
            alerts.append(
                Alert(
                    labels=_labels(entry.get("labels"), f"alert {i} labels"),
                    annotations=_labels(entry.get("annotations"), f"alert {i} annotations"),
                    state=state if isinstance(state, str) else "unknown",
                    active_at=_rfc3339(entry.get("activeAt")),
                    value=value,
                    value_text=value_text,
                    keep_firing_since=_rfc3339(entry.get("keepFiringSince")),
                )
            )
    except PromAPIError as exc:
        exc.status_code = status_code
        raise
    return AlertsResult(tuple(alerts), env.warnings)


def _text(obj: Any) -> str:
    return obj if isinstance(obj, str) else ""


def parse_targets(obj: Any, status_code: int | None = None) -> TargetsResult:
    """/api/v1/targets: the active targets in full, the dropped ones only counted."""
    env = parse_envelope(obj, status_code)
    data = env.data
    if not isinstance(data, dict):
        raise _fail(f"data is not an object: {_short(data)}", status_code)
    raw_active = data.get("activeTargets", [])
    raw_dropped = data.get("droppedTargets", [])
    if not isinstance(raw_active, list):
        raise _fail("data.activeTargets is not a list", status_code)
    active = []
    try:
        for i, entry in enumerate(raw_active):
            if not isinstance(entry, dict):
                raise _fail(f"target {i} is not an object: {_short(entry)}")
            duration_raw = entry.get("lastScrapeDuration")
            try:
                duration = None if duration_raw is None else _number(duration_raw, "lastScrapeDuration")
            except PromAPIError:
                duration = None
            if duration is not None and not math.isfinite(duration):
                duration = None
            health = entry.get("health")
            active.append(
                Target(
                    labels=_labels(entry.get("labels"), f"target {i} labels"),
                    scrape_url=_text(entry.get("scrapeUrl")),
                    health=health if isinstance(health, str) and health else "unknown",
                    last_error=_text(entry.get("lastError")),
                    last_scrape=_rfc3339(entry.get("lastScrape")),
                    last_scrape_duration=duration,
                    scrape_pool=_text(entry.get("scrapePool")),
                    global_url=_text(entry.get("globalUrl")),
                    scrape_interval=_text(entry.get("scrapeInterval")),
                    scrape_timeout=_text(entry.get("scrapeTimeout")),
                    discovered_labels=_labels(entry.get("discoveredLabels"), f"target {i} discoveredLabels"),
                )
            )
    except PromAPIError as exc:
        exc.status_code = status_code
        raise
    dropped = len(raw_dropped) if isinstance(raw_dropped, list) else 0
    return TargetsResult(tuple(active), dropped, env.warnings)
