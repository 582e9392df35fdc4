"""proofs.db pieces on real files: schema, request hash, page damage, backup naming."""

from __future__ import annotations

import re
import sqlite3
import time

from x402console.drill.sim.backup import backup_database, backup_name, cleanup_old_backups
from x402console.drill.sim.dbdamage import damage_pages, proofs_pages
from x402console.drill.sim.store import SCHEMA, request_hash, sqlite_utc


def integrity_report(con: sqlite3.Connection) -> list[str]:
    """The rows PRAGMA integrity_check produces, then its error if it fails (as the shell shows)."""
    rows: list[str] = []
    try:
        for (row,) in con.execute("PRAGMA integrity_check"):
            rows.append(row)
    except sqlite3.DatabaseError as exc:
        rows.append(str(exc))
    return rows


def make_db(path, rows: int) -> None:
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    for i in range(rows):
        con.execute(
            "INSERT INTO proofs (request_hash, proof, public_inputs, client_ip, generation_time_ms, expires_at)"
            " VALUES (?, ?, '[]', '1.2.3.4', 50, ?)",
            (f"h{i:06d}", "p" * 400, sqlite_utc(time.time() + 3600)),
        )
    con.commit()
    con.close()


def test_request_hash_is_truncated_hex_of_colon_joined_fields() -> None:
    req = {"minAmount": "1000", "recipientKeyX": "123456789012345678901234567890", "currentTime": 5}
    h = request_hash(req)
    assert len(h) == 64 and bytes.fromhex(h).decode() == "1000:123456789012345678901234567"


def test_damage_leaves_page_one_but_breaks_integrity(tmp_path) -> None:
    db = tmp_path / "proofs.db"
    make_db(db, 200)
    _, roots, pages = proofs_pages(db)
    assert len(roots) == 5 and len(pages) > 5  # table, autoindex, 3 indexes; multi-page trees
    before_page1 = db.read_bytes()[100:4096]
    damaged = damage_pages(db, 4)
    assert len(damaged) == 4 and 1 not in damaged and roots[0] in damaged
    assert db.read_bytes()[100:4096] == before_page1
    con = sqlite3.connect(db)
    assert con.execute("SELECT name FROM sqlite_master WHERE name='proofs'").fetchone()  # still opens
    report = integrity_report(con)
    assert report != ["ok"] and any("btreeInitPage" in r or "malformed" in r for r in report)
    try:
        con.execute("SELECT COUNT(*), MAX(length(proof)) FROM proofs").fetchall()
        raised = ""
    except sqlite3.DatabaseError as exc:
        raised = str(exc)
    assert "malformed" in raised
    con.close()


def test_backup_is_a_byte_copy_with_the_real_name(tmp_path) -> None:
    db = tmp_path / "proofs.db"
    make_db(db, 10)
    path, size = backup_database(db, tmp_path / "backups")
    assert re.fullmatch(r"proofs_backup_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.db", path.name)
    assert path.read_bytes() == db.read_bytes() and size == db.stat().st_size
    assert backup_name(0).startswith("proofs_backup_19")


def test_retention_deletes_only_old_db_files(tmp_path) -> None:
    import os

    old, new, other = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.txt"
    for p in (old, new, other):
        p.write_text("x")
    eight_days = time.time() - 8 * 86400
    os.utime(old, (eight_days, eight_days))
    os.utime(other, (eight_days, eight_days))
    assert cleanup_old_backups(tmp_path, 7 * 86400) == [old]
    assert new.exists() and other.exists() and not old.exists()


def test_connections_commit_as_the_real_driver_does(tmp_path) -> None:
    """mattn/go-sqlite3 runs every connection at synchronous=NORMAL; the simulator and the
    console's delete do the same (1), not SQLite's FULL (2), and keep the rollback journal."""
    from x402console.actions import sqlite_ops
    from x402console.drill.sim.store import ProofStore

    db = tmp_path / "proofs.db"
    make_db(db, 1)
    store = ProofStore(db)
    con = store._connect()
    try:
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        con.close()
    con = sqlite_ops.connect(db, readonly=False, synchronous=sqlite_ops.PROVER_SYNCHRONOUS)
    try:
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        con.close()
    con = sqlite_ops.connect(db, readonly=False)
    try:
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # untouched unless asked
    finally:
        con.close()
