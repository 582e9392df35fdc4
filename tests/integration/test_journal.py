"""The journal's behaviour against real SQLite files: lifecycle, timeline, checklist, actions."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from x402console.core.checklist import CHECKLIST, next_unchecked, progress
from x402console.journal import (
    Actor,
    IncidentNotFound,
    InvalidTransition,
    InvalidValue,
    Journal,
    JournalError,
)

T0 = datetime(2025, 3, 1, 3, 0, 0, tzinfo=timezone.utc)


class ManualClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def journal(tmp_path, clock):
    j = await Journal.open(tmp_path / "journal.db", clock=clock, actor=Actor("alice", "ops1"))
    yield j
    await j.close()


async def test_lifecycle_transitions_stamp_milestones_and_write_status_events(journal, clock):
    inc = await journal.declare_incident("Service down", "P0", "alice@ops1", runbook_incident=1)
    assert (inc.status, inc.severity, inc.declared_by, inc.created_at) == ("declared", "P0", "alice@ops1", T0)
    assert inc.is_open and inc.runbook_incident == 1 and not inc.security and not inc.drill

    clock.advance(60)
    inc = await journal.acknowledge(inc.id, "bob@ops1")
    assert inc.status == "acknowledged" and inc.acknowledged_at == T0 + timedelta(seconds=60)
    clock.advance(240)
    inc = await journal.mitigate(inc.id, "bob@ops1", note="restarted prover-1")
    assert inc.status == "mitigated" and inc.mitigated_at == T0 + timedelta(seconds=300)
    clock.advance(600)
    inc = await journal.resolve(inc.id, "bob@ops1")
    assert inc.status == "resolved" and inc.resolved_at == T0 + timedelta(seconds=900) and not inc.is_open

    events = await journal.events(inc.id)
    assert [e.kind for e in events] == ["status_changed"] * 4
    assert [(e.details["from"], e.details["to"]) for e in events] == [
        (None, "declared"), ("declared", "acknowledged"), ("acknowledged", "mitigated"), ("mitigated", "resolved")]
    assert [e.actor for e in events] == ["alice@ops1", "bob@ops1", "bob@ops1", "bob@ops1"]
    assert events[2].details["note"] == "restarted prover-1"
    assert [e.ts for e in events] == [T0 + timedelta(seconds=s) for s in (0, 60, 300, 900)]
    assert await journal.incident(inc.id) == inc


async def test_reopen_returns_to_declared_and_keeps_old_milestones_in_the_timeline(journal, clock):
    inc = await journal.declare_incident("Errors", "P1", "alice")
    await journal.acknowledge(inc.id, "alice")
    clock.advance(10)
    resolved = await journal.resolve(inc.id, "alice")
    clock.advance(10)
    again = await journal.reopen(inc.id, "carol", note="errors are back")
    assert again.status == "declared" and again.is_open
    assert again.acknowledged_at is None and again.mitigated_at is None and again.resolved_at is None
    last = (await journal.events(inc.id))[-1]
    assert last.summary == f"Incident #{inc.id} reopened"
    assert last.details["previous"]["resolved_at"] == resolved.resolved_at.isoformat(timespec="microseconds")
    assert (await journal.acknowledge(inc.id, "carol")).acknowledged_at == T0 + timedelta(seconds=20)


async def test_skipped_milestones_are_implied_by_later_ones(journal):
    inc = await journal.declare_incident("Slow", "P2", "alice")
    done = await journal.resolve(inc.id, "alice")
    assert done.acknowledged_at == done.mitigated_at == done.resolved_at
    assert (await journal.events(inc.id))[-1].details["implied"] == ["acknowledged", "mitigated"]


@pytest.mark.parametrize(
    ("steps", "bad", "message"),
    [
        ((), "reopen", "is declared; cannot reopen"),
        (("acknowledge",), "acknowledge", "is already acknowledged"),
        (("resolve",), "mitigate", "is resolved; cannot mitigate"),
        (("resolve",), "resolve", "is already resolved"),
    ],
)
async def test_invalid_transitions_are_refused_and_change_nothing(journal, steps, bad, message):
    inc = await journal.declare_incident("x", "P3", "alice")
    for step in steps:
        await getattr(journal, step)(inc.id, "alice")
    before = (await journal.incident(inc.id), await journal.events(inc.id))
    with pytest.raises(InvalidTransition, match=message):
        await getattr(journal, bad)(inc.id, "alice")
    assert (await journal.incident(inc.id), await journal.events(inc.id)) == before


async def test_severity_change_records_from_to_and_reason(journal):
    inc = await journal.declare_incident("Errors", "P2", "alice", security=True, drill=True)
    assert inc.security and inc.drill
    up = await journal.set_severity(inc.id, "P1", "bob", "error rate above 20%")
    assert up.severity == "P1"
    ev = (await journal.events(inc.id, kinds=["severity_changed"]))[0]
    assert ev.details == {"from": "P2", "to": "P1", "reason": "error rate above 20%"}
    assert ev.summary == "Severity P2 -> P1: error rate above 20%"
    with pytest.raises(InvalidTransition, match="already P1"):
        await journal.set_severity(inc.id, "P1", "bob", "again")
    with pytest.raises(InvalidValue, match="severity"):
        await journal.set_severity(inc.id, "P5", "bob", "nope")
    with pytest.raises(InvalidValue, match="reason"):
        await journal.set_severity(inc.id, "P0", "bob", "  ")


async def test_bad_input_is_refused_with_clear_errors(journal):
    with pytest.raises(InvalidValue, match="severity"):
        await journal.declare_incident("x", "critical", "alice")
    with pytest.raises(InvalidValue, match="title"):
        await journal.declare_incident("   ", "P1", "alice")
    with pytest.raises(InvalidValue, match="actor"):
        await journal.declare_incident("x", "P1", "")
    with pytest.raises(IncidentNotFound, match="42"):
        await journal.acknowledge(42, "alice")
    with pytest.raises(IncidentNotFound):
        await journal.incident(42)
    with pytest.raises(InvalidValue, match="event kind"):
        await journal.add_event("gossip", "hi", "alice")
    with pytest.raises(InvalidValue, match="written by the journal itself"):
        await journal.add_event("status_changed", "resolved!", "alice")
    with pytest.raises(InvalidValue, match="JSON"):
        await journal.add_event("note", "hi", "alice", details={"when": object()})
    with pytest.raises(IncidentNotFound):
        await journal.add_event("note", "hi", "alice", incident_id=7)
    assert await journal.events() == ()


async def test_events_filter_by_incident_kind_since_and_limit_in_time_order(journal, clock):
    a = await journal.declare_incident("A", "P1", "alice")
    env = await journal.add_event("observation", "prover-2 unhealthy", "console", details={"container": "prover-2"})
    assert env.incident_id is None and env.details == {"container": "prover-2"}
    clock.advance(1)
    n1 = await journal.add_event("note", "looking at logs", "alice", incident_id=a.id)
    # An injected clock that steps backwards: events() orders by time, events_after by id.
    clock.advance(-5)
    n2 = await journal.add_event("escalation", "paged backup on-call", "console", incident_id=a.id)
    assert n2.ts < n1.ts and n2.id > n1.id

    assert [e.summary for e in await journal.events(a.id)] == [
        "paged backup on-call", f"Incident #{a.id} declared: A (P1)", "looking at logs"]
    assert [e.id for e in await journal.events()] == [n2.id, 1, env.id, n1.id]
    assert [e.id for e in await journal.events_after(0)] == [1, env.id, n1.id, n2.id]
    assert [e.kind for e in await journal.events(kinds=["note", "observation"])] == ["observation", "note"]
    assert [e.id for e in await journal.events(since_id=env.id)] == [n2.id, n1.id]
    assert len(await journal.events(limit=2)) == 2
    assert await journal.events(kinds=[]) == ()
    with pytest.raises(InvalidValue):
        await journal.events(kinds=["nope"])
    with pytest.raises(InvalidValue):
        await journal.events(limit=0)
    assert [e.id for e in await journal.events_after(env.id, limit=1)] == [n1.id]


async def test_event_snapshots_are_immutable(journal):
    ev = await journal.add_event("note", "hello", "alice", details={"a": [1, 2]})
    ev.details["a"].append(3)
    assert ev.details == {"a": [1, 2]}
    with pytest.raises(AttributeError):
        ev.summary = "changed"  # type: ignore[misc]


async def test_timestamps_are_utc_iso_with_microseconds_on_disk(tmp_path):
    cet = timezone(timedelta(hours=1))
    j = await Journal.open(tmp_path / "j.db", clock=lambda: datetime(2025, 1, 1, 4, 0, 0, 5, tzinfo=cet))
    try:
        ev = await j.add_event("note", "x", "alice")
        assert ev.ts == datetime(2025, 1, 1, 3, 0, 0, 5, tzinfo=timezone.utc)
    finally:
        await j.close()
    with sqlite3.connect(tmp_path / "j.db") as db:
        assert db.execute("SELECT ts FROM timeline_events").fetchone()[0] == "2025-01-01T03:00:00.000005+00:00"

    naive = await Journal.open(tmp_path / "n.db", clock=lambda: datetime(2025, 1, 1))
    try:
        with pytest.raises(InvalidValue, match="timezone-aware"):
            await naive.add_event("note", "x", "alice")
    finally:
        await naive.close()


async def test_checklist_events_state_and_progress(journal):
    inc = await journal.declare_incident("Down", "P0", "alice")
    s = await journal.set_checklist(inc.id, "detection.alert_acknowledged", True, "bob")
    assert s.checked and s.actor == "bob" and s.item_id == "detection.alert_acknowledged"
    await journal.set_checklist(inc.id, "detection.severity_assessed", True, "bob")
    await journal.set_checklist(inc.id, "detection.severity_assessed", False, "carol")
    n_events = len(await journal.events(inc.id))
    await journal.set_checklist(inc.id, "detection.severity_assessed", False, "carol")  # no change: no event
    assert len(await journal.events(inc.id)) == n_events

    checklist_events = await journal.events(inc.id, kinds=["checklist"])
    assert [e.summary for e in checklist_events] == [
        "Checked: Alert received and acknowledged", "Checked: Incident severity assessed",
        "Unchecked: Incident severity assessed"]
    assert checklist_events[-1].actor == "carol" and checklist_events[-1].details["checked"] is False

    state = await journal.checklist_state(inc.id)
    assert {k: v.checked for k, v in state.items()} == {
        "detection.alert_acknowledged": True, "detection.severity_assessed": False}
    assert progress(state)[0].done == 1
    assert next_unchecked(state) == CHECKLIST[1]


async def test_unknown_checklist_item_is_refused_and_nothing_written(journal):
    inc = await journal.declare_incident("Down", "P0", "alice")
    with pytest.raises(InvalidValue, match="unknown checklist item 'detection.coffee_made'"):
        await journal.set_checklist(inc.id, "detection.coffee_made", True, "bob")
    with pytest.raises(InvalidValue, match="True or False"):
        await journal.set_checklist(inc.id, "detection.alert_acknowledged", "yes", "bob")  # type: ignore[arg-type]
    with pytest.raises(IncidentNotFound):
        await journal.set_checklist(99, "detection.alert_acknowledged", True, "bob")
    assert await journal.checklist_state(inc.id) == {}
    assert await journal.events(kinds=["checklist"]) == ()


async def test_checklist_state_survives_close_and_reopen(tmp_path):
    path = tmp_path / "j.db"
    j = await Journal.open(path)
    inc = await j.declare_incident("Down", "P0", "alice")
    for item in CHECKLIST[:6]:
        await j.set_checklist(inc.id, item.id, True, "alice")
    await j.set_checklist(inc.id, CHECKLIST[2].id, False, "bob")
    before = await j.checklist_state(inc.id)
    await j.close()

    j2 = await Journal.open(path)
    try:
        after = await j2.checklist_state(inc.id)
        assert after == before
        assert next_unchecked(after) == CHECKLIST[2]
        assert [p.done for p in progress(after)] == [3, 2, 0, 0, 0]
    finally:
        await j2.close()


async def test_action_record_lifecycle_and_events(journal, clock):
    inc = await journal.declare_incident("Down", "P0", "alice")
    rid = await journal.action_started("restart_container", "prover-1", "alice", inc.id)
    rec = await journal.action(rid)
    assert rec.outcome == "started" and not rec.finished and rec.finished_at is None
    assert await journal.open_actions() == (rec,)
    clock.advance(3)
    done = await journal.action_finished(rid, "succeeded", {"exit": 0})
    assert done.outcome == "succeeded" and done.finished_at == T0 + timedelta(seconds=3) and done.detail == {"exit": 0}
    assert await journal.open_actions() == ()
    evs = await journal.events(inc.id, kinds=["action_started", "action_finished"])
    assert [e.summary for e in evs] == ["restart_container on prover-1: started", "restart_container on prover-1: succeeded"]
    assert evs[1].details["record_id"] == rid
    with pytest.raises(InvalidTransition, match="already finished"):
        await journal.action_finished(rid, "failed")
    with pytest.raises(InvalidValue, match="outcome"):
        await journal.action_finished(rid, "started")
    with pytest.raises(JournalError, match="no action record"):
        await journal.action_finished(999, "failed")
    env_rid = await journal.action_started("block_ip", "203.0.113.7", "alice")
    assert (await journal.action(env_rid)).incident_id is None
    assert [a.id for a in await journal.actions(inc.id)] == [rid]


async def test_unfinished_actions_of_dead_consoles_become_unknown(tmp_path):
    path = tmp_path / "j.db"
    clock = ManualClock()
    dead = await Journal.open(path, clock=clock, actor=Actor("bob", "ops2"))
    await dead.register_operator("commander")
    inc = await dead.declare_incident("Down", "P0", "bob@ops2")
    rid = await dead.action_started("restart_container", "prover-1", "bob@ops2", inc.id)
    await dead.close()  # closed without finishing: as if its console went away

    live = await Journal.open(path, clock=clock, actor=Actor("alice", "ops1"))
    try:
        own = await live.action_started("scale", "prover", "alice@ops1")
        clock.advance(30)
        assert await live.mark_unfinished_unknown(stale_after=60) == ()
        clock.advance(31)
        marked = await live.mark_unfinished_unknown(stale_after=60)
        assert [(m.id, m.outcome) for m in marked] == [(rid, "unknown")]
        assert marked[0].finished_at == clock.now
        assert [a.id for a in await live.open_actions()] == [own]  # its own running action is left alone
        ev = (await live.events(inc.id))[-1]
        assert ev.kind == "action_finished" and ev.summary == "restart_container on prover-1: started, outcome unknown"
        assert ev.details["started_by"] == "bob@ops2" and ev.actor == "alice@ops1"
        # The action's real outcome may still arrive (its console was only slow); it wins.
        late = await live.action_finished(rid, "succeeded")
        assert late.outcome == "succeeded"
        assert "after it was marked unknown" in (await live.events(inc.id))[-1].summary
        assert [m.id for m in await live.mark_unfinished_unknown(everything=True)] == [own]
        assert await live.open_actions() == ()
    finally:
        await live.close()


async def test_operators_register_change_role_and_heartbeat(tmp_path):
    clock = ManualClock()
    j = await Journal.open(tmp_path / "j.db", clock=clock, actor=Actor("alice", "ops1"))
    try:
        assert await j.heartbeat() is False
        op = await j.register_operator("observer")
        assert (op.actor, op.role, op.origin) == ("alice@ops1", "observer", j.origin)
        await j.register_operator("observer")  # same role: no new event
        clock.advance(5)
        op = await j.register_operator("commander")
        assert op.role == "commander" and op.joined_at == T0 and op.last_seen == T0 + timedelta(seconds=5)
        roles = await j.events(kinds=["role_changed"])
        assert [e.summary for e in roles] == ["alice@ops1 joined as observer", "alice@ops1 is now commander (was observer)"]
        clock.advance(100)
        assert await j.operators(active_within=60) == ()
        assert await j.heartbeat() is True
        assert [o.origin for o in await j.operators(active_within=60)] == [j.origin]
        with pytest.raises(InvalidValue, match="role"):
            await j.register_operator("bystander")
        handed = await j.register_operator("scribe", Actor("carol", "ops3", role="commander"))
        assert (handed.actor, handed.role) == ("carol@ops3", "scribe")
    finally:
        await j.close()


async def test_incidents_lists_in_declared_order_and_filters_open(journal):
    a = await journal.declare_incident("A", "P0", "alice")
    b = await journal.declare_incident("B", "P2", "alice")
    await journal.resolve(a.id, "alice")
    assert [i.id for i in await journal.incidents()] == [a.id, b.id]
    assert [i.id for i in await journal.incidents(open_only=True)] == [b.id]


async def test_concurrent_writers_in_one_console_do_not_interleave_transactions(journal):
    inc = await journal.declare_incident("Busy", "P1", "alice")
    results = await asyncio.gather(
        *(journal.add_event("note", f"n{i}", "alice", incident_id=inc.id) for i in range(50)),
        *(journal.set_checklist(inc.id, item.id, True, "bob") for item in CHECKLIST),
    )
    assert len(results) == 70
    evs = await journal.events(inc.id)
    assert len(evs) == 1 + 50 + 20 and len({e.origin_seq for e in evs}) == 71
    assert len(await journal.checklist_state(inc.id)) == 20


async def test_a_cancelled_caller_does_not_abandon_a_write(journal):
    task = asyncio.ensure_future(journal.add_event("note", "must land", "alice"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if await journal.events():
            break
        await asyncio.sleep(0.01)
    assert [e.summary for e in await journal.events()] == ["must land"]


async def test_closed_journal_refuses_use(tmp_path):
    j = await Journal.open(tmp_path / "j.db")
    await j.close()
    await j.close()
    with pytest.raises(JournalError, match="closed"):
        await j.add_event("note", "x", "alice")
    with pytest.raises(JournalError, match="closed"):
        await j.events()
