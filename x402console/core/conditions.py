"""The words severity rules and runbook symptoms are written in: named signals read from a
`Signals`, and conditions over them.

Both data files (severity_rules.toml and runbook.toml) say things like
`{ signal = "error_ratio", op = ">", setting = "error_ratio_p1" }`; this module is the one
vocabulary they share, so a symptom and a severity rule about the same number read it the
same way, with the same three-valued answer: true, false, or unknown (the signal was not
observed). A fourth answer, undecided, is for values that are only a lower bound (a p95 in
the histogram's +Inf bucket) compared against a threshold the bound does not reach.

Pure: no I/O, no settings beyond the `SeverityThresholds` a condition may name.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from x402console.core.signals import (
    COMPONENT_STATES,
    DB_INTEGRITY_STATES,
    LOG_PATTERNS,
    VK_STATES,
    ReplicaSignal,
    Signals,
)
from x402console.settings.model import SeverityThresholds

__all__ = [
    "ConditionError",
    "Reading",
    "SignalSpec",
    "SIGNALS",
    "Condition",
    "Verdict",
    "Evaluation",
    "parse_condition",
    "parse_conditions",
    "evaluate",
    "check_template",
    "render",
    "format_value",
]


class ConditionError(ValueError):
    """A condition or text template in a data file is malformed; the message says where."""


# Container states in which a replica cannot answer even when nobody probed it.
_DEAD_STATES = frozenset({"exited", "dead", "gone"})

# The sizes memory is shown in: the simulator's leak is given in MiB.
_MIB = 2**20


@dataclass(frozen=True)
class Reading:
    """One value of one signal. `value` None means unknown."""

    value: Any
    lower_bound: bool = False  # the true value is at least `value`
    subject: str | None = None  # the replica or component a per-subject reading is about
    detail: str = ""  # words a text may add: down replica names, alert names, the top client


@dataclass(frozen=True)
class SignalSpec:
    name: str
    label: str  # plain words, for generated texts
    unit: str  # how values are shown: ratio, seconds, rate, count, minutes, bytes_per_s, state, text, bool, names
    kind: str  # number | state | text | bool | names: which operators apply
    source: str  # the Signals field a `missing` entry names
    read: Callable[[Signals], Any]  # a Reading, or a list of Readings for a per-subject signal
    family: str | None = None  # "replica" / "component": one reading per subject
    choices: tuple[str, ...] | None = None  # the values a state signal can take


# --------------------------------------------------------------------------- readings

def _replica_down(r: ReplicaSignal) -> bool | None:
    if r.up is not None:
        return not r.up
    if r.state in _DEAD_STATES:
        return True  # an exited container answers nothing, probed or not
    return None


def _down_names(s: Signals) -> str:
    return ", ".join(r.name for r in s.replicas if _replica_down(r))


def _replicas_down(s: Signals) -> Reading:
    if not s.replicas:
        return Reading(None)
    states = [_replica_down(r) for r in s.replicas]
    down = sum(1 for d in states if d)
    if None in states:
        # An unprobed replica may be down too: a count seen is only a floor, and a floor of
        # zero says nothing.
        return Reading(down or None, lower_bound=True, detail=_down_names(s))
    return Reading(down, detail=_down_names(s))


def _replicas_down_share(s: Signals) -> Reading:
    count = _replicas_down(s)
    if count.value is None:
        return count
    return Reading(count.value / len(s.replicas), count.lower_bound, detail=count.detail)


def _all_replicas_down(s: Signals) -> Reading:
    if not s.replicas:
        return Reading(None)
    states = [_replica_down(r) for r in s.replicas]
    if any(d is False for d in states):
        return Reading(False)
    if any(d is None for d in states):
        return Reading(None)
    return Reading(True, detail=_down_names(s))


def _per_replica(get: Callable[[ReplicaSignal], Any]) -> Callable[[Signals], list[Reading]]:
    def read(s: Signals) -> list[Reading]:
        return [Reading(get(r), subject=r.name) for r in s.replicas]

    return read


def _minutes_to_limit(r: ReplicaSignal) -> float | None:
    if r.memory_bytes is None or not r.memory_limit_bytes or r.memory_growth_bytes_per_s is None:
        return None
    if r.memory_growth_bytes_per_s <= 0:
        return math.inf
    left = max(0.0, r.memory_limit_bytes - r.memory_bytes)
    return left / r.memory_growth_bytes_per_s / 60.0


def _log(pattern: str) -> Callable[[Signals], Reading]:
    def read(s: Signals) -> Reading:
        if pattern in s.log_counts:
            return Reading(s.log_count(pattern))
        # No log source at all: the count is unknown, not zero.
        return Reading(None if s.log_lines is None else 0)

    return read


def _proof_rate_drop(s: Signals) -> Reading:
    if s.proof_rate is None or s.proof_rate_baseline is None:
        return Reading(None)
    if s.proof_rate_baseline <= 0:
        return Reading(0.0)  # nothing to drop from: a quiet system
    return Reading(max(0.0, 1.0 - s.proof_rate / s.proof_rate_baseline))


def _components(s: Signals) -> list[Reading]:
    return [
        Reading(None if state == "unknown" else state, subject=name)
        for name, state in sorted(s.components.items())
    ]


def _scalar(get: Callable[[Signals], Any], detail: Callable[[Signals], str] | None = None) -> Callable[[Signals], Reading]:
    return lambda s: Reading(get(s), detail=detail(s) if detail else "")


def _signal_specs() -> dict[str, SignalSpec]:
    specs = [
        SignalSpec("error_ratio", "error ratio", "ratio", "number", "error_ratio", _scalar(lambda s: s.error_ratio)),
        SignalSpec("latency_p95", "p95 latency", "seconds", "number", "latency_p95",
                   lambda s: Reading(s.latency_p95, lower_bound=s.latency_p95 is not None and s.latency_p95_at_least)),
        SignalSpec("latency_p50", "p50 latency", "seconds", "number", "latency_p50", _scalar(lambda s: s.latency_p50)),
        SignalSpec("proof_rate", "proof rate", "rate", "number", "proof_rate", _scalar(lambda s: s.proof_rate)),
        SignalSpec("proof_rate_baseline", "earlier proof rate", "rate", "number", "proof_rate_baseline",
                   _scalar(lambda s: s.proof_rate_baseline)),
        SignalSpec("proof_rate_drop", "drop of the proof rate from its baseline", "ratio", "number",
                   "proof_rate_baseline", _proof_rate_drop),
        SignalSpec("rate_limited_rate", "rate-limited requests", "rate", "number", "rate_limited_rate",
                   _scalar(lambda s: s.rate_limited_rate)),
        SignalSpec("active_requests", "requests in flight", "count", "number", "active_requests",
                   _scalar(lambda s: s.active_requests)),
        # An int with no "unknown": zero is also what a console without that source reports.
        SignalSpec("verification_failures", "invalid proofs", "count", "number", "verification_failures",
                   _scalar(lambda s: s.verification_failures)),
        SignalSpec("log_lines", "log lines", "count", "number", "log_lines", _scalar(lambda s: s.log_lines)),
        SignalSpec("top_client_share", "busiest client's share of requests", "ratio", "number", "top_client_share",
                   _scalar(lambda s: s.top_client_share, lambda s: s.top_client or "?")),
        SignalSpec("top_client_requests", "busiest client's requests", "count", "number", "top_client_requests",
                   _scalar(lambda s: s.top_client_requests, lambda s: s.top_client or "?")),
        SignalSpec("db_integrity", "proofs.db integrity", "state", "state", "db_integrity",
                   _scalar(lambda s: s.db_integrity), choices=DB_INTEGRITY_STATES),
        # None in Signals means "no error": the text is known to be empty, not unknown.
        SignalSpec("db_error", "proofs.db error", "text", "text", "db_error", _scalar(lambda s: s.db_error or "")),
        SignalSpec("vk_status", "verification key", "state", "state", "vk_status",
                   _scalar(lambda s: s.vk_status), choices=VK_STATES),
        SignalSpec("replicas_known", "replicas", "count", "number", "replicas",
                   _scalar(lambda s: len(s.replicas) or None)),
        SignalSpec("replicas_down", "replicas down", "count", "number", "replicas", _replicas_down),
        SignalSpec("replicas_down_share", "share of replicas down", "ratio", "number", "replicas",
                   _replicas_down_share),
        SignalSpec("all_replicas_down", "every replica down", "bool", "bool", "replicas", _all_replicas_down),
        SignalSpec("alerts_firing", "monitoring alerts firing", "count", "number", "alerts_firing",
                   _scalar(lambda s: len(s.alerts_firing), lambda s: ", ".join(s.alerts_firing))),
        SignalSpec("alert_names", "firing alerts", "names", "names", "alerts_firing",
                   _scalar(lambda s: tuple(s.alerts_firing), lambda s: ", ".join(s.alerts_firing))),
        SignalSpec("memory_ratio", "memory use of its limit", "ratio", "number", "memory_ratio",
                   _per_replica(lambda r: r.memory_ratio), family="replica"),
        SignalSpec("memory_growth", "memory growth", "bytes_per_s", "number", "memory_growth",
                   _per_replica(lambda r: r.memory_growth_bytes_per_s), family="replica"),
        SignalSpec("minutes_to_memory_limit", "time until memory reaches its limit", "minutes", "number",
                   "memory_growth", _per_replica(_minutes_to_limit), family="replica"),
        SignalSpec("replica_down", "replica down", "bool", "bool", "replicas",
                   _per_replica(_replica_down), family="replica"),
        SignalSpec("component", "component state", "state", "state", "components", _components,
                   family="component", choices=tuple(c for c in COMPONENT_STATES if c != "unknown")),
    ]
    specs += [
        SignalSpec(f"log_{p}", f"'{p}' log lines", "count", "number", "log_counts", _log(p)) for p in LOG_PATTERNS
    ]
    return {s.name: s for s in specs}


SIGNALS: Mapping[str, SignalSpec] = _signal_specs()

# The unit of each [severity] setting, for texts that quote a threshold by name.
SETTING_UNITS: Mapping[str, str] = {
    "error_ratio_p1": "ratio",
    "error_ratio_p2": "ratio",
    "latency_p95_p1_seconds": "seconds",
    "latency_p95_p2_seconds": "seconds",
    "proof_rate_p1": "rate",
    "memory_ratio_warn": "ratio",
}
_SETTING_NAMES = frozenset(f.name for f in fields(SeverityThresholds))


# --------------------------------------------------------------------------- formatting

def _g(x: float) -> str:
    return f"{round(x, 6):g}"


def format_value(value: Any, unit: str, *, threshold: bool = False) -> str:
    """A value as a text shows it. Thresholds are shown as written (20%, 5 s); measured values
    with one decimal (27.0%, 6.0 s) so a reader tells a measurement from a limit."""
    if value is None:
        return "unknown"
    if unit == "names":
        return ", ".join(value) if value else "none"
    if unit == "bool":
        return "yes" if value else "no"
    if unit in ("state", "text"):
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "unknown"
    if unit == "ratio":
        return f"{_g(v * 100)}%" if threshold else f"{v * 100:.1f}%"
    if unit == "seconds":
        if threshold:
            return f"{_g(v)} s"
        return f"{v * 1000:.0f} ms" if v < 0.1 else f"{v:.1f} s"
    if unit == "rate":
        return f"{_g(v)} req/s" if threshold else f"{v:.1f} req/s"
    if unit == "bytes_per_s":
        return f"{v / _MIB:.1f} MiB/s"
    if unit == "minutes":
        if math.isinf(v):
            return "never"
        if v < 1:
            return "under a minute"
        return f"{v:.0f} min" if v < 120 else f"{v / 60:.1f} h"
    return _g(v)  # count


# --------------------------------------------------------------------------- conditions

class Verdict(Enum):
    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"  # a signal it needs was not observed
    UNDECIDED = "undecided"  # only a lower bound is known, and it does not settle the question


_OPS_BY_KIND = {
    "number": (">", ">=", "<", "<=", "==", "!="),
    "state": ("==", "!=", "in"),
    "text": ("==", "!=", "matches"),
    "bool": ("==", "!="),
    "names": ("contains",),
}


@dataclass(frozen=True)
class Condition:
    signal: str
    op: str
    value: Any = None  # a literal to compare with
    setting: str | None = None  # or the name of a [severity] threshold
    pattern: re.Pattern[str] | None = field(default=None, compare=False)

    @property
    def spec(self) -> SignalSpec:
        return SIGNALS[self.signal]

    def threshold(self, thresholds: SeverityThresholds) -> Any:
        return getattr(thresholds, self.setting) if self.setting else self.value

    def threshold_text(self, thresholds: SeverityThresholds) -> str:
        if self.op == "matches":
            return f"/{self.value}/"
        unit = SETTING_UNITS.get(self.setting or "", self.spec.unit)
        t = self.threshold(thresholds)
        if isinstance(t, (list, tuple)) and self.spec.kind != "names":
            return " or ".join(str(x) for x in t)
        return format_value(t, unit, threshold=True)

    def check(self, reading: Reading, thresholds: SeverityThresholds) -> Verdict:
        v = reading.value
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return Verdict.UNKNOWN  # NaN is a rate over no samples: nothing was seen
        try:
            return self._compare(v, reading.lower_bound, self.threshold(thresholds))
        except TypeError:
            return Verdict.UNKNOWN  # a value of the wrong type says nothing; it must not crash the console

    def _compare(self, v: Any, lower_bound: bool, t: Any) -> Verdict:
        op = self.op
        if op == "matches":
            assert self.pattern is not None
            return Verdict.TRUE if self.pattern.search(str(v)) else Verdict.FALSE
        if op == "contains":
            return Verdict.TRUE if t in v else Verdict.FALSE
        if op == "in":
            return Verdict.TRUE if v in t else Verdict.FALSE
        if op in ("==", "!="):
            if lower_bound and self.spec.kind == "number":
                return Verdict.UNDECIDED
            return Verdict.TRUE if (v == t) == (op == "==") else Verdict.FALSE
        holds = {">": v > t, ">=": v >= t, "<": v < t, "<=": v <= t}[op]
        if lower_bound:
            # The true value is v or more: above-threshold answers stand, the others cannot be told.
            if op in (">", ">="):
                return Verdict.TRUE if holds else Verdict.UNDECIDED
            return Verdict.FALSE if not holds else Verdict.UNDECIDED
        return Verdict.TRUE if holds else Verdict.FALSE


def parse_condition(raw: Any, where: str) -> Condition:
    if not isinstance(raw, dict):
        raise ConditionError(f"{where}: a condition must be a table {{ signal = ..., op = ..., value = ... }}, got {raw!r}")
    unknown = set(raw) - {"signal", "op", "value", "setting"}
    if unknown:
        raise ConditionError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} in a condition "
                             f"(keys: signal, op, value or setting)")
    name = raw.get("signal")
    if name not in SIGNALS:
        raise ConditionError(f"{where}: unknown signal {name!r}; known: {', '.join(sorted(SIGNALS))}")
    spec = SIGNALS[name]
    op = raw.get("op")
    allowed = _OPS_BY_KIND[spec.kind]
    if op not in allowed:
        raise ConditionError(f"{where}: signal {name!r} takes op {' '.join(allowed)}, got {op!r}")
    has_value, setting = "value" in raw, raw.get("setting")
    if has_value == (setting is not None):
        raise ConditionError(f"{where}: a condition on {name!r} needs exactly one of value = ... or setting = ...")
    if setting is not None:
        if spec.kind != "number":
            raise ConditionError(f"{where}: setting = ... compares numbers; {name!r} is a {spec.kind}")
        if setting not in _SETTING_NAMES:
            raise ConditionError(f"{where}: unknown [severity] setting {setting!r}; known: {', '.join(sorted(_SETTING_NAMES))}")
        return Condition(name, op, setting=setting)
    value = raw["value"]
    _check_literal(name, spec, op, value, where)
    pattern = None
    if op == "matches":
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ConditionError(f"{where}: bad regular expression {value!r}: {exc}") from None
    if isinstance(value, list):
        value = tuple(value)
    return Condition(name, op, value=value, pattern=pattern)


def _check_literal(name: str, spec: SignalSpec, op: str, value: Any, where: str) -> None:
    def bad(expected: str) -> ConditionError:
        return ConditionError(f"{where}: {name!r} {op} needs {expected}, got {value!r}")

    if spec.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif spec.kind in ("text", "names"):
        if not isinstance(value, str):
            raise bad("text")
    elif spec.kind == "state":
        values = value if op == "in" else [value]
        if op == "in" and not isinstance(value, list):
            raise bad("a list of states")
        for v in values:
            if v not in (spec.choices or ()):
                raise ConditionError(f"{where}: {name!r} is one of {', '.join(spec.choices or ())}, got {v!r}")


def parse_conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConditionError(f"{where}: `when` must be a non-empty list of conditions")
    conds = tuple(parse_condition(c, f"{where}: condition {i}") for i, c in enumerate(raw, start=1))
    families = {c.spec.family for c in conds if c.spec.family}
    if len(families) > 1:
        raise ConditionError(f"{where}: conditions mix per-{' and per-'.join(sorted(families))} signals; "
                             "one list may speak of one kind of subject")
    return conds


# --------------------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class Evaluation:
    """The answer of a condition list for one subject (or for the whole system)."""

    verdict: Verdict
    subject: str | None
    readings: tuple[Reading, ...]  # one per condition, in order
    missing: tuple[str, ...] = ()  # sources that were unknown (only when verdict is UNKNOWN)


class _Reader:
    """Reads each signal once per Signals: one rule file reads the same signal many times."""

    def __init__(self, signals: Signals) -> None:
        self.signals = signals
        self._cache: dict[str, Any] = {}

    def scalar(self, name: str) -> Reading:
        got = self._get(name)
        return got if isinstance(got, Reading) else Reading(None)

    def subjects(self, name: str) -> list[Reading]:
        got = self._get(name)
        return got if isinstance(got, list) else [got]

    def for_subject(self, name: str, subject: str | None) -> Reading:
        spec = SIGNALS[name]
        if spec.family is None:
            return self.scalar(name)
        for r in self.subjects(name):
            if r.subject == subject:
                return r
        return Reading(None, subject=subject)

    def _get(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = SIGNALS[name].read(self.signals)
        return self._cache[name]


def reader(signals: Signals) -> _Reader:
    return _Reader(signals)


def _missing_name(cond: Condition, subject: str | None) -> str:
    src = cond.spec.source
    return f"{src} ({subject})" if subject and cond.spec.family else src


def evaluate(
    conditions: Sequence[Condition], signals: Signals | _Reader, thresholds: SeverityThresholds
) -> list[Evaluation]:
    """All conditions must hold. One Evaluation for the system, or one per subject when the
    conditions speak of replicas or components (a rule then fires per replica)."""
    rd = signals if isinstance(signals, _Reader) else _Reader(signals)
    family_cond = next((c for c in conditions if c.spec.family), None)
    if family_cond is None:
        subjects: list[str | None] = [None]
    else:
        subjects = [r.subject for r in rd.subjects(family_cond.signal)]
        if not subjects:
            # No replica known: unknown, said once as "replicas". No component configured:
            # nothing to check, which is not a missing signal.
            if family_cond.spec.family == "replica":
                return [Evaluation(Verdict.UNKNOWN, None, tuple(Reading(None) for _ in conditions), ("replicas",))]
            return []
    out: list[Evaluation] = []
    for subject in subjects:
        readings = tuple(rd.for_subject(c.signal, subject) for c in conditions)
        verdicts = [c.check(r, thresholds) for c, r in zip(conditions, readings)]
        if Verdict.FALSE in verdicts:
            verdict, missing = Verdict.FALSE, ()
        elif Verdict.UNKNOWN in verdicts:
            verdict = Verdict.UNKNOWN
            missing = tuple(dict.fromkeys(
                _missing_name(c, subject) for c, v in zip(conditions, verdicts) if v is Verdict.UNKNOWN
            ))
        elif Verdict.UNDECIDED in verdicts:
            verdict, missing = Verdict.UNDECIDED, ()
        else:
            verdict, missing = Verdict.TRUE, ()
        out.append(Evaluation(verdict, subject, readings, missing))
    return out


# --------------------------------------------------------------------------- texts

_TEMPLATE_KEYS = frozenset({"value", "threshold", "at_least", "detail", "subject", "label"})


def template_keys() -> frozenset[str]:
    names = set(_TEMPLATE_KEYS) | set(SIGNALS) | {f"{n}_detail" for n in SIGNALS} | set(SETTING_UNITS)
    return frozenset(names)


def check_template(text: Any, where: str) -> str:
    """A text template may name the headline's value/threshold/at_least/detail/subject, any
    signal (its formatted value, or `<signal>_detail`) and any [severity] setting."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError(f"{where}: text must be non-empty text")
    allowed = template_keys()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConditionError(f"{where}: bad text template {text!r}: {exc} (write a brace as {{{{ or }}}})") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed:
            raise ConditionError(f"{where}: text names {{{name}}}, which is not a signal, a setting or one of "
                                 f"{', '.join(sorted(_TEMPLATE_KEYS))}")
        if spec or conversion:
            raise ConditionError(f"{where}: {{{name}}}: values are formatted by their unit; drop the format spec")
    return text


