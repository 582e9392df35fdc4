"""The severity engine: the runbook's P0..P3 from what the console sees.

The rules are data (severity_rules.toml); the thresholds they name come from the config's
[severity] table, so overriding a threshold in config.toml changes the outcome without touching
the rules. When signals disagree the worst level wins ("always assume the worst"), and every
rule that fired is kept as a reason, worst first, so the operator sees why.

Pure: reads its packaged rules file once, nothing else.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from x402console.core.conditions import (
    Condition,
    ConditionError,
    Verdict,
    check_template,
    evaluate,
    format_value,
    parse_conditions,
    reader,
    render,
)
from x402console.core.signals import Signals
from x402console.settings.model import DEFAULT_TARGETS, SEVERITY_LEVELS, SeverityThresholds, Target

__all__ = [
    "Assessment",
    "Reason",
    "Rule",
    "SeverityRulesError",
    "assess",
    "load_rules",
    "parse_rules",
    "level_rank",
    "worst_level",
]

_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_RULE_KEYS = {"id", "level", "group", "when", "text"}


class SeverityRulesError(ValueError):
    """The rules file is malformed; the message names the file and the rule."""


def level_rank(level: str | None) -> int:
    """0 for P0 (worst) .. 3 for P3; 4 for no level."""
    return SEVERITY_LEVELS.index(level) if level in SEVERITY_LEVELS else len(SEVERITY_LEVELS)


def worst_level(levels: Sequence[str | None]) -> str | None:
    known = [lv for lv in levels if lv in SEVERITY_LEVELS]
    return min(known, key=level_rank) if known else None


@dataclass(frozen=True)
class Rule:
    id: str
    level: str
    group: str
    when: tuple[Condition, ...]
    text: str


@dataclass(frozen=True)
class Reason:
    level: str
    rule_id: str
    text: str  # "error ratio 27.0% > 20% (P1)"
    value: Any  # the headline signal's value (raw, unformatted)
    subject: str | None = None  # the replica or component the reason is about


@dataclass(frozen=True)
class Assessment:
    level: str | None  # "P0".."P3"; None when nothing is wrong (or nothing could be seen)
    reasons: tuple[Reason, ...]  # worst first
    missing: tuple[str, ...]  # signals that were unknown, so rules needing them could not fire
    response_minutes: int | None  # the level's response target
    resolution_minutes: int | None  # its resolution target (None: none, or best effort)
    # Rules that a lower-bound value could not settle, e.g. a p95 of "at least 2 s" against the
    # 5 s of P1: the level may be worse than `level`.
    uncertain: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        if self.level is None:
            return "no known problem" + (f" ({len(self.missing)} signals unknown)" if self.missing else "")
        return f"{self.level}: {self.reasons[0].text}" + (f" (+{len(self.reasons) - 1} more)" if len(self.reasons) > 1 else "")


# --------------------------------------------------------------------------- loading

def parse_rules(text: str, source: str = "severity_rules.toml") -> tuple[Rule, ...]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SeverityRulesError(f"{source}: not valid TOML: {exc}") from None
    extra = set(data) - {"rule"}
    if extra:
        raise SeverityRulesError(f"{source}: unknown top-level key(s) {', '.join(sorted(extra))} (only [[rule]] tables)")
    raw_rules = data.get("rule")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise SeverityRulesError(f"{source}: needs at least one [[rule]] table")
    rules: list[Rule] = []
    seen: set[str] = set()
    for n, raw in enumerate(raw_rules, start=1):
        where = f"{source}: rule {n}"
        if not isinstance(raw, dict):
            raise SeverityRulesError(f"{where}: must be a table")
        rid = raw.get("id")
        if not isinstance(rid, str) or not _ID.match(rid):
            raise SeverityRulesError(f"{where}: id must be lower-case dotted text like 'error_ratio.p1', got {rid!r}")
        where = f"{source}: rule {rid!r}"
        if rid in seen:
            raise SeverityRulesError(f"{where}: id used twice")
        seen.add(rid)
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise SeverityRulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                                     f"(keys: {', '.join(sorted(_RULE_KEYS))})")
        level = raw.get("level")
        if level not in SEVERITY_LEVELS:
            raise SeverityRulesError(f"{where}: level must be one of {', '.join(SEVERITY_LEVELS)}, got {level!r}")
        group = raw.get("group", rid)
        if not isinstance(group, str) or not group:
            raise SeverityRulesError(f"{where}: group must be non-empty text")
        try:
            when = parse_conditions(raw.get("when"), where)
            text_ = check_template(raw.get("text"), where)
        except ConditionError as exc:
            raise SeverityRulesError(str(exc)) from None
        rules.append(Rule(rid, level, group, when, text_))
    return tuple(rules)


def load_rules(path: Path | None = None) -> tuple[Rule, ...]:
    """The packaged rules, or a team's adapted copy at `path`."""
    if path is None:
        return _packaged_rules()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeverityRulesError(f"{path}: cannot read: {exc}") from None
    return parse_rules(text, source=str(path))


