"""Read one incident's record from the journal into a PostMortem (the facts, not the prose).

Milestone rules, so readers know what a number means:
- First signal: the earliest 'observation' event in the detection window before the
  declaration (default one hour; environment-wide observations and the incident's own), else
  the declaration itself. Time to detect = declaration - first signal.
- Acknowledged / Mitigated: the first time the incident reached that state or a later one
  (the journal implies the earlier milestones), kept across reopens: the first response is
  what counts for the response target.
- Resolved: only while the incident is resolved now; a reopened incident is "not yet".
- Durations are from the first signal and from the declaration.
Targets are the final severity's, from the settings, counted from the declaration.
The runbook incident's title, prevention lines and post-incident steps come from
core/runbook.toml; action items are pre-filled from notes starting "TODO:" (the scribe's
convention), those post-incident steps and the recovery/post-incident checklist items left open.
For a security incident, disruptive actions that succeeded before the first evidence bundle are
listed (runbook: "DO NOT restart services immediately").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any, Protocol

from x402console.core import checklist as runbook_checklist
from x402console.journal.models import SEVERITIES, ActionRecord, ChecklistItemState, Incident, TimelineEvent
from x402console.journal.timeline_export import neutralise
from x402console.postmortem.model import (
    ActionEntry,
    ActionItem,
    ChecklistEntry,
    ChecklistPhaseState,
    EvidenceBundle,
    EvidenceFile,
    Milestone,
    PostMortem,
    Reopen,
    Responder,
    SeverityChange,
    SeverityPeriod,
    TargetCheck,
)
from x402console.settings.model import DEFAULT_TARGETS, Settings, Target

DETECTION_WINDOW = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EVIDENCE_PREFIX = "evidence."
# Verbs that take a prover down or replace it: what the runbook says not to do in a security
# incident before evidence is preserved. The action registry's guarded verbs, plus "restore":
# restoring proofs.db overwrites the very file the evidence is about.
DISRUPTIVE_VERBS = ("restart", "recreate", "stop", "down", "kill", "scale", "remove", "restore")
# Checklist items whose absence at the end is itself an action item.
FOLLOW_UP_ITEMS = (
    "recovery.long_term_fix", "recovery.monitoring_improved", "recovery.documentation_updated",
    "post_incident.preventive_measures", "post_incident.runbook_updated",
)
# Events the console writes by itself: their actor is a console, not a responder.
AUTOMATIC_KINDS = ("observation", "escalation", "system")
_REACHED = {
    "Acknowledged": ("acknowledged", "mitigated", "resolved"),
    "Mitigated": ("mitigated", "resolved"),
}


class _JournalReader(Protocol):
    async def incident(self, incident_id: int) -> Incident: ...
    async def events(self, incident_id: int | None = None, since_id: int = 0, kinds: Iterable[str] | None = None,
                     limit: int | None = None) -> tuple[TimelineEvent, ...]: ...
    async def actions(self, incident_id: int | None = None) -> tuple[ActionRecord, ...]: ...
    async def checklist_state(self, incident_id: int) -> dict[str, ChecklistItemState]: ...


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got {dt!r}")
    return dt.astimezone(timezone.utc)


def _details(event: TimelineEvent) -> dict[str, Any]:
    try:
        value = json.loads(event.details_json)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _detail(record: ActionRecord) -> dict[str, Any]:
    try:
        value = json.loads(record.detail_json)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _ordered(events: Iterable[TimelineEvent]) -> tuple[TimelineEvent, ...]:
    return tuple(sorted(events, key=lambda e: (e.ts, e.id)))


def _since(at: datetime | None, start: datetime) -> timedelta | None:
    return None if at is None else at - start


# ---------------------------------------------------------------------------- pieces

def _milestones(incident: Incident, events: tuple[TimelineEvent, ...], first_signal: TimelineEvent | None
                ) -> tuple[Milestone, ...]:
    declared = incident.created_at
    signal_at = first_signal.ts if first_signal is not None else declared
    status_events = [e for e in events if e.kind == "status_changed"]

    def first_reaching(states: tuple[str, ...]) -> TimelineEvent | None:
        return next((e for e in status_events if _details(e).get("to") in states), None)

    rows = [
        Milestone("First signal", signal_at, timedelta(0), signal_at - declared,
                  f"observation: {neutralise(first_signal.summary)}" if first_signal else "the declaration (no earlier observation)"),
        Milestone("Declared", declared, declared - signal_at, timedelta(0), f"declared by {neutralise(incident.declared_by)}"),
    ]
    for name, states in _REACHED.items():
        ev = first_reaching(states)
        column = incident.acknowledged_at if name == "Acknowledged" else incident.mitigated_at
        at = ev.ts if ev is not None else column
        if ev is not None:
            to = _details(ev).get("to")
            source = f"{neutralise(ev.actor)}" + ("" if to == states[0] else f" (implied by {to})")
        else:
            source = "incident record" if at is not None else ""
        rows.append(Milestone(name, at, _since(at, signal_at), _since(at, declared), source))
    resolved = incident.resolved_at if incident.status == "resolved" else None
    last = next((e for e in reversed(status_events) if _details(e).get("to") == "resolved"), None)
    rows.append(Milestone("Resolved", resolved, _since(resolved, signal_at), _since(resolved, declared),
                          neutralise(last.actor) if resolved is not None and last is not None else ""))
    return tuple(rows)


def _parse_ts(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _reopens(events: tuple[TimelineEvent, ...]) -> tuple[Reopen, ...]:
    found = []
    for e in events:
        d = _details(e)
        if e.kind == "status_changed" and d.get("to") == "declared" and d.get("from") is not None:
            prev = d.get("previous") if isinstance(d.get("previous"), dict) else {}
            note = d.get("note")
            cleared = tuple((k.removesuffix("_at"), _parse_ts(v)) for k, v in sorted(prev.items()))
            found.append(Reopen(e.ts, neutralise(e.actor), neutralise(note) if isinstance(note, str) else None, cleared))
    return tuple(found)


def _open_intervals(incident: Incident, events: tuple[TimelineEvent, ...], now: datetime
                    ) -> list[tuple[datetime, datetime]]:
    """When the incident was open: declaration to resolution, and each reopen to the next."""
    spans: list[tuple[datetime, datetime]] = []
    start: datetime | None = incident.created_at
    for e in events:
        if e.kind != "status_changed":
            continue
        to = _details(e).get("to")
        if to == "resolved" and start is not None:
            spans.append((start, e.ts))
            start = None
        elif to == "declared" and start is None:
            start = e.ts
    if start is not None:
        spans.append((start, max(now, start)))
    return spans


def _open_time(start: datetime, stop: datetime, spans: list[tuple[datetime, datetime]]) -> timedelta:
    total = timedelta(0)
    for a, b in spans:
        overlap = min(stop, b) - max(start, a)
        if overlap > timedelta(0):
            total += overlap
    return total


def _severity(incident: Incident, events: tuple[TimelineEvent, ...], now: datetime
              ) -> tuple[tuple[SeverityChange, ...], tuple[SeverityPeriod, ...], str]:
    changes = [e for e in events if e.kind == "severity_changed"]
    declared = next((_details(e).get("severity") for e in events
                     if e.kind == "status_changed" and _details(e).get("from") is None), None)
    first_old = _details(changes[0]).get("from") if changes else None
    initial = next((s for s in (declared, first_old) if s in SEVERITIES), incident.severity)
    history = [SeverityChange(incident.created_at, None, initial, neutralise(incident.declared_by), "declared")]
    for e in changes:
        d = _details(e)
        history.append(SeverityChange(e.ts, str(d.get("from")), str(d.get("to")), neutralise(e.actor),
                                      neutralise(d.get("reason", ""))))
    spans = _open_intervals(incident, events, now)
    end = spans[-1][1] if spans else now
    periods = []
    for n, change in enumerate(history):
        stop = history[n + 1].at if n + 1 < len(history) else None
        # Only time while the incident was open counts: a resolved-then-reopened gap is not.
        periods.append(SeverityPeriod(change.new, change.at, stop, _open_time(change.at, stop or end, spans)))
    seen = [c.new for c in history if c.new in SEVERITIES]
    peak = min(seen, key=SEVERITIES.index) if seen else incident.severity
    return tuple(history), tuple(periods), peak


def _targets(incident: Incident, targets: Mapping[str, Target], milestones: tuple[Milestone, ...],
             now: datetime) -> tuple[TargetCheck, ...]:
    target = targets.get(incident.severity)
    by_name = {m.name: m for m in milestones}
    checks = []
    for which, done in (("response", by_name["Acknowledged"].at), ("resolution", by_name["Resolved"].at)):
        minutes = None if target is None else (target.response_minutes if which == "response" else target.resolution_minutes)
        if minutes is None:
            checks.append(TargetCheck(which, incident.severity, None, None, done, "best effort"))
            continue
        due = incident.created_at + timedelta(minutes=minutes)
        if done is not None:
            state = "met" if done <= due else "missed"
        else:
            state = "overdue" if now >= due else "not yet"
        checks.append(TargetCheck(which, incident.severity, minutes, due, done, state))
    return tuple(checks)


def _action_summary(d: Mapping[str, Any], record: ActionRecord) -> str:
    for key in ("summary", "reason"):
        value = d.get(key)
        if isinstance(value, str) and value.strip():
            return neutralise(value)
    if record.outcome == "started":
        return "no outcome recorded yet"
    return ""


def _actions(records: Iterable[ActionRecord]) -> tuple[ActionEntry, ...]:
    entries = [
        ActionEntry(r.id, neutralise(r.action_id), neutralise(r.target), neutralise(r.actor), r.started_at,
                    r.finished_at, r.outcome, _action_summary(_detail(r), r))
        for r in records
    ]
    return tuple(sorted(entries, key=lambda a: (a.started_at, a.record_id)))


def _checklist(state: Mapping[str, ChecklistItemState]) -> tuple[ChecklistPhaseState, ...]:
    phases = []
    for p in runbook_checklist.PHASES:
        items = []
        for i in p.items:
            s = state.get(i.id)
            items.append(ChecklistEntry(i.id, i.text, bool(s and s.checked), neutralise(s.actor) if s else None,
                                        s.ts if s else None))
        phases.append(ChecklistPhaseState(p.id, p.title, tuple(items)))
    return tuple(phases)


def _lookup(d: Mapping[str, Any], key: str) -> Any:
    """The action's own outcome details live under "details" in the journal record (see
    actions.registry._detail); older or hand-written records may have them at the top."""
    inner = d.get("details")
    if isinstance(inner, Mapping) and key in inner:
        return inner[key]
    return d.get(key)


def _text_or_none(value: Any) -> str | None:
    return neutralise(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) else None


def _evidence(records: Iterable[ActionRecord]) -> tuple[EvidenceBundle, ...]:
    bundles = []
    for r in records:
        if not r.action_id.startswith(EVIDENCE_PREFIX) or r.outcome != "succeeded":
            continue
        d = _detail(r)
        files = []
        raw_files = _lookup(d, "files")
        for f in raw_files if isinstance(raw_files, list) else []:
            if isinstance(f, Mapping) and _text_or_none(f.get("path")):
                size = f.get("bytes")
                files.append(EvidenceFile(neutralise(f["path"]), _text_or_none(f.get("sha256")),
                                          size if isinstance(size, int) and not isinstance(size, bool) else None))
            elif isinstance(f, str) and f:
                files.append(EvidenceFile(neutralise(f), None, None))
        raw_missing = _lookup(d, "missing")
        missing = tuple(
            neutralise(" ".join(str(m.get(k, "")) for k in ("part", "item") if m.get(k)) + f": {m.get('reason', '')}")
            if isinstance(m, Mapping) else neutralise(m)
            for m in (raw_missing if isinstance(raw_missing, list) else ())
        )
        raw_artifacts = d.get("artifacts")
        artifacts = tuple(sorted(neutralise(a) for a in raw_artifacts if isinstance(a, str))) if isinstance(raw_artifacts, list) else ()
        bundles.append(EvidenceBundle(
            r.id, neutralise(r.action_id), neutralise(r.target), neutralise(r.actor), r.finished_at,
            _action_summary(d, r), _text_or_none(_lookup(d, "bundle_dir")), _text_or_none(_lookup(d, "manifest")),
            _text_or_none(_lookup(d, "manifest_sha256")), _text_or_none(_lookup(d, "manifest_json")),
            tuple(sorted(files, key=lambda f: f.path)), missing, artifacts,
        ))
    # Succeeded records always carry finished_at; the record id breaks ties in one second.
    return tuple(sorted(bundles, key=lambda b: (b.finished_at or _EPOCH, b.record_id)))


def _disruptive_before_evidence(actions: tuple[ActionEntry, ...], evidence: tuple[EvidenceBundle, ...]
                                ) -> tuple[ActionEntry, ...]:
    preserved = min((b.finished_at for b in evidence if b.finished_at is not None), default=None)
    found = []
    for a in actions:
        if a.outcome != "succeeded" or a.action_id.startswith(EVIDENCE_PREFIX):
            continue
        words = a.action_id.replace("-", "_").replace(".", "_").split("_")
        if not any(v in words for v in DISRUPTIVE_VERBS):
            continue
        if preserved is None or a.started_at < preserved:
            found.append(a)
    return tuple(found)


def _split_actor(actor: str) -> tuple[str, str | None]:
    who, sep, rest = actor.partition(" (")
    role = rest[:-1] if sep and rest.endswith(")") else None
    return who.strip(), role


def _responders(events: Iterable[TimelineEvent], actions: Iterable[ActionEntry], declared_by: str) -> tuple[Responder, ...]:
    roles: dict[str, set[str]] = {}

    def add(actor: str, role: str | None = None) -> None:
        who, seen_role = _split_actor(neutralise(actor))
        if not who:
            return
        bucket = roles.setdefault(who, set())
        for r in (role, seen_role):
            if r:
                bucket.add(r)

    add(declared_by)
    for e in events:
        if e.kind == "role_changed":
            to = _details(e).get("to")
            add(e.actor, neutralise(to) if isinstance(to, str) else None)
        elif e.kind not in AUTOMATIC_KINDS:
            add(e.actor)
    for a in actions:
        add(a.actor)
    return tuple(Responder(who, tuple(sorted(rs))) for who, rs in sorted(roles.items()))


def _action_items(notes: tuple[TimelineEvent, ...], checklist: tuple[ChecklistPhaseState, ...],
                  runbook_steps: tuple[str, ...] = (), runbook_title: str | None = None) -> tuple[ActionItem, ...]:
    items = []
    # The scribe's convention (PagerDuty's): follow-ups are notes that start with "TODO:".
    for n in notes:
        text = n.summary.strip()
        if text[:5].upper() == "TODO:" and text[5:].strip():
            items.append(ActionItem(neutralise(text[5:].strip()), None, None,
                                    f"note by {neutralise(n.actor)} at {n.ts:%Y-%m-%d %H:%M} UTC"))
    for text in runbook_steps:
        items.append(ActionItem(text, None, None, f"runbook, {runbook_title}: Post-Incident"))
    open_items = {i.item_id: i for p in checklist for i in p.items if not i.checked}
    for item_id in FOLLOW_UP_ITEMS:
        if item_id in open_items:
            items.append(ActionItem(open_items[item_id].text, None, None, "checklist item not yet checked"))
    return tuple(items)


def _observations(incident: Incident, incident_events: tuple[TimelineEvent, ...],
                  wide: tuple[TimelineEvent, ...], window: timedelta) -> tuple[TimelineEvent, ...]:
    start = incident.created_at - window
    candidates = [e for e in incident_events if e.kind == "observation"]
    candidates += [e for e in wide if e.kind == "observation" and e.incident_id is None]
    return _ordered(e for e in candidates if start <= e.ts <= incident.created_at)


def _runbook_incident(number: int | None) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """Title, prevention lines and post-incident steps of the runbook incident chosen."""
    if number is None:
        return None, (), ()
    try:
        from x402console.core.runbook import load_runbook

        found = load_runbook().incident(number)
    except Exception:  # noqa: BLE001 - a broken runbook file must not stop the post-mortem
        return None, (), ()
    post = tuple(st.text for sec in found.sections if sec.kind == "post_incident" for st in sec.steps)
    return found.title, tuple(st.text for st in found.prevention), post


def _review_by(peak: str, resolved: datetime | None) -> date | None:
    """PagerDuty's practice: the review meets within 3 calendar days of a SEV-1 and 5 business
    days of a SEV-2 (here P0 and P1), counted from resolution."""
    if resolved is None or peak not in ("P0", "P1"):
        return None
    day = resolved.date()
    if peak == "P0":
        return day + timedelta(days=3)
    left = 5
    while left:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


# ---------------------------------------------------------------------------- entry point

async def build_postmortem(
    journal: _JournalReader,
    incident_id: int,
    settings: Settings | None = None,
    now: datetime | None = None,
    *,
    detection_window: timedelta = DETECTION_WINDOW,
) -> PostMortem:
    """The post-mortem draft of one incident. Raises the journal's IncidentNotFound for an
    unknown id. `now` fixes "generated at" and the end of still-open periods."""
    settings = settings or Settings()
    now = _utc(now) if now is not None else datetime.now(timezone.utc)
    incident = await journal.incident(incident_id)
    events = _ordered(await journal.events(incident_id))
    wide = _ordered(e for e in await journal.events(None, kinds=("observation", "role_changed")) if e.incident_id is None)
    records = await journal.actions(incident_id)
    state = await journal.checklist_state(incident_id)

    observations = _observations(incident, events, wide, detection_window)
    first_signal = observations[0] if observations else None
    milestones = _milestones(incident, events, first_signal)
    resolved_at = milestones[-1].at
    end = resolved_at or now
    changes, periods, peak = _severity(incident, events, now)
    actions = _actions(records)
    evidence = _evidence(records)
    checklist = _checklist(state)
    notes = tuple(e for e in events if e.kind == "note")
    window_start = first_signal.ts if first_signal is not None else incident.created_at
    roles_in_window = tuple(e for e in wide if e.kind == "role_changed" and window_start <= e.ts <= end)
    timeline = _ordered({e.id: e for e in (*events, *observations, *roles_in_window)}.values())
    targets = settings.targets or dict(DEFAULT_TARGETS)
    runbook_title, prevention, post_incident = _runbook_incident(incident.runbook_incident)
    return PostMortem(
        incident=incident,
        generated_at=now,
        environment=neutralise(settings.environment.name),
        drill=incident.drill or settings.environment.drill,
        security=incident.security,
        runbook_title=runbook_title,
        runbook_prevention=prevention,
        milestones=milestones,
        first_signal=first_signal,
        reopens=_reopens(events),
        severity_changes=changes,
        severity_periods=periods,
        peak_severity=peak,
        targets=_targets(incident, targets, milestones, now),
        actions=actions,
        checklist=checklist,
        evidence=evidence,
        escalations=tuple(e for e in events if e.kind == "escalation"),
        notes=notes,
        observations=observations,
        responders=_responders((*events, *roles_in_window), actions, incident.declared_by),
        action_items=_action_items(notes, checklist, post_incident, runbook_title),
        disruptive_before_evidence=_disruptive_before_evidence(actions, evidence) if incident.security else (),
        timeline=timeline,
        review_required=peak in ("P0", "P1"),
        review_by=_review_by(peak, resolved_at),
    )
