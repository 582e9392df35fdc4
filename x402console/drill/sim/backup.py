"""Backups the way backup.go makes them: a plain byte copy plus fsync, named by local time.

It does not use SQLite's backup API, exactly like the real code, so a copy taken while another
process writes can be inconsistent; that is part of what a drill can run into.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

RETENTION_DAYS = 7


def backup_name(now: float | None = None) -> str:
    return time.strftime("proofs_backup_%Y-%m-%d_%H-%M-%S.db", time.localtime(time.time() if now is None else now))


def backup_database(db_path: Path, backup_dir: Path, now: float | None = None) -> tuple[Path, int]:
    """Copy db_path into backup_dir; returns (file, bytes written). Errors read like backup.go's."""
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"failed to create backup directory: {exc}") from None
    target = backup_dir / backup_name(now)
    try:
        source = open(db_path, "rb")
    except OSError as exc:
        raise OSError(f"failed to open source database: {exc}") from None
    with source:
        try:
            dest = open(target, "wb")
        except OSError as exc:
            raise OSError(f"failed to create backup file: {exc}") from None
        with dest:
            try:
                shutil.copyfileobj(source, dest, 1 << 20)
                dest.flush()
            except OSError as exc:
                raise OSError(f"failed to copy database: {exc}") from None
            try:
                os.fsync(dest.fileno())
            except OSError as exc:
                raise OSError(f"failed to sync backup file: {exc}") from None
            size = dest.tell()
    return target, size


def cleanup_old_backups(backup_dir: Path, retention_s: float, now: float | None = None) -> list[Path]:
    """Delete every *.db in backup_dir whose mtime is older than the retention period."""
    cutoff = (time.time() if now is None else now) - retention_s
    deleted: list[Path] = []
    try:
        entries = list(os.scandir(backup_dir))
    except OSError as exc:
        raise OSError(f"failed to read backup directory: {exc}") from None
    for entry in entries:
        if not entry.is_file() or not entry.name.endswith(".db"):
            continue
        try:
            if entry.stat().st_mtime < cutoff:
                os.remove(entry.path)
                deleted.append(Path(entry.path))
        except OSError:
            continue
    return deleted
