"""The incident journal: one SQLite file shared by every console attached to an incident.

Every write is one `BEGIN IMMEDIATE ... COMMIT` transaction that has committed (and, with
synchronous=FULL in WAL mode, reached the disk) before the call returns, so what the UI shows
is always something a crash cannot take back. Writes run shielded from task cancellation:
a journal entry is either written whole or not at all, never abandoned halfway by a closing
screen.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from x402console.core import checklist as runbook_checklist
from x402console.journal import schema
from x402console.journal.actor import Actor, current_actor
from x402console.journal.errors import (
    IncidentNotFound,
    InvalidTransition,
    InvalidValue,
    JournalBusy,
    JournalError,
    JournalFileError,
)
from x402console.journal.models import (
    EVENT_KINDS,
    OUTCOMES,
    ROLES,
    SEVERITIES,
    ActionRecord,
    ChecklistItemState,
    Incident,
    Operator,
    TimelineEvent,
)

Clock = Callable[[], datetime]
ActorLike = Actor | str
T = TypeVar("T")

# Kinds that record a change of journal state; they are written only by the method that makes
# the change, so the timeline can never claim a state the tables do not have.
RESERVED_KINDS = frozenset(
    {"status_changed", "severity_changed", "checklist", "action_started", "action_finished"}
)

_BUSY_CODES = {getattr(sqlite3, "SQLITE_BUSY", 5), getattr(sqlite3, "SQLITE_LOCKED", 6)}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _ts(dt: datetime) -> str:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidValue(f"timestamps must be timezone-aware datetimes, got {dt!r}")
    # One fixed-width UTC form, so text order equals time order in SQL ORDER BY.
    return dt.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _who(actor: ActorLike) -> str:
    text = str(actor) if isinstance(actor, Actor) else actor
    if not isinstance(text, str) or not text.strip():
        raise InvalidValue(f"actor must be an Actor or non-empty text, got {actor!r}")
    return text.strip()


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{name} must be non-empty text, got {value!r}")
    return value.strip()


def _json(name: str, value: Mapping[str, Any] | None) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise InvalidValue(f"{name} must be a mapping (JSON object), got {type(value).__name__}")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"{name} is not JSON-serialisable: {exc}") from None


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def incident_from_row(row: sqlite3.Row) -> Incident:
    return Incident(
        id=row["id"],
        title=row["title"],
        severity=row["severity"],
        status=row["status"],
        security=bool(row["security"]),
        drill=bool(row["drill"]),
        runbook_incident=row["runbook_incident"],
        declared_by=row["declared_by"],
        created_at=_dt(row["created_at"]),  # type: ignore[arg-type]
        acknowledged_at=_dt(row["acknowledged_at"]),
        mitigated_at=_dt(row["mitigated_at"]),
        resolved_at=_dt(row["resolved_at"]),
    )


def _event(row: sqlite3.Row) -> TimelineEvent:
    return TimelineEvent(
        id=row["id"],
        incident_id=row["incident_id"],
        ts=_dt(row["ts"]),  # type: ignore[arg-type]
        kind=row["kind"],
        actor=row["actor"],
        summary=row["summary"],
        details_json=row["details"],
        origin=row["origin"],
        origin_seq=row["origin_seq"],
    )


def _action(row: sqlite3.Row) -> ActionRecord:
    return ActionRecord(
        id=row["id"],
        incident_id=row["incident_id"],
        action_id=row["action_id"],
        target=row["target"],
        actor=row["actor"],
        origin=row["origin"],
        started_at=_dt(row["started_at"]),  # type: ignore[arg-type]
        finished_at=_dt(row["finished_at"]),
        outcome=row["outcome"],
        detail_json=row["detail"],
    )


def _operator(row: sqlite3.Row) -> Operator:
    return Operator(
        origin=row["origin"],
        actor=row["actor"],
        role=row["role"],
        joined_at=_dt(row["joined_at"]),  # type: ignore[arg-type]
        last_seen=_dt(row["last_seen"]),  # type: ignore[arg-type]
    )


class Journal:
    """Async access to one journal file. Create with `await Journal.open(path)`."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        origin: str,
        last_seq: int,
        clock: Clock,
        actor: Actor,
        write_timeout: float,
    ) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self.path = path
        self.origin = origin
        self._seq = last_seq
        self._clock = clock
        self.actor = actor
        self._write_timeout = write_timeout
        # One connection serves every coroutine of this console; the lock keeps one coroutine's
        # transaction from interleaving with another's, and keeps readers from seeing a
        # transaction of this same connection before it commits.
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        clock: Clock | None = None,
        origin: str | None = None,
        actor: Actor | None = None,
        busy_timeout: float = 5.0,
        write_timeout: float = 30.0,
    ) -> Journal:
        """Open (creating if needed) the journal at `path`.

        A file that is not SQLite, is damaged, belongs to another application or was written by
        a newer schema raises JournalFileError naming the file, and is not modified.
        `origin` identifies this console instance (a fresh uuid unless resuming one).
        """
        path = Path(path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalFileError(path, f"cannot create its directory: {exc.strerror or exc}") from None
        schema.check_header(path)
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as exc:
            raise JournalFileError(path, f"cannot be opened: {exc}") from None
        origin = origin or str(uuid.uuid4())
        try:
            conn.row_factory = sqlite3.Row
            # Read-only pragmas and checks first: nothing may be written to a file we refuse.
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            await schema.check_identity(conn, path)
            async with conn.execute("PRAGMA journal_mode = WAL") as cur:
                row = await cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise JournalFileError(path, f"cannot use WAL mode here (journal_mode stays {row and row[0]!r})")
            # FULL: in WAL mode each commit syncs the log, so a committed event survives power
            # loss as well as a killed process.
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
            version = await schema.migrate(conn)
            if version != schema.SCHEMA_VERSION:  # pragma: no cover - migrate loops until equal
                raise JournalFileError(path, f"migration stopped at version {version}")
            async with conn.execute(
                "SELECT COALESCE(MAX(origin_seq), 0) FROM timeline_events WHERE origin = ?", (origin,)
            ) as cur:
                (last_seq,) = await cur.fetchone()  # type: ignore[misc]
        except JournalFileError:
            await conn.close()
            raise
        except sqlite3.Error as exc:
            await conn.close()
            raise JournalFileError(path, f"cannot be opened as a journal: {exc}") from None
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, origin, last_seq, clock or utc_now, actor or current_actor(), write_timeout)

    async def close(self) -> None:
        if self._conn is None:
            return
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ plumbing

    def _now(self) -> datetime:
        now = self._clock()
        _ts(now)  # validates the injected clock's output
        return now.astimezone(timezone.utc)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _live(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise JournalError(f"{self.path}: journal is closed")
        return self._conn

    async def _write(self, body: Callable[[aiosqlite.Connection, datetime], Awaitable[T]]) -> T:
        """Run `body` in one IMMEDIATE transaction, retried whole while the file is busy.

        `body` gets the time read *after* the write lock is held, so timestamps follow commit
        order across every console writing to the file.
        """
        task = asyncio.ensure_future(self._write_locked(body))
        # If the caller was cancelled meanwhile nobody awaits the task; fetch its outcome so a
        # failure is not reported as "exception never retrieved".
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(task)

    async def _write_locked(self, body: Callable[[aiosqlite.Connection, datetime], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._write_timeout
        async with self._lock:
            conn = self._live()
            while True:
                try:
                    await conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if _is_busy(exc) and loop.time() < deadline:
                        await asyncio.sleep(0.05)
                        continue
                    if _is_busy(exc):
                        raise JournalBusy(
                            f"{self.path}: another process has held the journal's write lock for "
                            f"more than {self._write_timeout:g}s"
                        ) from None
                    raise JournalError(f"{self.path}: {exc}") from None
                try:
                    now = self._now()
                    result = await body(conn, now)
                    await conn.execute(
                        "UPDATE operators SET last_seen = ? WHERE origin = ?", (_ts(now), self.origin)
                    )
                    await conn.execute("COMMIT")
                    return result
                except BaseException as exc:
                    try:
                        await conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc) and loop.time() < deadline:
                        await asyncio.sleep(0.05)
                        continue
                    if isinstance(exc, sqlite3.Error):
                        raise JournalError(f"{self.path}: {exc}") from None
                    raise

    async def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._lock:
            conn = self._live()
            try:
                return list(await conn.execute_fetchall(sql, tuple(params)))
            except sqlite3.Error as exc:
                raise JournalError(f"{self.path}: {exc}") from None

    @staticmethod
    async def _one(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def _incident_row(self, conn: aiosqlite.Connection, incident_id: int) -> sqlite3.Row:
        if not isinstance(incident_id, int) or isinstance(incident_id, bool):
            raise InvalidValue(f"incident id must be an integer, got {incident_id!r}")
        row = await self._one(conn, "SELECT * FROM incidents WHERE id = ?", (incident_id,))
        if row is None:
            raise IncidentNotFound(incident_id)
        return row

    async def _insert_event(
        self,
        conn: aiosqlite.Connection,
        now: datetime,
        kind: str,
        summary: str,
        actor: str,
        incident_id: int | None,
        details_json: str,
        seq: int | None = None,
    ) -> TimelineEvent:
        seq = self._next_seq() if seq is None else seq
        # A retried transaction reuses its seq; DO NOTHING then keeps the one row already there.
        await conn.execute(
            "INSERT INTO timeline_events (incident_id, ts, kind, actor, summary, details, origin, origin_seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin, origin_seq) DO NOTHING",
            (incident_id, _ts(now), kind, actor, summary, details_json, self.origin, seq),
        )
        row = await self._one(
            conn, "SELECT * FROM timeline_events WHERE origin = ? AND origin_seq = ?", (self.origin, seq)
        )
        assert row is not None
        return _event(row)

    # ------------------------------------------------------------------ incidents

    async def declare_incident(
        self,
        title: str,
        severity: str,
        actor: ActorLike,
        security: bool = False,
        drill: bool = False,
        runbook_incident: int | None = None,
    ) -> Incident:
        title = _text("title", title)
        if severity not in SEVERITIES:
            raise InvalidValue(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        if runbook_incident is not None and (
            not isinstance(runbook_incident, int) or isinstance(runbook_incident, bool) or runbook_incident < 1
        ):
            raise InvalidValue(f"runbook incident must be a positive integer or None, got {runbook_incident!r}")
        who = _who(actor)
        security, drill = bool(security), bool(drill)

        async def body(conn: aiosqlite.Connection, now: datetime) -> Incident:
            cur = await conn.execute(
                "INSERT INTO incidents (title, severity, status, security, drill, runbook_incident,"
                " declared_by, created_at) VALUES (?, ?, 'declared', ?, ?, ?, ?, ?)",
                (title, severity, int(security), int(drill), runbook_incident, who, _ts(now)),
            )
            incident_id = cur.lastrowid
            await cur.close()
            assert incident_id is not None
            flags = "".join((", security" if security else "", ", drill" if drill else ""))
            await self._insert_event(
                conn, now, "status_changed", f"Incident #{incident_id} declared: {title} ({severity}{flags})",
                who, incident_id,
                _json("details", {"from": None, "to": "declared", "severity": severity, "security": security,
                                  "drill": drill, "runbook_incident": runbook_incident}),
            )
            return incident_from_row(await self._incident_row(conn, incident_id))

        return await self._write(body)

    async def _transition(
        self, incident_id: int, actor: ActorLike, verb: str, to: str, allowed_from: tuple[str, ...],
        note: str | None,
    ) -> Incident:
        who = _who(actor)
        if note is not None and not isinstance(note, str):
            raise InvalidValue(f"note must be text, got {note!r}")

        async def body(conn: aiosqlite.Connection, now: datetime) -> Incident:
            row = await self._incident_row(conn, incident_id)
            status = row["status"]
            if status not in allowed_from:
                already = " already" if status == to and to != "declared" else ""
                raise InvalidTransition(
                    f"incident #{incident_id} is{already} {status}; cannot {verb} it"
                    f" (only when {' or '.join(allowed_from)})"
                )
            stamp = _ts(now)
            details: dict[str, Any] = {"from": status, "to": to}
            if note:
                details["note"] = note
            if to == "declared":
                # The earlier milestones stay in the timeline (this event keeps them); the row
                # restarts its lifecycle so the next ack/mitigation is timed afresh.
                details["previous"] = {k: row[k] for k in ("acknowledged_at", "mitigated_at", "resolved_at")}
                sets = {"acknowledged_at": None, "mitigated_at": None, "resolved_at": None}
            else:
                # A later milestone implies the earlier ones: mitigating an unacknowledged
                # incident acknowledges it at the same moment.
                order = ("acknowledged", "mitigated", "resolved")
                sets = {}
                implied = []
                for milestone in order[: order.index(to) + 1]:
                    column = f"{milestone}_at"
                    if row[column] is None:
                        sets[column] = stamp
                        if milestone != to:
                            implied.append(milestone)
                if implied:
                    details["implied"] = implied
            assignments = ", ".join(["status = ?"] + [f"{c} = ?" for c in sets])
            await conn.execute(
                f"UPDATE incidents SET {assignments} WHERE id = ?", (to, *sets.values(), incident_id)
            )
            summary = f"Incident #{incident_id} {'reopened' if to == 'declared' else to}"
            await self._insert_event(conn, now, "status_changed", summary, who, incident_id, _json("details", details))
            return incident_from_row(await self._incident_row(conn, incident_id))

        return await self._write(body)

    async def acknowledge(self, incident_id: int, actor: ActorLike, note: str | None = None) -> Incident:
        return await self._transition(incident_id, actor, "acknowledge", "acknowledged", ("declared",), note)

    async def mitigate(self, incident_id: int, actor: ActorLike, note: str | None = None) -> Incident:
        return await self._transition(
            incident_id, actor, "mitigate", "mitigated", ("declared", "acknowledged"), note
        )

    async def resolve(self, incident_id: int, actor: ActorLike, note: str | None = None) -> Incident:
        return await self._transition(
            incident_id, actor, "resolve", "resolved", ("declared", "acknowledged", "mitigated"), note
        )

    async def reopen(self, incident_id: int, actor: ActorLike, note: str | None = None) -> Incident:
        return await self._transition(incident_id, actor, "reopen", "declared", ("mitigated", "resolved"), note)

    async def set_severity(self, incident_id: int, severity: str, actor: ActorLike, reason: str) -> Incident:
        if severity not in SEVERITIES:
            raise InvalidValue(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        reason = _text("reason", reason)
        who = _who(actor)

        async def body(conn: aiosqlite.Connection, now: datetime) -> Incident:
            row = await self._incident_row(conn, incident_id)
            old = row["severity"]
            if old == severity:
                raise InvalidTransition(f"incident #{incident_id} is already {severity}")
            await conn.execute("UPDATE incidents SET severity = ? WHERE id = ?", (severity, incident_id))
            await self._insert_event(
                conn, now, "severity_changed", f"Severity {old} -> {severity}: {reason}", who, incident_id,
                _json("details", {"from": old, "to": severity, "reason": reason}),
            )
            return incident_from_row(await self._incident_row(conn, incident_id))

        return await self._write(body)

    async def set_security(self, incident_id: int, security: bool, actor: ActorLike, reason: str) -> Incident:
        """Mark or unmark the incident as a security incident (the runbook's evidence rules)."""
        reason = _text("reason", reason)
        who = _who(actor)
        security = bool(security)

        async def body(conn: aiosqlite.Connection, now: datetime) -> Incident:
            row = await self._incident_row(conn, incident_id)
            if bool(row["security"]) == security:
                raise InvalidTransition(
                    f"incident #{incident_id} is {'already' if security else 'not'} marked as a security incident"
                )
            await conn.execute("UPDATE incidents SET security = ? WHERE id = ?", (int(security), incident_id))
            verb = "marked as a security incident" if security else "no longer a security incident"
            await self._insert_event(
                conn, now, "status_changed", f"Incident #{incident_id} {verb}: {reason}", who, incident_id,
                _json("details", {"security": security, "reason": reason}),
            )
            return incident_from_row(await self._incident_row(conn, incident_id))

        return await self._write(body)

    async def set_runbook_incident(self, incident_id: int, runbook_incident: int | None, actor: ActorLike,
                                   reason: str) -> Incident:
        """Which of the runbook's incidents this is (from the matcher or the operator)."""
        if runbook_incident is not None and (
            not isinstance(runbook_incident, int) or isinstance(runbook_incident, bool) or runbook_incident < 1
        ):
            raise InvalidValue(f"runbook incident must be a positive integer or None, got {runbook_incident!r}")
        reason = _text("reason", reason)
        who = _who(actor)

        async def body(conn: aiosqlite.Connection, now: datetime) -> Incident:
            row = await self._incident_row(conn, incident_id)
            old = row["runbook_incident"]
            if old == runbook_incident:
                raise InvalidTransition(f"incident #{incident_id} is already runbook incident {old}")
            await conn.execute("UPDATE incidents SET runbook_incident = ? WHERE id = ?", (runbook_incident, incident_id))
            await self._insert_event(
                conn, now, "status_changed",
                f"Incident #{incident_id} matched to runbook incident {runbook_incident}: {reason}", who, incident_id,
                _json("details", {"runbook_incident": {"from": old, "to": runbook_incident}, "reason": reason}),
            )
            return incident_from_row(await self._incident_row(conn, incident_id))

        return await self._write(body)

    async def incident(self, incident_id: int) -> Incident:
        if not isinstance(incident_id, int) or isinstance(incident_id, bool):
            raise InvalidValue(f"incident id must be an integer, got {incident_id!r}")
        rows = await self._read("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        if not rows:
            raise IncidentNotFound(incident_id)
        return incident_from_row(rows[0])

    async def incidents(self, open_only: bool = False) -> tuple[Incident, ...]:
        """Incidents in the order they were declared."""
        where = " WHERE status != 'resolved'" if open_only else ""
        return tuple(incident_from_row(r) for r in await self._read(f"SELECT * FROM incidents{where} ORDER BY id"))

    # ------------------------------------------------------------------ timeline

    async def add_event(
        self,
        kind: str,
        summary: str,
        actor: ActorLike,
        incident_id: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> TimelineEvent:
        if kind not in EVENT_KINDS:
            raise InvalidValue(f"event kind must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
        if kind in RESERVED_KINDS:
            raise InvalidValue(
                f"{kind} events are written by the journal itself with the change they record "
                "(use acknowledge/set_severity/set_checklist/action_started/...)"
            )
        summary = _text("summary", summary)
        who = _who(actor)
        details_json = _json("details", details)
        # Allocated once, outside the transaction: if the transaction is retried the same
        # (origin, seq) is reused and the row cannot be written twice.
        seq = self._next_seq()

        async def body(conn: aiosqlite.Connection, now: datetime) -> TimelineEvent:
            if incident_id is not None:
                await self._incident_row(conn, incident_id)
            return await self._insert_event(conn, now, kind, summary, who, incident_id, details_json, seq)

        return await self._write(body)

    async def add_event_once(
        self,
        kind: str,
        key: str,
        summary: str,
        actor: ActorLike,
        incident_id: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> TimelineEvent | None:
        """An event unless one of this kind with this details.key is already recorded (for the
        incident, or environment-wide when None). The check and the insert are one write
        transaction, so two consoles seeing the same escalation step or the same replica going
        down at the same instant record it once. None: it was already there."""
        if kind not in ("observation", "escalation", "system"):
            raise InvalidValue(f"add_event_once records observations, escalations or system events, not {kind!r}")
        key = _text("key", key)
        summary = _text("summary", summary)
        who = _who(actor)
        details_json = _json("details", {**(details or {}), "key": key})
        seq = self._next_seq()

        async def body(conn: aiosqlite.Connection, now: datetime) -> TimelineEvent | None:
            if incident_id is not None:
                await self._incident_row(conn, incident_id)
            found = await self._one(
                conn,
                "SELECT 1 FROM timeline_events WHERE incident_id IS ? AND kind = ?"
                " AND json_extract(details, '$.key') = ? AND NOT (origin = ? AND origin_seq = ?)",
                (incident_id, kind, key, self.origin, seq),
            )
            if found is not None:
                return None
            return await self._insert_event(conn, now, kind, summary, who, incident_id, details_json, seq)

        return await self._write(body)

    async def record_escalation(
        self, key: str, summary: str, actor: ActorLike, incident_id: int, details: Mapping[str, Any] | None = None
    ) -> TimelineEvent | None:
        return await self.add_event_once("escalation", key, summary, actor, incident_id, details)

    def _kinds(self, kinds: Iterable[str] | None) -> tuple[str, ...] | None:
        if kinds is None:
            return None
        if isinstance(kinds, str):
            kinds = (kinds,)
        chosen = tuple(kinds)
        bad = [k for k in chosen if k not in EVENT_KINDS]
        if bad:
            raise InvalidValue(f"unknown event kind(s) {bad}; known: {', '.join(EVENT_KINDS)}")
        return chosen

    @staticmethod
    def _limit(limit: int | None) -> str:
        if limit is None:
            return ""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidValue(f"limit must be a positive integer or None, got {limit!r}")
        return f" LIMIT {limit}"

    async def events(
        self,
        incident_id: int | None = None,
        since_id: int = 0,
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> tuple[TimelineEvent, ...]:
        """Timeline events in time order (ts, then id), oldest first.

        incident_id None means every event, environment-wide ones included; `limit` keeps the
        first (oldest) events after `since_id`.
        """
        chosen = self._kinds(kinds)
        clauses, params = ["id > ?"], [since_id]
        if incident_id is not None:
            clauses.append("incident_id = ?")
            params.append(incident_id)
        if chosen is not None:
            if not chosen:
                return ()
            clauses.append(f"kind IN ({', '.join('?' * len(chosen))})")
            params.extend(chosen)
        sql = f"SELECT * FROM timeline_events WHERE {' AND '.join(clauses)} ORDER BY ts, id{self._limit(limit)}"
        return tuple(_event(r) for r in await self._read(sql, params))

    async def events_after(self, last_id: int, limit: int | None = None) -> tuple[TimelineEvent, ...]:
        """Events with id > last_id in id order: how a console tails what the others write.

        Polling by id never misses a row. SQLite has a single writer even in WAL mode, and a
        journal write holds that lock from BEGIN IMMEDIATE to COMMIT, so ids (AUTOINCREMENT,
        never reused) are handed out in commit order. A reader's WAL snapshot therefore holds
        every id up to the largest it sees, and a later commit can only bring larger ids.
        Gaps (a rolled-back insert) are possible and harmless.
        """
        sql = f"SELECT * FROM timeline_events WHERE id > ? ORDER BY id{self._limit(limit)}"
        return tuple(_event(r) for r in await self._read(sql, (last_id,)))

    # ------------------------------------------------------------------ checklist

    async def set_checklist(self, incident_id: int, item_id: str, checked: bool, actor: ActorLike) -> ChecklistItemState:
        """Tick or untick a runbook checklist item. Setting the state it already has writes nothing."""
        try:
            item = runbook_checklist.get_item(item_id)
        except runbook_checklist.UnknownChecklistItem as exc:
            raise InvalidValue(str(exc)) from None
        if not isinstance(checked, bool):
            raise InvalidValue(f"checked must be True or False, got {checked!r}")
        who = _who(actor)

        async def body(conn: aiosqlite.Connection, now: datetime) -> ChecklistItemState:
            await self._incident_row(conn, incident_id)
            row = await self._one(
                conn, "SELECT * FROM checklist WHERE incident_id = ? AND item_id = ?", (incident_id, item.id)
            )
            if row is not None and bool(row["checked"]) == checked:
                return ChecklistItemState(incident_id, item.id, checked, row["actor"], _dt(row["ts"]))  # type: ignore[arg-type]
            await conn.execute(
                "INSERT INTO checklist (incident_id, item_id, checked, actor, ts) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (incident_id, item_id) DO UPDATE SET checked = excluded.checked,"
                " actor = excluded.actor, ts = excluded.ts",
                (incident_id, item.id, int(checked), who, _ts(now)),
            )
            await self._insert_event(
                conn, now, "checklist", f"{'Checked' if checked else 'Unchecked'}: {item.text}", who, incident_id,
                _json("details", {"item_id": item.id, "phase": item.phase, "checked": checked}),
            )
            return ChecklistItemState(incident_id, item.id, checked, who, now)

        return await self._write(body)

    async def checklist_state(self, incident_id: int) -> dict[str, ChecklistItemState]:
        """Recorded state per item id; items never touched are absent (i.e. unchecked)."""
        await self.incident(incident_id)
        rows = await self._read("SELECT * FROM checklist WHERE incident_id = ? ORDER BY item_id", (incident_id,))
        return {
            r["item_id"]: ChecklistItemState(r["incident_id"], r["item_id"], bool(r["checked"]), r["actor"], _dt(r["ts"]))  # type: ignore[arg-type]
            for r in rows
        }

    # ------------------------------------------------------------------ actions

    async def action_started(
        self, action_id: str, target: str, actor: ActorLike, incident_id: int | None = None
    ) -> int:
        """Record that an action is about to run; call before running it. Returns the record id.

        Committed before returning, so a crash while the action runs leaves a 'started' record
        that `mark_unfinished_unknown` later turns into 'unknown', never no record at all.
        """
        action_id = _text("action id", action_id)
        target = _text("target", target)
        who = _who(actor)

        async def body(conn: aiosqlite.Connection, now: datetime) -> int:
            if incident_id is not None:
                await self._incident_row(conn, incident_id)
            cur = await conn.execute(
                "INSERT INTO actions (incident_id, action_id, target, actor, origin, started_at, outcome)"
                " VALUES (?, ?, ?, ?, ?, ?, 'started')",
                (incident_id, action_id, target, who, self.origin, _ts(now)),
            )
            record_id = cur.lastrowid
            await cur.close()
            assert record_id is not None
            await self._insert_event(
                conn, now, "action_started", f"{action_id} on {target}: started", who, incident_id,
                _json("details", {"record_id": record_id, "action_id": action_id, "target": target}),
            )
            return record_id

        return await self._write(body)

    async def action_finished(
        self, record_id: int, outcome: str, detail: Mapping[str, Any] | None = None
    ) -> ActionRecord:
        """Record how an action ended. A record already marked 'unknown' (its console looked
        dead) still takes the real outcome when it arrives; any other finished record is final."""
        if outcome not in OUTCOMES or outcome == "started":
            raise InvalidValue(f"outcome must be one of {', '.join(o for o in OUTCOMES if o != 'started')}, got {outcome!r}")
        detail_json = _json("detail", detail)

        async def body(conn: aiosqlite.Connection, now: datetime) -> ActionRecord:
            row = await self._one(conn, "SELECT * FROM actions WHERE id = ?", (record_id,))
            if row is None:
                raise JournalError(f"no action record with id {record_id!r}")
            previous = row["outcome"]
            if previous not in ("started", "unknown"):
                raise InvalidTransition(f"action record {record_id} already finished: {previous}")
            await conn.execute(
                "UPDATE actions SET outcome = ?, finished_at = ?, detail = ? WHERE id = ?",
                (outcome, _ts(now), detail_json, record_id),
            )
            late = " (reported after it was marked unknown)" if previous == "unknown" else ""
            await self._insert_event(
                conn, now, "action_finished", f"{row['action_id']} on {row['target']}: {outcome}{late}",
                row["actor"], row["incident_id"],
                _json("details", {"record_id": record_id, "action_id": row["action_id"], "target": row["target"],
                                  "outcome": outcome, "detail": json.loads(detail_json)}),
            )
            updated = await self._one(conn, "SELECT * FROM actions WHERE id = ?", (record_id,))
            assert updated is not None
            return _action(updated)

        return await self._write(body)

    async def action(self, record_id: int) -> ActionRecord:
        rows = await self._read("SELECT * FROM actions WHERE id = ?", (record_id,))
        if not rows:
            raise JournalError(f"no action record with id {record_id!r}")
        return _action(rows[0])

    async def actions(self, incident_id: int | None = None) -> tuple[ActionRecord, ...]:
        if incident_id is None:
            rows = await self._read("SELECT * FROM actions ORDER BY id")
        else:
            rows = await self._read("SELECT * FROM actions WHERE incident_id = ? ORDER BY id", (incident_id,))
        return tuple(_action(r) for r in rows)

    async def open_actions(self) -> tuple[ActionRecord, ...]:
        """Actions recorded as started and not (yet) finished, by any console."""
        return tuple(_action(r) for r in await self._read("SELECT * FROM actions WHERE outcome = 'started' ORDER BY id"))

    async def mark_unfinished_unknown(self, stale_after: float = 60.0, *, everything: bool = False) -> tuple[ActionRecord, ...]:
        """Turn 'started' actions whose console is gone into 'unknown', each with a timeline event.

        A console counts as gone when its last sign of life (operator heartbeat, or the action's
        own start time when it never registered) is older than `stale_after` seconds. This
        console's own actions are never touched unless `everything` is set, which marks every
        unfinished action of every console: for use when the caller knows none is running.
        """
        if not isinstance(stale_after, (int, float)) or stale_after < 0:
            raise InvalidValue(f"stale_after must be a non-negative number of seconds, got {stale_after!r}")

        async def body(conn: aiosqlite.Connection, now: datetime) -> tuple[ActionRecord, ...]:
            rows = await conn.execute_fetchall(
                "SELECT a.*, o.last_seen AS operator_seen FROM actions a"
                " LEFT JOIN operators o ON o.origin = a.origin WHERE a.outcome = 'started' ORDER BY a.id"
            )
            cutoff = now - timedelta(seconds=stale_after)
            marked: list[ActionRecord] = []
            for row in rows:
                if not everything:
                    if row["origin"] == self.origin:
                        continue
                    signs = [_dt(row["started_at"]), _dt(row["operator_seen"])]
                    last_sign = max(s for s in signs if s is not None)
                    if last_sign >= cutoff:
                        continue
                await conn.execute(
                    "UPDATE actions SET outcome = 'unknown', finished_at = ? WHERE id = ? AND outcome = 'started'",
                    (_ts(now), row["id"]),
                )
                await self._insert_event(
                    conn, now, "action_finished", f"{row['action_id']} on {row['target']}: started, outcome unknown",
                    _who(self.actor), row["incident_id"],
                    _json("details", {"record_id": row["id"], "action_id": row["action_id"], "target": row["target"],
                                      "outcome": "unknown", "started_by": row["actor"], "started_at": row["started_at"],
                                      "reason": "the console that started it stopped before recording an outcome"}),
                )
                updated = await self._one(conn, "SELECT * FROM actions WHERE id = ?", (row["id"],))
                assert updated is not None
                marked.append(_action(updated))
            return tuple(marked)

        return await self._write(body)

    # ------------------------------------------------------------------ operators

    async def register_operator(self, role: str, actor: ActorLike | None = None) -> Operator:
        """Say who this console is and which role it holds; a change of role is a timeline event.

        Every later write from this console doubles as its heartbeat; call `heartbeat()` while
        idle so other consoles keep counting it as alive.
        """
        if role not in ROLES:
            raise InvalidValue(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        # The role has its own column here, so the operator is stored as plain user@host.
        if actor is None:
            who = self.actor.who
        elif isinstance(actor, Actor):
            who = actor.who
        else:
            who = _who(actor)

        async def body(conn: aiosqlite.Connection, now: datetime) -> Operator:
            row = await self._one(conn, "SELECT * FROM operators WHERE origin = ?", (self.origin,))
            stamp = _ts(now)
            if row is None:
                await conn.execute(
                    "INSERT INTO operators (origin, actor, role, joined_at, last_seen) VALUES (?, ?, ?, ?, ?)",
                    (self.origin, who, role, stamp, stamp),
                )
                summary, details = f"{who} joined as {role}", {"from": None, "to": role, "origin": self.origin}
            else:
                await conn.execute(
                    "UPDATE operators SET actor = ?, role = ?, last_seen = ? WHERE origin = ?",
                    (who, role, stamp, self.origin),
                )
                if row["role"] == role and row["actor"] == who:
                    summary = None
                else:
                    summary = f"{who} is now {role} (was {row['role']})"
                    details = {"from": row["role"], "to": role, "origin": self.origin}
            if summary is not None:
                await self._insert_event(conn, now, "role_changed", summary, who, None, _json("details", details))
            got = await self._one(conn, "SELECT * FROM operators WHERE origin = ?", (self.origin,))
            assert got is not None
            return _operator(got)

        return await self._write(body)

    def files_signature(self) -> tuple[tuple[int, int], ...]:
        """(mtime_ns, size) of the journal file and its WAL: a commit by any console changes
        one of them, so a poller can skip its query (a thread hop and a read transaction) while
        this stays the same. Missing files count as (0, 0)."""
        out = []
        for p in (self.path, Path(f"{self.path}-wal")):
            try:
                st = os.stat(p)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((0, 0))
        return tuple(out)

    async def heartbeat(self) -> bool:
        """Refresh this console's last_seen; False when it never registered."""

        async def body(conn: aiosqlite.Connection, now: datetime) -> bool:
            cur = await conn.execute("UPDATE operators SET last_seen = ? WHERE origin = ?", (_ts(now), self.origin))
            changed = cur.rowcount
            await cur.close()
            return changed > 0

        return await self._write(body)

    async def operators(self, active_within: float | None = None) -> tuple[Operator, ...]:
        rows = await self._read("SELECT * FROM operators ORDER BY joined_at, origin")
        found = tuple(_operator(r) for r in rows)
        if active_within is None:
            return found
        cutoff = self._now() - timedelta(seconds=active_within)
        return tuple(o for o in found if o.last_seen >= cutoff)
