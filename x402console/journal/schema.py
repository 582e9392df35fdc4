"""The journal's tables, and the checks and forward migrations run when a file is opened.

The schema version lives in PRAGMA user_version and the file is marked as ours with
PRAGMA application_id, so that pointing the console at the wrong SQLite file (proofs.db, a
newer console's journal) is refused before anything is written to it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from x402console.journal.errors import JournalFileError
from x402console.journal.models import EVENT_KINDS, OUTCOMES, ROLES, SEVERITIES, STATUSES

APPLICATION_ID = 0x78343032  # "x402"
SQLITE_HEADER = b"SQLite format 3\x00"


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# Each entry upgrades the file from version n-1 to n. Entries are never edited once released:
# a journal written by an older console replays only the steps it has not seen.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        f"PRAGMA application_id = {APPLICATION_ID}",
        f"""
        CREATE TABLE incidents (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            title            TEXT    NOT NULL CHECK (length(trim(title)) > 0),
            severity         TEXT    NOT NULL CHECK (severity IN {_in(SEVERITIES)}),
            status           TEXT    NOT NULL CHECK (status IN {_in(STATUSES)}),
            security         INTEGER NOT NULL DEFAULT 0 CHECK (security IN (0, 1)),
            drill            INTEGER NOT NULL DEFAULT 0 CHECK (drill IN (0, 1)),
            runbook_incident INTEGER,
            declared_by      TEXT    NOT NULL,
            created_at       TEXT    NOT NULL,
            acknowledged_at  TEXT,
            mitigated_at     TEXT,
            resolved_at      TEXT
        )
        """,
        # AUTOINCREMENT, not a plain rowid: ids must never be reused, or a console tailing by
        # id could miss a row that took the id of one deleted before it looked.
        f"""
        CREATE TABLE timeline_events (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            incident_id INTEGER REFERENCES incidents(id),
            ts          TEXT    NOT NULL,
            kind        TEXT    NOT NULL CHECK (kind IN {_in(EVENT_KINDS)}),
            actor       TEXT    NOT NULL,
            summary     TEXT    NOT NULL,
            details     TEXT    NOT NULL DEFAULT '{{}}' CHECK (json_valid(details)),
            origin      TEXT    NOT NULL,
            origin_seq  INTEGER NOT NULL,
            UNIQUE (origin, origin_seq)
        )
        """,
        "CREATE INDEX timeline_events_by_incident ON timeline_events (incident_id, ts, id)",
        "CREATE INDEX timeline_events_by_time ON timeline_events (ts, id)",
        """
        CREATE TABLE checklist (
            incident_id INTEGER NOT NULL REFERENCES incidents(id),
            item_id     TEXT    NOT NULL,
            checked     INTEGER NOT NULL CHECK (checked IN (0, 1)),
            actor       TEXT    NOT NULL,
            ts          TEXT    NOT NULL,
            PRIMARY KEY (incident_id, item_id)
        )
        """,
        f"""
        CREATE TABLE actions (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            incident_id INTEGER REFERENCES incidents(id),
            action_id   TEXT    NOT NULL,
            target      TEXT    NOT NULL,
            actor       TEXT    NOT NULL,
            origin      TEXT    NOT NULL,
            started_at  TEXT    NOT NULL,
            finished_at TEXT,
            outcome     TEXT    NOT NULL CHECK (outcome IN {_in(OUTCOMES)}),
            detail      TEXT    NOT NULL DEFAULT '{{}}' CHECK (json_valid(detail))
        )
        """,
        "CREATE INDEX actions_unfinished ON actions (outcome) WHERE outcome = 'started'",
        f"""
        CREATE TABLE operators (
            origin    TEXT PRIMARY KEY,
            actor     TEXT NOT NULL,
            role      TEXT NOT NULL CHECK (role IN {_in(ROLES)}),
            joined_at TEXT NOT NULL,
            last_seen TEXT NOT NULL
        )
        """,
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


def check_header(path: Path) -> None:
    """Refuse a non-SQLite file before SQLite opens it: SQLite could otherwise treat a short
    or empty-looking file as a fresh database and write over it."""
    try:
        if path.exists() and not path.is_file():
            raise JournalFileError(path, "is not a regular file")
        if not path.exists() or path.stat().st_size == 0:
            return
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise JournalFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if head != SQLITE_HEADER:
        raise JournalFileError(path, "is not an SQLite database (not an x402console journal); left untouched")


async def _scalar(conn: aiosqlite.Connection, sql: str) -> object:
    async with conn.execute(sql) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]


async def check_identity(conn: aiosqlite.Connection, path: Path) -> int:
    """Read-only checks that this is a journal we may open; returns its schema version."""
    # One read transaction for all three: another console may be creating the file right now,
    # and separate reads could see its application_id before and its tables after the commit.
    await conn.execute("BEGIN")
    try:
        app_id = await _scalar(conn, "PRAGMA application_id")
        version = await _scalar(conn, "PRAGMA user_version")
        tables = await _scalar(conn, "SELECT count(*) FROM sqlite_master")
    finally:
        await conn.execute("COMMIT")
    assert isinstance(app_id, int) and isinstance(version, int)
    if app_id not in (0, APPLICATION_ID):
        raise JournalFileError(path, f"is an SQLite database of another application (application_id {app_id:#x}); left untouched")
    if version > SCHEMA_VERSION:
        raise JournalFileError(
            path,
            f"was written by a newer x402console (journal schema version {version}; this one knows "
            f"up to {SCHEMA_VERSION}); left untouched: upgrade x402console to open it",
        )
    if app_id == 0:
        if version != 0 or tables:
            raise JournalFileError(path, "is an SQLite database but not an x402console journal; left untouched")
    problems = await conn.execute_fetchall("PRAGMA quick_check(5)")
    found = [str(r[0]) for r in problems]
    if found != ["ok"]:
        raise JournalFileError(path, "is damaged (quick_check: " + "; ".join(found) + "); left untouched")
    return version


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the file up to SCHEMA_VERSION, one committed step per version.

    Each step re-reads the version under the write lock, so two consoles opening a fresh file
    at the same moment do not both run it.
    """
    while True:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            version = await _scalar(conn, "PRAGMA user_version")
            assert isinstance(version, int)
            if version >= SCHEMA_VERSION:
                await conn.execute("ROLLBACK")
                return version
            target = version + 1
            for statement in MIGRATIONS[target]:
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {target}")
            await conn.execute("COMMIT")
        except BaseException:
            try:
                await conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
