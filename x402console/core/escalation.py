"""Escalation and target timers of one incident (pure: no I/O; the clock is a parameter).

The policy is the runbook's (settings DEFAULT_ESCALATION / DEFAULT_TARGETS) unless the
configuration says otherwise:
- a tier with condition "unacknowledged" falls due `after_minutes` after the clock start while
  nobody has acknowledged; acknowledging stops it (PagerDuty/Grafana semantics);
- a tier with condition "unresolved" falls due `after_minutes` after the clock start while the
  incident is not resolved, acknowledged or not (Opsgenie's if-not-closed);
- the response target of the *current* severity passes while unacknowledged, the resolution
  target while unresolved. Both count from the clock start, so raising the severity can put an
  incident past its new target at once ("always assume the worst"); a target step is keyed by
  severity, so each severity's target fires at most once per cycle.

The clock start is the declaration, or the latest reopen: reopening clears acknowledged_at and
the rest in the journal, and every timer starts afresh (a new cycle with new step keys).

Each step has a stable key, "<incident>:<cycle>:<what>", and the console records a step it
fired as a journal 'escalation' event with details {"key": ...}. `fired_keys` reads those back,
so a step fires once per incident and cycle whichever console sees it due first, and a console
restarted mid-incident does not page again. (Two consoles checking in the same instant can
both decide to fire; recording with a check-and-insert in one journal transaction closes that
window.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from x402console.journal.models import Incident, TimelineEvent
from x402console.settings.model import (
    DEFAULT_CONTACTS,
    DEFAULT_ESCALATION,
    DEFAULT_TARGETS,
    ESCALATION_CONDITIONS,
    Contact,
    EscalationTier,
    Settings,
    Target,
)

__all__ = [
    "EscalationPolicy", "EscalationEngine", "EscalationStep", "EscalationTimers", "TierTimer",
    "TargetTimer", "Lifecycle", "lifecycle", "fired_keys", "fired_times", "signed_duration",
]

Clock = Callable[[], datetime]
StepKind = Literal["tier", "response_target", "resolution_target"]
TierState = Literal["pending", "due", "fired", "not_applicable"]
TargetState = Literal["running", "overdue", "met", "missed", "best_effort"]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(timezone.utc)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "tier"


def signed_duration(delta: timedelta) -> str:
    """+12m03s / -3m12s / +1h05m / -2d03h: a countdown, negative once overdue."""
    # Whole seconds towards zero, so 0.9 s before a boundary still reads +0m00s, not -.
    s = int(abs(delta.total_seconds()))
    sign = "-" if delta < timedelta(0) and s else "+"
    if s < 3600:
        body = f"{s // 60}m{s % 60:02d}s"
    elif s < 86400:
        body = f"{s // 3600}h{s % 3600 // 60:02d}m"
    else:
        body = f"{s // 86400}d{s % 86400 // 3600:02d}h"
    return sign + body


# ---------------------------------------------------------------------------- policy

@dataclass(frozen=True)
class EscalationPolicy:
    tiers: tuple[EscalationTier, ...] = DEFAULT_ESCALATION
    contacts: tuple[Contact, ...] = DEFAULT_CONTACTS
    targets: Mapping[str, Target] = field(default_factory=lambda: dict(DEFAULT_TARGETS))

    def __post_init__(self) -> None:
        for t in self.tiers:
            if t.condition not in ESCALATION_CONDITIONS:
                raise ValueError(f"escalation tier {t.name!r}: condition must be one of {', '.join(ESCALATION_CONDITIONS)}, got {t.condition!r}")
            if t.after_minutes < 0:
                raise ValueError(f"escalation tier {t.name!r}: after_minutes must not be negative")

    @classmethod
    def from_settings(cls, settings: Settings) -> EscalationPolicy:
        return cls(tuple(settings.escalation_tiers), tuple(settings.contacts), dict(settings.targets))

    def contacts_for(self, names: Iterable[str]) -> tuple[Contact, ...]:
        """Contacts by name, in the order given; a name the config lacks becomes a bare Contact
        so the step still says whom it meant to reach."""
        by_name = {c.name: c for c in self.contacts}
        return tuple(by_name.get(n, Contact(n)) for n in names)

    def target(self, severity: str) -> Target | None:
        return self.targets.get(severity)


# ---------------------------------------------------------------------------- lifecycle

@dataclass(frozen=True)
class Lifecycle:
    """When the incident's current clocks started, and how many times it was reopened."""

    started_at: datetime
    cycle: int = 0


