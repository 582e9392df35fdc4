"""proofs.db: the schema of database.go made valid, written from one worker thread.

Every statement, the byte-copy backups and the fault damage run on a single thread with one
connection, so the event loop never blocks on SQLite and the file is never copied or damaged
halfway through this process's own write. Like database.go there is no PRAGMA of its own: the
journal mode stays the default. What the prover's driver (mattn/go-sqlite3) does on every
connection is done here too: a 5 s busy timeout, which lets two replicas share the file, and
`PRAGMA synchronous = NORMAL` (the driver's default, "always executed"), so a commit in rollback
mode syncs the journal once rather than twice (SQLite's own default, FULL).
"""

from __future__ import annotations

import asyncio
import binascii
import datetime as _dt
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from x402console.drill.payment import REQUEST_FIELDS
from x402console.drill.sim import backup as backup_mod
from x402console.drill.sim.dbdamage import damage_pages

T = TypeVar("T")

BUSY_TIMEOUT_S = 5.0
# mattn/go-sqlite3 v1.14.18 Open(): `synchronousMode := "NORMAL"` unless the DSN says otherwise.
PROVER_SYNCHRONOUS = "NORMAL"
MAX_PENDING_LOG_WRITES = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS proofs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_hash TEXT NOT NULL UNIQUE,
    proof TEXT NOT NULL,
    public_inputs TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    generation_time_ms INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_request_hash ON proofs (request_hash);
CREATE INDEX IF NOT EXISTS idx_created_at ON proofs (created_at);
CREATE INDEX IF NOT EXISTS idx_expires_at ON proofs (expires_at);

CREATE TABLE IF NOT EXISTS proof_verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    proof_id INTEGER NOT NULL,
    client_ip TEXT NOT NULL,
    verified_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    verification_result TEXT NOT NULL,
    FOREIGN KEY (proof_id) REFERENCES proofs(id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS rate_limit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_ip TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    exceeded_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_client_ip ON rate_limit_log (client_ip);
CREATE INDEX IF NOT EXISTS idx_exceeded_at ON rate_limit_log (exceeded_at);
"""

# generateRequestHash joins every request field, in ProofRequest order.
REQUEST_HASH_FIELDS = REQUEST_FIELDS


class StoreInitError(Exception):
    pass


def request_hash(req: dict[str, Any]) -> str:
    """generateRequestHash as intended: hex of the colon-joined fields, cut to 64 characters.

    Only the first 32 bytes of the text count, so requests sharing minAmount and most of
    recipientKeyX collide and INSERT OR REPLACE keeps one row for them, as the real code would.
    """
    data = ":".join(str(req.get(k, "")) for k in REQUEST_HASH_FIELDS)
    return binascii.hexlify(data.encode("utf-8", "surrogateescape")).decode()[:64]


def sqlite_utc(t: float) -> str:
    """'YYYY-MM-DD HH:MM:SS' in UTC, comparable with datetime('now') as text."""
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _first_line(text: str) -> str:
    return " ".join(str(text).split())[:200]


def quick_check(con: sqlite3.Connection) -> list[str]:
    """PRAGMA quick_check's complaints; [] when the file is sound.

    SQLite reports what it found row by row and may then fail the statement itself, the way the
    sqlite3 shell prints the report followed by `database disk image is malformed`.
    """
    rows: list[str] = []
    try:
        for (row,) in con.execute("PRAGMA quick_check"):
            rows.append(str(row))
    except sqlite3.DatabaseError as exc:
        rows.append(str(exc))
    return [] if rows == ["ok"] else rows


class ProofStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proofs-db")
        self._con: sqlite3.Connection | None = None
        self._pending_logs = 0
        self._pending_lock = threading.Lock()

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- lifecycle ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        con.execute(f"PRAGMA synchronous = {PROVER_SYNCHRONOUS}")
        return con

    def _open(self) -> None:
        try:
            con = self._connect()
        except sqlite3.Error as exc:
            raise StoreInitError(f"failed to ping database: {exc}") from None
        try:
            problems = quick_check(con)
            if problems:
                raise StoreInitError(f"database disk image is malformed (quick_check: {_first_line(problems[0])})")
            # one transaction: a fresh file costs one journal sync instead of one per statement
            con.executescript(f"BEGIN;\n{SCHEMA}\nCOMMIT;")
        except sqlite3.Error as exc:
            con.close()
            raise StoreInitError(f"failed to initialize schema: {exc}") from None
        except StoreInitError:
            con.close()
            raise
        self._con = con

    async def open(self) -> None:
        await self._run(self._open)

    def _reopen(self) -> None:
        if self._con is not None:
            self._con.close()
        self._con = self._connect()

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    async def close(self) -> None:
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- statements ---------------------------------------------------------------------------
    def _store(self, row: tuple[Any, ...]) -> None:
        assert self._con is not None
        self._con.execute(
            "INSERT OR REPLACE INTO proofs"
            " (request_hash, proof, public_inputs, client_ip, generation_time_ms, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )

    async def store_proof(
        self, req_hash: str, proof: str, public_inputs: str, client_ip: str, ms: int, expires_at: str
    ) -> str | None:
        """None on success, else the driver's error text (the caller logs it, the request goes on)."""
        try:
            await self._run(self._store, (req_hash, proof, public_inputs, client_ip, ms, expires_at))
        except (sqlite3.Error, RuntimeError) as exc:
            return str(exc)
        return None

    def _log_rate_limit(self, ip: str, endpoint: str) -> None:
        try:
            assert self._con is not None
            self._con.execute("INSERT INTO rate_limit_log (client_ip, endpoint) VALUES (?, ?)", (ip, endpoint))
        except sqlite3.Error:
            pass
        finally:
            with self._pending_lock:
                self._pending_logs -= 1

    def log_rate_limit(self, ip: str, endpoint: str) -> None:
        """Fire and forget; dropped when a 429 flood gets ahead of the disk."""
        with self._pending_lock:
            if self._pending_logs >= MAX_PENDING_LOG_WRITES:
                return
            self._pending_logs += 1
        try:
            self._executor.submit(self._log_rate_limit, ip, endpoint)
        except RuntimeError:
            with self._pending_lock:
                self._pending_logs -= 1

    def _cleanup(self) -> int:
        assert self._con is not None
        return self._con.execute("DELETE FROM proofs WHERE expires_at < datetime('now')").rowcount

    async def cleanup_expired(self) -> int:
        return await self._run(self._cleanup)

    async def backup(self, backup_dir: Path) -> tuple[Path, int]:
        return await self._run(backup_mod.backup_database, self.path, backup_dir)

    async def cleanup_backups(self, backup_dir: Path, retention_s: float) -> list[Path]:
        return await self._run(backup_mod.cleanup_old_backups, backup_dir, retention_s)

    def _damage(self, pages: int, seed: int | None) -> list[int]:
        damaged = damage_pages(self.path, pages, random.Random(seed))
        self._reopen()  # drop this connection's page cache
        return damaged

    async def damage(self, pages: int, seed: int | None = None) -> list[int]:
        return await self._run(self._damage, pages, seed)


def expires_at(ttl_s: float, now: float | None = None) -> tuple[str, float]:
    t = (time.time() if now is None else now) + ttl_s
    return sqlite_utc(t), t
