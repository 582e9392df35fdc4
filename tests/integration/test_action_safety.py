"""The registry's safety rules with real actions, a real journal file and a real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from x402console.actions.base import Action, ActionContext, Outcome, Plan, PlanStep, Progress, Refused, Target
from x402console.actions.database import DeleteExpired, IntegrityCheck, SizeAndCounts, database_target
from x402console.actions.registry import Registry, default_registry
from x402console.drill.sim.store import SCHEMA
from x402console.journal import Journal
from x402console.settings.model import DatabaseSettings, Discovery, Settings

REPO = Path(__file__).resolve().parents[2]


def make_db(path: Path, rows: int, *, expired: bool = True) -> None:
    """proofs.db with the simulator's schema and `rows` proofs with ids 1..rows."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    when = "datetime('now', '-1 hour')" if expired else "datetime('now', '+1 hour')"
    con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO proofs (request_hash, proof, public_inputs, client_ip, generation_time_ms, expires_at)"
        f" SELECT printf('%064x', i), printf('proof-%d', i), '[]', '203.0.113.9', 5, {when} FROM n",
        (rows,),
    )
    con.commit()
    con.close()


def settings_for(db: Path, batch: int = 5000) -> Settings:
    return Settings(
        database=DatabaseSettings(path=db, backups_dir=db.parent / "backups", delete_batch_size=batch),
        discovery=Discovery(mode="static"),
    )


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "journal.db")
    try:
        yield j
    finally:
        await j.close()


def registry_with(*actions: Action) -> Registry:
    reg = Registry()
    for a in actions:
        reg.register(a)
    return reg


async def test_execute_journals_start_then_outcome(tmp_path: Path, journal: Journal) -> None:
    db = tmp_path / "proofs.db"
    make_db(db, 100)
    settings = settings_for(db)
    reg = default_registry()
    incident = await journal.declare_incident("db errors", "P1", journal.actor)
    ctx = ActionContext(settings=settings, journal=journal, incident_id=incident.id)
    target = database_target(settings)
    plan = await reg.prepare("db.integrity_check", ctx, target)
    seen_during: list[str] = []

    async def on_progress(p: Progress) -> None:
        # while it runs the journal already says "started"
        seen_during.extend(r.outcome for r in await journal.open_actions())

    outcome = await reg.execute(plan, ctx, on_progress)
    assert outcome.status == "succeeded" and outcome.details["rows"] == ["ok"]
    assert seen_during and set(seen_during) == {"started"}
    (record,) = await journal.actions(incident.id)
    assert (record.action_id, record.target, record.outcome) == ("db.integrity_check", str(db), "succeeded")
    assert record.actor == str(journal.actor)
    assert record.detail["summary"] == outcome.summary and record.detail["details"]["rows"] == ["ok"]
    kinds = [(e.kind, e.summary) for e in await journal.events(incident.id, kinds=("action_started", "action_finished"))]
    assert kinds == [
        ("action_started", f"db.integrity_check on {db}: started"),
        ("action_finished", f"db.integrity_check on {db}: succeeded"),
    ]


async def test_refusals_are_journaled(tmp_path: Path, journal: Journal) -> None:
    db = tmp_path / "proofs.db"
    make_db(db, 10)
    settings = settings_for(db)
    reg = default_registry()
    ctx = ActionContext(settings=settings, journal=journal, read_only=True)
    with pytest.raises(Refused, match="read-only"):
        await reg.prepare("db.delete_expired", ctx, database_target(settings))
    (record,) = await journal.actions()
    assert record.outcome == "refused" and record.action_id == "db.delete_expired"
    assert record.detail["reason"].startswith("read-only")
    # nothing was deleted
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM proofs").fetchone()[0] == 10


