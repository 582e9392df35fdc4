"""Journal additions for the incident lifecycle: security marking, runbook matching and events
recorded once however many consoles see the same thing (escalation steps, observations)."""

from __future__ import annotations

import asyncio

import pytest

from x402console.journal import Actor, InvalidTransition, InvalidValue, Journal

ALICE = Actor("alice", "box")
BOB = Actor("bob", "box")


async def test_security_mark_and_unmark_are_recorded_with_their_reason(tmp_path) -> None:
    async with await Journal.open(tmp_path / "j.db") as j:
        inc = await j.declare_incident("odd proofs", "P1", ALICE)
        assert not inc.security
        inc = await j.set_security(inc.id, True, ALICE, "proofs fail verification")
        assert inc.security
        with pytest.raises(InvalidTransition):
            await j.set_security(inc.id, True, BOB, "again")
        inc = await j.set_security(inc.id, False, BOB, "false alarm: key rotated on purpose")
        assert not inc.security
        events = [e for e in await j.events(inc.id) if e.kind == "status_changed"]
        assert [e.details.get("security") for e in events[1:]] == [True, False]
        assert events[-1].actor == "bob@box" and "key rotated" in events[-1].summary


async def test_runbook_incident_is_set_and_validated(tmp_path) -> None:
    async with await Journal.open(tmp_path / "j.db") as j:
        inc = await j.declare_incident("db errors", "P1", ALICE)
        inc = await j.set_runbook_incident(inc.id, 5, ALICE, "matcher: integrity check failed")
        assert inc.runbook_incident == 5
        with pytest.raises(InvalidTransition):
            await j.set_runbook_incident(inc.id, 5, ALICE, "same")
        with pytest.raises(InvalidValue):
            await j.set_runbook_incident(inc.id, 0, ALICE, "bad")
        assert (await j.incident(inc.id)).runbook_incident == 5


async def test_an_escalation_step_is_recorded_once_across_two_consoles(tmp_path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path) as a, await Journal.open(path) as b:
        inc = await a.declare_incident("down", "P0", ALICE)
        keys = [f"{inc.id}:0:tier:{i}:x" for i in range(20)]

        async def fire(j: Journal, who: Actor) -> list:
            return [await j.record_escalation(k, f"step {k}", who, inc.id) for k in keys]

        ra, rb = await asyncio.gather(fire(a, ALICE), fire(b, BOB))
        # For every key exactly one console got the event, the other None.
        for x, y in zip(ra, rb):
            assert (x is None) != (y is None)
        rows = [e for e in await a.events(inc.id) if e.kind == "escalation"]
        assert sorted(e.details["key"] for e in rows) == sorted(keys)


async def test_an_environment_observation_is_recorded_once_per_key(tmp_path) -> None:
    async with await Journal.open(tmp_path / "j.db") as j:
        first = await j.add_event_once("observation", "down:prover-1:1", "prover-1 down", ALICE)
        again = await j.add_event_once("observation", "down:prover-1:1", "prover-1 down", BOB)
        other = await j.add_event_once("observation", "down:prover-2:1", "prover-2 down", BOB)
        assert first is not None and again is None and other is not None
        assert first.incident_id is None
        with pytest.raises(InvalidValue):
            await j.add_event_once("note", "k", "a note is never deduplicated", ALICE)