@lru_cache(maxsize=1)
def _packaged_rules() -> tuple[Rule, ...]:
    text = resources.files("x402console.core").joinpath("severity_rules.toml").read_text(encoding="utf-8")
    return parse_rules(text)


# --------------------------------------------------------------------------- assessing

_OP_WORDS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "==": "=", "!=": "!="}


def assess(
    signals: Signals,
    thresholds: SeverityThresholds | None = None,
    targets: Mapping[str, Target] | None = None,
    *,
    rules: Sequence[Rule] | None = None,
) -> Assessment:
    thresholds = thresholds or SeverityThresholds()
    targets = DEFAULT_TARGETS if targets is None else targets
    rules = _packaged_rules() if rules is None else tuple(rules)
    rd = reader(signals)

    fired: list[tuple[int, Rule, Reason]] = []  # (file order, rule, reason)
    undecided: list[tuple[Rule, str | None, str]] = []
    missing: dict[str, None] = {}
    for order, rule in enumerate(rules):
        for ev in evaluate(rule.when, rd, thresholds):
            if ev.verdict is Verdict.TRUE:
                text = f"{render(rule.text, rule.when, ev, rd, thresholds)} ({rule.level})"
                fired.append((order, rule, Reason(rule.level, rule.id, text, ev.readings[0].value, ev.subject)))
            elif ev.verdict is Verdict.UNKNOWN:
                missing.update(dict.fromkeys(ev.missing))
            elif ev.verdict is Verdict.UNDECIDED:
                undecided.append((rule, ev.subject, _undecided_text(rule, ev, thresholds)))

    # One reason per group and subject: the worst (then the first in the file).
    best: dict[tuple[str, str | None], tuple[int, Rule, Reason]] = {}
    for item in fired:
        key = (item[1].group, item[2].subject)
        held = best.get(key)
        if held is None or (level_rank(item[1].level), item[0]) < (level_rank(held[1].level), held[0]):
            best[key] = item
    kept = sorted(best.values(), key=lambda it: (level_rank(it[1].level), it[0], it[2].subject or ""))
    reasons = tuple(it[2] for it in kept)
    level = reasons[0].level if reasons else None

    # An undecided rule matters only if it would have been worse than what its group shows.
    uncertain = tuple(dict.fromkeys(
        text for rule, subject, text in undecided
        if level_rank(rule.level) < level_rank(best[(rule.group, subject)][1].level if (rule.group, subject) in best else None)
    ))

    target = targets.get(level) if level else None
    return Assessment(
        level=level,
        reasons=reasons,
        missing=tuple(missing),
        response_minutes=target.response_minutes if target else None,
        resolution_minutes=target.resolution_minutes if target else None,
        uncertain=uncertain,
    )


def _undecided_text(rule: Rule, ev: Any, thresholds: SeverityThresholds) -> str:
    for cond, reading in zip(rule.when, ev.readings):
        if reading.lower_bound:
            shown = format_value(reading.value, cond.spec.unit)
            return (f"{cond.spec.label} is at least {shown}: cannot tell whether it is "
                    f"{_OP_WORDS.get(cond.op, cond.op)} {cond.threshold_text(thresholds)} ({rule.level}, {rule.id})")
    return f"{rule.id} ({rule.level}) could not be decided"
