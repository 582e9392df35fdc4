"""The checklist data against the runbook, and the progress engine over it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from x402console.core import checklist
from x402console.core.checklist import (
    CHECKLIST,
    PHASES,
    ChecklistError,
    UnknownChecklistItem,
    get_item,
    is_item,
    next_unchecked,
    parse_checklist,
    progress,
)

REPO = Path(__file__).resolve().parents[2]
_SEED = REPO.parent / "shared" / "seed" / "INCIDENT_RESPONSE.md"
RUNBOOK = _SEED if _SEED.exists() else REPO / "tests" / "fixtures" / "INCIDENT_RESPONSE.md"

# The runbook's checklist as it stands, for checkouts that do not sit next to the seed runbook.
RUNBOOK_COPY = {
    "Detection Phase": ["Alert received and acknowledged", "Incident severity assessed",
                        "On-call engineer notified", "Incident logged in tracking system"],
    "Response Phase": ["Service health checked", "Logs collected and reviewed",
                       "Metrics analyzed (Grafana/Prometheus)", "Root cause identified"],
    "Mitigation Phase": ["Immediate fix applied", "Service restored", "Verification performed",
                         "Users notified (if applicable)"],
    "Recovery Phase": ["Long-term fix implemented", "Monitoring improved", "Documentation updated",
                       "Post-mortem scheduled"],
    "Post-Incident Phase": ["Post-mortem completed", "Action items assigned",
                            "Preventive measures implemented", "Runbook updated"],
}


def runbook_checklist() -> dict[str, list[str]]:
    """Phase title -> item lines, read from the runbook's "Incident Response Checklist" section."""
    if not RUNBOOK.exists():
        return RUNBOOK_COPY
    lines = RUNBOOK.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## ") and "Incident Response Checklist" in line)
    phases: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines[start + 1:]:
        if line.startswith("## ") or line.strip() == "---":
            break
        if line.startswith("### "):
            current = line[4:].strip()
            phases[current] = []
        elif (m := re.match(r"^- \[ \] (.+)$", line)) and current is not None:
            phases[current].append(m.group(1).strip())
    return phases


def test_runbook_section_parses_to_five_phases_of_four():
    rb = runbook_checklist()
    assert len(rb) == 5 and all(len(items) == 4 for items in rb.values())


def test_checklist_matches_the_runbook_word_for_word_and_in_order():
    rb = runbook_checklist()
    assert [p.title for p in PHASES] == list(rb)
    assert [[i.text for i in p.items] for p in PHASES] == list(rb.values())


def test_exactly_twenty_items_five_phases_of_four_with_stable_ids():
    assert len(CHECKLIST) == 20
    assert [p.id for p in PHASES] == ["detection", "response", "mitigation", "recovery", "post_incident"]
    assert all(len(p.items) == 4 for p in PHASES)
    assert len({i.id for i in CHECKLIST}) == 20
    for p in PHASES:
        for i in p.items:
            assert i.phase == p.id and i.id.startswith(p.id + ".")
    assert get_item("detection.alert_acknowledged").text == "Alert received and acknowledged"
    assert get_item("post_incident.runbook_updated").text == "Runbook updated"


def test_unknown_item_is_refused_clearly():
    assert not is_item("detection.nope") and not is_item(None)
    with pytest.raises(UnknownChecklistItem, match="detection.nope"):
        get_item("detection.nope")


def test_progress_counts_per_phase_in_order():
    state = {
        "detection.alert_acknowledged": True,
        "detection.severity_assessed": True,
        "response.logs_reviewed": True,
        "mitigation.fix_applied": False,
        "not.an_item": True,
    }
    got = progress(state)
    assert [(p.phase, p.done, p.total) for p in got] == [
        ("detection", 2, 4), ("response", 1, 4), ("mitigation", 0, 4), ("recovery", 0, 4), ("post_incident", 0, 4)]
    assert not got[0].complete


def test_progress_accepts_state_objects_with_checked():
    class S:
        def __init__(self, checked: bool) -> None:
            self.checked = checked

    state = {i.id: S(True) for i in PHASES[0].items} | {"response.health_checked": S(False)}
    got = progress(state)
    assert got[0].done == 4 and got[0].complete and got[1].done == 0


def test_next_unchecked_walks_in_runbook_order_and_ends_with_none():
    assert next_unchecked({}) == CHECKLIST[0]
    state = {CHECKLIST[0].id: True, CHECKLIST[1].id: True, CHECKLIST[3].id: True}
    assert next_unchecked(state) == CHECKLIST[2]
    state = {i.id: True for i in CHECKLIST[:10]}
    assert next_unchecked(state) == CHECKLIST[10]
    assert next_unchecked({i.id: True for i in CHECKLIST}) is None
    assert next_unchecked({i.id: True for i in CHECKLIST} | {CHECKLIST[19].id: False}) == CHECKLIST[19]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("phase = 3", "at least one"),
        ("[[phase]]\nid = 'a'\ntitle = 'A'\nitems = []", "non-empty items"),
        ("[[phase]]\nid = 'A b'\ntitle = 'A'\nitems = [{id='x', text='t'}]", "lower_snake_case"),
        ("[[phase]]\nid = 'a'\ntitle = 'A'\nitems = [{id='x', text='t'}, {id='x', text='u'}]", "used twice"),
        ("[[phase]]\nid = 'a'\ntitle = 'A'\nitems = [{id='x', text='  '}]", "text must be"),
        ("[[phase]]\nid = 'a'\ntitle = 'A'\nitems = [{id='x', text='t'}]\n"
         "[[phase]]\nid = 'a'\ntitle = 'B'\nitems = [{id='y', text='t'}]", "phase id used twice"),
        ("[[phase]\n", "not valid TOML"),
    ],
)
def test_malformed_checklist_data_gives_a_clear_error(text, message):
    with pytest.raises(ChecklistError, match=message) as err:
        parse_checklist(text, source="team.toml")
    assert str(err.value).startswith("team.toml")


def test_a_team_copy_loads_from_a_path(tmp_path):
    f = tmp_path / "ours.toml"
    f.write_text("[[phase]]\nid = 'triage'\ntitle = 'Triage'\nitems = [{ id = 'paged', text = 'Paged' }]\n")
    phases = checklist.load_checklist(f)
    assert phases[0].items[0].id == "triage.paged"
    assert next_unchecked({}, phases).text == "Paged"
    with pytest.raises(ChecklistError, match="cannot read"):
        checklist.load_checklist(tmp_path / "missing.toml")
