"""What a post-mortem draft holds: facts read from the journal, before any rendering.

Everything here is a frozen snapshot, so one PostMortem can be rendered (Markdown today,
something else later) or inspected by tests without touching the journal again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from x402console.journal.models import Incident, TimelineEvent

# Every passage only a person can write carries this marker, in a quoted line
# "> TODO(author): ..." or a table cell; `grep -n 'TODO(author)' postmortem-*.md` lists what
# is left to write, and a finished post-mortem has none.
TODO_MARKER = "TODO(author)"


@dataclass(frozen=True)
class Milestone:
    name: str  # "First signal", "Declared", "Acknowledged", "Mitigated", "Resolved"
    at: datetime | None  # None: not yet
    since_signal: timedelta | None
    since_declared: timedelta | None
    source: str  # how the time was derived (which event)


@dataclass(frozen=True)
class Reopen:
    at: datetime
    actor: str
    note: str | None
    previous: tuple[tuple[str, datetime | None], ...]  # (milestone, time) the reopen cleared


@dataclass(frozen=True)
class SeverityChange:
    at: datetime
    old: str | None  # None: the declaration
    new: str
    actor: str
    reason: str


@dataclass(frozen=True)
class SeverityPeriod:
    severity: str
    start: datetime
    end: datetime | None  # None: the last severity
    duration: timedelta  # time the incident was open at this severity (resolved gaps excluded)


@dataclass(frozen=True)
class TargetCheck:
    which: str  # "response" | "resolution"
    severity: str
    minutes: int | None  # None: best effort
    due_at: datetime | None
    done_at: datetime | None
    state: str  # "met" | "missed" | "not yet" | "overdue" | "best effort"


@dataclass(frozen=True)
class ActionEntry:
    record_id: int
    action_id: str
    target: str
    actor: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str  # journal OUTCOMES
    summary: str


@dataclass(frozen=True)
class ChecklistEntry:
    item_id: str
    text: str
    checked: bool
    actor: str | None
    at: datetime | None


@dataclass(frozen=True)
class ChecklistPhaseState:
    id: str
    title: str
    items: tuple[ChecklistEntry, ...]

    @property
    def done(self) -> int:
        return sum(1 for i in self.items if i.checked)

    @property
    def total(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class EvidenceFile:
    path: str
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class EvidenceBundle:
    record_id: int
    action_id: str
    target: str
    actor: str
    finished_at: datetime | None
    summary: str
    bundle_dir: str | None
    manifest: str | None
    manifest_sha256: str | None
    manifest_json: str | None
    files: tuple[EvidenceFile, ...]
    missing: tuple[str, ...]  # parts the bundle could not collect ("part item: reason")
    artifacts: tuple[str, ...]


@dataclass(frozen=True)
class Responder:
    who: str  # user@host
    roles: tuple[str, ...]  # roles seen in the journal, sorted


@dataclass(frozen=True)
class ActionItem:
    text: str
    owner: str | None  # None: the author must assign one
    deadline: str | None
    source: str  # where the item came from ("note by ... at ...", "checklist")


@dataclass(frozen=True)
class PostMortem:
    incident: Incident
    generated_at: datetime
    environment: str
    drill: bool
    security: bool
    runbook_title: str | None
    runbook_prevention: tuple[str, ...]  # the runbook's "Prevention" lines for this incident
    milestones: tuple[Milestone, ...]
    first_signal: TimelineEvent | None  # the observation that counts as detection, if any
    reopens: tuple[Reopen, ...]
    severity_changes: tuple[SeverityChange, ...]
    severity_periods: tuple[SeverityPeriod, ...]
    peak_severity: str
    targets: tuple[TargetCheck, ...]
    actions: tuple[ActionEntry, ...]
    checklist: tuple[ChecklistPhaseState, ...]
    evidence: tuple[EvidenceBundle, ...]
    escalations: tuple[TimelineEvent, ...]
    notes: tuple[TimelineEvent, ...]
    observations: tuple[TimelineEvent, ...]  # before declaration, inside the detection window
    responders: tuple[Responder, ...]
    action_items: tuple[ActionItem, ...]
    disruptive_before_evidence: tuple[ActionEntry, ...]  # security: what ran before evidence
    timeline: tuple[TimelineEvent, ...]
    review_required: bool
    review_by: date | None

    def milestone(self, name: str) -> Milestone:
        for m in self.milestones:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def outcome_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.actions:
            counts[a.outcome] = counts.get(a.outcome, 0) + 1
        return dict(sorted(counts.items()))
