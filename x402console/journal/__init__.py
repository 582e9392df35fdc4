"""The incident journal: incidents, their timeline, checklist state and action records in one
SQLite file that every console attached to an incident shares."""

from x402console.journal.actor import Actor, current_actor
from x402console.journal.errors import (
    IncidentNotFound,
    InvalidTransition,
    InvalidValue,
    JournalBusy,
    JournalError,
    JournalFileError,
)
from x402console.journal.models import (
    EVENT_KINDS,
    OUTCOMES,
    ROLES,
    SEVERITIES,
    STATUSES,
    ActionRecord,
    ChecklistItemState,
    Incident,
    Operator,
    TimelineEvent,
)
from x402console.journal.schema import SCHEMA_VERSION
from x402console.journal.store import Journal, utc_now

__all__ = [
    "Actor", "current_actor", "IncidentNotFound", "InvalidTransition", "InvalidValue", "JournalBusy",
    "JournalError", "JournalFileError", "EVENT_KINDS", "OUTCOMES", "ROLES", "SEVERITIES", "STATUSES",
    "ActionRecord", "ChecklistItemState", "Incident", "Operator", "TimelineEvent", "SCHEMA_VERSION",
    "Journal", "utc_now",
]