def _reopens(incident_id: int, events: Iterable[TimelineEvent]) -> list[TimelineEvent]:
    found = []
    for e in events:
        if e.incident_id != incident_id or e.kind != "status_changed":
            continue
        d = e.details
        if d.get("to") == "declared" and d.get("from") is not None:
            found.append(e)
    return sorted(found, key=lambda e: (e.ts, e.id))


def lifecycle(incident: Incident, events: Iterable[TimelineEvent] = ()) -> Lifecycle:
    """The clock start: the latest reopen in `events` (the journal's status_changed events),
    else the declaration."""
    reopens = _reopens(incident.id, events)
    if not reopens:
        return Lifecycle(_aware(incident.created_at, "created_at"), 0)
    return Lifecycle(_aware(reopens[-1].ts, "reopen time"), len(reopens))


def fired_times(events: Iterable[TimelineEvent]) -> dict[str, datetime]:
    """Step key -> when it was first recorded, from the journal's 'escalation' events."""
    fired: dict[str, datetime] = {}
    for e in sorted(events, key=lambda e: (e.ts, e.id)):
        if e.kind != "escalation":
            continue
        try:
            key = e.details.get("key")
        except ValueError:
            continue
        if isinstance(key, str) and key and key not in fired:
            fired[key] = e.ts
    return fired


def fired_keys(events: Iterable[TimelineEvent]) -> set[str]:
    return set(fired_times(events))


# ---------------------------------------------------------------------------- results

@dataclass(frozen=True)
class EscalationStep:
    """Something that fell due: page a tier, or record that a target passed."""

    key: str
    kind: StepKind
    incident_id: int
    due_at: datetime
    summary: str
    severity: str
    contacts: tuple[Contact, ...] = ()
    tier: str | None = None
    condition: str | None = None

    def details(self) -> dict[str, Any]:
        """What the console stores in the 'escalation' event; `key` is what fired_keys reads."""
        return {
            "key": self.key,
            "step": self.kind,
            "tier": self.tier,
            "condition": self.condition,
            "severity": self.severity,
            "due_at": self.due_at.isoformat(),
            "contacts": [c.name for c in self.contacts],
        }


@dataclass(frozen=True)
class TierTimer:
    key: str
    name: str
    condition: str
    contacts: tuple[str, ...]
    due_at: datetime
    state: TierState
    remaining: timedelta  # due_at - now: negative once past
    fired_at: datetime | None = None
    reason: str = ""  # why not applicable

    def label(self) -> str:
        if self.state == "pending":
            return f"{self.name} in {signed_duration(self.remaining)[1:]}"
        if self.state == "due":
            return f"{self.name} due since {self.due_at:%H:%M}"
        if self.state == "fired":
            return f"{self.name} fired {self.fired_at or self.due_at:%H:%M}"
        return f"{self.name} n/a ({self.reason})"


@dataclass(frozen=True)
class TargetTimer:
    which: Literal["response", "resolution"]
    severity: str
    due_at: datetime | None  # None: best effort
    state: TargetState
    remaining: timedelta | None  # due_at - now while running/overdue
    done_at: datetime | None = None  # when acknowledged/resolved

    def label(self) -> str:
        if self.state == "best_effort":
            return f"{self.which} best effort"
        if self.state in ("running", "overdue"):
            assert self.remaining is not None
            return f"{self.which} {signed_duration(self.remaining)}"
        assert self.done_at is not None and self.due_at is not None
        late = signed_duration(self.due_at - self.done_at)
        return f"{self.which} {self.state} ({late})"


