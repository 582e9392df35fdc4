"""The journal file itself: WAL, schema versions, and files it must refuse without touching."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
from pathlib import Path

import pytest

from x402console.journal import SCHEMA_VERSION, Journal, JournalBusy, JournalFileError
from x402console.journal.schema import APPLICATION_ID, MIGRATIONS


def fingerprint(path: Path) -> tuple[str, int, list[str]]:
    """Content hash, mtime and the set of sibling files SQLite might create (-wal, -shm, -journal)."""
    siblings = sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, siblings


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_new_journal_is_wal_full_sync_versioned_and_marked_as_ours(tmp_path):
    path = tmp_path / "deep" / "er" / "journal.db"
    j = await Journal.open(path)
    try:
        assert path.exists()
        assert (await j._read("PRAGMA journal_mode"))[0][0] == "wal"
        assert (await j._read("PRAGMA synchronous"))[0][0] == 2  # FULL
        assert (await j._read("PRAGMA foreign_keys"))[0][0] == 1
    finally:
        await j.close()
    with sqlite3.connect(path) as db:
        # journal_mode=WAL is persistent: any other process opening the file sees it too.
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert {"incidents", "timeline_events", "checklist", "actions", "operators"} <= tables(path)


async def test_an_empty_v0_file_is_migrated_and_reopening_keeps_data(tmp_path):
    path = tmp_path / "journal.db"
    path.write_bytes(b"")
    j = await Journal.open(path)
    await j.add_event("note", "kept", "alice")
    await j.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    j = await Journal.open(path)  # already current: no migration step runs again
    try:
        assert [e.summary for e in await j.events()] == ["kept"]
    finally:
        await j.close()


def test_migrations_are_numbered_consecutively_from_one():
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_journal_from_a_newer_schema_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "journal.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("CREATE TABLE incidents (id INTEGER PRIMARY KEY, future_column TEXT)")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = fingerprint(path)
    with pytest.raises(JournalFileError) as err:
        await Journal.open(path)
    message = str(err.value)
    assert str(path) in message and "newer" in message and f"version {SCHEMA_VERSION + 1}" in message
    assert fingerprint(path) == before
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_bytes_are_a_clear_error_naming_the_file(tmp_path, seed):
    path = tmp_path / "journal.db"
    path.write_bytes(random.Random(seed).randbytes(16384))
    before = fingerprint(path)
    with pytest.raises(JournalFileError) as err:
        await Journal.open(path)
    assert str(path) in str(err.value) and "not an SQLite database" in str(err.value)
    assert fingerprint(path) == before


async def test_garbage_behind_a_valid_sqlite_header_is_a_clear_error(tmp_path):
    path = tmp_path / "journal.db"
    path.write_bytes(b"SQLite format 3\x00" + random.Random(3).randbytes(8192))
    before = fingerprint(path)
    with pytest.raises(JournalFileError, match=str(path)):
        await Journal.open(path)
    assert fingerprint(path) == before


async def test_a_journal_with_damaged_pages_is_refused(tmp_path):
    path = tmp_path / "journal.db"
    j = await Journal.open(path)
    for i in range(300):
        await j.add_event("observation", f"sample {i}", "console", details={"pad": "x" * 200})
    await j.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        assert db.execute("PRAGMA page_count").fetchone()[0] > 8
    db.close()
    with path.open("r+b") as f:
        f.seek(3 * page)
        f.write(random.Random(4).randbytes(4 * page))
    with pytest.raises(JournalFileError) as err:
        await Journal.open(path)
    assert str(path) in str(err.value)


async def test_another_applications_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "proofs.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE proofs (id TEXT PRIMARY KEY, proof TEXT, expires_at DATETIME)")
        db.execute("INSERT INTO proofs VALUES ('p1', '{}', '2030-01-01')")
    db.close()
    before = fingerprint(path)
    with pytest.raises(JournalFileError, match="not an x402console journal"):
        await Journal.open(path)
    assert fingerprint(path) == before
    assert tables(path) == {"proofs"}


async def test_a_directory_is_refused(tmp_path):
    (tmp_path / "journal.db").mkdir()
    with pytest.raises(JournalFileError, match="not a regular file"):
        await Journal.open(tmp_path / "journal.db")


def test_the_schema_refuses_a_duplicate_origin_seq(tmp_path):
    path = tmp_path / "journal.db"

    async def make() -> None:
        j = await Journal.open(path, origin="console-a")
        await j.add_event("note", "first", "alice")
        await j.close()

    asyncio.run(make())
    with sqlite3.connect(path) as db, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        db.execute(
            "INSERT INTO timeline_events (ts, kind, actor, summary, details, origin, origin_seq)"
            " VALUES ('2025-01-01T00:00:00.000000+00:00', 'note', 'x', 'dup', '{}', 'console-a', 1)"
        )
    db.close()


async def test_a_resumed_origin_continues_its_sequence_instead_of_losing_events(tmp_path):
    path = tmp_path / "journal.db"
    j = await Journal.open(path, origin="console-a")
    first = await j.add_event("note", "before restart", "alice")
    await j.close()
    j = await Journal.open(path, origin="console-a")
    try:
        second = await j.add_event("note", "after restart", "alice")
        assert (first.origin_seq, second.origin_seq) == (1, 2)
        assert [e.summary for e in await j.events()] == ["before restart", "after restart"]
    finally:
        await j.close()


async def test_a_write_waits_out_a_held_lock_and_lands_exactly_once(tmp_path):
    path = tmp_path / "journal.db"
    j = await Journal.open(path, busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        task = asyncio.ensure_future(j.add_event("note", "patient", "alice"))
        await asyncio.sleep(0.5)  # several busy_timeouts: the write has been retried
        assert not task.done()
        other.execute("COMMIT")
        ev = await asyncio.wait_for(task, 10)
        assert [(e.id, e.summary) for e in await j.events()] == [(ev.id, "patient")]
    finally:
        other.close()
        await j.close()


async def test_a_lock_held_too_long_is_a_clear_busy_error_and_writes_nothing(tmp_path):
    path = tmp_path / "journal.db"
    j = await Journal.open(path, busy_timeout=0.05, write_timeout=0.3)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(JournalBusy, match="write lock"):
            await j.add_event("note", "never", "alice")
        other.execute("ROLLBACK")
        assert await j.events() == ()
    finally:
        other.close()
        await j.close()