async def test_second_request_for_a_busy_target_is_refused(tmp_path: Path, journal: Journal) -> None:
    db = tmp_path / "proofs.db"
    make_db(db, 60_000)
    settings = settings_for(db, batch=1000)
    # a pause between batches makes the delete last long enough to ask twice
    reg = registry_with(DeleteExpired(pause_s=0.05), SizeAndCounts(), IntegrityCheck())
    target = database_target(settings)
    ctx = ActionContext(settings=settings, journal=journal)
    plan = await reg.prepare("db.delete_expired", ctx, target)
    assert plan.confirm_text == "proofs.db" and plan.danger == "destructive"
    progressed = asyncio.Event()
    task = asyncio.create_task(reg.execute(plan, ctx, lambda p: progressed.set()))
    await asyncio.wait_for(progressed.wait(), 10)

    with pytest.raises(Refused, match="db.delete_expired is already running on"):
        await reg.prepare("db.delete_expired", ActionContext(settings=settings, journal=journal), target)
    # looking at the target while it changes is allowed: reads are never exclusive
    assert await reg.prepare("db.stats", ActionContext(settings=settings, journal=journal), target)
    with pytest.raises(Refused, match="already running"):
        await reg.execute(plan, ActionContext(settings=settings, journal=journal))

    # a second console on the same journal sees the open record and refuses too
    other_journal = await Journal.open(journal.path)
    try:
        other = registry_with(DeleteExpired(), IntegrityCheck())
        with pytest.raises(Refused, match="from another console"):
            await other.prepare("db.delete_expired", ActionContext(settings=settings, journal=other_journal), target)
        # reading is not blocked by another console's action
        assert await other.prepare("db.integrity_check", ActionContext(settings=settings, journal=other_journal), target)
    finally:
        await other_journal.close()

    ctx.cancel.set()
    outcome = await asyncio.wait_for(task, 30)
    assert outcome.status == "cancelled"
    deleted = outcome.details["deleted"]
    assert 0 < deleted < 60_000
    left = sqlite3.connect(db).execute("SELECT COUNT(*), MIN(id) FROM proofs").fetchone()
    assert left == (60_000 - deleted, deleted + 1), "cancel keeps whole batches: a deleted prefix of ids"
    records = await journal.actions()
    outcomes = sorted(r.outcome for r in records)
    assert outcomes == ["cancelled", "refused", "refused", "refused"]
    assert reg.running() == {}


class RestartReplica(Action):
    """Test-only stand-in for a restart: records that it ran, changes nothing real."""

    id = "test.restart"
    key = "z"
    title = "Restart (test)"
    help = "test"
    pane = "health"
    danger = "disruptive"
    changes_state = True
    target_kind = "replica"
    security_guarded = True

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        return self.make_plan(target, [PlanStep("restart", f"docker restart {target.name}")], params)

    async def run(self, ctx: ActionContext, plan: Plan):  # type: ignore[override]
        yield Outcome("succeeded", "restarted")


class CollectEvidence(RestartReplica):
    id = "test.collect_evidence"
    key = "e"
    title = "Collect evidence (test)"
    danger = "safe"
    security_guarded = False
    preserves_evidence = True
    target_kind = "environment"

    async def run(self, ctx: ActionContext, plan: Plan):  # type: ignore[override]
        yield Outcome("succeeded", "bundle written")


