"""Which of the runbook's incidents the live picture looks like, best first.

Each incident's symptoms carry weighted checks (runbook.toml). An incident scores
1 - prod(1 - weight) over its checks that hold: independent signs add up, no sum passes 1, and
one specific sign outweighs a pile of generic ones. That is what makes a single fault rank its
own incident first even with its side effects on show: a corrupt proofs.db also lifts the error
ratio (Incident 2, generic) but only Incident 5 has "integrity check failed" (specific).

Pure: reads the packaged runbook once, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from x402console.core.conditions import Verdict, evaluate, reader, render
from x402console.core.runbook import Incident, Runbook, load_runbook
from x402console.core.severity import level_rank
from x402console.core.signals import Signals
from x402console.settings.model import SeverityThresholds

__all__ = ["Match", "match", "score_incident"]

# Scores are rounded so that equal evidence compares equal whatever the float order of a product.
_DIGITS = 4


@dataclass(frozen=True)
class Match:
    incident: int  # the runbook's incident number
    title: str
    score: float  # 0..1
    evidence: tuple[str, ...]  # why, strongest first
    missing: tuple[str, ...]  # signals that were unknown and could have added to (or settled) the score
    id: str = ""  # the incident's id, the same as its drill scenario's name
    severity: str = ""  # the runbook's default level for the incident


def score_incident(incident: Incident, signals: Signals, thresholds: SeverityThresholds | None = None) -> Match:
    """The incident against the picture, score 0 included."""
    thresholds = thresholds or SeverityThresholds()
    rd = reader(signals)
    miss_prob = 1.0
    lines: list[tuple[float, int, str]] = []
    missing: dict[str, None] = {}
    for order, check in enumerate(incident.checks):
        held = False
        for ev in evaluate(check.when, rd, thresholds):
            if ev.verdict is Verdict.TRUE:
                held = True
                lines.append((check.weight, order, render(check.evidence, check.when, ev, rd, thresholds)))
            elif ev.verdict is Verdict.UNKNOWN:
                missing.update(dict.fromkeys(ev.missing))
        if held:
            # A check counts once however many replicas show it.
            miss_prob *= 1.0 - check.weight
    lines.sort(key=lambda item: (-item[0], item[1]))
    return Match(
        incident=incident.number,
        title=incident.title,
        score=round(1.0 - miss_prob, _DIGITS),
        evidence=tuple(dict.fromkeys(text for _, _, text in lines)),
        missing=tuple(missing),
        id=incident.id,
        severity=incident.severity,
    )


def match(
    signals: Signals, runbook: Runbook | None = None, *, thresholds: SeverityThresholds | None = None
) -> list[Match]:
    """Incidents with a positive score, best first. Ties go to the more severe incident, then to
    the lower number, so the order never depends on anything but the picture."""
    runbook = runbook or load_runbook()
    scored = [score_incident(inc, signals, thresholds) for inc in runbook.incidents]
    found = [m for m in scored if m.score > 0]
    found.sort(key=lambda m: (-m.score, level_rank(m.severity), m.incident))
    return found
