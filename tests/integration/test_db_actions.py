"""proofs.db actions against real SQLite files while a real simulated prover writes to them."""

from __future__ import annotations

import hashlib
import ipaddress
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rig.sim import RunningSim, sim_factory  # noqa: F401  (fixture)
from x402console.actions.base import ActionContext, ActionError, Outcome, Refused
from x402console.actions.database import BATCH_TARGET_S, WAL_BATCH_TARGET_S, database_target, list_backups
from x402console.actions.registry import Registry, default_registry
from x402console.drill.payment import make_request
from x402console.settings.model import DatabaseSettings, Discovery, Replica, Settings

BACKUP_NAME = re.compile(r"^proofs_backup_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.db$")
# Each documentation address is used at most once every ~75 s at the rates below, so the
# prover's 10-per-minute limit never answers 429 to this traffic.
_IPS = [
    str(ip)
    for net in ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")
    for ip in ipaddress.ip_network(net).hosts()
    if str(ip) != "198.51.100.254"  # the rig's readiness probe address
]
random.Random(402).shuffle(_IPS)
_next_ip = 0
_ip_lock = threading.Lock()


def next_ip() -> str:
    global _next_ip
    with _ip_lock:
        ip = _IPS[_next_ip % len(_IPS)]
        _next_ip += 1
    return ip


class Traffic:
    """Valid /generate-proof requests from distinct client IPs in a background thread (bounded)."""

    def __init__(self, sim: RunningSim, rate: float = 10.0, max_requests: int = 600, max_seconds: float = 60.0) -> None:
        self.sim = sim
        self.rate = rate
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random()
        started = time.monotonic()
        with httpx.Client(base_url=self.sim.url, trust_env=False, timeout=15.0) as client:
            for i in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() - started > self.max_seconds:
                    return
                try:
                    r = client.post("/generate-proof", json=make_request(rng, recipient_pool=10**12),
                                    headers={"X-Forwarded-For": next_ip()})
                    self.statuses.append(r.status_code)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                self._stop.wait(max(0.0, started + (i + 1) / self.rate - time.monotonic()))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def wait_for(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.statuses) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.statuses) >= n, (self.statuses, self.errors)

    def assert_all_ok(self) -> None:
        assert self.statuses, "no request was answered"
        assert not self.errors, self.errors
        assert set(self.statuses) == {200}, sorted(set(self.statuses))


def seed(db: Path, rows: int, *, expires: str, created: str = "datetime('now')", tag: str = "seed") -> None:
    """Insert rows into a database the simulator is writing (waits for its lock like a replica)."""
    con = sqlite3.connect(db, timeout=10)
    try:
        with con:
            con.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " INSERT INTO proofs (request_hash, proof, public_inputs, client_ip, generation_time_ms,"
                " created_at, expires_at)"
                f" SELECT printf('{tag}-%060d', i), printf('{{\"Ar\":{{\"X\":\"%d\"}}}}', i), '[]', '203.0.113.77', 60,"
                f" {created}, {expires} FROM n",
                (rows,),
            )
    finally:
        con.close()


def query(db: Path, sql: str, *params: Any) -> Any:
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute(sql, params).fetchone()
    finally:
        con.close()


def settings_for(db: Path, *, replicas: tuple[Replica, ...] = (), batch: int = 2000) -> Settings:
    return Settings(
        database=DatabaseSettings(path=db, backups_dir=db.parent / "backups", delete_batch_size=batch),
        discovery=Discovery(mode="static"),
        replicas=replicas,
    )


async def run_action(reg: Registry, action_id: str, settings: Settings, params: dict | None = None) -> Outcome:
    ctx = ActionContext(settings=settings)
    try:
        plan = await reg.prepare(action_id, ctx, database_target(settings), params or {})
        return await reg.execute(plan, ctx)
    finally:
        await ctx.aclose()


def store_failures(sim: RunningSim) -> list[str]:
    return [line for line in sim.stderr.splitlines() if "Failed to store proof" in line]


