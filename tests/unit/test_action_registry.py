"""The registry's safety rules on small fake actions, and every real action in read-only mode."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from x402console.actions.base import (
    Action,
    ActionContext,
    ActionError,
    Outcome,
    Plan,
    PlanStep,
    Progress,
    Refused,
    Target,
)
from x402console.actions.registry import Registry, check_declaration, default_registry
from x402console.drill.sim.store import SCHEMA
from x402console.settings.model import DatabaseSettings, Discovery, Environment, Settings

pytestmark = pytest.mark.asyncio


class Fake(Action):
    id = "fake.read"
    key = "f"
    title = "Fake read"
    help = "reads"
    pane = "health"
    danger = "safe"
    changes_state = False
    target_kind = "replica"

    def __init__(self, outcome: Outcome | None = None, gate: asyncio.Event | None = None,
                 error: BaseException | None = None, progress: int = 1) -> None:
        self.outcome = outcome or Outcome("succeeded", "done")
        self.gate = gate
        self.error = error
        self.progress = progress
        self.planned = 0

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        self.planned += 1
        return self.make_plan(target, [PlanStep("do it", "true")], params)

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        for i in range(self.progress):
            yield Progress(f"step {i}", (i + 1) / self.progress)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        if self.outcome.status != "none":
            yield self.outcome


class FakeWrite(Fake):
    id = "fake.write"
    key = "w"
    title = "Fake write"
    danger = "disruptive"
    changes_state = True


class FakeRestart(Fake):
    id = "replica.restart"
    key = "r"
    title = "Restart replica"
    danger = "disruptive"
    changes_state = True


class FakeScaleDown(Fake):
    id = "service.scale_down"
    key = "S"
    title = "Scale"
    danger = "disruptive"
    changes_state = True
    target_kind = "service"


REPLICA = Target("replica", "prover-1", {"container_id": "abc"})
OTHER = Target("replica", "prover-2")


def ctx(**kw: Any) -> ActionContext:
    settings = kw.pop("settings", Settings(discovery=Discovery(mode="static")))
    return ActionContext(settings=settings, **kw)


def registry(*actions: Action) -> Registry:
    reg = Registry()
    for a in actions:
        reg.register(a)
    return reg


# --------------------------------------------------------------------------- catalogue


async def test_register_get_and_panes() -> None:
    read, write = Fake(), FakeWrite()
    reg = registry(read, write)
    assert reg.get("fake.read") is read
    assert reg.all() == [read, write]
    assert reg.for_pane("health") == [read, write]
    assert reg.for_pane("database") == []
    with pytest.raises(ActionError, match="no action 'nope'"):
        reg.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Fake())
    with pytest.raises(TypeError):
        reg.register(Fake)  # type: ignore[arg-type]


async def test_bad_declarations_are_rejected() -> None:
    class ReadOnlyButDangerous(Fake):
        id = "bad.one"
        danger = "destructive"

    class WrongPane(Fake):
        id = "bad.two"
        pane = "nowhere"

    class NoTitle(Fake):
        id = "bad.three"
        title = " "

    assert "cannot be destructive" in " ".join(check_declaration(ReadOnlyButDangerous()))
    assert "pane 'nowhere'" in " ".join(check_declaration(WrongPane()))
    assert "title must be non-empty" in " ".join(check_declaration(NoTitle()))
    for bad in (ReadOnlyButDangerous(), WrongPane(), NoTitle()):
        with pytest.raises(ValueError):
            Registry().register(bad)
    assert check_declaration(Fake()) == []


async def test_key_conflicts_are_reported() -> None:
    class SameKey(Fake):
        id = "fake.other"

    reg = registry(Fake(), SameKey(), FakeWrite())
    assert reg.key_conflicts() == [("health", "f", ["fake.read", "fake.other"])]


# --------------------------------------------------------------------------- read-only


async def test_read_only_refuses_changes_before_planning() -> None:
    write = FakeWrite()
    reg = registry(Fake(), write)
    with pytest.raises(Refused, match="^read-only: "):
        await reg.prepare("fake.write", ctx(read_only=True), REPLICA)
    assert write.planned == 0, "a refused action must not even plan"
    # read-only from the configuration counts the same
    ro_settings = Settings(environment=Environment(read_only=True), discovery=Discovery(mode="static"))
    with pytest.raises(Refused, match="read-only"):
        await reg.prepare("fake.write", ctx(settings=ro_settings), REPLICA)
    plan = await reg.prepare("fake.read", ctx(read_only=True), REPLICA)
    assert plan.action_id == "fake.read" and plan.changes_state is False
    assert await reg.prepare("fake.write", ctx(), REPLICA)


async def test_execute_rechecks_read_only() -> None:
    reg = registry(FakeWrite())
    plan = await reg.prepare("fake.write", ctx(), REPLICA)
    with pytest.raises(Refused, match="read-only"):
        await reg.execute(plan, ctx(read_only=True))


async def test_wrong_target_kind_is_an_error_not_a_refusal() -> None:
    reg = registry(Fake())
    with pytest.raises(ActionError) as info:
        await reg.prepare("fake.read", ctx(), Target("database", "/x/proofs.db"))
    assert not isinstance(info.value, Refused)
    assert "works on a replica" in str(info.value)


# --------------------------------------------------------------------------- security guard


async def test_security_incident_refuses_restarts_without_evidence() -> None:
    reg = registry(FakeRestart(), FakeWrite(), FakeScaleDown())
    sec = ctx(incident_security=True, incident_id=7)
    with pytest.raises(Refused, match="security incident #7.*evidence"):
        await reg.prepare("replica.restart", sec, REPLICA)
    # recognised by verb on a service target too, without the flag
    with pytest.raises(Refused, match="evidence"):
        await reg.prepare("service.scale_down", sec, Target("service", "prover"))
    # not a restart: allowed
    assert await reg.prepare("fake.write", sec, REPLICA)
    # not a security incident: allowed
    assert await reg.prepare("replica.restart", ctx(incident_id=7), REPLICA)


async def test_security_override_needs_the_typed_target_name() -> None:
    reg = registry(FakeRestart())
    sec = ctx(incident_security=True, incident_id=7)
    with pytest.raises(Refused, match="typed exactly: 'prover-1'"):
        await reg.prepare("replica.restart", sec, REPLICA, {"override": True})
    with pytest.raises(Refused, match="typed exactly"):
        await reg.prepare("replica.restart", sec, REPLICA, {"override": "prover-2"})
    plan = await reg.prepare("replica.restart", sec, REPLICA, {"override": "prover-1"})
    assert any("Security guard overridden" in w for w in plan.warnings)


# --------------------------------------------------------------------------- one per target, execution


async def test_one_running_action_per_target() -> None:
    gate = asyncio.Event()
    slow = FakeWrite(gate=gate)
    reg = registry(slow, Fake())
    c = ctx()
    plan = await reg.prepare("fake.write", c, REPLICA)
    first_progress = asyncio.Event()
    task = asyncio.create_task(reg.execute(plan, c, lambda p: first_progress.set()))
    await asyncio.wait_for(first_progress.wait(), 5)
    assert reg.running() == {("replica", "prover-1"): "fake.write"}
    with pytest.raises(Refused, match="fake.write is already running on prover-1"):
        await reg.prepare("fake.write", ctx(), REPLICA)
    with pytest.raises(Refused, match="already running"):
        await reg.execute(plan, ctx())
    # reading is never exclusive: a probe does not wait for a restart (nor the reverse)
    assert await reg.prepare("fake.read", ctx(), REPLICA)
    # another target is free; identity ignores `detail`
    assert await reg.prepare("fake.write", ctx(), OTHER)
    with pytest.raises(Refused):
        await reg.prepare("fake.write", ctx(), Target("replica", "prover-1", {"container_id": "other"}))
    gate.set()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.status == "succeeded"
    assert reg.running() == {}
    assert await reg.prepare("fake.read", ctx(), REPLICA)


async def test_slot_is_released_when_the_caller_is_cancelled() -> None:
    reg = registry(FakeWrite(gate=asyncio.Event()))
    c = ctx()
    plan = await reg.prepare("fake.write", c, REPLICA)
    task = asyncio.create_task(reg.execute(plan, c))
    await asyncio.sleep(0.05)
    assert reg.running()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reg.running() == {}


@pytest.mark.parametrize(
    ("action", "status", "text"),
    [
        (Fake(Outcome("failed", "it broke", {"x": 1})), "failed", "it broke"),
        (Fake(error=ActionError("clear words")), "failed", "clear words"),
        (Fake(error=RuntimeError("boom")), "failed", "failed unexpectedly: RuntimeError: boom"),
        (Fake(Outcome("none", "")), "failed", "ended without reporting an outcome"),  # type: ignore[arg-type]
        (Fake(Outcome("cancelled", "stopped")), "cancelled", "stopped"),
    ],
)
async def test_execute_turns_every_ending_into_an_outcome(action: Fake, status: str, text: str) -> None:
    reg = registry(action)
    c = ctx()
    outcome = await reg.execute(await reg.prepare("fake.read", c, REPLICA), c)
    assert outcome.status == status
    assert text in outcome.summary


async def test_progress_reaches_sync_and_async_callbacks() -> None:
    reg = registry(Fake(progress=3))
    seen: list[str] = []

    async def async_cb(p: Progress) -> None:
        await asyncio.sleep(0)
        seen.append("a:" + p.message)

    c = ctx()
    await reg.execute(await reg.prepare("fake.read", c, REPLICA), c, lambda p: seen.append(p.message))
    await reg.execute(await reg.prepare("fake.read", c, REPLICA), c, async_cb)
    assert seen == ["step 0", "step 1", "step 2", "a:step 0", "a:step 1", "a:step 2"]


# --------------------------------------------------------------------------- every real action


def _small_db(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute(
        "INSERT INTO proofs (request_hash, proof, public_inputs, client_ip, generation_time_ms, expires_at)"
        " VALUES ('h', 'p', '[]', '203.0.113.1', 5, datetime('now', '-1 hour'))"
    )
    con.commit()
    con.close()


async def test_every_registered_action_obeys_read_only(tmp_path: Path) -> None:
    reg = default_registry()
    ids = [a.id for a in reg.all()]
    assert "db.integrity_check" in ids and "db.restore" in ids
    assert len(ids) == len(set(ids))
    assert reg.key_conflicts() == [], "two actions of one pane share a key"
    db = tmp_path / "proofs.db"
    _small_db(db)
    (tmp_path / "backups").mkdir()
    settings = Settings(
        database=DatabaseSettings(path=db, backups_dir=tmp_path / "backups"),
        discovery=Discovery(mode="static"),
        environment=Environment(read_only=True),
    )
    refused, allowed = [], []
    for action in reg.all():
        assert check_declaration(action) == [], action.id
        c = ActionContext(settings=settings, read_only=True)
        try:
            targets = action.targets(c)
        except Exception:
            targets = []
        target = targets[0] if targets else Target(action.target_kind, f"test-{action.target_kind}")
        try:
            plan = await reg.prepare(action.id, c, target, {})
        except Refused as exc:
            assert action.changes_state, f"{action.id} changes nothing but was refused: {exc}"
            assert str(exc).startswith("read-only"), f"{action.id}: {exc}"
            refused.append(action.id)
            continue
        except ActionError as exc:
            # could not plan here (no Docker, no such replica): still must not be a state change
            assert not action.changes_state, f"{action.id} changes state and got past read-only: {exc}"
            allowed.append(action.id)
            continue
        finally:
            await c.aclose()
        assert not action.changes_state, f"{action.id} changes state but read-only mode let it plan"
        assert plan.changes_state is False
        allowed.append(action.id)
    assert {"db.delete_expired", "db.restore", "db.vacuum", "db.backup", "db.enable_wal"} <= set(refused)
    assert {"db.integrity_check", "db.quick_check", "db.stats", "db.list_backups"} <= set(allowed)
