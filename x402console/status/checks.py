"""One-shot, read-only checks for the headless status: proofs.db, the verification key, log tails.

Each function blocks (the collector runs them in threads), is bounded in time or size, never
writes anything and never raises for what it observes: the outcome says what was found and,
when something could not be looked at, why.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from x402console.actions.sqlite_ops import connect, first_problem, sqlite_error_text
from x402console.sources.logparse import LogRecord, parse_log_line
from x402console.sources.process_source import tail_offset
from x402console.sources.sanitize import sanitize_line

__all__ = ["DbCheck", "check_database", "VkCheck", "compare_vk", "read_log_tail", "parse_lines", "TAIL_LINES"]

TAIL_LINES = 5000
VK_MAX_BYTES = 16 * 1024 * 1024
# SQLite errors that mean the file itself is damaged (as opposed to busy, missing, no access).
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_CORRUPT_TEXT = ("malformed", "not a database", "corrupt")


@dataclass(frozen=True)
class DbCheck:
    integrity: str | None  # "ok" | "failed" | None (not checked)
    error: str | None = None  # first problem reported, or why it could not be checked
    observed: bool = True  # False: the check could not run (error says why)
    absent: bool = False  # no file at the configured path: nothing to check on this host


def _is_corruption(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    return any(name.startswith(c) for c in _CORRUPT) or any(t in text for t in _CORRUPT_TEXT)


def check_database(path: Path, budget_s: float = 3.0, busy_timeout_s: float = 1.0) -> DbCheck:
    """PRAGMA quick_check on a read-only connection (mode=ro: nothing is ever written, not even
    a hot journal's rollback), given up after ``budget_s`` so a huge file or a writer holding
    the lock cannot stall the status."""
    path = Path(path)
    if not path.exists():
        return DbCheck(None, f"{path} does not exist", observed=False, absent=True)
    deadline = time.monotonic() + budget_s
    try:
        con = connect(path, readonly=True, timeout=busy_timeout_s)
    except sqlite3.Error as exc:
        if _is_corruption(exc):
            return DbCheck("failed", sqlite_error_text(exc))
        return DbCheck(None, f"cannot open {path} read-only: {sqlite_error_text(exc)}", observed=False)
    try:
        con.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 1000)
        try:
            rows = [str(r[0]) for r in con.execute("PRAGMA quick_check(20)")]
        except sqlite3.Error as exc:
            if "interrupt" in str(exc).lower():
                return DbCheck(None, f"quick_check of {path} did not finish within {budget_s:g} s", observed=False)
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_ROLLBACK":
                return DbCheck(None, f"{path} has a hot journal (a writer stopped mid-transaction); "
                                     "not rolled back here because the status never writes", observed=False)
            if _is_corruption(exc):
                return DbCheck("failed", sqlite_error_text(exc))
            return DbCheck(None, f"quick_check of {path}: {sqlite_error_text(exc)}", observed=False)
        lines = [line for row in rows for line in row.splitlines() if line.strip()]
        if lines == ["ok"]:
            return DbCheck("ok")
        return DbCheck("failed", first_problem(lines))
    finally:
        con.close()


@dataclass(frozen=True)
class VkCheck:
    status: str | None  # "match" | "changed" | "missing" | None (not compared)
    detail: str = ""
    observed: bool = True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > VK_MAX_BYTES:
            raise OSError(f"{path} is {size} bytes, too large for a verification key")
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def compare_vk(current: Path, trusted: Path) -> VkCheck:
    """The runbook's `diff verification_key.json backup/verification_key.json`, by sha256."""
    current, trusted = Path(current), Path(trusted)
    if not current.exists():
        return VkCheck("missing", f"{current} does not exist")
    try:
        now_hash = _sha256(current)
    except OSError as exc:
        return VkCheck(None, f"cannot read {current}: {exc.strerror or exc}", observed=False)
    if not trusted.exists():
        return VkCheck(None, f"no trusted copy at {trusted} to compare {current} with", observed=False)
    try:
        trusted_hash = _sha256(trusted)
    except OSError as exc:
        return VkCheck(None, f"cannot read the trusted copy {trusted}: {exc.strerror or exc}", observed=False)
    if now_hash == trusted_hash:
        return VkCheck("match", f"sha256 {now_hash[:16]}")
    return VkCheck("changed", f"sha256 {now_hash[:16]} differs from the trusted copy's {trusted_hash[:16]}")


def read_log_tail(path: Path, lines: int = TAIL_LINES) -> list[bytes]:
    """The last ``lines`` lines of a log file (looking back at most a few MiB); raises OSError."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(tail_offset(f, size, lines))
        data = f.read(size)  # never more than what tail_offset looked back over
    out = data.split(b"\n")
    if out and out[-1] == b"":
        out.pop()
    return out[-lines:]


def parse_lines(raw: Iterable[bytes], replica: str, max_line_length: int = 2000) -> list[LogRecord]:
    return [parse_log_line(sanitize_line(line, max_line_length), replica) for line in raw]