@pytest.fixture
def reg() -> Registry:
    return default_registry()


@pytest.fixture
def writing_sim(sim_factory) -> Iterator[RunningSim]:  # noqa: F811
    yield sim_factory()


# --------------------------------------------------------------------------- deleting


async def test_delete_expired_in_batches_while_the_prover_writes(writing_sim: RunningSim, reg: Registry) -> None:
    db = writing_sim.db_path
    seed(db, 30_000, expires="datetime('now', '-2 hours')")
    with Traffic(writing_sim) as traffic:
        traffic.wait_for(5)
        outcome = await run_action(reg, "db.delete_expired", settings_for(db))
        during = len(traffic.statuses)
        traffic.wait_for(during + 5)
    assert outcome.status == "succeeded", outcome
    assert outcome.details["deleted"] == 30_000
    assert outcome.details["batches"] >= 15
    # the plan's first step, on by default: the prover's rollback-journal file switched to WAL
    # while it wrote, and kept by the file (a fresh connection asking for nothing sees it)
    assert (outcome.details["journal_mode_before"], outcome.details["journal_mode"]) == ("delete", "wal")
    assert "journal mode delete -> wal" in outcome.summary
    assert query(db, "PRAGMA journal_mode")[0] == "wal"
    # in WAL mode each batch read its pages first and checkpointed after itself
    assert outcome.details["longest_warm_ms"] > 0 and outcome.details["longest_checkpoint_ms"] > 0
    assert query(db, "SELECT COUNT(*) FROM proofs WHERE expires_at < datetime('now')")[0] == 0
    # the prover's own proofs (valid for an hour) are all still there, and it never failed a write
    stored = query(db, "SELECT COUNT(*) FROM proofs WHERE request_hash NOT LIKE 'seed-%'")[0]
    assert stored == len(traffic.statuses) > 0
    traffic.assert_all_ok()
    assert store_failures(writing_sim) == []


async def test_delete_gives_way_while_another_writer_holds_the_lock(tmp_path: Path, reg: Registry) -> None:
    from x402console.actions import sqlite_ops

    from x402console.drill.sim.store import SCHEMA

    db = tmp_path / "proofs.db"
    setup = sqlite3.connect(db)
    setup.executescript(SCHEMA)
    setup.close()
    seed(db, 3_000, expires="datetime('now', '-2 hours')")
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # a prover write in progress
    con = sqlite_ops.connect(db, readonly=False)
    try:
        started = time.monotonic()
        assert sqlite_ops.delete_batch(con, 0, 10**9, "1", wait_for_lock=False) is None
        assert time.monotonic() - started < 1.0  # refused at once, not after the busy timeout
        assert not con.in_transaction
    finally:
        con.close()
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        # wal=no: in rollback mode; the WAL switch would itself wait for the holder (next test)
        outcome = await run_action(reg, "db.delete_expired", settings_for(db), {"wal": "no"})
    finally:
        release.join()
        holder.close()
    assert outcome.status == "succeeded", outcome
    assert outcome.details["deleted"] == 3_000
    assert outcome.details["yielded"] >= 1


def test_the_wal_switch_waits_for_a_write_in_progress(tmp_path: Path) -> None:
    """SQLite fails a journal-mode change at once while another connection holds the write lock
    (no busy handler for the lock upgrade); the switch tries again until the write is done."""
    from x402console.actions import sqlite_ops
    from x402console.drill.sim.store import SCHEMA

    db = tmp_path / "proofs.db"
    setup = sqlite3.connect(db)
    setup.executescript(SCHEMA)
    setup.close()
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    con = sqlite_ops.connect(db, readonly=False)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            con.execute("PRAGMA journal_mode=WAL")  # what SQLite itself does
        release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
        release.start()
        started = time.monotonic()
        assert sqlite_ops.set_journal_mode(con, "WAL") == "wal"
        assert time.monotonic() - started >= 0.25
        release.join()
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            sqlite_ops.set_journal_mode(con, "DELETE", within_s=0.2)  # gives up in the end
        holder.execute("COMMIT")
    finally:
        con.close()
        holder.close()
    assert query(db, "PRAGMA journal_mode")[0] == "wal"


