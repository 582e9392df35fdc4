"""A one-shot, read-only look at the journal, for the console's first frames.

Opening the journal properly (aiosqlite, identity checks, WAL, migrations, registering the
operator) is a dozen round trips between the event loop and SQLite's thread; while the panes
draw their first data the loop answers each one late, and the checklist waited half a second
for it. This reads the same incidents and checklist rows in one call on a worker thread, so the
checklist shows the open incident's state at once. It never writes and never decides anything:
a file that is missing, not a journal of this schema version, or busy gives None, and the full
open then reports whatever is wrong in its usual words.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from x402console.journal.models import Incident
from x402console.journal.schema import APPLICATION_ID, SCHEMA_VERSION
from x402console.journal.store import incident_from_row

__all__ = ["JournalPeek", "peek_journal"]


class JournalPeek:
    """The incidents in declaration order, and the recorded ticks of the newest open one."""

    __slots__ = ("incidents", "focus_id", "checked")

    def __init__(self, incidents: tuple[Incident, ...], focus_id: int | None, checked: dict[str, bool]) -> None:
        self.incidents, self.focus_id, self.checked = incidents, focus_id, checked


def peek_journal(path: Path | str, timeout: float = 0.5) -> JournalPeek | None:
    path = Path(path).expanduser()
    if not path.is_file():
        return None  # the full open creates it
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
    except sqlite3.Error:
        return None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("BEGIN")  # one snapshot for every read below
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if app_id != APPLICATION_ID or version != SCHEMA_VERSION:
            return None
        incidents = tuple(incident_from_row(r) for r in conn.execute("SELECT * FROM incidents ORDER BY id"))
        open_ids = [i.id for i in incidents if i.is_open]
        focus = open_ids[-1] if open_ids else None
        checked: dict[str, bool] = {}
        if focus is not None:
            rows = conn.execute("SELECT item_id, checked FROM checklist WHERE incident_id = ?", (focus,))
            checked = {r["item_id"]: bool(r["checked"]) for r in rows}
        return JournalPeek(incidents, focus, checked)
    except (sqlite3.Error, KeyError, ValueError, TypeError):
        return None  # damaged or half-written: the full open says what is wrong
    finally:
        conn.close()
