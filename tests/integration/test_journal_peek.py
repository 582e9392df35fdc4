"""The read-only look at the journal the checklist shows first (journal/peek.py), on real files:
what a real journal holds, and files it must give up on without touching."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from x402console.journal import SCHEMA_VERSION, Journal
from x402console.journal.peek import peek_journal

from tests.integration.test_journal_files import fingerprint


async def test_peek_reads_the_incidents_and_the_newest_open_ones_ticks(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = await Journal.open(path)
    try:
        first = await j.declare_incident("old outage", "P1", j.actor)
        await j.set_checklist(first.id, "detection.alert_acknowledged", True, j.actor)
        await j.resolve(first.id, j.actor)
        second = await j.declare_incident("slow proofs", "P2", j.actor, drill=True)
        await j.set_checklist(second.id, "detection.severity_assessed", True, j.actor)
        await j.set_checklist(second.id, "detection.oncall_notified", True, j.actor)
        await j.set_checklist(second.id, "detection.oncall_notified", False, j.actor)
        expected = await j.incidents()
        found = peek_journal(path)  # while the journal is open in WAL mode, as another console's would be
    finally:
        await j.close()
    assert found is not None
    assert found.incidents == expected
    assert found.focus_id == second.id
    assert found.checked == {"detection.severity_assessed": True, "detection.oncall_notified": False}


async def test_peek_with_no_open_incident_has_no_focus(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = await Journal.open(path)
    try:
        inc = await j.declare_incident("done", "P3", j.actor)
        await j.resolve(inc.id, j.actor)
    finally:
        await j.close()
    found = peek_journal(path)
    assert found is not None and found.focus_id is None and found.checked == {}
    assert [i.id for i in found.incidents] == [inc.id]


def test_a_missing_journal_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "journal.db"
    assert peek_journal(path) is None
    assert not path.parent.exists()


def test_files_that_are_not_this_journal_are_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "proofs.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE proofs (id INTEGER PRIMARY KEY, data BLOB)")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    for path in (other, garbage, text):
        before = fingerprint(path)
        assert peek_journal(path) is None
        assert fingerprint(path) == before


async def test_a_journal_of_a_newer_schema_is_left_to_the_full_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = await Journal.open(path)
    await j.declare_incident("future", "P2", j.actor)
    await j.close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    assert peek_journal(path) is None


async def test_peek_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = await Journal.open(path)
    inc = await j.declare_incident("x", "P2", j.actor)
    await j.close()
    before = path.read_bytes()
    found = peek_journal(path)
    assert found is not None and found.focus_id == inc.id
    assert path.read_bytes() == before