def test_a_batch_over_its_statement_budget_is_rolled_back_and_frees_the_lock(tmp_path: Path) -> None:
    from x402console.actions import sqlite_ops
    from x402console.drill.sim.store import SCHEMA

    db = tmp_path / "proofs.db"
    setup = sqlite3.connect(db)
    setup.executescript(SCHEMA)
    setup.close()
    seed(db, 20_000, expires="datetime('now', '-2 hours')")
    con = sqlite_ops.connect(db, readonly=False)
    try:
        got = sqlite_ops.delete_batch(con, 0, 10**9, "1", wait_for_lock=False, statement_budget_s=0.0)
        assert got is not None and got.interrupted and got.rows == 0
        assert not con.in_transaction
        # the lock is free: another writer gets it without waiting
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()
        assert query(db, "SELECT COUNT(*) FROM proofs")[0] == 20_000
        done = sqlite_ops.delete_batch(con, 0, 100, "1", wait_for_lock=False, statement_budget_s=10.0)
        assert done is not None and not done.interrupted and done.rows == 99
        assert 0 < done.statement_s <= done.lock_s
    finally:
        con.close()


async def test_delete_plan_switches_to_wal_first_only_in_rollback_mode(tmp_path: Path, reg: Registry) -> None:
    from x402console.drill.sim.store import SCHEMA

    db = tmp_path / "proofs.db"
    setup = sqlite3.connect(db)
    setup.executescript(SCHEMA)
    setup.close()
    settings = settings_for(db)
    ctx = ActionContext(settings=settings)
    try:
        plan = await reg.prepare("db.delete_expired", ctx, database_target(settings), {})
        assert "PRAGMA journal_mode=WAL" in plan.steps[0].command and "from delete to WAL" in plan.steps[0].description
        assert plan.params["switch_to_wal"] is True
        # Batches are sized by the mode they will run in: a WAL commit is an append, so half the lock time.
        assert f"about {WAL_BATCH_TARGET_S * 1000:.0f} ms" in plan.steps[2].description
        assert any("keeps WAL mode in the file" in w for w in plan.warnings), plan.warnings
        assert any("proofs.db-wal and proofs.db-shm" in w for w in plan.warnings), plan.warnings
        kept = await reg.prepare("db.delete_expired", ctx, database_target(settings), {"wal": "no"})
        assert not any("journal_mode=WAL" in (step.command or "") for step in kept.steps)
        assert kept.params["switch_to_wal"] is False
        assert f"about {BATCH_TARGET_S * 1000:.0f} ms" in kept.steps[1].description
        assert any("stays in delete journal mode" in w and "db.enable_wal" in w for w in kept.warnings), kept.warnings
        with pytest.raises(ActionError, match="wal must be yes or no"):
            await reg.prepare("db.delete_expired", ctx, database_target(settings), {"wal": "maybe"})
        assert query(db, "PRAGMA journal_mode")[0] == "delete"  # planning changes nothing
        wal = sqlite3.connect(db)
        wal.execute("PRAGMA journal_mode=WAL")
        wal.close()
        plan = await reg.prepare("db.delete_expired", ctx, database_target(settings), {})
        assert not any("journal_mode=WAL" in (step.command or "") for step in plan.steps)
        assert f"about {WAL_BATCH_TARGET_S * 1000:.0f} ms" in plan.steps[1].description
        assert not any("WAL" in w for w in plan.warnings), plan.warnings
        assert plan.params["switch_to_wal"] is False
    finally:
        await ctx.aclose()


