"""proofs.db and its backups as a real simulator writes them."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time

from tests.rig.sim import sim_factory, xff  # noqa: F401
from x402console.drill.payment import make_request

BACKUP_NAME = re.compile(r"proofs_backup_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.db")


def generate(sim, n: int, ip: str = "203.0.113.30") -> list[dict]:
    rng = random.Random()
    bodies = []
    with sim.client() as c:
        for i in range(n):
            r = c.post("/generate-proof", json=make_request(rng, recipient_pool=10**9), headers=xff(f"{ip[:-1]}{i}"))
            assert r.status_code == 200, r.text
            bodies.append(r.json())
    return bodies


def test_schema_and_rows(sim_factory) -> None:  # noqa: F811
    sim = sim_factory()
    bodies = generate(sim, 3)
    con = sqlite3.connect(sim.db_path)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"proofs", "proof_verifications", "rate_limit_log"} <= tables
        cols = {r[1]: (r[2], r[3], r[5]) for r in con.execute("PRAGMA table_info(proofs)")}
        assert cols == {
            "id": ("INTEGER", 0, 1),
            "request_hash": ("TEXT", 1, 0),
            "proof": ("TEXT", 1, 0),
            "public_inputs": ("TEXT", 1, 0),
            "client_ip": ("TEXT", 1, 0),
            "generation_time_ms": ("INTEGER", 1, 0),
            "created_at": ("TIMESTAMP", 1, 0),
            "expires_at": ("TIMESTAMP", 1, 0),
        }
        indexes = {r[1]: r[2] for r in con.execute("PRAGMA index_list(proofs)")}
        assert {"idx_request_hash", "idx_created_at", "idx_expires_at"} <= set(indexes)
        assert any(unique for name, unique in indexes.items() if name.startswith("sqlite_autoindex"))
        assert {r[1] for r in con.execute("PRAGMA index_list(rate_limit_log)")} == {"idx_client_ip", "idx_exceeded_at"}
        fks = con.execute("PRAGMA foreign_key_list(proof_verifications)").fetchall()
        assert fks[0][2] == "proofs" and fks[0][6] == "CASCADE"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # no WAL, as in database.go
        rows = con.execute(
            "SELECT request_hash, proof, public_inputs, client_ip, generation_time_ms, created_at, expires_at,"
            " expires_at > datetime('now'), (julianday(expires_at) - julianday(created_at)) * 86400 FROM proofs"
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == 3
    by_proof = {r[1]: r for r in rows}
    for body in bodies:
        row = by_proof[body["proof"]]
        assert len(row[0]) == 64 and bytes.fromhex(row[0]).decode().startswith(body["publicInputs"][0] + ":")
        assert json.loads(row[2]) == body["publicInputs"]
        assert row[3].startswith("203.0.113.")
        assert row[4] == body["generationTimeMs"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[6])
        assert row[7] == 1 and 3598 <= row[8] <= 3602


def test_backups_on_demand_and_scheduled(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--backup-interval", "0.5")
    generate(sim, 2)
    path = sim.control.backup()
    assert BACKUP_NAME.fullmatch(path.rsplit("/", 1)[1])
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("SELECT COUNT(*) FROM proofs").fetchone()[0] == 2
    finally:
        con.close()
    backups_dir = sim.state_dir / "backups"
    # one at start, then every 0.5 s; names have one-second resolution, so wait for 3 distinct
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and len(list(backups_dir.glob("*.db"))) < 3:
        time.sleep(0.1)
    names = sorted(p.name for p in backups_dir.glob("*.db"))
    assert len(names) >= 3 and all(BACKUP_NAME.fullmatch(n) for n in names)
    assert "Database backup completed successfully" in sim.stderr


def test_expired_proofs_are_cleaned_up(sim_factory) -> None:  # noqa: F811
    sim = sim_factory("--proof-ttl", "1", "--cleanup-interval", "0.5")
    generate(sim, 2)

    def count() -> int:
        con = sqlite3.connect(sim.db_path, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM proofs").fetchone()[0]
        finally:
            con.close()

    assert count() == 2
    assert sim.wait_for_output(lambda: count() == 0, timeout=8)
    # The two proofs may expire in the same sweep or in two: the sweeps together deleted both.
    cleaned = [int(n) for n in re.findall(r"Cleaned up (\d+) expired proofs", sim.stderr)]
    assert sum(cleaned) == 2


def test_two_replicas_share_one_database(sim_factory, tmp_path) -> None:  # noqa: F811
    shared = tmp_path / "shared.db"
    a = sim_factory("--db", str(shared))
    b = sim_factory("--db", str(shared))
    generate(a, 3, "203.0.113.40")
    generate(b, 3, "203.0.113.50")
    con = sqlite3.connect(shared)
    try:
        assert con.execute("SELECT COUNT(*) FROM proofs").fetchone()[0] == 6
    finally:
        con.close()
    assert "Failed to store" not in a.stderr + b.stderr
