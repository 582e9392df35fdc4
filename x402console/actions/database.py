"""proofs.db actions: the runbook's Database Operations (Incidents 2, 3 and 5), done safely.

The runbook runs one big statement at a time against a file the prover is writing
(`sqlite3 proofs.db "DELETE ..."`, `cp proofs.db ...`). Here each action keeps its
transactions short so the prover's writes never wait long (the prover opens the file without
WAL, so any transaction of ours delays its commits), copies with SQLite's backup API rather than
`cp`, checks every copy it makes, and never replaces the database while a prover runs.

Every SQLite call runs in a worker thread; a long statement (integrity check, VACUUM, REINDEX)
is cancelled with sqlite3_interrupt, which rolls it back whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from x402console.actions import sqlite_ops as ops
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
from x402console.core.format import bytes_h

T = TypeVar("T")

PANE = "database"
EXPIRED_CONDITION = "expires_at < datetime('now')"
OLDER_CONDITION = "created_at < datetime('now', ?)"
# Deleting a proof rewrites pages of four indexes (two of them on a random hash), so its cost is
# set by the disk, not by the row count the configuration names. Each batch is sized to hold
# the write lock about BATCH_TARGET_S; delete_batch_size is only the ceiling. A loaded disk can
# stretch one commit to several times the target, so the target is well under the 100 ms a
# prover write may wait (bench_db_actions.py: at 25 ms, 12 of 6,300 writes waited over 100 ms
# during a 1,000,000-row delete; at 12 ms, 1 of 11,100).
BATCH_TARGET_S = 0.012
# In WAL mode a batch's commit is an append, so the lock time is the statement's and shrinks with
# the batch. Half the target halves how long a prover write that finds our lock held waits before
# its busy handler's next poll, and so how far a slow prover write right after our batch can push
# it (the remaining waits over 100 ms at 12 ms were such chains); the delete takes ~30 % longer.
WAL_BATCH_TARGET_S = 0.006
FIRST_BATCH = 100
MIN_BATCH = 50
# The pause after a batch is at least as long as the batch was (and never under BATCH_PAUSE_S):
# a prover write that hit our lock is asleep in SQLite's busy handler, which polls at growing
# intervals (1, 2, 5, 10, 15, 20, 25 ms ...). A shorter gap lets the next batch take the lock
# before that poll, and the write starves for many batches; a gap as long as the wait it had
# means its next poll finds the database free (a write that waited through a 12 ms batch polls
# again within 10 ms, but one that also waited behind another write sleeps up to 25 ms: a 15 ms
# pause let 16 of 9,600 writes wait over 100 ms in the same benchmark, 25 ms 1 of 11,100).
BATCH_PAUSE_S = 0.025
# When another writer holds the lock as a batch starts, the batch waits its turn behind every
# write already queued: 30 ms, doubling up to 240 ms, and only after YIELD_AT_MOST_S of being
# refused does it queue for the lock itself (a database that is never free must still be cleaned).
YIELD_FIRST_S = 0.03
YIELD_MAX_S = 0.24
YIELD_AT_MOST_S = 10.0
# A DELETE statement still running at this many times the target (pages not in cache, the CPU
# busy elsewhere) is interrupted and rolled back, which frees the lock at once; its ids are tried
# again in a batch half the size. The commit that follows a statement cannot be cut short.
STATEMENT_BUDGET_FACTOR = 2.0
# Measured with bench_db_actions.py (1,000,000 expired proofs, 20 req/s and a writer at 20/s):
# in rollback-journal mode single commits of this disk reach 65-110 ms however small the batch
# (synced journal, pages written and synced, journal unlinked), and SQLite's busy handler then
# polls 25-50 ms apart: 1-7 of ~10,000 writes waited 107-203 ms. In WAL mode a commit is an
# append and none waited 100 ms. So the delete switches the file to WAL first unless told not
# to: a lasting change, shown in its plan with what it means, as the runbook itself prescribes
# ("Enable database WAL mode", Incident 5).
ROLLBACK_MODE_WARNING = (
    "{db} stays in {mode} journal mode (wal=no): each batch's commit syncs the journal and the file, "
    "so on a loaded disk a single commit can hold the prover's writes for 60-130 ms (measured: a few "
    "writes in 10,000 waited over 100 ms). With wal=yes, the default, or db.enable_wal first, a commit "
    "is one append and writes do not queue behind it.")
WAL_WARNINGS = (
    "The real prover opens proofs.db without asking for WAL (no PRAGMA in database.go), but SQLite "
    "keeps WAL mode in the file itself: every program opening it, the prover included, uses WAL "
    "from now on, until someone runs PRAGMA journal_mode=DELETE.",
    "{name}-wal and {name}-shm files will sit beside it; a plain `cp {name}` (backup.go, the "
    "runbook) then misses whatever is still in the -wal file. Use the console's backup.",
    "WAL needs every process on the same host (shared memory); it does not work over a network filesystem.",
)
HEALTH_PROBE_TIMEOUT_S = 2.0
# The longest a rollback-mode backup may block the prover's writes by default: well inside the
# 5 s busy timeout after which the prover gives a write up.
DEFAULT_BACKUP_LOCK_S = 1.0
SIZE_FOR_LOCK_WARNING = 50 * 1024 * 1024


# --------------------------------------------------------------------------- paths and targets


def db_path_of(settings: Any) -> Path:
    return Path(os.path.abspath(Path(settings.database.path).expanduser()))


def backups_dir_of(settings: Any, db: Path | None = None) -> Path:
    """Relative backups_dir is beside the database, as backup.go's ./backups is beside proofs.db."""
    d = Path(settings.database.backups_dir).expanduser()
    if d.is_absolute():
        return d
    return (db or db_path_of(settings)).parent / d


def database_target(settings: Any) -> Target:
    db = db_path_of(settings)
    return Target("database", str(db), {"backups_dir": str(backups_dir_of(settings, db))})


def _db(target: Target) -> Path:
    return Path(os.path.abspath(target.name))


def _backups_dir(ctx: ActionContext, target: Target) -> Path:
    given = target.detail.get("backups_dir") if target.detail else None
    return Path(given) if given else backups_dir_of(ctx.settings, _db(target))


def _require_db(target: Target) -> Path:
    db = _db(target)
    if not db.exists():
        raise ActionError(f"no database at {db}")
    if not db.is_file():
        raise ActionError(f"{db} is not a regular file")
    return db


def _file_size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _total_size(db: Path) -> int:
    return _file_size(db) + sum(_file_size(p) for s, p in ops.side_files(db).items() if s != "-shm")


def _q(path: Path | str) -> str:
    """Shell-quoted path for the equivalent commands shown in plans."""
    import shlex

    return shlex.quote(str(path))


def _failure(db: Path, exc: BaseException, what: str = "") -> Outcome:
    text = ops.sqlite_error_text(exc) if isinstance(exc, sqlite3.Error) else str(exc)
    prefix = f"{what}: " if what else ""
    return Outcome("failed", f"{prefix}SQLite error on {db.name}: {text}", {"error": text, "database": str(db)})