async def test_delete_older_than_n_days_keeps_newer_rows(writing_sim: RunningSim, reg: Registry) -> None:
    db = writing_sim.db_path
    seed(db, 4000, expires="datetime('now', '+1 hour')", created="datetime('now', '-10 days')", tag="old")
    seed(db, 3000, expires="datetime('now', '+1 hour')", created="datetime('now', '-2 days')", tag="new")
    with Traffic(writing_sim) as traffic:
        traffic.wait_for(3)
        with pytest.raises(ActionError, match="days must be between 1"):
            await run_action(reg, "db.delete_older", settings_for(db), {"days": 0})
        outcome = await run_action(reg, "db.delete_older", settings_for(db), {"days": "7", "wal": "no"})
    assert outcome.status == "succeeded", outcome
    assert outcome.details["deleted"] == 4000
    assert "journal_mode" not in outcome.details and query(db, "PRAGMA journal_mode")[0] == "delete"  # wal=no
    assert query(db, "SELECT COUNT(*) FROM proofs WHERE request_hash LIKE 'old-%'")[0] == 0
    assert query(db, "SELECT COUNT(*) FROM proofs WHERE request_hash LIKE 'new-%'")[0] == 3000
    traffic.assert_all_ok()


# --------------------------------------------------------------------------- WAL, VACUUM, REINDEX


async def test_enable_wal_sticks_in_the_file_and_the_prover_keeps_writing(writing_sim: RunningSim, reg: Registry) -> None:
    db = writing_sim.db_path
    assert query(db, "PRAGMA journal_mode")[0] == "delete"
    with Traffic(writing_sim) as traffic:
        traffic.wait_for(3)
        plan_ctx = ActionContext(settings=settings_for(db))
        plan = await reg.prepare("db.enable_wal", plan_ctx, database_target(settings_for(db)))
        assert any("keeps WAL mode in the file" in w for w in plan.warnings)
        outcome = await reg.execute(plan, plan_ctx)
        before = len(traffic.statuses)
        traffic.wait_for(before + 10)
    assert outcome.status == "succeeded", outcome
    assert outcome.details == {"before": "delete", "after": "wal"}
    # a fresh connection (like a restarted prover that asks for nothing) sees WAL from the file
    assert query(db, "PRAGMA journal_mode")[0] == "wal"
    assert Path(f"{db}-wal").exists()
    stored = query(db, "SELECT COUNT(*) FROM proofs")[0]
    assert stored == len(traffic.statuses)
    traffic.assert_all_ok()
    again = await run_action(reg, "db.enable_wal", settings_for(db))
    assert again.status == "succeeded" and "already in WAL mode" in again.summary


async def test_vacuum_and_reindex_while_the_prover_writes(writing_sim: RunningSim, reg: Registry) -> None:
    db = writing_sim.db_path
    seed(db, 20_000, expires="datetime('now', '-1 hour')")
    settings = settings_for(db, batch=5000)
    with Traffic(writing_sim) as traffic:
        traffic.wait_for(3)
        assert (await run_action(reg, "db.delete_expired", settings)).status == "succeeded"
        free_before = query(db, "PRAGMA freelist_count")[0]
        size_before = db.stat().st_size
        vacuum = await run_action(reg, "db.vacuum", settings)
        reindex = await run_action(reg, "db.reindex", settings)
        traffic.wait_for(len(traffic.statuses) + 3)
    assert free_before > 100
    assert vacuum.status == "succeeded", vacuum
    assert reindex.status == "succeeded", reindex
    assert vacuum.details["quick_check"] == ["ok"] and reindex.details["quick_check"] == ["ok"]
    assert query(db, "PRAGMA freelist_count")[0] == 0
    # the delete left the file in WAL mode: VACUUM wrote into the WAL and the checkpoint after
    # it moved that into the file, which is what shrinks it
    assert query(db, "PRAGMA journal_mode")[0] == "wal" and vacuum.details["wal_checkpoint"]["busy"] == 0
    assert db.stat().st_size < size_before / 2
    assert query(db, "PRAGMA integrity_check")[0] == "ok"
    traffic.assert_all_ok()
    assert store_failures(writing_sim) == []


