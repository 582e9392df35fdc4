"""The runbook's incident-response checklist as data (checklist.toml), and progress through it.

Pure: the checklist is read once from the package; `progress` and `next_unchecked` take the
state as a plain mapping so the journal, the UI and drill scoring can all feed it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class ChecklistError(ValueError):
    """The checklist data is malformed; the message names the file and the offending entry."""


class UnknownChecklistItem(KeyError):
    """An item id that the checklist does not have."""

    def __init__(self, item_id: object) -> None:
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"unknown checklist item {self.item_id!r} (ids look like 'detection.alert_acknowledged')"


@dataclass(frozen=True)
class ChecklistItem:
    id: str  # "<phase>.<item>", the key the journal stores
    phase: str
    text: str


@dataclass(frozen=True)
class ChecklistPhase:
    id: str
    title: str
    items: tuple[ChecklistItem, ...]


@dataclass(frozen=True)
class PhaseProgress:
    phase: str
    title: str
    done: int
    total: int

    @property
    def complete(self) -> bool:
        return self.done == self.total


def parse_checklist(text: str, source: str = "checklist.toml") -> tuple[ChecklistPhase, ...]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChecklistError(f"{source}: not valid TOML: {exc}") from None
    raw_phases = data.get("phase")
    if not isinstance(raw_phases, list) or not raw_phases:
        raise ChecklistError(f"{source}: needs at least one [[phase]] table")
    phases: list[ChecklistPhase] = []
    seen_phases: set[str] = set()
    seen_items: set[str] = set()
    for n, raw in enumerate(raw_phases, start=1):
        where = f"{source}: phase {n}"
        if not isinstance(raw, dict):
            raise ChecklistError(f"{where}: must be a table")
        pid = raw.get("id")
        if not isinstance(pid, str) or not _ID.match(pid):
            raise ChecklistError(f"{where}: id must be lower_snake_case text, got {pid!r}")
        where = f"{source}: phase {pid!r}"
        if pid in seen_phases:
            raise ChecklistError(f"{where}: phase id used twice")
        seen_phases.add(pid)
        title = raw.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ChecklistError(f"{where}: title must be non-empty text")
        raw_items = raw.get("items")
        if not isinstance(raw_items, list) or not raw_items:
            raise ChecklistError(f"{where}: needs a non-empty items list")
        items: list[ChecklistItem] = []
        for m, ri in enumerate(raw_items, start=1):
            if not isinstance(ri, dict):
                raise ChecklistError(f"{where}: item {m} must be a table {{ id = ..., text = ... }}")
            iid, itext = ri.get("id"), ri.get("text")
            if not isinstance(iid, str) or not _ID.match(iid):
                raise ChecklistError(f"{where}: item {m}: id must be lower_snake_case text, got {iid!r}")
            if not isinstance(itext, str) or not itext.strip():
                raise ChecklistError(f"{where}: item {iid!r}: text must be non-empty text")
            full = f"{pid}.{iid}"
            if full in seen_items:
                raise ChecklistError(f"{where}: item id {iid!r} used twice")
            seen_items.add(full)
            items.append(ChecklistItem(id=full, phase=pid, text=itext))
        phases.append(ChecklistPhase(id=pid, title=title, items=tuple(items)))
    return tuple(phases)


def load_checklist(path: Path | None = None) -> tuple[ChecklistPhase, ...]:
    """The packaged checklist, or the one at `path` (a team's adapted copy)."""
    if path is None:
        text = resources.files("x402console.core").joinpath("checklist.toml").read_text(encoding="utf-8")
        return parse_checklist(text)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChecklistError(f"{path}: cannot read: {exc}") from None
    return parse_checklist(text, source=str(path))


PHASES: tuple[ChecklistPhase, ...] = load_checklist()
CHECKLIST: tuple[ChecklistItem, ...] = tuple(i for p in PHASES for i in p.items)
_BY_ID: dict[str, ChecklistItem] = {i.id: i for i in CHECKLIST}
ITEM_IDS: frozenset[str] = frozenset(_BY_ID)


def is_item(item_id: object) -> bool:
    return isinstance(item_id, str) and item_id in _BY_ID


def get_item(item_id: str) -> ChecklistItem:
    try:
        return _BY_ID[item_id]
    except (KeyError, TypeError):
        raise UnknownChecklistItem(item_id) from None


def _checked(value: object) -> bool:
    # Accepts plain booleans and the journal's ChecklistItemState (anything with `.checked`)
    # so this module need not import the journal.
    return bool(getattr(value, "checked", value))


def progress(
    state: Mapping[str, object], phases: tuple[ChecklistPhase, ...] = PHASES
) -> tuple[PhaseProgress, ...]:
    """Done/total per phase, in phase order. Ids in `state` that the checklist lacks are ignored."""
    return tuple(
        PhaseProgress(
            phase=p.id,
            title=p.title,
            done=sum(1 for i in p.items if _checked(state.get(i.id, False))),
            total=len(p.items),
        )
        for p in phases
    )


def next_unchecked(
    state: Mapping[str, object], phases: tuple[ChecklistPhase, ...] = PHASES
) -> ChecklistItem | None:
    """The first item, in runbook order, not yet checked; None when everything is done."""
    for p in phases:
        for i in p.items:
            if not _checked(state.get(i.id, False)):
                return i
    return None
