"""Blocking SQLite operations on proofs.db, each meant to run in a worker thread.

Connections never create a file (URI mode=ro / mode=rw), so a wrong path is an error rather than
a fresh empty database. The prover opens the file without WAL (reference 4.1), so in the usual
rollback-journal mode any read transaction of ours delays the prover's commits: every function
here keeps its transactions short, or says plainly that it cannot.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

BUSY_TIMEOUT_S = 5.0
# The prover's driver (mattn/go-sqlite3) runs every connection at synchronous=NORMAL, its default:
# in rollback mode a commit then syncs the journal once instead of twice. A maintenance writer at
# SQLite's default (FULL) would hold the prover's write lock through one more fsync per commit for
# a durability the prover's own commits do not have.
PROVER_SYNCHRONOUS = "NORMAL"
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


class StepAborted(Exception):
    """Raised from a backup progress callback to stop the copy (cancel, or too many restarts)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def connect(path: Path, *, readonly: bool, timeout: float = BUSY_TIMEOUT_S,
            synchronous: str | None = None) -> sqlite3.Connection:
    mode = "ro" if readonly else "rw"
    uri = f"file:{quote(str(path))}?mode={mode}"
    con = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    if synchronous is not None:
        try:
            con.execute(f"PRAGMA synchronous = {synchronous}")
        except BaseException:
            con.close()
            raise
    return con


HOT_JOURNAL_NOTE = (
    "a hot journal was found (a writer stopped mid-transaction) and was rolled back on opening, "
    "as any SQLite reader, the prover included, would do"
)


def open_for_reading(path: Path, timeout: float = BUSY_TIMEOUT_S) -> tuple[sqlite3.Connection, str | None]:
    """A read-only connection, or a read-write one when a hot journal must be rolled back first.

    A read-only connection cannot roll back a hot journal (SQLITE_READONLY_ROLLBACK) and so
    cannot read the file at all; the rollback restores the last committed state, which is what
    the next opener (the prover at its restart, the runbook's sqlite3) would do anyway.
    Returns (connection, note about the rollback or None).
    """
    con = connect(path, readonly=True, timeout=timeout)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con, None
    except sqlite3.Error as exc:
        con.close()
        if getattr(exc, "sqlite_errorname", "") != "SQLITE_READONLY_ROLLBACK":
            raise
    con = connect(path, readonly=False, timeout=timeout)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        con.close()
        raise
    return con, HOT_JOURNAL_NOTE


def sqlite_error_text(exc: BaseException) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc)


def side_files(db: Path) -> dict[str, Path]:
    """Existing -wal/-shm/-journal files beside `db`, by suffix."""
    found = {}
    for suffix in SIDE_SUFFIXES:
        p = Path(f"{db}{suffix}")
        if p.exists():
            found[suffix] = p
    return found


def check_rows(con: sqlite3.Connection, pragma: str, limit: int = 100) -> list[str]:
    """The rows PRAGMA quick_check / integrity_check reports; ['ok'] for a sound file.

    SQLite may report rows and then fail the statement itself (as the sqlite3 shell prints the
    report followed by `database disk image is malformed`); that error becomes the last row.
    """
    assert pragma in ("quick_check", "integrity_check")
    rows: list[str] = []
    try:
        for (row,) in con.execute(f"PRAGMA {pragma}({int(limit)})"):
            # one row may carry several problems, one per line
            rows.extend(line for line in str(row).splitlines() if line.strip())
    except sqlite3.DatabaseError as exc:
        rows.append(f"error: {sqlite_error_text(exc)}")
    return rows


def first_problem(rows: list[str]) -> str:
    """The first line of a check report that says something (not the '*** in database' header)."""
    for row in rows:
        if not row.startswith("*** "):
            return row
    return rows[0] if rows else "no report"


def check_file(path: Path, pragma: str = "integrity_check", limit: int = 100) -> list[str]:
    """Open `path` read-only and check it; an unopenable file gives one 'error: ...' row."""
    try:
        con, _ = open_for_reading(path)
    except sqlite3.Error as exc:
        return [f"error: {sqlite_error_text(exc)}"]
    try:
        return check_rows(con, pragma, limit)
    finally:
        con.close()


