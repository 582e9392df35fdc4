"""The escalation engine against a controllable clock: tier and target boundaries, ack, severity
changes, reopen, fired-once keys, and a custom policy read from a real configuration file."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from x402console.config import load_config
from x402console.core.escalation import (
    EscalationEngine,
    EscalationPolicy,
    fired_keys,
    fired_times,
    lifecycle,
    signed_duration,
)
from x402console.journal.models import Incident, TimelineEvent
from x402console.settings.model import Contact, EscalationTier, Settings, Target

T0 = datetime(2025, 3, 1, 14, 0, 0, tzinfo=timezone.utc)


def at(hhmmss: str, day: int = 1) -> datetime:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return datetime(2025, 3, day, h, m, s, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def incident(severity: str = "P1", status: str = "declared", ack: datetime | None = None,
             mitigated: datetime | None = None, resolved: datetime | None = None, created: datetime = T0,
             iid: int = 7) -> Incident:
    return Incident(iid, "Errors", severity, status, False, False, None, "alice@ops1", created, ack, mitigated, resolved)


_ids = iter(range(1, 100000))


def event(kind: str, ts: datetime, details: dict, iid: int | None = 7) -> TimelineEvent:
    n = next(_ids)
    return TimelineEvent(n, iid, ts, kind, "alice@ops1", f"{kind} {n}", json.dumps(details), "console-a", n)


def due_keys(engine: EscalationEngine, inc: Incident, now: datetime, fired: set[str] | None = None, **kw) -> list[str]:
    return [s.key for s in engine.due_steps(inc, fired or set(), now, **kw)]


ONCALL, BACKUP, LEAD = "7:0:tier:0:on-call-engineer", "7:0:tier:1:backup-engineer", "7:0:tier:2:team-lead"


# ------------------------------------------------------------------ boundaries, runbook policy

@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("13:59:59", []),
        ("14:00:00", [ONCALL]),
        ("14:29:59", [ONCALL]),
        ("14:30:00", [ONCALL, BACKUP]),
        ("14:59:59", [ONCALL, BACKUP]),
        # One hour: the team lead tier and the P1 response target (60 min) together.
        ("15:00:00", [ONCALL, BACKUP, "7:0:response:P1", LEAD]),
    ],
)
def test_unacknowledged_p1_steps_fall_due_exactly_at_their_minute(now, expected):
    engine = EscalationEngine()
    assert sorted(due_keys(engine, incident("P1"), at(now))) == sorted(expected)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("14:14:59", [ONCALL]),
        ("14:15:00", [ONCALL, "7:0:response:P0"]),
        ("17:59:59", [ONCALL, BACKUP, LEAD, "7:0:response:P0"]),
        ("18:00:00", [ONCALL, BACKUP, LEAD, "7:0:response:P0", "7:0:resolution:P0"]),
    ],
)
def test_p0_response_and_resolution_targets(now, expected):
    assert sorted(due_keys(EscalationEngine(), incident("P0"), at(now))) == sorted(expected)


def test_steps_are_ordered_by_due_time_and_say_who_and_why():
    steps = EscalationEngine().due_steps(incident("P1"), set(), at("15:00:00"))
    assert [s.due_at for s in steps] == sorted(s.due_at for s in steps)
    by_key = {s.key: s for s in steps}
    backup = by_key[BACKUP]
    assert backup.kind == "tier" and backup.tier == "backup engineer" and backup.condition == "unacknowledged"
    assert [c.name for c in backup.contacts] == ["backup"] and backup.due_at == at("14:30:00")
    assert "not acknowledged 30 min after declaration" in backup.summary
    response = by_key["7:0:response:P1"]
    # Target steps go to everyone already engaged by the tiers due so far.
    assert response.kind == "response_target" and [c.name for c in response.contacts] == ["on-call", "backup", "team-lead"]
    assert "P1 response target passed" in response.summary and "1 h" in response.summary


# ------------------------------------------------------------------ acknowledgement

def test_ack_stops_unacknowledged_tiers_but_the_unresolved_tier_still_fires():
    engine = EscalationEngine()
    acked = incident("P1", "acknowledged", ack=at("14:10:00"))
    assert due_keys(engine, acked, at("14:45:00"), {ONCALL}) == []
    assert due_keys(engine, acked, at("14:59:59"), {ONCALL}) == []
    # Team lead's condition is "unresolved": an ack does not stop it. No response-target step: acked.
    assert due_keys(engine, acked, at("15:00:00"), {ONCALL}) == [LEAD]


def test_target_steps_notify_only_tiers_that_actually_paged():
    acked = incident("P0", "acknowledged", ack=at("14:10:00"))
    steps = EscalationEngine().due_steps(acked, {ONCALL, LEAD}, at("18:00:00"))
    assert [s.key for s in steps] == ["7:0:resolution:P0"]
    # The backup tier came due after the ack, so it never paged: the backup is not told.
    assert [c.name for c in steps[0].contacts] == ["on-call", "team-lead"]


def test_mitigated_counts_as_acknowledged_and_resolved_stops_everything():
    engine = EscalationEngine()
    mitigated = incident("P1", "mitigated", mitigated=at("14:05:00"))  # ack implied
    # The journal implies the ack when it records a mitigation: only the unresolved tier is left.
    assert due_keys(engine, mitigated, at("15:30:00")) == [LEAD]
    resolved = incident("P1", "resolved", ack=at("14:05:00"), mitigated=at("14:06:00"), resolved=at("14:07:00"))
    assert due_keys(engine, resolved, at("23:00:00")) == []


def test_header_timers_show_due_in_fired_and_not_applicable():
    engine = EscalationEngine()
    inc = incident("P1")
    t = engine.timers(inc, at("14:20:00"))
    states = {x.name: (x.state, x.remaining) for x in t.tiers}
    assert states["on-call engineer"] == ("due", timedelta(minutes=-20))
    assert states["backup engineer"] == ("pending", timedelta(minutes=10))
    assert t.tiers[1].label() == "backup engineer in 10m00s"
    assert t.response.state == "running" and t.response.remaining == timedelta(minutes=40)
    assert t.response.label() == "response +40m00s"
    assert t.resolution.label() == "resolution +23h40m"
    assert t.next_pending is not None and t.next_pending.name == "backup engineer"

    fired = {ONCALL: at("14:00:01")}
    acked = replace(inc, status="acknowledged", acknowledged_at=at("14:12:00"))
    t = engine.timers(acked, at("14:40:00"), fired=fired)
    states = {x.name: (x.state, x.fired_at, x.reason) for x in t.tiers}
    assert states["on-call engineer"] == ("fired", at("14:00:01"), "")
    assert states["backup engineer"] == ("not_applicable", None, "acknowledged")
    assert states["team lead"][0] == "pending"
    assert t.response.state == "met" and t.response.done_at == at("14:12:00")


def test_overdue_targets_count_down_below_zero():
    t = EscalationEngine().timers(incident("P0"), at("14:18:30"))
    assert t.response.state == "overdue" and t.response.remaining == timedelta(minutes=-3, seconds=-30)
    assert t.response.label() == "response -3m30s"
    assert t.overdue
    # Exactly at the boundary the target is overdue (0 left), one second before it is not.
    assert EscalationEngine().timers(incident("P0"), at("14:15:00")).response.state == "overdue"
    assert EscalationEngine().timers(incident("P0"), at("14:14:59")).response.state == "running"


def test_p3_resolution_is_best_effort_and_never_fires():
    engine = EscalationEngine()
    t = engine.timers(incident("P3"), at("14:00:00", day=9))
    assert t.resolution.state == "best_effort" and t.resolution.label() == "resolution best effort"
    keys = due_keys(engine, incident("P3"), at("14:00:00", day=9))
    assert not any("resolution" in k for k in keys) and "7:0:response:P3" in keys


# ------------------------------------------------------------------ severity changes

def test_raising_the_severity_can_put_the_incident_past_its_new_target_at_once():
    engine = EscalationEngine()
    fired = {ONCALL}
    assert due_keys(engine, incident("P2"), at("14:20:00"), fired) == []
    # Raised to P0 at 14:20: P0's response target (15 min from declaration) has passed.
    assert due_keys(engine, incident("P0"), at("14:20:00"), fired) == ["7:0:response:P0"]
    fired.add("7:0:response:P0")
    # Back down to P1 at 14:40: P1 has its own target, due at 15:00; P0's does not fire again.
    assert due_keys(engine, incident("P1"), at("14:40:00"), fired | {BACKUP}) == []
    assert due_keys(engine, incident("P1"), at("15:00:00"), fired | {BACKUP}) == ["7:0:response:P1", LEAD]
    assert due_keys(engine, incident("P0"), at("15:00:00"), fired | {BACKUP, LEAD, "7:0:response:P1"}) == []


def test_severity_change_moves_the_header_countdown():
    engine = EscalationEngine()
    assert engine.timers(incident("P2"), at("14:20:00")).response.remaining == timedelta(hours=3, minutes=40)
    assert engine.timers(incident("P0"), at("14:20:00")).response.remaining == timedelta(minutes=-5)


# ------------------------------------------------------------------ reopen

def test_reopen_restarts_every_clock_with_new_keys():
    engine = EscalationEngine()
    history = [
        event("status_changed", at("14:00:00"), {"from": None, "to": "declared"}),
        event("escalation", at("14:00:00"), {"key": ONCALL}),
        event("status_changed", at("14:05:00"), {"from": "declared", "to": "acknowledged"}),
        event("status_changed", at("14:50:00"), {"from": "acknowledged", "to": "resolved"}),
        event("status_changed", at("16:00:00"), {"from": "resolved", "to": "declared", "previous": {}}),
        event("status_changed", at("16:00:00"), {"from": "declared", "to": "acknowledged"}, iid=8),  # other incident
    ]
    life = lifecycle(incident(), history)
    assert (life.started_at, life.cycle) == (at("16:00:00"), 1)
    reopened = incident("P1")  # the journal cleared acknowledged_at/resolved_at
    fired = fired_keys(history)
    assert fired == {ONCALL}
    assert due_keys(engine, reopened, at("15:59:59"), fired, life=life) == []
    assert due_keys(engine, reopened, at("16:00:00"), fired, life=life) == ["7:1:tier:0:on-call-engineer"]
    assert sorted(due_keys(engine, reopened, at("16:30:00"), fired, life=life)) == [
        "7:1:tier:0:on-call-engineer", "7:1:tier:1:backup-engineer"]
    t = engine.timers(reopened, at("16:10:00"), life=life)
    assert t.cycle == 1 and t.response.remaining == timedelta(minutes=50)
    # evaluate() reads the reopen and the fired steps from the same events.
    timers, steps = engine.evaluate(reopened, history, at("16:00:00"))
    assert timers.started_at == at("16:00:00") and [s.key for s in steps] == ["7:1:tier:0:on-call-engineer"]


def test_no_reopen_means_the_declaration_starts_the_clock():
    life = lifecycle(incident(), [event("status_changed", at("14:00:00"), {"from": None, "to": "declared"})])
    assert (life.started_at, life.cycle) == (T0, 0)


# ------------------------------------------------------------------ fire once

def test_each_step_fires_once_across_restarts_and_several_consoles():
    """Two consoles polling alternately every 20 s, one restarted half-way: the steps they
    record (as journal events) come out once each, in due order."""
    clock = Clock()
    consoles = [EscalationEngine(clock=clock), EscalationEngine(clock=clock)]
    journal: list[TimelineEvent] = []
    inc = incident("P1")
    n = 0
    while clock.now <= at("16:00:00"):
        if clock.now == at("14:40:00"):
            consoles[0] = EscalationEngine(clock=clock)  # restart: nothing kept in memory
        engine = consoles[n % 2]
        for step in engine.due_steps(inc, fired_keys(journal)):
            journal.append(event("escalation", clock.now, step.details()))
        if clock.now == at("15:20:00"):
            inc = replace(inc, status="acknowledged", acknowledged_at=clock.now)
        clock.now += timedelta(seconds=20)
        n += 1
    keys = [e.details["key"] for e in journal]
    assert keys == [ONCALL, BACKUP, "7:0:response:P1", LEAD]
    assert fired_times(journal)[BACKUP] == at("14:30:00")


def test_fired_keys_ignores_other_events_and_malformed_details():
    events = [
        event("note", T0, {"key": "7:0:tier:0:x"}),
        event("escalation", T0, {"no_key": 1}),
        event("escalation", T0, {"key": ""}),
        event("escalation", T0 + timedelta(minutes=1), {"key": "a"}),
        event("escalation", T0 + timedelta(minutes=2), {"key": "a"}),
    ]
    assert fired_keys(events) == {"a"}
    assert fired_times(events) == {"a": T0 + timedelta(minutes=1)}


# ------------------------------------------------------------------ policies

def test_custom_policy_from_settings():
    settings = Settings(
        contacts=(Contact("ops", email="ops@example.org"), Contact("boss", pager="+1")),
        escalation_tiers=(
            EscalationTier("ops", 5, ("ops",), "unacknowledged"),
            EscalationTier("boss", 20, ("boss", "ghost"), "unresolved"),
        ),
        targets={"P1": Target(10, 30)},
    )
    engine = EscalationEngine(EscalationPolicy.from_settings(settings))
    inc = incident("P1", "acknowledged", ack=at("14:06:00"))
    assert due_keys(engine, incident("P1"), at("14:04:59")) == []
    assert due_keys(engine, incident("P1"), at("14:05:00")) == ["7:0:tier:0:ops"]
    # Acked at 14:06: no response-target step at 14:10, the resolution target at 14:30 does fire.
    assert due_keys(engine, inc, at("14:19:59")) == []
    assert due_keys(engine, inc, at("14:20:00")) == ["7:0:tier:1:boss"]
    steps = engine.due_steps(inc, {"7:0:tier:1:boss"}, at("14:30:00"))
    assert [s.key for s in steps] == ["7:0:resolution:P1"]
    # A contact the configuration lacks is still named, so the page says whom it meant.
    boss = engine.due_steps(inc, set(), at("14:20:00"))[0]
    assert [(c.name, c.pager) for c in boss.contacts] == [("boss", "+1"), ("ghost", None)]
    # A severity without configured targets has no target timers or steps.
    p2 = incident("P2")
    assert engine.timers(p2, at("20:00:00")).response.state == "best_effort"


def test_policy_read_from_a_config_file(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[targets]\nP0 = { response = 5, resolution = 60 }\n\n'
        '[[contacts]]\nname = "sre"\n\n'
        '[[escalation.tiers]]\nname = "SRE on call"\nafter_minutes = 2\ncontacts = ["sre"]\ncondition = "unacknowledged"\n\n'
        '[[escalation.tiers]]\nname = "Director"\nafter_minutes = 45\ncontacts = ["sre"]\ncondition = "unresolved"\n',
        encoding="utf-8",
    )
    engine = EscalationEngine(EscalationPolicy.from_settings(load_config(cfg)))
    inc = incident("P0")
    assert due_keys(engine, inc, at("14:01:59")) == []
    assert due_keys(engine, inc, at("14:02:00")) == ["7:0:tier:0:sre-on-call"]
    assert sorted(due_keys(engine, inc, at("14:05:00"), {"7:0:tier:0:sre-on-call"})) == ["7:0:response:P0"]
    assert due_keys(engine, inc, at("14:45:00"), {"7:0:tier:0:sre-on-call", "7:0:response:P0"}) == ["7:0:tier:1:director"]


def test_bad_policy_and_naive_times_are_refused():
    with pytest.raises(ValueError, match="condition"):
        EscalationPolicy(tiers=(EscalationTier("x", 1, (), "whenever"),))
    with pytest.raises(ValueError, match="timezone-aware"):
        EscalationEngine().due_steps(incident(), set(), datetime(2025, 3, 1, 15, 0))


@pytest.mark.parametrize(
    ("delta", "text"),
    [(timedelta(minutes=12, seconds=3), "+12m03s"), (timedelta(seconds=-0.5), "+0m00s"),
     (timedelta(minutes=-3, seconds=-12), "-3m12s"), (timedelta(hours=1, minutes=5), "+1h05m"),
     (timedelta(days=-2, hours=-3), "-2d03h")],
)
def test_signed_duration(delta, text):
    assert signed_duration(delta) == text