async def test_vacuum_plan_states_the_space_it_needs(tmp_path: Path, reg: Registry) -> None:
    db = tmp_path / "proofs.db"
    seed_fresh(db, 2000)
    ctx = ActionContext(settings=settings_for(db))
    plan = await reg.prepare("db.vacuum", ctx, database_target(settings_for(db)))
    assert plan.danger == "disruptive" and plan.cancellable
    assert any("Free space needed" in w for w in plan.warnings)
    assert any("holds the write lock" in w for w in plan.warnings)
    assert [s.command for s in plan.steps][-2:] == [f'sqlite3 {db} "VACUUM;"', f'sqlite3 {db} "PRAGMA quick_check;"']


def seed_fresh(db: Path, rows: int) -> None:
    from x402console.drill.sim.store import SCHEMA

    con = sqlite3.connect(db)
    con.executescript(SCHEMA)
    con.close()
    seed(db, rows, expires="datetime('now', '+1 hour')")


# --------------------------------------------------------------------------- backups and restore


async def test_backup_now_is_named_like_backup_go_and_passes_integrity_check(writing_sim: RunningSim, reg: Registry) -> None:
    db = writing_sim.db_path
    seed(db, 20_000, expires="datetime('now', '+1 hour')")
    settings = settings_for(db)
    with Traffic(writing_sim) as traffic:
        traffic.wait_for(3)
        first = await run_action(reg, "db.backup", settings)
        time.sleep(1.1)  # names have one-second resolution
        second = await run_action(reg, "db.backup", settings)
    for outcome in (first, second):
        assert outcome.status == "succeeded", outcome
        (artifact,) = outcome.artifacts
        path = Path(artifact)
        assert path.parent == db.parent / "backups" and BACKUP_NAME.match(path.name), path.name
        assert query(path, "PRAGMA integrity_check")[0] == "ok"
        assert query(path, "SELECT COUNT(*) FROM proofs WHERE request_hash LIKE 'seed-%'")[0] == 20_000
        assert outcome.details["integrity_check"] == ["ok"]
    assert not list((db.parent / "backups").glob(".*partial"))
    listed = await run_action(reg, "db.list_backups", settings)
    names = [b["name"] for b in listed.details["backups"]]
    assert names == [Path(second.artifacts[0]).name, Path(first.artifacts[0]).name]
    assert listed.details["backups"][0]["size"] == Path(second.artifacts[0]).stat().st_size
    traffic.assert_all_ok()