def journal_mode(con: sqlite3.Connection) -> str:
    return str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def set_journal_mode(con: sqlite3.Connection, mode: str, within_s: float = 10.0) -> str:
    """PRAGMA journal_mode=<mode>; returns the mode SQLite kept (the old one when it refused).

    A change to or from WAL needs the exclusive lock for a moment, and SQLite does not wait for
    it: the change upgrades a read lock, and the busy handler never runs for an upgrade, so any
    prover write in progress makes it fail at once with SQLITE_BUSY. It is tried again every
    10-50 ms, between the prover's writes, for up to `within_s`.
    """
    deadline = time.monotonic() + within_s
    pause = 0.01
    while True:
        try:
            return str(con.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(0.05, pause * 1.5)


def journal_mode_of(db: Path) -> str:
    """The file's journal mode through a read-only connection; "unknown" when it cannot be read."""
    try:
        con = connect(db, readonly=True)
    except sqlite3.Error:
        return "unknown"
    try:
        return journal_mode(con)
    except sqlite3.Error:
        return "unknown"
    finally:
        con.close()


def id_bounds(con: sqlite3.Connection, table: str = "proofs") -> tuple[int, int] | None:
    """(min, max) rowid of `table`, None when empty; two b-tree edge lookups, no scan."""
    lo = con.execute(f'SELECT min(rowid) FROM "{table}"').fetchone()[0]
    hi = con.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()[0]
    return None if lo is None else (int(lo), int(hi))


def count_within(con: sqlite3.Connection, sql: str, params: tuple = (), budget_s: float = 0.08) -> int | None:
    """A COUNT that gives up (None) after `budget_s`, so a plan never holds a long read lock."""
    deadline = time.monotonic() + budget_s
    con.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    try:
        return int(con.execute(sql, params).fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "interrupt" in str(exc).lower():
            return None
        raise
    finally:
        con.set_progress_handler(None, 0)


def take_write_lock_if_free(con: sqlite3.Connection, timeout: float = BUSY_TIMEOUT_S) -> bool:
    """BEGIN IMMEDIATE without waiting: False (no transaction open) when another writer holds
    the lock.

    A maintenance job must not queue for the lock like a prover write does. SQLite's busy
    handler polls at growing intervals (1, 2, 5, 10 ... 100 ms), so a prover write that has been
    waiting for a while sleeps long between polls, and a job polling from scratch would win the
    lock off it again and again. Refused, the job backs off instead and lets the waiting writes
    go first.
    """
    con.execute("PRAGMA busy_timeout = 0")
    try:
        con.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            return False
        raise
    finally:
        # The COMMIT may still wait briefly for readers to finish (the EXCLUSIVE lock).
        con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@dataclass
class BatchResult:
    rows: int
    lock_s: float  # the write lock held, statement and commit
    statement_s: float  # of which the DELETE statement (the rest is the commit: journal and fsyncs)
    interrupted: bool = False  # the statement ran over its budget and was rolled back
    warm_s: float = 0.0  # reading the batch's pages beforehand, no lock held


def warming_queries(con: sqlite3.Connection, table: str = "proofs") -> list[str]:
    """Read-only queries (parameters lo, hi) that touch every page a delete of the rows with
    lo <= id < hi will change: the table's leaves, and in each index the exact entries of those
    rows (its columns and the rowid: a seek each, not a scan of equal values).

    A page the kernel has dropped from its cache costs a disk read, and a read inside the delete
    keeps the write lock, and so every prover write, waiting for it: on the development machine
    a kernel scheme pages out cold file pages within seconds, and one 150-row DELETE held the
    lock 420 ms. Run first (WAL mode only: there a read blocks no writer), they make the delete
    find its pages in memory. Partial and expression indexes are left out (no plain key to seek).
    """
    queries = [f'SELECT count(*) FROM "{table}" WHERE rowid >= ? AND rowid < ?']
    for row in con.execute(f'PRAGMA index_list("{table}")').fetchall():
        name, partial = row[1], row[4] if len(row) > 4 else 0
        columns = [r[2] for r in con.execute(f'PRAGMA index_info("{name}")').fetchall()]
        if partial or not columns or any(c is None for c in columns):
            continue
        key = ", ".join(f'"{c}"' for c in columns)
        queries.append(f'SELECT count(*) FROM "{table}" INDEXED BY "{name}" WHERE ({key}, rowid) IN '
                       f'(SELECT {key}, rowid FROM "{table}" WHERE rowid >= ? AND rowid < ?)')
    return queries


def wal_checkpoint(con: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    """PRAGMA wal_checkpoint(<mode>): (busy, frames in the WAL, frames copied into the file)."""
    busy, frames, copied = con.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(busy), int(frames), int(copied)


def checkpoint_passive(con: sqlite3.Connection) -> float:
    """A PASSIVE checkpoint: copy what it can of the WAL into the database without waiting for
    any reader or writer; returns the seconds it took. Errors are not fatal here (a later
    checkpoint, ours or SQLite's automatic one, copies the rest) and count as 0."""
    started = time.monotonic()
    try:
        wal_checkpoint(con, "PASSIVE")
    except sqlite3.Error:
        return 0.0
    return time.monotonic() - started


def delete_batch(con: sqlite3.Connection, lo: int, hi: int, condition: str, params: tuple = (),
                 *, wait_for_lock: bool = True, statement_budget_s: float | None = None,
                 warm: list[str] | tuple[str, ...] = ()) -> BatchResult | None:
    """Delete the proofs with lo <= id < hi matching `condition`, in one short transaction.

    The write lock is taken up front (BEGIN IMMEDIATE) so the statement never fails half-way on
    a lock upgrade: waiting up to the busy timeout for it, or, with wait_for_lock=False, not at
    all (None when another writer holds it). A statement that runs past `statement_budget_s`
    is interrupted and the transaction rolled back (nothing deleted, `interrupted` set): the
    lock is then released at once instead of being held through a slow batch. `warm` (from
    warming_queries) is run first, before any lock is taken.
    """
    warm_s = 0.0
    if warm:
        started = time.monotonic()
        for sql in warm:
            con.execute(sql, (lo, hi)).fetchone()
        warm_s = time.monotonic() - started
    if wait_for_lock:
        con.execute("BEGIN IMMEDIATE")
    elif not take_write_lock_if_free(con):
        return None
    locked = time.monotonic()
    if statement_budget_s is not None:
        deadline = locked + statement_budget_s
        con.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 2_000)
    try:
        try:
            n = con.execute(
                f"DELETE FROM proofs WHERE id >= ? AND id < ? AND ({condition})", (lo, hi, *params)
            ).rowcount
        except sqlite3.OperationalError as exc:
            if statement_budget_s is None or "interrupt" not in str(exc).lower():
                raise
            if con.in_transaction:  # SQLite rolls an interrupted write's transaction back itself
                con.execute("ROLLBACK")
            took = time.monotonic() - locked
            return BatchResult(0, took, took, interrupted=True, warm_s=warm_s)
        finally:
            if statement_budget_s is not None:
                con.set_progress_handler(None, 0)
        statement = time.monotonic() - locked
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    return BatchResult(n, time.monotonic() - locked, statement, warm_s=warm_s)


class LockBudgetExceeded(Exception):
    """A consistent copy would hold the read lock (and so block the writers) longer than allowed."""

    def __init__(self, estimate_s: float, budget_s: float, report: BackupReport) -> None:
        super().__init__(f"a consistent copy would block writers for about {estimate_s:.1f}s (allowed {budget_s:g}s)")
        self.estimate_s = estimate_s
        self.budget_s = budget_s
        self.report = report


@dataclass
class BackupReport:
    pages: int = 0
    steps: int = 0
    restarts: int = 0
    # "steps": short read locks, nobody wrote meanwhile; "wal-steps": steps over one pinned WAL
    # snapshot (writers never wait); "snapshot": one step holding the read lock throughout
    mode: str = "steps"
    longest_step_s: float = 0.0
    seconds: float = 0.0
    pages_per_second: float | None = None
    estimated_lock_s: float | None = None
    notes: list[str] = field(default_factory=list)


def online_backup(
    src_path: Path,
    dst_path: Path,
    *,
    pages_per_step: int = 1024,
    pause_s: float = 0.005,
    max_restarts: int = 3,
    max_lock_s: float | None = None,
    flush_bytes: int = 32 * 1024 * 1024,
    on_step: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> BackupReport:
    """Copy src into dst (created) with SQLite's online backup API, in paced steps.

    WAL mode: a read transaction is held open on the source for the whole copy, so every step
    reads the same snapshot (no restarts) while writers carry on appending to the WAL; the
    pauses between steps and a flush of the copy every `flush_bytes` keep its disk traffic
    from starving the writers' own fsyncs.

    Rollback-journal mode (the prover's): each step takes a short read lock. A write by another
    process restarts the copy, since SQLite cannot tell which pages changed. After
    `max_restarts` the only consistent copy left is one step holding the read lock throughout,
    which blocks every writer for as long as it takes. That is done only when its duration,
    estimated from the speed of the steps so far, fits `max_lock_s` (None: always); otherwise
    LockBudgetExceeded. Raises StepAborted when `cancelled()` turns true. dst is incomplete
    after any exception.
    """
    report = BackupReport()
    started = time.monotonic()
    src, hot = open_for_reading(src_path)
    if hot:
        report.notes.append(hot)
    try:
        dst = sqlite3.connect(str(dst_path), isolation_level=None, check_same_thread=False)
        flusher = None
        try:
            wal = journal_mode(src) == "wal"
            state = {"remaining": None, "last": time.monotonic(), "copied": 0, "busy_s": 0.0, "unflushed": 0}
            page_size = int(src.execute("PRAGMA page_size").fetchone()[0])

            def progress(status: int, remaining: int, total: int) -> None:
                nonlocal flusher
                took = time.monotonic() - state["last"]
                report.longest_step_s = max(report.longest_step_s, took)
                report.steps += 1
                report.pages = total
                prev = state["remaining"] if state["remaining"] is not None else total
                if remaining > prev:
                    report.restarts += 1
                    if report.restarts > max_restarts:
                        raise StepAborted("restarts")
                else:
                    state["copied"] += prev - remaining
                    state["busy_s"] += took
                    state["unflushed"] += (prev - remaining) * page_size
                state["remaining"] = remaining
                if on_step is not None:
                    on_step(total - remaining, total)
                if cancelled():
                    raise StepAborted("cancelled")
                if flush_bytes and state["unflushed"] >= flush_bytes:
                    if flusher is None:
                        flusher = os.open(dst_path, os.O_RDONLY)
                    os.fdatasync(flusher)
                    state["unflushed"] = 0
                if remaining and pause_s > 0:
                    time.sleep(pause_s)
                state["last"] = time.monotonic()

            def step_all(pages: int) -> None:
                state["remaining"] = None
                state["last"] = time.monotonic()
                src.backup(dst, pages=pages, progress=progress, sleep=max(pause_s, 0.001))

            if wal:
                src.execute("BEGIN")
                src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # pins the snapshot
                try:
                    report.mode = "wal-steps"
                    step_all(max(1, pages_per_step))
                finally:
                    src.execute("ROLLBACK")
                report.notes.append("WAL mode: steps over one snapshot; writers never waited")
            else:
                try:
                    step_all(max(1, pages_per_step))
                except StepAborted as exc:
                    if exc.reason != "restarts":
                        raise
                    speed = state["copied"] / state["busy_s"] if state["busy_s"] > 0 else None
                    report.pages_per_second = speed
                    if speed:
                        report.estimated_lock_s = report.pages / speed
                    if max_lock_s is not None and (report.estimated_lock_s is None or report.estimated_lock_s > max_lock_s):
                        raise LockBudgetExceeded(report.estimated_lock_s or float("inf"), max_lock_s, report) from None
                    report.notes.append(
                        f"the copy restarted {report.restarts} times because the prover kept writing; finished in "
                        f"one step holding the read lock (about {report.estimated_lock_s or 0:.1f}s, writers waited)"
                    )
                    report.mode = "snapshot"
                    step_all(-1)
            report.seconds = time.monotonic() - started
            return report
        finally:
            if flusher is not None:
                os.close(flusher)
            dst.close()
    finally:
        src.close()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def open_by_processes(paths: list[Path], exclude_pid: int | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of local processes holding any of `paths` open, from /proc.

    Containers on this host show up too. Processes we may not inspect are skipped silently:
    this is a best-effort check next to the health URLs, not the only one.
    """
    wanted = set()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        wanted.add((st.st_dev, st.st_ino))
    if not wanted:
        return []
    found: list[tuple[int, str]] = []
    exclude = os.getpid() if exclude_pid is None else exclude_pid
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return []
    for pid in pids:
        if pid == exclude:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in wanted:
                try:
                    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                    cmd = " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)
                except OSError:
                    cmd = "?"
                found.append((pid, cmd[:200] or "?"))
                break
    return found
