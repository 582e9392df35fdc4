"""The open incidents of the journal, read without writing a byte to it.

journal.store.Journal.open sets WAL mode, migrates and registers: right for the console, wrong
for a status command that may run beside it (or against a copy). Here the file is opened
with mode=ro and a short busy timeout (immutable when no console has it open, so that not
even SQLite's side files appear); a missing journal is no incident, not an error.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

__all__ = ["OpenIncident", "open_incidents"]

_APPLICATION_ID = 0x78343032  # journal.schema.APPLICATION_ID ("x402"), kept here to stay light


@dataclass(frozen=True)
class OpenIncident:
    id: int
    title: str
    severity: str
    status: str
    security: bool
    drill: bool
    runbook_incident: int | None
    created_at: str

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "status": self.status,
            "security": self.security,
            "drill": self.drill,
            "runbook_incident": self.runbook_incident,
            "created_at": self.created_at,
        }


def open_incidents(path: Path, busy_timeout_s: float = 1.0) -> tuple[list[OpenIncident], str | None]:
    """(incidents not resolved, oldest first; problem or None). Never raises."""
    path = Path(path).expanduser()
    if not path.exists():
        return [], None
    # A journal in WAL mode with no -wal file beside it is not open anywhere: reading it as
    # immutable then takes no lock and, unlike mode=ro, creates no -wal/-shm side files.
    immutable = not Path(f"{path}-wal").exists()
    uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        con = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        return [], f"journal {path}: cannot open read-only: {exc}"
    try:
        (app_id,) = con.execute("PRAGMA application_id").fetchone()
        if app_id != _APPLICATION_ID:
            return [], f"journal {path}: not an x402console journal (application_id {app_id:#x})"
        rows = con.execute(
            "SELECT id, title, severity, status, security, drill, runbook_incident, created_at "
            "FROM incidents WHERE status != 'resolved' ORDER BY id"
        ).fetchall()
    except sqlite3.Error as exc:
        return [], f"journal {path}: cannot read incidents: {exc}"
    finally:
        con.close()
    return [
        OpenIncident(int(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), bool(r[5]),
                     int(r[6]) if r[6] is not None else None, str(r[7]))
        for r in rows
    ], None
