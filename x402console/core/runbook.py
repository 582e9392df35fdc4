"""The runbook as data (runbook.toml): severity levels, incidents, symptoms and steps.

The console shows an incident's steps in the runbook's order and words, runs the ones that
have a console action through the action registry, and shows the others as the runbook's
command to run by hand. Symptoms carry machine checks over `Signals` that the matcher scores.

Loading checks everything a typo could break (unknown keys, action ids, signals, settings,
text placeholders) and says where, so an adapted runbook fails at start, not mid-incident.
Pure: reads its packaged file (or the one given), nothing else.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from x402console.core.conditions import Condition, ConditionError, check_template, parse_conditions
from x402console.settings.model import SEVERITY_LEVELS

__all__ = [
    "AGREED_ACTION_IDS",
    "EXISTING_ACTION_IDS",
    "KNOWN_ACTION_IDS",
    "SECTION_KINDS",
    "Check",
    "Incident",
    "Runbook",
    "RunbookError",
    "Section",
    "SeverityLevel",
    "Step",
    "Symptom",
    "load_runbook",
    "parse_runbook",
]

# Action ids a step may name, kept in sync with /work/helpers/BRIEF.md ("Action ids agreed").
# Existing: written and registered. Agreed: promised by their owners, possibly not written yet.
EXISTING_ACTION_IDS: frozenset[str] = frozenset({
    "container.restart", "container.restart_service", "container.recreate", "container.recreate_service",
    "container.scale", "container.stop_service", "container.start_service",
    "process.restart", "process.recreate", "process.restart_service", "process.stop_service",
    "process.start_service", "process.scale",
    "db.quick_check", "db.integrity_check", "db.stats", "db.delete_expired", "db.delete_older", "db.reindex",
    "db.vacuum", "db.enable_wal", "db.list_backups", "db.backup", "db.restore",
})
AGREED_ACTION_IDS: frozenset[str] = frozenset({
    "logs.collect", "evidence.bundle",
    "abuse.top_ips", "abuse.block", "abuse.unblock", "abuse.list_blocks", "abuse.set_rate_limit", "abuse.set_cache_size",
    "diag.probe_health", "diag.pprof", "diag.memory_trend",
    "circuits.compare_vk", "circuits.verify", "circuits.test",
    "notify.send",
})
KNOWN_ACTION_IDS: frozenset[str] = EXISTING_ACTION_IDS | AGREED_ACTION_IDS

SECTION_KINDS = ("diagnosis", "immediate", "resolution", "post_incident")

_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class RunbookError(ValueError):
    """The runbook data is malformed; the message names the file and the offending entry."""


@dataclass(frozen=True)
class SeverityLevel:
    id: str  # P0..P3
    name: str  # Critical, High, ...
    summary: str  # "Immediate response required" ("" where the runbook has none)
    examples: tuple[str, ...]  # the runbook's bullet points, verbatim
    response: str  # as written: "< 15 minutes"
    resolution: str  # as written: "< 4 hours", "Best effort"
    response_minutes: int
    resolution_minutes: int | None  # None: best effort


@dataclass(frozen=True)
class Step:
    text: str
    action: str | None = None  # a console action id
    params: Mapping[str, Any] = field(default_factory=dict)  # passed to the action's plan()
    alt_actions: tuple[str, ...] = ()  # the same step for another deployment (process mode)
    command: str | None = None  # the runbook's command, verbatim
    note: str | None = None  # the console's remark: what does not work as written, what it does instead

    @property
    def kind(self) -> str:
        """action (the console can run it), command (run by hand) or note (nothing to run)."""
        if self.action:
            return "action"
        return "command" if self.command else "note"

    @property
    def action_ids(self) -> tuple[str, ...]:
        return ((self.action,) if self.action else ()) + self.alt_actions


@dataclass(frozen=True)
class Section:
    kind: str  # one of SECTION_KINDS
    title: str  # the runbook's heading: "Quick Fix (Restart Service)", "If database errors"
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Check:
    weight: float  # 0 < weight <= 1
    when: tuple[Condition, ...]
    evidence: str  # template of the "why" line


@dataclass(frozen=True)
class Symptom:
    text: str
    checks: tuple[Check, ...] = ()
    from_runbook: bool = True  # False: a line the console adds


@dataclass(frozen=True)
class Incident:
    number: int
    id: str
    title: str
    severity: str
    severity_basis: str
    security: bool
    symptoms: tuple[Symptom, ...]
    sections: tuple[Section, ...]
    prevention: tuple[Step, ...]

    @property
    def checks(self) -> tuple[Check, ...]:
        return tuple(c for s in self.symptoms for c in s.checks)

    @property
    def diagnosis_steps(self) -> tuple[Step, ...]:
        return tuple(st for sec in self.sections if sec.kind == "diagnosis" for st in sec.steps)

    @property
    def resolution_steps(self) -> tuple[Step, ...]:
        return tuple(st for sec in self.sections if sec.kind in ("immediate", "resolution") for st in sec.steps)

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(st for sec in self.sections for st in sec.steps)


@dataclass(frozen=True)
class Runbook:
    levels: tuple[SeverityLevel, ...]
    incidents: tuple[Incident, ...]

    def level(self, level_id: str) -> SeverityLevel:
        for lv in self.levels:
            if lv.id == level_id:
                return lv
        raise KeyError(f"no severity level {level_id!r} (levels: {', '.join(lv.id for lv in self.levels)})")

    def incident(self, key: int | str) -> Incident:
        """By number (1..7) or id ("db_corruption")."""
        for inc in self.incidents:
            if inc.number == key or inc.id == key:
                return inc
        raise KeyError(f"no incident {key!r} in the runbook (1..{len(self.incidents)}, or "
                       f"{', '.join(i.id for i in self.incidents)})")

    def action_ids(self) -> frozenset[str]:
        return frozenset(a for inc in self.incidents for st in (*inc.steps, *inc.prevention) for a in st.action_ids)


# --------------------------------------------------------------------------- parsing

class _Table:
    """A TOML table read with its location, rejecting keys it does not expect."""

    def __init__(self, raw: Any, where: str, keys: set[str], required: set[str] | None = None) -> None:
        if not isinstance(raw, dict):
            raise RunbookError(f"{where}: must be a table, got {type(raw).__name__}")
        unknown = set(raw) - keys
        if unknown:
            raise RunbookError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (keys: {', '.join(sorted(keys))})")
        absent = (required or set()) - set(raw)
        if absent:
            raise RunbookError(f"{where}: missing {', '.join(sorted(absent))}")
        self.raw, self.where = raw, where

    def text(self, key: str, *, empty: bool = False, default: str | None = None) -> str:
        v = self.raw.get(key, default)
        if not isinstance(v, str) or (not empty and not v.strip()):
            raise RunbookError(f"{self.where}: {key} must be {'text' if empty else 'non-empty text'}, got {v!r}")
        return v

    def opt_text(self, key: str) -> str | None:
        if key not in self.raw:
            return None
        return self.text(key)

    def integer(self, key: str, low: int, *, default: int | None = None) -> int:
        v = self.raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise RunbookError(f"{self.where}: {key} must be a whole number >= {low}, got {v!r}")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        v = self.raw.get(key, default)
        if not isinstance(v, bool):
            raise RunbookError(f"{self.where}: {key} must be true or false, got {v!r}")
        return v

    def texts(self, key: str) -> tuple[str, ...]:
        v = self.raw.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
            raise RunbookError(f"{self.where}: {key} must be a list of non-empty texts")
        return tuple(v)

    def tables(self, key: str, *, required: bool = False) -> list[Any]:
        v = self.raw.get(key, [])
        if not isinstance(v, list) or (required and not v):
            raise RunbookError(f"{self.where}: needs at least one [[{key}]] table" if required
                               else f"{self.where}: {key} must be a list of tables")
        return v


def _level(raw: Any, where: str) -> SeverityLevel:
    t = _Table(raw, where, {"id", "name", "summary", "examples", "response", "resolution",
                            "response_minutes", "resolution_minutes"},
               {"id", "name", "examples", "response", "resolution", "response_minutes"})
    lid = t.text("id")
    if lid not in SEVERITY_LEVELS:
        raise RunbookError(f"{where}: id must be one of {', '.join(SEVERITY_LEVELS)}, got {lid!r}")
    examples = t.texts("examples")
    if not examples:
        raise RunbookError(f"{where}: examples must not be empty")
    return SeverityLevel(
        id=lid,
        name=t.text("name"),
        summary=t.text("summary", empty=True, default=""),
        examples=examples,
        response=t.text("response"),
        resolution=t.text("resolution"),
        response_minutes=t.integer("response_minutes", 1),
        resolution_minutes=t.integer("resolution_minutes", 1) if "resolution_minutes" in t.raw else None,
    )


def _action_id(value: Any, where: str, known: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in known:
        raise RunbookError(f"{where}: unknown action id {value!r}; a step may name one of: {', '.join(sorted(known))}")
    return value


def _step(raw: Any, where: str, known: frozenset[str]) -> Step:
    if isinstance(raw, str):
        raw = {"text": raw}
    t = _Table(raw, where, {"text", "action", "params", "alt_actions", "command", "note"}, {"text"})
    action = t.raw.get("action")
    if action is not None:
        action = _action_id(action, f"{where}: action", known)
    alts = t.raw.get("alt_actions", [])
    if not isinstance(alts, list):
        raise RunbookError(f"{where}: alt_actions must be a list of action ids")
    alt_actions = tuple(_action_id(a, f"{where}: alt_actions", known) for a in alts)
    if alt_actions and action is None:
        raise RunbookError(f"{where}: alt_actions without an action")
    params = t.raw.get("params", {})
    if not isinstance(params, dict):
        raise RunbookError(f"{where}: params must be a table like {{ lines = 100 }}")
    if params and action is None:
        raise RunbookError(f"{where}: params without an action")
    for k, v in params.items():
        if not isinstance(v, (str, int, float, bool)):
            raise RunbookError(f"{where}: params.{k} must be text, a number or true/false, got {v!r}")
    command = t.opt_text("command")
    return Step(
        text=t.text("text"),
        action=action,
        params=MappingProxyType(dict(params)),
        alt_actions=alt_actions,
        command=command.strip("\n") if command else None,
        note=t.opt_text("note"),
    )


def _check(raw: Any, where: str) -> Check:
    t = _Table(raw, where, {"weight", "when", "evidence"}, {"weight", "when", "evidence"})
    w = t.raw["weight"]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 1:
        raise RunbookError(f"{where}: weight must be a number in (0, 1], got {w!r}")
    try:
        when = parse_conditions(t.raw["when"], where)
        evidence = check_template(t.raw["evidence"], f"{where}: evidence")
    except ConditionError as exc:
        raise RunbookError(str(exc)) from None
    return Check(float(w), when, evidence)


def _symptom(raw: Any, where: str) -> Symptom:
    t = _Table(raw, where, {"text", "check", "from_runbook"}, {"text"})
    text = t.text("text")
    where = t.where = f"{where} ({text[:40]!r})"
    checks = tuple(_check(c, f"{where}: check {i}") for i, c in enumerate(t.tables("check"), start=1))
    return Symptom(text, checks, t.boolean("from_runbook", True))


def _section(raw: Any, where: str, known: frozenset[str]) -> Section:
    t = _Table(raw, where, {"kind", "title", "step"}, {"kind", "title", "step"})
    kind = t.text("kind")
    if kind not in SECTION_KINDS:
        raise RunbookError(f"{where}: kind must be one of {', '.join(SECTION_KINDS)}, got {kind!r}")
    title = t.text("title")
    where = t.where = f"{where} ({title!r})"
    steps = tuple(_step(s, f"{where}: step {i}", known) for i, s in enumerate(t.tables("step", required=True), start=1))
    return Section(kind, title, steps)


def _incident(raw: Any, source: str, index: int, known: frozenset[str]) -> Incident:
    where = f"{source}: incident #{index}"
    t = _Table(raw, where, {"number", "id", "title", "severity", "severity_basis", "security", "prevention",
                            "symptom", "section"},
               {"number", "id", "title", "severity", "severity_basis", "symptom", "section"})
    number = t.integer("number", 1)
    where = t.where = f"{source}: incident {number}"
    iid = t.text("id")
    if not _ID.match(iid):
        raise RunbookError(f"{where}: id must be lower_snake_case, got {iid!r}")
    severity = t.text("severity")
    if severity not in SEVERITY_LEVELS:
        raise RunbookError(f"{where}: severity must be one of {', '.join(SEVERITY_LEVELS)}, got {severity!r}")
    symptoms = tuple(_symptom(s, f"{where}: symptom {i}") for i, s in enumerate(t.tables("symptom", required=True), start=1))
    if not any(s.checks for s in symptoms):
        raise RunbookError(f"{where}: no symptom has a check, so the matcher could never find this incident")
    sections = tuple(_section(s, f"{where}: section {i}", known)
                     for i, s in enumerate(t.tables("section", required=True), start=1))
    prevention_raw = t.raw.get("prevention", [])
    if not isinstance(prevention_raw, list):
        raise RunbookError(f"{where}: prevention must be a list")
    prevention = tuple(_step(p, f"{where}: prevention {i}", known) for i, p in enumerate(prevention_raw, start=1))
    return Incident(
        number=number,
        id=iid,
        title=t.text("title"),
        severity=severity,
        severity_basis=t.text("severity_basis"),
        security=t.boolean("security", False),
        symptoms=symptoms,
        sections=sections,
        prevention=prevention,
    )


def parse_runbook(
    text: str, source: str = "runbook.toml", known_actions: frozenset[str] = KNOWN_ACTION_IDS
) -> Runbook:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RunbookError(f"{source}: not valid TOML: {exc}") from None
    top = _Table(data, source, {"level", "incident"}, {"level", "incident"})
    levels = tuple(_level(raw, f"{source}: level {i}") for i, raw in enumerate(top.tables("level", required=True), start=1))
    if tuple(lv.id for lv in levels) != SEVERITY_LEVELS:
        raise RunbookError(f"{source}: levels must be {', '.join(SEVERITY_LEVELS)} in that order, "
                           f"got {', '.join(lv.id for lv in levels)}")
    incidents = tuple(_incident(raw, source, i, known_actions)
                      for i, raw in enumerate(top.tables("incident", required=True), start=1))
    numbers = [i.number for i in incidents]
    if numbers != list(range(1, len(incidents) + 1)):
        raise RunbookError(f"{source}: incidents must be numbered 1..{len(incidents)} in order, got {numbers}")
    ids = [i.id for i in incidents]
    dupes = sorted({x for x in ids if ids.count(x) > 1})
    if dupes:
        raise RunbookError(f"{source}: incident id(s) used twice: {', '.join(dupes)}")
    return Runbook(levels, incidents)


def load_runbook(path: Path | None = None) -> Runbook:
    """The packaged runbook, or a team's adapted copy at `path`."""
    if path is None:
        return _packaged()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunbookError(f"{path}: cannot read: {exc}") from None
    return parse_runbook(text, source=str(path))


@lru_cache(maxsize=1)
def _packaged() -> Runbook:
    text = resources.files("x402console.core").joinpath("runbook.toml").read_text(encoding="utf-8")
    return parse_runbook(text)
