"""The status' read-only checks on real files: proofs.db, the verification key, the journal,
log tails. Each must say what it found without writing anything."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
from pathlib import Path

from x402console.drill.sim.dbdamage import damage_pages
from x402console.journal.store import Journal
from x402console.status.checks import check_database, compare_vk, read_log_tail
from x402console.status.journal_read import open_incidents


def _proofs_db(path: Path, rows: int = 3000) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE proofs (id INTEGER PRIMARY KEY, request_hash TEXT UNIQUE, proof TEXT, created_at TEXT)")
    con.executemany("INSERT INTO proofs (request_hash, proof, created_at) VALUES (?, ?, datetime('now'))",
                    ((f"h{i:08d}", "p" * 200) for i in range(rows)))
    con.execute("CREATE INDEX proofs_by_created ON proofs (created_at)")
    con.commit()
    con.close()
    return path


def _fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_sound_database_is_ok_and_left_untouched(tmp_path):
    db = _proofs_db(tmp_path / "proofs.db")
    before = _fingerprint(tmp_path)
    result = check_database(db)
    assert (result.integrity, result.error, result.observed) == ("ok", None, True)
    assert _fingerprint(tmp_path) == before  # no byte changed, no side file made


def test_damaged_pages_fail_the_check(tmp_path):
    db = _proofs_db(tmp_path / "proofs.db")
    assert damage_pages(db, 4, random.Random(7))
    before = _fingerprint(tmp_path)
    result = check_database(db)
    assert result.integrity == "failed"
    assert result.error
    assert _fingerprint(tmp_path) == before


def test_a_file_that_is_not_a_database_is_damage(tmp_path):
    db = tmp_path / "proofs.db"
    db.write_bytes(os.urandom(8192))
    result = check_database(db)
    assert result.integrity == "failed"
    assert "not a database" in (result.error or "")


def test_missing_database_is_not_observed_and_not_an_error(tmp_path):
    result = check_database(tmp_path / "nope.db")
    assert result.integrity is None and not result.observed and result.absent
    assert not (tmp_path / "nope.db").exists()


def test_a_writer_holding_the_lock_makes_it_unobserved_within_the_budget(tmp_path):
    db = _proofs_db(tmp_path / "proofs.db", rows=10)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        result = check_database(db, budget_s=1.0, busy_timeout_s=0.2)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.integrity is None and not result.observed
    assert "lock" in (result.error or "").lower()


def test_verification_key_comparison(tmp_path):
    vk, trusted = tmp_path / "verification_key.json", tmp_path / "backup" / "verification_key.json"
    trusted.parent.mkdir()
    vk.write_text('{"protocol": "groth16", "nPublic": 5}')
    trusted.write_text('{"protocol": "groth16", "nPublic": 5}')
    assert compare_vk(vk, trusted).status == "match"
    vk.write_text('{"protocol": "groth16", "nPublic": 6}')
    changed = compare_vk(vk, trusted)
    assert changed.status == "changed" and "differs" in changed.detail
    trusted.unlink()
    no_copy = compare_vk(vk, trusted)
    assert no_copy.status is None and not no_copy.observed and "trusted" in no_copy.detail
    vk.unlink()
    assert compare_vk(vk, trusted).status == "missing"


def test_log_tail_returns_the_last_lines(tmp_path):
    log = tmp_path / "prover-1.log"
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(10_000)))
    tail = read_log_tail(log, 3)
    assert tail == [b"line 9997", b"line 9998", b"line 9999"]
    log.write_bytes(b"a\nb\nunfinished")
    assert read_log_tail(log, 5) == [b"a", b"b", b"unfinished"]


def test_open_incidents_from_a_real_journal_without_writing_to_it(tmp_path):
    path = tmp_path / "journal.db"

    async def fill() -> None:
        journal = await Journal.open(path)
        try:
            await journal.declare_incident("proofs.db corrupt", "P1", "alice", runbook_incident=5)
            done = await journal.declare_incident("old one", "P3", "alice")
            await journal.resolve(done.id, "alice")
            await journal.declare_incident("vk changed", "P0", "bob", security=True, runbook_incident=4)
            # while a console has it open (WAL files present)
            found, problem = open_incidents(path)
            assert problem is None and [i.title for i in found] == ["proofs.db corrupt", "vk changed"]
        finally:
            await journal.close()

    asyncio.run(fill())
    before = _fingerprint(tmp_path)
    found, problem = open_incidents(path)
    assert problem is None
    assert [(i.severity, i.status, i.security, i.runbook_incident) for i in found] == [
        ("P1", "declared", False, 5), ("P0", "declared", True, 4)]
    assert found[1].as_dict()["title"] == "vk changed"
    assert _fingerprint(tmp_path) == before  # not even -wal/-shm side files


def test_missing_journal_is_no_incident_and_a_foreign_file_is_a_problem(tmp_path):
    assert open_incidents(tmp_path / "journal.db") == ([], None)
    other = _proofs_db(tmp_path / "proofs.db", rows=1)
    found, problem = open_incidents(other)
    assert found == [] and "not an x402console journal" in (problem or "")