async def test_restore_is_refused_while_a_prover_runs_then_replaces_the_file(
    sim_factory, reg: Registry  # noqa: F811
) -> None:
    sim = sim_factory()
    db = sim.db_path
    seed(db, 5000, expires="datetime('now', '+1 hour')", tag="kept")
    replica = Replica("prover-1", health_url=f"{sim.url}/health", metrics_url=f"{sim.url}/metrics")
    settings = settings_for(db, replicas=(replica,))
    backup = await run_action(reg, "db.backup", settings)
    assert backup.status == "succeeded"
    backup_name = Path(backup.artifacts[0]).name
    seed(db, 1000, expires="datetime('now', '+1 hour')", tag="after")  # written after the backup

    ctx = ActionContext(settings=settings)
    with pytest.raises(Refused) as refused:
        await reg.prepare("db.restore", ctx, database_target(settings), {"backup": backup_name})
    assert "prover-1 answers on" in str(refused.value) and sim.url in str(refused.value)
    # without the replica configured, the process holding the file open is still found
    with pytest.raises(Refused, match=rf"process {sim.proc.pid} has proofs.db open"):
        await reg.prepare("db.restore", ActionContext(settings=settings_for(db)), database_target(settings),
                          {"backup": backup_name})
    with pytest.raises(ActionError, match="choose the backup"):
        await reg.prepare("db.restore", ActionContext(settings=settings), database_target(settings), {})
    with pytest.raises(ActionError, match="file name only"):
        await reg.prepare("db.restore", ActionContext(settings=settings), database_target(settings),
                          {"backup": "../proofs.db"})

    sim.stop()
    before_digest = hashlib.sha256(db.read_bytes()).hexdigest()
    plan = await reg.prepare("db.restore", ctx, database_target(settings), {"backup": backup_name})
    assert plan.danger == "destructive" and plan.confirm_text == backup_name
    outcome = await reg.execute(plan, ctx)
    await ctx.aclose()
    assert outcome.status == "succeeded", outcome
    kept = Path(f"{db}.before_restore")
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == before_digest
    assert query(kept, "SELECT COUNT(*) FROM proofs WHERE request_hash LIKE 'after-%'")[0] == 1000
    assert query(db, "SELECT COUNT(*) FROM proofs WHERE request_hash LIKE 'after-%'")[0] == 0
    assert query(db, "SELECT COUNT(*) FROM proofs WHERE request_hash LIKE 'kept-%'")[0] == 5000
    assert query(db, "PRAGMA integrity_check")[0] == "ok"
    assert not Path(f"{db}.restoring").exists()

    # the restored file is one a prover starts on and writes to
    again = sim_factory(state_dir=sim.state_dir)
    with Traffic(again, max_requests=5) as traffic:
        traffic.wait_for(5)
    traffic.assert_all_ok()
    assert query(db, "SELECT COUNT(*) FROM proofs")[0] == 5005


async def test_restore_refuses_a_damaged_backup_and_leaves_the_database_alone(tmp_path: Path, reg: Registry) -> None:
    db = tmp_path / "proofs.db"
    seed_fresh(db, 500)
    backups = tmp_path / "backups"
    backups.mkdir()
    bad = backups / "proofs_backup_2024-01-02_03-04-05.db"
    bad.write_bytes(b"SQLite format 3\x00" + bytes(random.Random(1).randbytes(8000)))
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    outcome = await run_action(reg, "db.restore", settings_for(db), {"backup": bad.name})
    assert outcome.status == "failed"
    assert f"backup {bad.name}" in outcome.summary and "was not touched" in outcome.summary
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert not Path(f"{db}.before_restore").exists()


# --------------------------------------------------------------------------- a corrupt database


async def test_corrupt_database_gives_failed_outcomes_with_the_sqlite_error(sim_factory, reg: Registry) -> None:  # noqa: F811
    sim = sim_factory()
    db = sim.db_path
    seed(db, 20_000, expires="datetime('now', '-1 hour')")
    settings = settings_for(db)
    good = await run_action(reg, "db.backup", settings)
    assert good.status == "succeeded"
    sim.control.set_fault("db_corruption", pages=6)

    for action_id in ("db.integrity_check", "db.quick_check"):
        outcome = await run_action(reg, action_id, settings)
        assert outcome.status == "failed", (action_id, outcome)
        assert "found problems" in outcome.summary and outcome.details["ok"] is False
        assert outcome.details["rows"] != ["ok"]
    delete = await run_action(reg, "db.delete_expired", settings)
    assert delete.status == "failed" and "SQLite error on proofs.db" in delete.summary, delete
    assert "malformed" in delete.summary
    copy = await run_action(reg, "db.backup", settings)
    assert copy.status == "failed" and "fails integrity_check" in copy.summary, copy
    assert [b["name"] for b in list_backups(db.parent / "backups")] == [Path(good.artifacts[0]).name]
    for action_id in ("db.stats", "db.reindex", "db.vacuum"):
        outcome = await run_action(reg, action_id, settings)
        # each ends in an outcome; whichever fail say what SQLite said
        assert outcome.status in ("failed", "succeeded"), (action_id, outcome)
        if outcome.status == "failed":
            assert "SQLite error" in outcome.summary or "quick_check reports" in outcome.summary, outcome

    # the runbook's remedy: stop the prover, restore the last good backup
    sim.stop()
    restore = await run_action(reg, "db.restore", settings, {"backup": Path(good.artifacts[0]).name})
    assert restore.status == "succeeded", restore
    assert query(db, "PRAGMA integrity_check")[0] == "ok"
    assert query(Path(f"{db}.before_restore"), "PRAGMA quick_check")[0] != "ok"


