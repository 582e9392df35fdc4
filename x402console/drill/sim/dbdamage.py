"""Real damage to proofs.db for the db_corruption fault.

The fault has to look like what Incident 5 describes: the file still opens (page 1 and the
schema are intact) but PRAGMA integrity_check reports errors and statements touching the proofs
table fail with `database disk image is malformed`. So whole b-tree pages of the proofs table
and its indexes are overwritten with garbage whose first byte is not a valid page type.
"""

from __future__ import annotations

import os
import random
import sqlite3
import struct
from pathlib import Path

_BTREE_INTERIOR = (0x02, 0x05)
_BTREE_TYPES = (0x02, 0x05, 0x0A, 0x0D)


def _page(data: bytes, pgno: int, page_size: int) -> bytes:
    return data[(pgno - 1) * page_size : pgno * page_size]


def _walk(data: bytes, root: int, page_size: int, seen: set[int]) -> list[int]:
    """All pages of the b-tree rooted at `root` (interior pages listed before their children)."""
    pages: list[int] = []
    stack = [root]
    total = len(data) // page_size
    while stack:
        pgno = stack.pop()
        if pgno in seen or not 1 <= pgno <= total:
            continue
        seen.add(pgno)
        page = _page(data, pgno, page_size)
        hdr = 100 if pgno == 1 else 0
        kind = page[hdr]
        if kind not in _BTREE_TYPES:
            continue
        pages.append(pgno)
        if kind in _BTREE_INTERIOR:
            ncells = struct.unpack_from(">H", page, hdr + 3)[0]
            stack.append(struct.unpack_from(">I", page, hdr + 8)[0])
            for i in range(ncells):
                ptr = struct.unpack_from(">H", page, hdr + 12 + 2 * i)[0]
                if ptr + 4 <= len(page):
                    stack.append(struct.unpack_from(">I", page, ptr)[0])
    return pages


def proofs_pages(db_path: Path, table: str = "proofs") -> tuple[int, list[int], list[int]]:
    """(page size, root pages, all b-tree pages) of `table` and its indexes."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
    try:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        roots = [
            r[0]
            for r in con.execute(
                "SELECT rootpage FROM sqlite_master WHERE tbl_name = ? AND rootpage > 1"
                " ORDER BY type = 'table' DESC, name LIKE 'sqlite_autoindex%' DESC, name",
                (table,),
            )
        ]
    finally:
        con.close()
    data = Path(db_path).read_bytes()
    seen: set[int] = set()
    pages: list[int] = []
    for root in roots:
        pages += _walk(data, root, page_size, seen)
    return page_size, roots, pages


def damage_pages(db_path: Path, count: int, rng: random.Random | None = None) -> list[int]:
    """Overwrite up to `count` b-tree pages of proofs (roots first) with garbage; returns them."""
    rng = rng or random.Random()
    page_size, roots, pages = proofs_pages(db_path)
    # the table root and the UNIQUE index root are hit by every INSERT OR REPLACE and SELECT
    chosen = [p for p in roots[:2] if p != 1][:count]
    rest = [p for p in pages if p not in chosen and p != 1]
    rng.shuffle(rest)
    chosen += rest[: max(0, count - len(chosen))]
    with open(db_path, "r+b") as fh:
        for pgno in sorted(chosen):
            garbage = bytearray(rng.randbytes(page_size))
            garbage[0] = rng.choice((0x00, 0x2A, 0x7F, 0xFF))  # never a b-tree page type
            fh.seek((pgno - 1) * page_size)
            fh.write(garbage)
        # bump the file change counter (and version-valid-for) so every connection, in this
        # process or another replica, drops its page cache and reads the damaged pages
        fh.seek(24)
        counter = struct.unpack(">I", fh.read(4))[0]
        new = struct.pack(">I", (counter + 1) & 0xFFFFFFFF)
        fh.seek(24)
        fh.write(new)
        fh.seek(92)
        fh.write(new)
        fh.flush()
        os.fsync(fh.fileno())
    return sorted(chosen)
