"""Errors the journal raises. All derive from JournalError so a caller can catch one type."""

from __future__ import annotations

from pathlib import Path


class JournalError(Exception):
    """Something the journal refused or could not do; the message says what and why."""


class JournalFileError(JournalError):
    """The journal file cannot be used (not SQLite, damaged, newer schema, unreadable)."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class JournalBusy(JournalError):
    """Another process held the write lock for longer than the journal is willing to wait."""


class IncidentNotFound(JournalError):
    def __init__(self, incident_id: object) -> None:
        super().__init__(f"no incident with id {incident_id!r}")
        self.incident_id = incident_id


class InvalidTransition(JournalError):
    """A lifecycle change that the incident's current state does not allow."""


class InvalidValue(JournalError, ValueError):
    """An argument outside what the journal accepts (severity, kind, role, JSON details...)."""