async def test_not_a_database_and_missing_file(tmp_path: Path, reg: Registry) -> None:
    db = tmp_path / "proofs.db"
    db.write_bytes(b"this is a log file, not a database\n" * 200)
    outcome = await run_action(reg, "db.integrity_check", settings_for(db))
    assert outcome.status == "failed" and "file is not a database" in outcome.summary
    stats = await run_action(reg, "db.stats", settings_for(db))
    assert stats.status == "failed" and "file is not a database" in stats.summary
    missing = tmp_path / "nope.db"
    with pytest.raises(ActionError, match=f"no database at {missing}"):
        await run_action(reg, "db.quick_check", settings_for(missing))
    assert not missing.exists(), "checking a missing path must not create a database there"


async def test_stats_report_sizes_and_counts(tmp_path: Path, reg: Registry) -> None:
    db = tmp_path / "proofs.db"
    seed_fresh(db, 1500)
    seed(db, 700, expires="datetime('now', '-1 minute')", tag="exp")
    seed(db, 300, expires="datetime('now', '+1 hour')", created="datetime('now', '-9 days')", tag="old")
    outcome = await run_action(reg, "db.stats", settings_for(db))
    assert outcome.status == "succeeded", outcome
    d = outcome.details
    assert d["rows"] == {"proofs": 2500, "proof_verifications": 0, "rate_limit_log": 0}
    assert d["expired_proofs"] == 700 and d["older_than_7_days"] == 300
    assert d["file_bytes"] == db.stat().st_size == d["page_size"] * d["page_count"]
    assert d["journal_mode"] == "delete"
    assert "2500 proofs, 700 expired" in outcome.summary


# --------------------------------------------------------------------------- cancelling, batch sizing


@pytest.mark.parametrize("action_id", ["db.integrity_check", "db.vacuum", "db.reindex", "db.backup", "db.delete_expired"])
async def test_cancel_leaves_the_database_as_it_was(tmp_path: Path, reg: Registry, action_id: str) -> None:
    db = tmp_path / "proofs.db"
    seed_fresh(db, 3000)
    seed(db, 3000, expires="datetime('now', '-1 hour')", tag="exp")
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    settings = settings_for(db)
    ctx = ActionContext(settings=settings)
    plan = await reg.prepare(action_id, ctx, database_target(settings))
    assert plan.cancellable
    # cancel as soon as the action reports that it started
    outcome = await reg.execute(plan, ctx, lambda p: ctx.cancel.set())
    assert outcome.status == "cancelled", outcome
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert not list(tmp_path.glob("backups/*"))  # no partial backup left behind


def test_batch_size_follows_the_lock_time() -> None:
    from x402console.actions.database import MIN_BATCH, next_width

    assert next_width(200, 0.0125, 0.025, 5000) == 400  # twice as fast as wanted: double
    assert next_width(400, 0.2, 0.025, 5000) == 200  # far too slow: halve, no more at once
    assert next_width(400, 0.03, 0.025, 5000) == 333
    assert next_width(4000, 0.001, 0.025, 5000) == 5000  # never above the configured ceiling
    assert next_width(60, 1.0, 0.025, 5000) == MIN_BATCH
    assert next_width(10, 1.0, 0.025, 10) == 10  # a ceiling under the floor wins


# --------------------------------------------------------------------------- backups under steady writes