@dataclass(frozen=True)
class EscalationTimers:
    incident_id: int
    severity: str
    started_at: datetime
    cycle: int
    now: datetime
    tiers: tuple[TierTimer, ...]
    response: TargetTimer
    resolution: TargetTimer

    @property
    def next_pending(self) -> TierTimer | None:
        pending = [t for t in self.tiers if t.state == "pending"]
        return min(pending, key=lambda t: t.due_at) if pending else None

    @property
    def overdue(self) -> bool:
        return self.response.state == "overdue" or self.resolution.state == "overdue" or any(
            t.state == "due" for t in self.tiers
        )

    def header_text(self) -> str:
        """One compact line: targets first (they are what the header must never lose)."""
        parts = [self.response.label(), self.resolution.label()]
        nxt = self.next_pending
        if nxt is not None:
            parts.append("next: " + nxt.label())
        parts += [t.label() for t in self.tiers if t.state == "due"]
        return " · ".join(parts)


# ---------------------------------------------------------------------------- engine

class EscalationEngine:
    def __init__(self, policy: EscalationPolicy | None = None, clock: Clock = _utc_now) -> None:
        self.policy = policy or EscalationPolicy()
        self.clock = clock

    def _now(self, now: datetime | None) -> datetime:
        return _aware(self.clock() if now is None else now, "now")

    def _life(self, incident: Incident, life: Lifecycle | None) -> Lifecycle:
        return life if life is not None else Lifecycle(_aware(incident.created_at, "created_at"), 0)

    def _key(self, incident: Incident, life: Lifecycle, what: str) -> str:
        return f"{incident.id}:{life.cycle}:{what}"

    def tier_key(self, incident: Incident, index: int, tier: EscalationTier, life: Lifecycle | None = None) -> str:
        return self._key(incident, self._life(incident, life), f"tier:{index}:{_slug(tier.name)}")

    def target_key(self, incident: Incident, which: str, severity: str, life: Lifecycle | None = None) -> str:
        return self._key(incident, self._life(incident, life), f"{which}:{severity}")

    @staticmethod
    def _done(incident: Incident, condition: str) -> datetime | None:
        at = incident.acknowledged_at if condition == "unacknowledged" else incident.resolved_at
        # The journal implies acknowledgement when it records a later milestone: a mitigated or
        # resolved incident counts as acknowledged even if nobody pressed ack.
        if condition == "unacknowledged" and at is None:
            at = incident.mitigated_at or incident.resolved_at
        return None if at is None else _aware(at, "milestone")

    # -------------------------------------------------------------- header timers
    def timers(
        self, incident: Incident, now: datetime | None = None, *, life: Lifecycle | None = None,
        fired: Mapping[str, datetime] | None = None,
    ) -> EscalationTimers:
        """Each tier (due in / due / fired at / not applicable) and both targets' countdowns.

        `fired` (from fired_times) turns "due" into "fired" with the recorded time.
        """
        now = self._now(now)
        life = self._life(incident, life)
        fired = fired or {}
        tiers = []
        for i, tier in enumerate(self.policy.tiers):
            key = self.tier_key(incident, i, tier, life)
            due = life.started_at + timedelta(minutes=tier.after_minutes)
            done = self._done(incident, tier.condition)
            fired_at = fired.get(key)
            if fired_at is not None:
                state: TierState = "fired"
                reason = ""
            elif done is not None and done < due:
                state, reason = "not_applicable", "acknowledged" if tier.condition == "unacknowledged" else "resolved"
            elif done is not None:
                # It came due before the ack/resolution: it fired (or should have) at due.
                state, reason, fired_at = "fired", "", due
            elif now >= due:
                state, reason = "due", ""
            else:
                state, reason = "pending", ""
            tiers.append(TierTimer(key, tier.name, tier.condition, tuple(tier.contacts), due, state, due - now,
                                   fired_at, reason))
        return EscalationTimers(
            incident.id, incident.severity, life.started_at, life.cycle, now, tuple(tiers),
            self._target_timer(incident, "response", life, now),
            self._target_timer(incident, "resolution", life, now),
        )

    def _target_timer(self, incident: Incident, which: Literal["response", "resolution"], life: Lifecycle,
                      now: datetime) -> TargetTimer:
        target = self.policy.target(incident.severity)
        minutes = None if target is None else (
            target.response_minutes if which == "response" else target.resolution_minutes)
        if minutes is None:
            return TargetTimer(which, incident.severity, None, "best_effort", None)
        due = life.started_at + timedelta(minutes=minutes)
        done = self._done(incident, "unacknowledged" if which == "response" else "unresolved")
        if done is not None:
            return TargetTimer(which, incident.severity, due, "met" if done <= due else "missed", None, done)
        return TargetTimer(which, incident.severity, due, "overdue" if now >= due else "running", due - now)

    def evaluate(
        self, incident: Incident, events: Iterable[TimelineEvent], now: datetime | None = None
    ) -> tuple[EscalationTimers, list[EscalationStep]]:
        """Timers and newly due steps from the incident's journal events (reopens, fired steps)."""
        events = tuple(events)
        now = self._now(now)
        life = lifecycle(incident, events)
        fired = fired_times(events)
        return self.timers(incident, now, life=life, fired=fired), self.due_steps(incident, set(fired), now, life=life)

    # -------------------------------------------------------------- steps
    def due_steps(
        self, incident: Incident, already_fired: set[str] | frozenset[str], now: datetime | None = None, *,
        life: Lifecycle | None = None,
    ) -> list[EscalationStep]:
        """Steps due at `now` whose key is not in `already_fired`, oldest due first.

        A step is due while its condition still holds: a tier or response target is dropped once
        the incident is acknowledged, everything once it is resolved. `life` (from `lifecycle`)
        carries the reopen; without it the declaration starts the clocks.
        """
        now = self._now(now)
        life = self._life(incident, life)
        if incident.status == "resolved":
            return []
        acked_at = self._done(incident, "unacknowledged")
        acked = acked_at is not None
        steps: list[EscalationStep] = []
        engaged: list[str] = []  # contacts of tiers already due, in tier order
        for i, tier in enumerate(self.policy.tiers):
            due = life.started_at + timedelta(minutes=tier.after_minutes)
            if now < due:
                continue
            stopped = tier.condition == "unacknowledged" and acked_at is not None
            # A tier acknowledged before its minute never paged anyone: its contacts are not engaged.
            if acked_at is None or not stopped or acked_at >= due:
                engaged.extend(n for n in tier.contacts if n not in engaged)
            if stopped:
                continue
            key = self.tier_key(incident, i, tier, life)
            if key in already_fired:
                continue
            why = "not acknowledged" if tier.condition == "unacknowledged" else "not resolved"
            within = f"; expected to respond within {tier.respond_within_minutes} min" if tier.respond_within_minutes else ""
            who = ", ".join(tier.contacts) or "no contacts configured"
            since = "reopening" if life.cycle else "declaration"
            text = (f"Page {tier.name} ({who}): incident {'reopened' if life.cycle else 'declared'}, {why} yet"
                    if tier.after_minutes == 0 else
                    f"Escalate to {tier.name} ({who}): {why} {tier.after_minutes} min after {since}")
            steps.append(EscalationStep(
                key, "tier", incident.id, due, text + within,
                incident.severity, self.policy.contacts_for(tier.contacts), tier.name, tier.condition,
            ))
        target = self.policy.target(incident.severity)
        if target is not None:
            checks: list[tuple[Literal["response_target", "resolution_target"], int | None, bool]] = [
                ("response_target", target.response_minutes, not acked),
                ("resolution_target", target.resolution_minutes, True),
            ]
            for kind, minutes, applies in checks:
                if minutes is None or not applies:
                    continue
                due = life.started_at + timedelta(minutes=minutes)
                key = self.target_key(incident, kind.split("_")[0], incident.severity, life)
                if now < due or key in already_fired:
                    continue
                what = "acknowledged" if kind == "response_target" else "resolved"
                steps.append(EscalationStep(
                    key, kind, incident.id, due,
                    f"{incident.severity} {kind.split('_')[0]} target passed: not {what} within "
                    f"{_minutes_text(minutes)} of {'reopening' if life.cycle else 'declaration'}",
                    incident.severity, self.policy.contacts_for(engaged),
                ))
        steps.sort(key=lambda s: (s.due_at, s.key))
        return steps


def _minutes_text(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} d"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"