async def _interruptible(ctx: ActionContext, con: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run fn(con, *args) in a thread; ctx.cancel (or our own cancellation) interrupts SQLite,
    which rolls the statement back. Raises sqlite3.OperationalError('interrupted') then."""
    if ctx.cancel.is_set():
        raise sqlite3.OperationalError("interrupted")  # cancelled before it began: never start it
    work = asyncio.ensure_future(asyncio.to_thread(fn, con, *args))
    cancelled = asyncio.ensure_future(ctx.cancel.wait())
    try:
        await asyncio.wait({work, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            con.interrupt()
        return await work
    except asyncio.CancelledError:
        con.interrupt()
        with contextlib.suppress(BaseException):
            await asyncio.shield(work)
        raise
    finally:
        cancelled.cancel()


def _interrupted(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "interrupt" in str(exc).lower()


class DatabaseAction(Action):
    pane = PANE
    target_kind = "database"

    def targets(self, ctx: ActionContext) -> list[Target]:
        return [database_target(ctx.settings)]


# --------------------------------------------------------------------------- integrity checks


class _CheckAction(DatabaseAction):
    danger = "safe"
    changes_state = False
    pragma = "quick_check"
    param_help = {"limit": "report at most this many problems (default 100)"}

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        db = _require_db(target)
        limit = _positive_int(params.get("limit", 100), "limit", 1, 100_000)
        warnings = []
        size = _total_size(db)
        if size >= SIZE_FOR_LOCK_WARNING:
            warnings.append(
                f"{db.name} is {bytes_h(size)}: the check reads all of it under one read lock, and in "
                "rollback-journal mode the prover's writes wait until it ends (they fail after the "
                "prover's 5 s busy timeout). Cancel stops it at once."
            )
        return self.make_plan(
            target,
            [PlanStep(f"Open {db.name} read-only and run PRAGMA {self.pragma}, reporting up to {limit} problems",
                      f'sqlite3 {_q(db)} "PRAGMA {self.pragma};"')],
            {"limit": limit},
            warnings=tuple(warnings),
        )

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        db = _db(plan.target)
        yield Progress(f"PRAGMA {self.pragma} on {db.name} ...")
        started = time.monotonic()
        try:
            con, hot = await asyncio.to_thread(ops.open_for_reading, db)
        except sqlite3.Error as exc:
            yield _failure(db, exc, self.pragma)
            return
        try:
            rows = await _interruptible(ctx, con, ops.check_rows, self.pragma, plan.params.get("limit", 100))
        except sqlite3.OperationalError as exc:
            rows = [f"error: {ops.sqlite_error_text(exc)}"]
        finally:
            con.close()
        seconds = round(time.monotonic() - started, 3)
        if ctx.cancel.is_set() and rows and "interrupt" in rows[-1]:
            yield Outcome("cancelled", f"{self.pragma} cancelled after {seconds:.1f}s; nothing was changed")
            return
        details = {"rows": rows, "ok": rows == ["ok"], "seconds": seconds, "pragma": self.pragma}
        if hot:
            details["note"] = hot
        if rows == ["ok"]:
            yield Outcome("succeeded", f"{self.pragma}: ok ({db.name}, {bytes_h(_file_size(db))}, {seconds:.1f}s)", details)
        else:
            problems = [r for r in rows if not r.startswith("*** ")]
            cut = " at least" if len(rows) >= int(plan.params.get("limit", 100)) else ""
            more = f" (+{cut} {len(problems) - 1} more)".replace("( ", "(") if len(problems) > 1 else ""
            yield Outcome("failed", f"{self.pragma} of {db.name} found problems: {ops.first_problem(rows)}{more}", details)


class QuickCheck(_CheckAction):
    id = "db.quick_check"
    key = "q"
    title = "Quick integrity check"
    help = "PRAGMA quick_check: the fast structural check (skips index-vs-table consistency). Read-only."
    pragma = "quick_check"


class IntegrityCheck(_CheckAction):
    id = "db.integrity_check"
    key = "i"
    title = "Full integrity check"
    help = "PRAGMA integrity_check, as the runbook runs it (Incidents 2 and 5). Read-only."
    pragma = "integrity_check"


# --------------------------------------------------------------------------- size and row counts


class SizeAndCounts(DatabaseAction):
    id = "db.stats"
    key = "s"
    title = "Size and row counts"
    help = "File size, pages, free pages, journal mode, rows per table and expired rows (runbook: ls -lh proofs.db)."
    danger = "safe"
    changes_state = False

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        db = _require_db(target)
        days = ctx.settings.database.retention_days
        return self.make_plan(target, [
            PlanStep("File sizes", f"ls -lh {_q(db)}*"),
            PlanStep("Pages, free pages and journal mode",
                     f'sqlite3 {_q(db)} "PRAGMA page_size; PRAGMA page_count; PRAGMA freelist_count; PRAGMA journal_mode;"'),
            PlanStep("Rows per table, each count its own short read (given up if it would hold the lock long)",
                     f'sqlite3 {_q(db)} "SELECT COUNT(*) FROM proofs;"'),
            PlanStep(f"Expired proofs and proofs older than {days} days",
                     f"sqlite3 {_q(db)} \"SELECT COUNT(*) FROM proofs WHERE {EXPIRED_CONDITION};\""),
        ])

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        db = _db(plan.target)
        days = ctx.settings.database.retention_days
        yield Progress(f"Reading {db.name} ...")
        try:
            details = await asyncio.to_thread(_stats, db, days)
        except sqlite3.Error as exc:
            yield _failure(db, exc, "size and row counts")
            return
        rows = details["rows"]
        proofs = rows.get("proofs")
        expired = details.get("expired_proofs")
        parts = [f"{bytes_h(details['file_bytes'])}"]
        if details["wal_bytes"]:
            parts.append(f"+ {bytes_h(details['wal_bytes'])} WAL")
        parts.append(f"{details['freelist_count']} free pages of {details['page_count']}")
        parts.append(f"journal {details['journal_mode']}")
        if proofs is not None:
            parts.append(f"{proofs} proofs")
        if expired is not None:
            parts.append(f"{expired} expired")
        yield Outcome("succeeded", f"{db.name}: " + ", ".join(parts), details)


def _stats(db: Path, days: int) -> dict[str, Any]:
    con, hot = ops.open_for_reading(db)
    try:
        out: dict[str, Any] = {
            "database": str(db),
            "file_bytes": _file_size(db),
            "wal_bytes": _file_size(Path(f"{db}-wal")),
            "page_size": con.execute("PRAGMA page_size").fetchone()[0],
            "page_count": con.execute("PRAGMA page_count").fetchone()[0],
            "freelist_count": con.execute("PRAGMA freelist_count").fetchone()[0],
            "journal_mode": ops.journal_mode(con),
        }
        if hot:
            out["note"] = hot
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        rows: dict[str, int | None] = {}
        for t in tables:
            rows[t] = ops.count_within(con, f'SELECT COUNT(*) FROM "{t.replace(chr(34), chr(34) * 2)}"', budget_s=0.25)
        out["rows"] = rows
        if "proofs" in tables:
            out["expired_proofs"] = ops.count_within(con, f"SELECT COUNT(*) FROM proofs WHERE {EXPIRED_CONDITION}", budget_s=0.25)
            out[f"older_than_{days}_days"] = ops.count_within(
                con, f"SELECT COUNT(*) FROM proofs WHERE {OLDER_CONDITION}", (f"-{days} days",), budget_s=0.25)
        # None: the count would have held the read lock (and so the prover's commits) too long
        out["not_counted"] = [k for k, v in rows.items() if v is None] + [
            k for k in ("expired_proofs",) if k in out and out[k] is None]
        return out
    finally:
        con.close()


# --------------------------------------------------------------------------- deleting in batches


class _DeleteAction(DatabaseAction):
    danger = "destructive"
    changes_state = True

    def __init__(self, pause_s: float = BATCH_PAUSE_S, batch_target_s: float | None = None,
                 pause_factor: float = 1.0) -> None:
        self.pause_s = pause_s
        self._batch_target_s = batch_target_s  # None: by journal mode (BATCH_TARGET_S, WAL_BATCH_TARGET_S)
        self.pause_factor = pause_factor

    def batch_target(self, wal_mode: bool) -> float:
        if self._batch_target_s is not None:
            return self._batch_target_s
        return WAL_BATCH_TARGET_S if wal_mode else BATCH_TARGET_S

    def condition(self, params: Mapping[str, Any]) -> tuple[str, tuple]:
        raise NotImplementedError

    def describe(self, params: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def check_params(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        db = _require_db(target)
        checked = self.check_params(ctx, params)
        batch = _positive_int(params.get("batch_size", ctx.settings.database.delete_batch_size), "batch_size", 1, 1_000_000)
        checked["batch_size"] = batch
        condition, cparams = self.condition(checked)
        literal = condition.replace("?", f"'{cparams[0]}'") if cparams else condition
        notes: list[str] = []
        try:
            bounds, matching = await asyncio.to_thread(_estimate, db, condition, cparams)
            how_many = "no proofs at all" if bounds is None else (
                f"{matching} rows match now" if matching is not None else "too many rows to count quickly")
        except sqlite3.Error as exc:
            # Shown, not refused: the run reports the same error as its outcome.
            how_many = "could not be read"
            notes.append(f"{db.name} could not be read just now: {ops.sqlite_error_text(exc)}")
        steps: list[PlanStep] = []
        checked["wal"] = _yes_no(params.get("wal", "yes"), "wal")
        mode = "unknown" if notes else await asyncio.to_thread(ops.journal_mode_of, db)
        # The run switches only what this plan showed it would.
        checked["switch_to_wal"] = checked["wal"] and mode not in ("wal", "unknown")
        if mode not in ("wal", "unknown"):
            if checked["wal"]:
                steps.append(PlanStep(
                    f"Switch {db.name} from {mode} to WAL journal mode first, as db.enable_wal does (lasting; "
                    "wal=no keeps the mode): batches then commit with one append and never queue the prover's writes",
                    f'sqlite3 {_q(db)} "PRAGMA journal_mode=WAL;"'))
                notes.extend(w.format(name=db.name) for w in WAL_WARNINGS)
            else:
                notes.append(ROLLBACK_MODE_WARNING.format(db=db.name, mode=mode))
        # The run decides by the mode it finds; the plan says what this mode (or the switch) gives.
        target_ms = self.batch_target(checked["switch_to_wal"] or mode == "wal") * 1000
        return self.make_plan(
            target,
            [
                *steps,
                PlanStep(f"Find the id range of proofs ({how_many})", f'sqlite3 {_q(db)} "SELECT min(id), max(id) FROM proofs;"'),
                PlanStep(
                    f"Delete {self.describe(checked)} in batches by id range, each its own short transaction sized to "
                    f"hold the lock about {target_ms:.0f} ms (at most {batch} ids), pausing at least as "
                    f"long as each batch took (and {self.pause_s * 1000:.0f} ms or more) so the prover's writes get in, "
                    f"and giving way (30-240 ms) whenever another writer holds the lock as a batch starts; in WAL mode "
                    f"each batch first reads the pages it will change, holding no lock, so the lock is not held through disk reads, "
                    f"and copies the WAL back into the file after it (a passive checkpoint, so the prover's commits never do) "
                    f"(equivalent to the runbook's single DELETE ... WHERE {literal})",
                    f"sqlite3 {_q(db)} \"DELETE FROM proofs WHERE id >= :lo AND id < :lo + {batch} AND {literal};\""
                    "   # repeated for each batch",
                ),
                PlanStep("Report rows deleted and the time taken"),
            ],
            checked,
            warnings=(
                *notes,
                f"Deleted proofs cannot be brought back except from a backup (last: {_newest_backup_text(ctx, target)}).",
                "Cancel stops between batches: every batch already committed stays deleted, none is left half-done.",
            ),
            confirm_text=db.name,
            cancellable=True,
        )

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        db = _db(plan.target)
        condition, cparams = self.condition(plan.params)
        max_width = int(plan.params["batch_size"])
        started = time.monotonic()
        try:
            # Batches commit as durably as the prover's own writes, no more (ops.PROVER_SYNCHRONOUS).
            con = ops.connect(db, readonly=False, synchronous=ops.PROVER_SYNCHRONOUS)
        except sqlite3.Error as exc:
            yield _failure(db, exc, self.title)
            return
        deleted = batches = yielded = interrupted = 0
        stages = [0.0, 0.0, 0.0, 0.0]  # the longest DELETE statement, commit, warming read, checkpoint
        longest = 0.0
        width = min(max_width, FIRST_BATCH)
        refused_since: float | None = None
        retry = YIELD_FIRST_S
        journal: dict[str, str] = {}
        try:
            if plan.params.get("switch_to_wal"):
                try:
                    before = await asyncio.to_thread(ops.journal_mode, con)
                    if before != "wal":
                        yield Progress(f"journal_mode {before} -> wal ...")
                        if ctx.cancel.is_set():
                            yield Outcome("cancelled", f"cancelled before switching {db.name} to WAL; nothing changed",
                                          {"deleted": 0, "batches": 0, "seconds": round(time.monotonic() - started, 3)})
                            return
                        after = await asyncio.to_thread(ops.set_journal_mode, con, "WAL")
                        journal = {"journal_mode_before": before, "journal_mode": after}
                        if after != "wal":
                            # Not a reason to leave the expired rows: the batches work in any mode.
                            yield Progress(f"SQLite kept journal mode {after!r} (WAL refused); deleting in {after} mode")
                except sqlite3.Error as exc:
                    yield _failure(db, exc, "switch to WAL before deleting")
                    return
            try:
                bounds = await asyncio.to_thread(ops.id_bounds, con)
                # In WAL mode reads block no writer: each batch first reads the pages it will
                # change, so the write lock is never held through a disk read (ops.warming_queries).
                wal_mode = await asyncio.to_thread(ops.journal_mode, con) == "wal"
                warm = await asyncio.to_thread(ops.warming_queries, con) if wal_mode else []
                batch_target = self.batch_target(wal_mode)
            except sqlite3.Error as exc:
                yield _failure(db, exc, self.title)
                return
            if bounds is None:
                yield Outcome("succeeded", f"{db.name} has no proofs; nothing to delete",
                              {"deleted": 0, "batches": 0, "seconds": 0.0, **journal})
                return
            low, high = bounds
            lo = low
            while lo <= high:
                if ctx.cancel.is_set():
                    seconds = time.monotonic() - started
                    yield Outcome(
                        "cancelled",
                        f"cancelled after {deleted} rows in {batches} batches ({seconds:.1f}s); those stay deleted",
                        {**_delete_details(deleted, batches, seconds, longest, max_width, lo, high), **journal},
                    )
                    return
                hi = lo + width
                try:
                    got = await asyncio.to_thread(ops.delete_batch, con, lo, hi, condition, cparams,
                                                  wait_for_lock=refused_since is not None
                                                  and time.monotonic() - refused_since >= YIELD_AT_MOST_S,
                                                  statement_budget_s=batch_target * STATEMENT_BUDGET_FACTOR,
                                                  warm=warm)
                    if got is None:
                        # Another writer holds the lock: let it and any write queued behind it
                        # finish before trying again (see ops.take_write_lock_if_free).
                        yielded += 1
                        if refused_since is None:
                            refused_since, retry = time.monotonic(), YIELD_FIRST_S
                        await asyncio.sleep(retry)
                        retry = min(YIELD_MAX_S, retry * 2)
                        continue
                    refused_since = None
                except sqlite3.Error as exc:
                    outcome = _failure(db, exc, self.title)
                    yield Outcome("failed", f"{outcome.summary} (after {deleted} rows in {batches} batches, which stay deleted)",
                                  {**outcome.details, **_delete_details(deleted, batches, time.monotonic() - started,
                                                                        longest, max_width, lo, high)})
                    return
                took = got.lock_s
                longest = max(longest, took)
                stages[0] = max(stages[0], got.statement_s)
                stages[1] = max(stages[1], got.lock_s - got.statement_s)
                stages[2] = max(stages[2], got.warm_s)
                if got.interrupted:
                    # Nothing was deleted and the lock is free again: the same ids, half as many.
                    interrupted += 1
                    width = max(1, width // 2)
                    await asyncio.sleep(max(self.pause_s, took))
                    continue
                deleted += got.rows
                batches += 1
                lo = hi
                done = min(1.0, (lo - low) / max(1, high - low + 1))
                yield Progress(f"{deleted} rows deleted in {batches} batches (ids below {hi})", done)
                width = next_width(width, took, batch_target, max_width)
                if wal_mode:
                    # Our batches fill the WAL; copying it back here (PASSIVE: no lock anyone
                    # waits for) keeps it under SQLite's 1000-page auto-checkpoint, which would
                    # otherwise run inside one of the prover's commits, its fsyncs included.
                    stages[3] = max(stages[3], await asyncio.to_thread(ops.checkpoint_passive, con))
                if lo <= high:
                    await asyncio.sleep(max(self.pause_s, min(took * self.pause_factor, 1.0)))
        finally:
            con.close()
        seconds = time.monotonic() - started
        yield Outcome(
            "succeeded",
            f"deleted {deleted} {self.describe(plan.params)} in {batches} batches, {seconds:.1f}s "
            f"(longest batch {longest * 1000:.0f} ms; gave way to other writers {yielded} times"
            + (f"; journal mode {journal['journal_mode_before']} -> {journal['journal_mode']}" if journal else "") + ")",
            {**_delete_details(deleted, batches, seconds, longest, max_width, None, high), **journal, "yielded": yielded,
             "interrupted": interrupted, "longest_statement_ms": round(stages[0] * 1000, 1),
             "longest_commit_ms": round(stages[1] * 1000, 1), "longest_warm_ms": round(stages[2] * 1000, 1),
             "longest_checkpoint_ms": round(stages[3] * 1000, 1)},
        )


def next_width(width: int, took: float, target: float, ceiling: int) -> int:
    """Ids in the next batch: scaled toward `target` seconds, at most doubling or halving at once
    (one slow fsync should not collapse the size, nor one fast batch blow it up)."""
    if took <= 0:
        wanted = width * 2
    else:
        wanted = int(width * target / took)
    wanted = max(width // 2, min(width * 2, wanted))
    return max(min(MIN_BATCH, ceiling), min(ceiling, wanted))


def _delete_details(deleted: int, batches: int, seconds: float, longest: float, batch_size: int,
                    next_id: int | None, high: int) -> dict[str, Any]:
    return {"deleted": deleted, "batches": batches, "seconds": round(seconds, 3),
            "longest_batch_ms": round(longest * 1000, 1), "batch_size": batch_size,
            "next_id": next_id, "max_id": high}


def _estimate(db: Path, condition: str, params: tuple) -> tuple[tuple[int, int] | None, int | None]:
    con, _ = ops.open_for_reading(db)
    try:
        bounds = ops.id_bounds(con)
        if bounds is None:
            return None, 0
        return bounds, ops.count_within(con, f"SELECT COUNT(*) FROM proofs WHERE {condition}", params)
    finally:
        con.close()


class DeleteExpired(_DeleteAction):
    id = "db.delete_expired"
    key = "x"
    title = "Delete expired proofs"
    help = ("The runbook's DELETE FROM proofs WHERE expires_at < datetime('now') (Incident 3), in short batches "
            "so the prover's writes never stall for long, after switching a rollback-journal file to WAL "
            "(wal=no keeps it). Cancellable between batches.")
    param_help = {"batch_size": "ids per batch (default [database] delete_batch_size)",
                  "wal": "switch a rollback-journal proofs.db to WAL first: yes (default) or no"}

    def condition(self, params: Mapping[str, Any]) -> tuple[str, tuple]:
        return EXPIRED_CONDITION, ()

    def describe(self, params: Mapping[str, Any]) -> str:
        return "expired proofs"


class DeleteOlderThan(_DeleteAction):
    id = "db.delete_older"
    key = "o"
    title = "Delete proofs older than N days"
    help = ("The runbook's DELETE FROM proofs WHERE created_at < datetime('now', '-7 days') (Incident 3), "
            "in short batches, after switching a rollback-journal file to WAL (wal=no keeps it). "
            "Cancellable between batches.")
    param_help = {"days": "delete proofs created more than this many days ago (default [database] retention_days)",
                  "batch_size": "ids per batch (default [database] delete_batch_size)",
                  "wal": "switch a rollback-journal proofs.db to WAL first: yes (default) or no"}

    def check_params(self, ctx: ActionContext, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"days": _positive_int(params.get("days", ctx.settings.database.retention_days), "days", 1, 36_500)}

    def condition(self, params: Mapping[str, Any]) -> tuple[str, tuple]:
        return OLDER_CONDITION, (f"-{int(params['days'])} days",)

    def describe(self, params: Mapping[str, Any]) -> str:
        return f"proofs older than {params['days']} days"


def _yes_no(value: Any, name: str) -> bool:
    text = str(value).strip().lower()
    if text in ("yes", "y", "true", "1", "on"):
        return True
    if text in ("no", "n", "false", "0", "off"):
        return False
    raise ActionError(f"{name} must be yes or no, got {value!r}")


def _positive_float(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise ActionError(f"{name} must be a number, got {value!r}")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ActionError(f"{name} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise ActionError(f"{name} must be between {low:g} and {high:g}, got {number:g}")
    return number


def _positive_int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ActionError(f"{name} must be a whole number, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ActionError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ActionError(f"{name} must be between {low} and {high}, got {number}")
    return number


# --------------------------------------------------------------------------- REINDEX, VACUUM, WAL


class _StatementAction(DatabaseAction):
    """One maintenance statement that holds the write lock while it runs."""

    changes_state = True
    danger = "disruptive"
    statement = ""
    # In WAL mode the statement's pages land in the -wal file; the database file itself changes
    # only at a checkpoint (VACUUM would leave the file its old size and a -wal as big again).
    checkpoint_after = False

    def lock_warning(self, db: Path) -> str:
        return (f"{self.statement} holds the write lock for its whole run ({bytes_h(_total_size(db))} to go through): "
                "the prover's writes wait, and fail after the prover's 5 s busy timeout. Cancel rolls it back.")

    def extra(self, ctx: ActionContext, db: Path) -> tuple[list[str], list[PlanStep]]:
        return [], []

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        db = _require_db(target)
        warnings, before = self.extra(ctx, db)
        after: list[PlanStep] = []
        if self.checkpoint_after and await asyncio.to_thread(ops.journal_mode_of, db) == "wal":
            after.append(PlanStep(f"Copy the WAL into {db.name} and empty it (WAL mode: {self.statement} wrote there)",
                                  f'sqlite3 {_q(db)} "PRAGMA wal_checkpoint(TRUNCATE);"'))
        return self.make_plan(
            target,
            [*before,
             PlanStep(f"Run {self.statement} on {db.name}", f'sqlite3 {_q(db)} "{self.statement};"'),
             *after,
             PlanStep("Run PRAGMA quick_check afterwards", f'sqlite3 {_q(db)} "PRAGMA quick_check;"')],
            warnings=(self.lock_warning(db), *warnings),
            cancellable=True,
        )

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        db = _db(plan.target)
        before = _total_size(db)
        yield Progress(f"{self.statement} on {db.name} ...")
        started = time.monotonic()
        try:
            # A long busy timeout: waiting for the prover's current write is fine, failing is not.
            con = ops.connect(db, readonly=False, timeout=30.0)
        except sqlite3.Error as exc:
            yield _failure(db, exc, self.statement)
            return
        try:
            try:
                await _interruptible(ctx, con, _execute, self.statement)
            except sqlite3.Error as exc:
                if _interrupted(exc) and ctx.cancel.is_set():
                    yield Outcome("cancelled", f"{self.statement} cancelled and rolled back; {db.name} is unchanged")
                else:
                    yield _failure(db, exc, self.statement)
                return
            took = time.monotonic() - started
            checkpoint: dict[str, int] = {}
            if self.checkpoint_after and await asyncio.to_thread(ops.journal_mode, con) == "wal":
                yield Progress("PRAGMA wal_checkpoint(TRUNCATE) ...")
                try:
                    busy, frames, copied = await asyncio.to_thread(ops.wal_checkpoint, con, "TRUNCATE")
                    checkpoint = {"busy": busy, "wal_frames": frames, "copied_frames": copied}
                except sqlite3.Error as exc:
                    # The statement itself is committed; the next checkpoint moves it.
                    yield Progress(f"checkpoint not done now: {ops.sqlite_error_text(exc)}")
                    checkpoint = {"busy": 1}
            yield Progress("PRAGMA quick_check ...")
            rows = await asyncio.to_thread(ops.check_rows, con, "quick_check", 20)
        finally:
            con.close()
        after = _total_size(db)
        details = {"seconds": round(took, 3), "bytes_before": before, "bytes_after": after, "quick_check": rows}
        if checkpoint:
            details["wal_checkpoint"] = checkpoint
        if rows != ["ok"]:
            yield Outcome("failed", f"{self.statement} done in {took:.1f}s but quick_check reports: {ops.first_problem(rows)}", details)
            return
        pending = ("; the WAL could not be emptied now (a reader or writer was busy): the file shrinks at the "
                   "next checkpoint") if checkpoint.get("busy") else ""
        yield Outcome("succeeded", f"{self.statement} done in {took:.1f}s; {bytes_h(before)} -> {bytes_h(after)}; "
                      f"quick_check ok{pending}", details)


def _execute(con: sqlite3.Connection, sql: str) -> None:
    con.execute(sql)


class Reindex(_StatementAction):
    id = "db.reindex"
    key = "n"
    title = "REINDEX"
    help = "Rebuild every index (runbook Incident 5, minor corruption: REINDEX). Holds the write lock while it runs."
    statement = "REINDEX"


def sqlite_temp_dir() -> Path:
    """Where SQLite puts the temporary copy VACUUM builds (its own search order on Unix)."""
    for var in ("SQLITE_TMPDIR", "TMPDIR"):
        v = os.environ.get(var)
        if v and os.path.isdir(v) and os.access(v, os.W_OK):
            return Path(v)
    for d in ("/var/tmp", "/usr/tmp", "/tmp"):
        if os.path.isdir(d) and os.access(d, os.W_OK):
            return Path(d)
    return Path(tempfile.gettempdir())


class Vacuum(_StatementAction):
    id = "db.vacuum"
    key = "v"
    title = "VACUUM"
    help = ("Rebuild the file to reclaim free pages (runbook Incidents 3 and 5). Needs free space about the "
            "database's size twice over, and locks the database while it runs.")
    statement = "VACUUM"
    checkpoint_after = True

    def extra(self, ctx: ActionContext, db: Path) -> tuple[list[str], list[PlanStep]]:
        size = _total_size(db)
        tmp = sqlite_temp_dir()
        # VACUUM builds a full copy in the temp directory, then writes it back through the
        # rollback journal (or the WAL) beside the database: each needs about the database's size.
        need: dict[int, tuple[Path, int]] = {}
        for where in (tmp, db.parent):
            dev = os.stat(where).st_dev
            path, n = need.get(dev, (where, 0))
            need[dev] = (path, n + size)
        for path, n in need.values():
            free = shutil.disk_usage(path).free
            if free < n:
                raise Refused(
                    f"VACUUM of {db.name} needs about {bytes_h(n)} free on the filesystem of {path} "
                    f"but only {bytes_h(free)} is free; free space first (or delete expired proofs instead)")
        free_pages = ""
        try:
            con = ops.connect(db, readonly=True)
            try:
                fl = con.execute("PRAGMA freelist_count").fetchone()[0]
                ps = con.execute("PRAGMA page_size").fetchone()[0]
                free_pages = f"; about {bytes_h(fl * ps)} of free pages to reclaim"
            finally:
                con.close()
        except sqlite3.Error:
            pass
        checks = [PlanStep(f"Check free space: about {bytes_h(size)} in {tmp} (temporary copy) and {bytes_h(size)} "
                           f"beside {db.name} (journal)", f"df -h {_q(tmp)} {_q(db.parent)}")]
        return [f"Free space needed: about {bytes_h(size)} twice (temporary copy and journal){free_pages}."], checks


class EnableWal(DatabaseAction):
    id = "db.enable_wal"
    key = "w"
    title = "Enable WAL mode"
    help = ("PRAGMA journal_mode=WAL (runbook Incident 5 prevention): readers and backups stop blocking the "
            "prover's writes. SQLite keeps the mode in the file.")
    danger = "disruptive"
    changes_state = True

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        db = _require_db(target)
        return self.make_plan(
            target,
            [PlanStep("Switch the journal mode (takes the exclusive lock for a moment)",
                      f'sqlite3 {_q(db)} "PRAGMA journal_mode=WAL;"'),
             PlanStep("Read it back", f'sqlite3 {_q(db)} "PRAGMA journal_mode;"')],
            warnings=tuple(w.format(name=db.name) for w in WAL_WARNINGS),
            cancellable=False,
        )

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        db = _db(plan.target)
        try:
            con = ops.connect(db, readonly=False, timeout=10.0)
        except sqlite3.Error as exc:
            yield _failure(db, exc, "enable WAL")
            return
        try:
            before = await asyncio.to_thread(ops.journal_mode, con)
            if before == "wal":
                yield Outcome("succeeded", f"{db.name} is already in WAL mode; nothing changed", {"before": before, "after": before})
                return
            yield Progress(f"journal_mode {before} -> wal ...")
            after = await asyncio.to_thread(ops.set_journal_mode, con, "WAL")
        except sqlite3.Error as exc:
            yield _failure(db, exc, "enable WAL")
            return
        finally:
            con.close()
        if after != "wal":
            yield Outcome("failed", f"SQLite kept journal mode {after!r} for {db.name} (WAL refused)", {"before": before, "after": after})
            return
        yield Outcome("succeeded", f"{db.name}: journal mode {before} -> wal", {"before": before, "after": after})


# --------------------------------------------------------------------------- backups


def list_backups(directory: Path) -> list[dict[str, Any]]:
    """Backup files (*.db) newest first: the runbook's `ls -lt backups | head -5`, complete."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ActionError(f"cannot read the backups directory {directory}: {exc.strerror or exc}") from None
    found = []
    for e in entries:
        if not e.name.endswith(".db") or e.name.startswith("."):
            continue
        try:
            if not e.is_file():
                continue
            st = e.stat()
        except OSError:
            continue
        found.append({
            "name": e.name,
            "path": os.path.abspath(e.path),
            "size": st.st_size,
            "created": datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(timespec="seconds"),
            "mtime": st.st_mtime,
        })
    found.sort(key=lambda b: (b["mtime"], b["name"]), reverse=True)
    return found


def _newest_backup_text(ctx: ActionContext, target: Target) -> str:
    try:
        backups = list_backups(_backups_dir(ctx, target))
    except ActionError:
        return "backups directory unreadable"
    if not backups:
        return f"none in {_backups_dir(ctx, target)}"
    b = backups[0]
    age = time.time() - b["mtime"]
    from x402console.core.format import duration_h

    return f"{b['name']}, {duration_h(age)} ago"


class ListBackups(DatabaseAction):
    id = "db.list_backups"
    key = "l"
    title = "List backups"
    help = "Backups in the backups directory, newest first, with size and time (runbook Incident 5: ls -lt | head -5)."
    danger = "safe"
    changes_state = False

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        d = _backups_dir(ctx, target)
        return self.make_plan(target, [PlanStep(f"List {d}, newest first", f"ls -lt {_q(d)} | head -5")])

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        d = _backups_dir(ctx, plan.target)
        backups = await asyncio.to_thread(list_backups, d)
        if not backups:
            yield Outcome("succeeded", f"no backups in {d}", {"directory": str(d), "backups": []})
            return
        head = ", ".join(f"{b['name']} ({bytes_h(b['size'])})" for b in backups[:5])
        yield Outcome("succeeded", f"{len(backups)} backups in {d}; newest: {head}", {"directory": str(d), "backups": backups})


class BackupNow(DatabaseAction):
    id = "db.backup"
    key = "b"
    title = "Back up now"
    help = ("A consistent copy with SQLite's online backup API into the backups directory "
            "(proofs_backup_YYYY-MM-DD_HH-MM-SS.db, as backup.go names them), then PRAGMA integrity_check of the copy.")
    danger = "safe"
    changes_state = True  # writes a file; an observer's console does not

    param_help = {
        "max_lock_seconds": "rollback-journal mode only: longest the copy may block the prover's writes when it cannot "
                            f"finish in short steps (default {DEFAULT_BACKUP_LOCK_S:g}; the prover gives up a write after 5)",
    }

    def __init__(self, pages_per_step: int = 1024, pause_s: float = 0.005, max_restarts: int = 3) -> None:
        self.pages_per_step = pages_per_step
        self.pause_s = pause_s
        self.max_restarts = max_restarts

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        db = _require_db(target)
        d = _backups_dir(ctx, target)
        size = _total_size(db)
        probe = d if d.exists() else d.parent
        if not probe.exists():
            raise ActionError(f"cannot make the backups directory {d}: {probe} does not exist")
        free = shutil.disk_usage(probe).free
        if free < size:
            raise Refused(f"a backup of {db.name} needs about {bytes_h(size)} in {d}, but only {bytes_h(free)} is free")
        mode = await asyncio.to_thread(ops.journal_mode_of, db)
        name = time.strftime(ctx.settings.database.backup_name_format)
        max_lock = _positive_float(params.get("max_lock_seconds", DEFAULT_BACKUP_LOCK_S), "max_lock_seconds", 0.0, 3600.0)
        warnings = []
        if mode != "wal":
            warnings.append(
                f"{db.name} is in {mode} journal mode: each step of the copy takes a short read lock, and a write by "
                f"the prover makes SQLite restart the copy. After {self.max_restarts} restarts the copy is finished in "
                f"one step that blocks the prover's writes throughout, but only if that is estimated to take at most "
                f"{max_lock:g}s (max_lock_seconds); otherwise the backup stops and says how long it would take. "
                "In WAL mode (db.enable_wal) a backup never blocks the prover."
            )
        return self.make_plan(
            target,
            [PlanStep(f"Copy {db.name} with the online backup API, {self.pages_per_step} pages per step",
                      f"sqlite3 {_q(db)} \".backup {_q(d / name)}\""),
             PlanStep("Check the copy", f'sqlite3 {_q(d / name)} "PRAGMA integrity_check;"'),
             PlanStep("Keep it under its final name only if the check passes")],
            {"max_lock_seconds": max_lock},
            warnings=tuple(warnings),
        )

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        db = _db(plan.target)
        d = _backups_dir(ctx, plan.target)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            yield Outcome("failed", f"cannot create the backups directory {d}: {exc.strerror or exc}")
            return
        # backup.go names a backup by the second it starts; two in one second would collide.
        name = time.strftime(ctx.settings.database.backup_name_format)
        for _ in range(30):
            if not (d / name).exists():
                break
            await asyncio.sleep(0.1)
            name = time.strftime(ctx.settings.database.backup_name_format)
        else:
            yield Outcome("failed", f"a backup named {name} already exists in {d}")
            return
        final = d / name
        partial = d / f".{name}.partial"
        progress: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def on_step(done: int, total: int) -> None:
            loop.call_soon_threadsafe(progress.put_nowait, (done, total))

        yield Progress(f"Copying {db.name} -> {name} ...", 0.0)
        job = asyncio.ensure_future(asyncio.to_thread(
            ops.online_backup, db, partial, pages_per_step=self.pages_per_step, pause_s=self.pause_s,
            max_restarts=self.max_restarts, max_lock_s=float(plan.params.get("max_lock_seconds", DEFAULT_BACKUP_LOCK_S)),
            on_step=on_step, cancelled=ctx.cancel.is_set))
        try:
            while not job.done():
                getter = asyncio.ensure_future(progress.get())
                await asyncio.wait({job, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    done, total = getter.result()
                    yield Progress(f"Copying {db.name}: {done}/{total} pages", done / total if total else None)
                else:
                    getter.cancel()
            report = job.result()
        except ops.StepAborted:
            partial.unlink(missing_ok=True)
            yield Outcome("cancelled", f"backup of {db.name} cancelled; the partial copy was removed")
            return
        except ops.LockBudgetExceeded as exc:
            partial.unlink(missing_ok=True)
            r = exc.report
            estimate = f"{exc.estimate_s:.2f}" if exc.estimate_s < 10 else f"{exc.estimate_s:.0f}"
            yield Outcome(
                "failed",
                f"no backup made: the prover writes too often for a copy in short steps (restarted {r.restarts} times), "
                f"and a consistent copy in one step would block its writes for about {estimate}s "
                f"(allowed {exc.budget_s:g}s). Enable WAL (db.enable_wal) and back up again without blocking, stop the "
                f"provers first, or allow it with max_lock_seconds={max(1, round(exc.estimate_s * 1.5))}",
                {"restarts": r.restarts, "estimated_lock_s": round(exc.estimate_s, 2), "max_lock_seconds": exc.budget_s,
                 "pages": r.pages, "pages_per_second": r.pages_per_second},
            )
            return
        except (sqlite3.Error, OSError) as exc:
            partial.unlink(missing_ok=True)
            yield _failure(db, exc, "backup")
            return
        except BaseException:
            with contextlib.suppress(BaseException):
                await asyncio.shield(job)
            partial.unlink(missing_ok=True)
            raise
        yield Progress(f"PRAGMA integrity_check of the copy ({bytes_h(_file_size(partial))}) ...", 1.0)
        rows = await asyncio.to_thread(ops.check_file, partial, "integrity_check", 20)
        details = {"backup": str(final), "bytes": _file_size(partial), "seconds": round(report.seconds, 3),
                   "mode": report.mode, "restarts": report.restarts, "steps": report.steps,
                   "longest_step_ms": round(report.longest_step_s * 1000, 1), "integrity_check": rows,
                   "estimated_lock_s": report.estimated_lock_s,
                   "notes": report.notes}
        if rows != ["ok"]:
            kept = d / f"{name}.corrupt"
            with contextlib.suppress(OSError):
                os.replace(partial, kept)
            yield Outcome("failed", f"the copy of {db.name} fails integrity_check ({ops.first_problem(rows)}); kept aside as {kept.name}, "
                          "not as a backup", {**details, "backup": str(kept)}, (str(kept),))
            return
        await asyncio.to_thread(ops.fsync_file, partial)
        os.replace(partial, final)
        await asyncio.to_thread(ops.fsync_dir, d)
        note = f"; {report.notes[0]}" if report.notes else ""
        yield Outcome("succeeded", f"backed up {db.name} to {name} ({bytes_h(details['bytes'])}, {report.seconds:.1f}s); "
                      f"integrity_check ok{note}", details, (str(final),))

# --------------------------------------------------------------------------- restore


async def find_writers(ctx: ActionContext, db: Path) -> tuple[list[str], list[str]]:
    """(what is running and may write `db`, notes on checks that could not be made).

    Looks at every place a prover can be: the configured replicas' health URLs, processes on
    this host holding the file open, the drill's recorded processes and containers, and the
    Docker hosts' prover containers.
    """
    running: list[str] = []
    notes: list[str] = []
    settings = ctx.settings

    async def probe(name: str, url: str) -> None:
        import httpx

        try:
            r = await ctx.http.get(url, timeout=HEALTH_PROBE_TIMEOUT_S)
            running.append(f"{name} answers on {url} (HTTP {r.status_code})")
        except httpx.ConnectError:
            pass
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                notes.append(f"{name}: {url} could not be reached in {HEALTH_PROBE_TIMEOUT_S:g}s")
            else:
                running.append(f"{name} accepts connections on {url} but does not answer (hung, still running)")
        except httpx.HTTPError as exc:
            notes.append(f"{name}: {url}: {exc}")

    await asyncio.gather(*(probe(r.name, r.health_url) for r in settings.replicas if r.health_url))

    paths = [db, *ops.side_files(db).values()]
    for pid, cmd in await asyncio.to_thread(ops.open_by_processes, paths):
        running.append(f"process {pid} has {db.name} open: {cmd}")

    if ctx.drill_runtime is not None:
        running += await asyncio.to_thread(_drill_writers, ctx, Path(ctx.drill_runtime), notes)

    if settings.discovery.mode in ("compose", "services", "pattern"):
        running += await asyncio.to_thread(_container_writers, ctx, notes)
    # one process may show up twice (health URL and open file): that is fine, both are true
    return running, notes


def _drill_writers(ctx: ActionContext, runtime_file: Path, notes: list[str]) -> list[str]:
    import json

    from x402console.drill.processes import is_same_process

    try:
        data = json.loads(runtime_file.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        notes.append(f"drill runtime {runtime_file} unreadable: {exc}")
        return []
    found = []
    for p in data.get("processes", []):
        argv = " ".join(map(str, p.get("argv", [])))
        if "x402console.drill.sim" not in argv and " sim " not in f" {argv} ":
            continue
        try:
            pid = int(p["pid"])
        except (KeyError, TypeError, ValueError):
            continue
        if is_same_process(pid, p.get("start_time")):
            found.append(f"drill replica {p.get('name', '?')} (pid {pid}) is running")
    containers = data.get("containers") or []
    if containers:
        try:
            client = ctx.docker()
            for name in containers:
                try:
                    c = client.containers.get(name)
                except Exception:
                    continue
                if c.status in ("running", "restarting", "paused"):
                    found.append(f"drill container {name} is {c.status}")
        except Exception as exc:
            notes.append(f"could not ask Docker about the drill containers: {exc}")
    return found


def _container_writers(ctx: ActionContext, notes: list[str]) -> list[str]:
    from x402console.sources.discovery import container_filters, select_replicas

    found = []
    for host in ctx.settings.docker_hosts:
        try:
            client = ctx.docker(host.name)
            containers = client.containers.list(filters=container_filters(ctx.settings), ignore_removed=True)
            for ident in select_replicas((c.attrs for c in containers), ctx.settings, host):
                found.append(f"container {ident.name} is running on Docker host {host.name}")
        except Exception as exc:
            notes.append(f"could not list prover containers on Docker host {host.name}: {exc}")
    return found


def _writers_refusal(db: Path, running: list[str]) -> str:
    return (f"refused: {db.name} would be replaced while provers may be writing it. Stop them first "
            f"(runbook: docker-compose stop prover), then restore. Still running: " + "; ".join(running))


class RestoreBackup(DatabaseAction):
    id = "db.restore"
    key = "r"
    title = "Restore from a backup"
    help = ("Replace proofs.db with a backup (runbook Incident 5, major corruption). Checks the backup first, "
            "refuses while any prover runs, keeps the replaced file as proofs.db.before_restore.")
    danger = "destructive"
    changes_state = True
    param_help = {"backup": "backup file name in the backups directory (see List backups)"}

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        db = _db(target)
        d = _backups_dir(ctx, target)
        backup = self._backup_path(d, params.get("backup"))
        if backup == db:
            raise ActionError(f"{backup} is the database itself, not a backup")
        running, notes = await find_writers(ctx, db)
        if running:
            raise Refused(_writers_refusal(db, running))
        before = Path(f"{db}.before_restore")
        warnings = [
            f"Proofs written after the backup was taken are not in it; they stay in {before.name}.",
            "Start the provers again yourself afterwards (runbook: docker-compose restart prover); this action starts nothing.",
            *notes,
        ]
        if before.exists():
            warnings.append(f"An earlier {before.name} exists; it is kept, renamed with its time.")
        if not db.exists():
            warnings.append(f"There is no {db.name} now; the backup is copied in and nothing is kept aside.")
        sides = " ".join(_q(p) for p in ops.side_files(db).values())
        return self.make_plan(
            target,
            [PlanStep(f"Check the backup {backup.name}; stop here if it is not ok",
                      f'sqlite3 {_q(backup)} "PRAGMA integrity_check;"'),
             PlanStep("Check again that no prover is running (health URLs, processes holding the file, containers)"),
             PlanStep(f"Copy the backup beside {db.name} with the online backup API",
                      f"sqlite3 {_q(backup)} \".backup {_q(str(db) + '.restoring')}\""),
             PlanStep(f"Keep the current file (and its -wal/-shm/-journal) as {before.name}",
                      f"mv {_q(db)} {_q(before)}" + (f"   # and {sides}" if sides else "")),
             PlanStep(f"Put the copy in place as {db.name}", f"mv {_q(str(db) + '.restoring')} {_q(db)}"),
             PlanStep("Check the restored database", f'sqlite3 {_q(db)} "PRAGMA integrity_check;"')],
            {"backup": backup.name, "backup_path": str(backup)},
            warnings=tuple(warnings),
            confirm_text=backup.name,
            cancellable=True,
        )

    @staticmethod
    def _backup_path(d: Path, given: Any) -> Path:
        if not isinstance(given, str) or not given.strip():
            names = [b["name"] for b in list_backups(d)[:5]]
            hint = f"newest: {', '.join(names)}" if names else f"there are none in {d}"
            raise ActionError(f"choose the backup to restore (param 'backup'); {hint}")
        given = given.strip()
        p = Path(given)
        if not p.is_absolute():
            if p.name != given:
                raise ActionError(f"give the backup's file name only, not a path: {given!r}")
            p = d / given
        p = Path(os.path.abspath(p))
        if not p.exists():
            raise ActionError(f"backup file does not exist: {p}")
        if not p.is_file():
            raise ActionError(f"{p} is not a regular file")
        return p

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        db = _db(plan.target)
        backup = Path(plan.params["backup_path"])
        yield Progress(f"PRAGMA integrity_check of {backup.name} ...", 0.0)
        try:
            con = ops.connect(backup, readonly=True)
        except sqlite3.Error as exc:
            yield Outcome("failed", f"backup {backup.name} cannot be opened ({ops.sqlite_error_text(exc)}); "
                          f"{db.name} was not touched")
            return
        try:
            rows = await _interruptible(ctx, con, ops.check_rows, "integrity_check", 20)
        except sqlite3.OperationalError as exc:
            rows = [f"error: {ops.sqlite_error_text(exc)}"]
        finally:
            con.close()
        if ctx.cancel.is_set():
            yield Outcome("cancelled", f"restore cancelled before anything changed; {db.name} was not touched")
            return
        if rows != ["ok"]:
            yield Outcome("failed", f"backup {backup.name} fails integrity_check ({ops.first_problem(rows)}); {db.name} was not touched",
                          {"backup_check": rows})
            return
        yield Progress("Checking that no prover is running ...", 0.3)
        running, _ = await find_writers(ctx, db)
        if running:
            yield Outcome("failed", _writers_refusal(db, running) + f"; {db.name} was not touched", {"running": running})
            return
        restoring = Path(f"{db}.restoring")
        yield Progress(f"Copying {backup.name} -> {restoring.name} ...", 0.4)
        try:
            restoring.unlink(missing_ok=True)
            await asyncio.to_thread(ops.online_backup, backup, restoring, pages_per_step=4096, pause_s=0.0)
            await asyncio.to_thread(ops.fsync_file, restoring)
        except (sqlite3.Error, OSError) as exc:
            restoring.unlink(missing_ok=True)
            yield _failure(db, exc, f"copying {backup.name}")
            return
        if ctx.cancel.is_set():
            restoring.unlink(missing_ok=True)
            yield Outcome("cancelled", f"restore cancelled before anything changed; {db.name} was not touched")
            return
        # Point of no return: from here the swap runs to the end whatever is asked.
        yield Progress(f"Swapping in the restored {db.name} ...", 0.7)
        try:
            kept = await asyncio.to_thread(_swap_in, db, restoring)
        except OSError as exc:
            yield Outcome("failed", f"could not put the restored file in place: {exc}; check {db} and "
                          f"{db.name}.before_restore by hand", {"error": str(exc)})
            return
        yield Progress(f"PRAGMA integrity_check of the restored {db.name} ...", 0.8)
        after = await asyncio.to_thread(ops.check_file, db, "integrity_check", 20)
        details: dict[str, Any] = {"backup": str(backup), "kept": [str(p) for p in kept], "integrity_check": after}
        if after != ["ok"]:
            yield Outcome("failed", f"{db.name} was restored from {backup.name} but fails integrity_check ({ops.first_problem(after)})",
                          details, tuple(str(p) for p in kept))
            return
        try:
            details["proofs"] = await asyncio.to_thread(_count_proofs, db)
        except sqlite3.Error:
            details["proofs"] = None
        kept_text = f"; the replaced file is kept as {kept[0].name}" if kept else ""
        yield Outcome("succeeded", f"restored {db.name} from {backup.name} ({details['proofs']} proofs); integrity_check ok"
                      f"{kept_text}. Start the provers again.", details, (str(db), *(str(p) for p in kept)))


def _count_proofs(db: Path) -> int | None:
    con, _ = ops.open_for_reading(db)
    try:
        return ops.count_within(con, "SELECT COUNT(*) FROM proofs", budget_s=2.0)
    finally:
        con.close()


def _swap_in(db: Path, restoring: Path) -> list[Path]:
    """Keep db (and its side files) as db.before_restore*, then move `restoring` into place.

    Side files go first: a -wal or hot -journal left beside the new file would be applied to
    it by the next opener and corrupt it. The old file is hard-linked to its new name, so
    db exists at every moment and is replaced atomically.
    """
    before = Path(f"{db}.before_restore")
    kept: list[Path] = []
    if before.exists() or any(Path(f"{before}{s}").exists() for s in ops.SIDE_SUFFIXES):
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        for s in ("", *ops.SIDE_SUFFIXES):
            old = Path(f"{before}{s}")
            if old.exists():
                os.replace(old, Path(f"{before}.{stamp}{s}"))
    for suffix, side in ops.side_files(db).items():
        target = Path(f"{before}{suffix}")
        os.replace(side, target)
        kept.append(target)
    if db.exists():
        try:
            os.link(db, before)
        except OSError:
            shutil.copy2(db, before)
        kept.insert(0, before)
    os.replace(restoring, db)
    ops.fsync_dir(db.parent)
    return kept


ACTIONS = (
    QuickCheck, IntegrityCheck, SizeAndCounts, ListBackups, BackupNow, DeleteExpired, DeleteOlderThan,
    EnableWal, Reindex, Vacuum, RestoreBackup,
)