async def test_rollback_mode_backup_under_writes_snapshots_only_within_the_lock_budget(
    writing_sim: RunningSim,
) -> None:
    from x402console.actions.database import BackupNow

    db = writing_sim.db_path
    seed(db, 20_000, expires="datetime('now', '+1 hour')")
    settings = settings_for(db)
    # tiny paced steps: the copy takes seconds, so the prover's writes restart it
    reg = Registry()
    reg.register(BackupNow(pages_per_step=16, pause_s=0.05))
    with Traffic(writing_sim, rate=10) as traffic:
        traffic.wait_for(3)
        refused = await run_action(reg, "db.backup", settings, {"max_lock_seconds": 0.0001})
        allowed = await run_action(reg, "db.backup", settings, {"max_lock_seconds": 30})
    assert refused.status == "failed", refused
    assert "no backup made" in refused.summary and "db.enable_wal" in refused.summary
    assert refused.details["restarts"] == 4 and refused.details["estimated_lock_s"] > 0
    assert allowed.status == "succeeded", allowed
    assert allowed.details["mode"] == "snapshot" and allowed.details["restarts"] == 4
    backups = list_backups(db.parent / "backups")
    assert [b["path"] for b in backups] == list(allowed.artifacts)
    assert query(Path(allowed.artifacts[0]), "PRAGMA integrity_check")[0] == "ok"
    traffic.assert_all_ok()


async def test_wal_mode_backup_under_writes_never_restarts(writing_sim: RunningSim, reg: Registry) -> None:
    from x402console.actions.database import BackupNow

    db = writing_sim.db_path
    seed(db, 20_000, expires="datetime('now', '+1 hour')")
    settings = settings_for(db)
    assert (await run_action(reg, "db.enable_wal", settings)).status == "succeeded"
    slow = Registry()
    slow.register(BackupNow(pages_per_step=16, pause_s=0.01))
    with Traffic(writing_sim, rate=10) as traffic:
        traffic.wait_for(3)
        before = len(traffic.statuses)
        outcome = await run_action(slow, "db.backup", settings, {"max_lock_seconds": 0.0001})
        during = len(traffic.statuses) - before
    assert outcome.status == "succeeded", outcome
    assert outcome.details["mode"] == "wal-steps" and outcome.details["restarts"] == 0
    assert outcome.details["steps"] > 50 and during >= 3, "the prover did not write while the copy ran"
    copy = Path(outcome.artifacts[0])
    assert query(copy, "PRAGMA integrity_check")[0] == "ok"
    assert query(copy, "SELECT COUNT(*) FROM proofs WHERE request_hash LIKE 'seed-%'")[0] == 20_000
    traffic.assert_all_ok()


def test_warming_queries_seek_each_index_entry_of_the_batch(tmp_path: Path) -> None:
    """The reads that precede a WAL-mode batch touch the batch's rows in the table and in every
    plain index by exact seek (columns and rowid), never by scanning equal values."""
    from x402console.actions import sqlite_ops
    from x402console.drill.sim.store import SCHEMA

    db = tmp_path / "proofs.db"
    setup = sqlite3.connect(db)
    setup.executescript(SCHEMA + "CREATE INDEX idx_partial ON proofs(client_ip) WHERE client_ip <> '';")
    setup.close()
    seed(db, 2_000, expires="datetime('now', '-2 hours')")  # one expires_at value for every row
    con = sqlite_ops.connect(db, readonly=True)
    try:
        queries = sqlite_ops.warming_queries(con)
        indexes = {r[1] for r in con.execute("PRAGMA index_list(proofs)")} - {"idx_partial"}
        assert len(queries) == 1 + len(indexes)
        for sql in queries[1:]:
            plan = " ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql, (0, 1)))
            assert "COVERING INDEX" in plan and "rowid=?" in plan, plan
        assert not any("idx_partial" in q for q in queries)  # no plain key to seek
        lo = query(db, "SELECT min(id) FROM proofs")[0]
        assert [con.execute(q, (lo, lo + 150)).fetchone()[0] for q in queries] == [150] * len(queries)
    finally:
        con.close()