async def test_security_guard_reads_evidence_from_the_journal_and_records_overrides(
    tmp_path: Path, journal: Journal
) -> None:
    settings = settings_for(tmp_path / "proofs.db")
    reg = registry_with(RestartReplica(), CollectEvidence())
    replica = Target("replica", "prover-1")
    first = await journal.declare_incident("invalid proofs", "P0", journal.actor, security=True)
    second = await journal.declare_incident("invalid proofs again", "P0", journal.actor, security=True)

    def ctx(incident: int) -> ActionContext:
        return ActionContext(settings=settings, journal=journal, incident_id=incident, incident_security=True)

    with pytest.raises(Refused, match="until evidence is preserved"):
        await reg.prepare("test.restart", ctx(first.id), replica)
    # an override with the typed name runs, and the timeline says so
    plan = await reg.prepare("test.restart", ctx(first.id), replica, {"override": "prover-1"})
    assert (await reg.execute(plan, ctx(first.id))).status == "succeeded"
    notes = [e.summary for e in await journal.events(first.id, kinds=("note",))]
    assert notes == ["Security guard overridden: test.restart on prover-1 before evidence was preserved"]

    # evidence preserved for the second incident: restarts go ahead there without override
    ev = await reg.prepare("test.collect_evidence", ctx(second.id), Target("environment", "x402"))
    assert (await reg.execute(ev, ctx(second.id))).status == "succeeded"
    assert await reg.prepare("test.restart", ctx(second.id), replica)
    # ...but evidence of one incident does not count for another
    third = await journal.declare_incident("third", "P0", journal.actor, security=True)
    with pytest.raises(Refused):
        await reg.prepare("test.restart", ctx(third.id), replica)
    refused = [r for r in await journal.actions() if r.outcome == "refused"]
    assert [r.incident_id for r in refused] == [first.id, third.id]


KILLED_DELETE = r"""
import asyncio, sys
from pathlib import Path
from x402console.actions.base import ActionContext
from x402console.actions.database import DeleteExpired, database_target
from x402console.actions.registry import Registry
from x402console.journal import Journal
from x402console.settings.model import DatabaseSettings, Discovery, Settings

async def main(db, journal_path):
    settings = Settings(database=DatabaseSettings(path=Path(db), delete_batch_size=2000),
                        discovery=Discovery(mode="static"))
    journal = await Journal.open(journal_path)
    reg = Registry()
    reg.register(DeleteExpired(pause_s=0.03))
    ctx = ActionContext(settings=settings, journal=journal)
    plan = await reg.prepare("db.delete_expired", ctx, database_target(settings))
    def progress(p):
        print("progress", p.message, flush=True)
    outcome = await reg.execute(plan, ctx, progress)
    print("outcome", outcome.status, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_sigkill_mid_action_leaves_started_then_unknown_and_an_intact_db(tmp_path: Path) -> None:
    db = tmp_path / "proofs.db"
    rows = 200_000
    make_db(db, rows)
    journal_path = tmp_path / "journal.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_DELETE, str(db), str(journal_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if sum(1 for x in lines if x.startswith("progress")) >= 5:
                break
        assert sum(1 for x in lines if x.startswith("progress")) >= 5, (lines, proc.stderr.read() if proc.poll() is not None else "")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert not any(x.startswith("outcome") for x in lines), "the delete finished before the kill"

    journal = await Journal.open(journal_path)
    try:
        (open_record,) = await journal.open_actions()
        assert (open_record.action_id, open_record.outcome) == ("db.delete_expired", "started")
        marked = await journal.mark_unfinished_unknown(everything=True)
        assert [m.id for m in marked] == [open_record.id]
        record = await journal.action(open_record.id)
        assert record.outcome == "unknown"
        summaries = [e.summary for e in await journal.events(kinds=("action_finished",))]
        assert summaries == [f"db.delete_expired on {db}: started, outcome unknown"]
    finally:
        await journal.close()

    # The killed process may have died inside a batch: the next opener rolls that batch back
    # whole. Our own integrity check is that opener here.
    settings = settings_for(db)
    reg = registry_with(IntegrityCheck())
    ctx = ActionContext(settings=settings)
    outcome = await reg.execute(await reg.prepare("db.integrity_check", ctx, database_target(settings)), ctx)
    assert outcome.status == "succeeded", outcome
    con = sqlite3.connect(db)
    try:
        count, low, high = con.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM proofs").fetchone()
    finally:
        con.close()
    last_reported = int([x for x in lines if x.startswith("progress")][-1].split()[1])
    deleted = rows - count
    assert deleted >= last_reported, "a batch reported as committed came back"
    assert deleted < rows
    # what is left is exactly the ids from one batch boundary on: no batch half-applied
    assert high == rows and low == deleted + 1 and count == high - low + 1
    assert deleted - last_reported <= 2000, "more than one unreported batch is missing"