class _TextContext(dict):
    def __init__(self, rd: _Reader, thresholds: SeverityThresholds, subject: str | None) -> None:
        super().__init__()
        self.rd, self.thresholds, self.subject = rd, thresholds, subject

    def __missing__(self, key: str) -> str:
        if key in SETTING_UNITS:
            return format_value(getattr(self.thresholds, key), SETTING_UNITS[key], threshold=True)
        base, detail = (key[: -len("_detail")], True) if key.endswith("_detail") else (key, False)
        if base in SIGNALS:
            r = self.rd.for_subject(base, self.subject)
            if detail:
                return r.detail
            text = format_value(r.value, SIGNALS[base].unit)
            return f"at least {text}" if r.lower_bound else text
        return "{" + key + "}"


def render(
    template: str,
    conditions: Sequence[Condition],
    evaluation: Evaluation,
    rd: _Reader,
    thresholds: SeverityThresholds,
    **extra: str,
) -> str:
    """The template filled in for one evaluation. The headline is the first condition."""
    ctx = _TextContext(rd, thresholds, evaluation.subject)
    head, reading = conditions[0], evaluation.readings[0]
    ctx.update(
        value=format_value(reading.value, head.spec.unit),
        threshold=head.threshold_text(thresholds),
        at_least="at least " if reading.lower_bound else "",
        detail=reading.detail,
        subject=evaluation.subject or "",
        label=head.spec.label,
    )
    ctx.update(extra)
    return template.format_map(ctx)
