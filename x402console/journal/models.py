"""What the journal hands out: frozen snapshots of committed rows.

JSON payloads are kept as their text and decoded on each access, so no caller can change a
snapshot (or another caller's view of it) by mutating a dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SEVERITIES = ("P0", "P1", "P2", "P3")
STATUSES = ("declared", "acknowledged", "mitigated", "resolved")
EVENT_KINDS = (
    "observation",
    "action_started",
    "action_finished",
    "note",
    "checklist",
    "severity_changed",
    "status_changed",
    "escalation",
    "role_changed",
    "system",
)
OUTCOMES = ("started", "succeeded", "failed", "cancelled", "refused", "unknown")
ROLES = ("commander", "scribe", "observer")


@dataclass(frozen=True)
class Incident:
    id: int
    title: str
    severity: str
    status: str
    security: bool
    drill: bool
    runbook_incident: int | None
    declared_by: str
    created_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"


@dataclass(frozen=True)
class TimelineEvent:
    id: int
    incident_id: int | None  # None: an environment-wide observation
    ts: datetime
    kind: str
    actor: str
    summary: str
    details_json: str
    origin: str  # the console instance that wrote it
    origin_seq: int

    @property
    def details(self) -> dict[str, Any]:
        return json.loads(self.details_json)


@dataclass(frozen=True)
class ChecklistItemState:
    incident_id: int
    item_id: str
    checked: bool
    actor: str
    ts: datetime


@dataclass(frozen=True)
class ActionRecord:
    id: int
    incident_id: int | None
    action_id: str
    target: str
    actor: str
    origin: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    detail_json: str

    @property
    def detail(self) -> dict[str, Any]:
        return json.loads(self.detail_json)

    @property
    def finished(self) -> bool:
        return self.outcome != "started"


@dataclass(frozen=True)
class Operator:
    origin: str  # console instance uuid
    actor: str
    role: str
    joined_at: datetime
    last_seen: datetime
