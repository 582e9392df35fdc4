"""The runbook data against the runbook, against the action registry and the drill, and its
validation on load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from x402console.actions.registry import default_registry
from x402console.core.runbook import (
    AGREED_ACTION_IDS,
    EXISTING_ACTION_IDS,
    KNOWN_ACTION_IDS,
    RunbookError,
    load_runbook,
    parse_runbook,
)
from x402console.drill.scenarios import load_scenarios
from x402console.settings.model import DEFAULT_TARGETS, SEVERITY_LEVELS

REPO = Path(__file__).resolve().parents[2]
# The user's runbook: the live seed beside the checkout when there is one, else the copy kept
# in tests/fixtures (taken from it verbatim), so a clean clone tests against it too.
_SEED = REPO.parent / "shared" / "seed" / "INCIDENT_RESPONSE.md"
RUNBOOK_MD = _SEED if _SEED.exists() else REPO / "tests" / "fixtures" / "INCIDENT_RESPONSE.md"
PACKAGED = (REPO / "x402console" / "core" / "runbook.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def runbook():
    return load_runbook()


@pytest.fixture(scope="module")
def markdown() -> str:
    return RUNBOOK_MD.read_text(encoding="utf-8")


def incident_text(markdown: str, number: int) -> str:
    """The runbook's section of one incident, up to the next heading of its rank."""
    start = markdown.index(f"### Incident {number}:")
    end = markdown.find("\n---", start)
    return markdown[start:end]


def level_text(markdown: str, level: str) -> str:
    start = markdown.index(f"### **{level} - ")
    end = markdown.find("\n### ", start + 1)
    return markdown[start:end if end != -1 else None]


# ----------------------------------------------------------------- shape

def test_four_levels_and_seven_incidents(runbook):
    assert tuple(lv.id for lv in runbook.levels) == SEVERITY_LEVELS
    assert [i.number for i in runbook.incidents] == [1, 2, 3, 4, 5, 6, 7]
    for inc in runbook.incidents:
        assert inc.symptoms and inc.checks and inc.sections
        # Incident 6 goes straight to "Immediate Actions" (identify, then block).
        assert inc.diagnosis_steps or inc.number == 6, f"incident {inc.number} has no diagnosis step"
        assert inc.resolution_steps, f"incident {inc.number} has no resolution step"


def test_level_minutes_are_the_settings_defaults(runbook):
    for lv in runbook.levels:
        target = DEFAULT_TARGETS[lv.id]
        assert (lv.response_minutes, lv.resolution_minutes) == (target.response_minutes, target.resolution_minutes)


def test_lookup_by_number_and_id(runbook):
    assert runbook.incident(5) is runbook.incident("db_corruption")
    assert runbook.level("P2").name == "Medium"
    with pytest.raises(KeyError, match="no incident 8"):
        runbook.incident(8)
    with pytest.raises(KeyError, match="no severity level 'P9'"):
        runbook.level("P9")


def test_incidents_agree_with_the_drill_scenarios(runbook):
    for name, scenario in load_scenarios().items():
        inc = runbook.incident(name)
        assert (inc.number, inc.severity, inc.security) == (scenario.incident, scenario.severity, scenario.security), name


def test_invalid_proofs_preserve_evidence_before_stopping(runbook):
    inc = runbook.incident(4)
    assert inc.security and inc.severity == "P0"
    actions = [st.action for st in inc.sections[0].steps]
    assert inc.sections[0].kind == "immediate"
    assert actions.index("evidence.bundle") < actions.index("container.stop_service")


def test_step_kinds(runbook):
    steps = runbook.incident(3).steps
    kinds = {st.text: st.kind for st in steps}
    assert kinds["Vacuum database"] == "action"
    assert kinds["Update load balancer to distribute traffic"] == "note"
    assert runbook.incident(5).diagnosis_steps[2].kind == "command"  # fsck: by hand


# ----------------------------------------------------------------- words are the runbook's

def test_titles_are_the_runbooks(runbook, markdown):
    for inc in runbook.incidents:
        assert f"### Incident {inc.number}: {inc.title}\n" in markdown


def test_level_words_are_the_runbooks(runbook, markdown):
    for lv in runbook.levels:
        text = level_text(markdown, lv.id)
        assert text.startswith(f"### **{lv.id} - {lv.name}**" + (f" ({lv.summary})" if lv.summary else ""))
        for example in lv.examples:
            assert f"\n- {example}\n" in text
        assert f"**Response Time**: {lv.response}\n" in text
        assert f"**Resolution Target**: {lv.resolution}\n" in text


def test_symptoms_sections_and_prevention_are_the_runbooks(runbook, markdown):
    for inc in runbook.incidents:
        text = incident_text(markdown, inc.number)
        for s in inc.symptoms:
            if s.from_runbook:
                assert f"\n- {s.text}\n" in text, (inc.number, s.text)
        for sec in inc.sections:
            assert f"**{sec.title}" in text, (inc.number, sec.title)
        for p in inc.prevention:
            assert f"\n- {p.text}\n" in text, (inc.number, p.text)


def test_commands_are_verbatim(runbook, markdown):
    for inc in runbook.incidents:
        text = incident_text(markdown, inc.number)
        for st in inc.steps:
            for line in (st.command or "").splitlines():
                assert line in text, f"incident {inc.number}, step {st.text!r}: {line!r} is not the runbook's"


# Steps over a runbook block that has no comment of its own: the console names them.
CONSOLE_WORDED = {
    "Restart the prover service",
    "Try to repair: rebuild the indexes",
    "Try to repair: rebuild the file",
    "Restart the prover on the restored database",
}


def test_step_texts_are_the_runbooks_words(runbook, markdown):
    for inc in runbook.incidents:
        text = incident_text(markdown, inc.number)
        for st in inc.steps:
            if st.text in CONSOLE_WORDED:
                continue
            worded = (f"# {st.text}\n" in text or f"**{st.text}" in text
                      or re.search(rf"^\d+\. {re.escape(st.text)}$", text, re.MULTILINE))
            assert worded, f"incident {inc.number}: step {st.text!r} is not the runbook's comment, heading or item"


# ----------------------------------------------------------------- actions

def test_every_action_exists_or_is_agreed():
    registry = {a.id: a for a in default_registry().all()}
    runbook = load_runbook()
    for action_id in sorted(runbook.action_ids()):
        if action_id in registry:
            continue
        assert action_id in AGREED_ACTION_IDS, f"{action_id} is neither registered nor agreed in BRIEF.md"


def test_params_are_ones_the_action_takes():
    registry = {a.id: a for a in default_registry().all()}
    for inc in load_runbook().incidents:
        for st in (*inc.steps, *inc.prevention):
            action = registry.get(st.action or "")
            if action is None or not st.params:
                continue
            accepted = set(getattr(action, "param_help", {}) or {})
            assert set(st.params) <= accepted, f"incident {inc.number} {st.text!r}: {action.id} takes {sorted(accepted)}"


def test_the_existing_list_is_in_sync_with_the_registry():
    registered = {a.id for a in default_registry().all()}
    assert EXISTING_ACTION_IDS <= registered
    assert KNOWN_ACTION_IDS == EXISTING_ACTION_IDS | AGREED_ACTION_IDS


# ----------------------------------------------------------------- loading and validation

def test_a_team_copy_loads_from_a_path(tmp_path: Path):
    path = tmp_path / "runbook.toml"
    path.write_text(PACKAGED.replace('title = "Memory Leak"', 'title = "Memory Leak (ours)"'), encoding="utf-8")
    assert load_runbook(path).incident(7).title == "Memory Leak (ours)"
    assert load_runbook().incident(7).title == "Memory Leak"


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(RunbookError, match=r"missing\.toml: cannot read"):
        load_runbook(tmp_path / "missing.toml")


def _swap(old: str, new: str, count: int = 1) -> str:
    assert PACKAGED.count(old) >= 1, old
    return PACKAGED.replace(old, new, count)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[level]\nid = 1", r"^rb\.toml: not valid TOML"),
        (_swap('action = "db.vacuum"', 'action = "db.vacum"'),
         r"^rb\.toml: incident 3: section 4 \('If database bloat'\): step 1: action: unknown action id 'db\.vacum'"),
        (_swap('alt_actions = ["process.scale"]', 'alt_actions = ["process.scael"]'),
         r"incident 3: .*alt_actions: unknown action id 'process\.scael'"),
        (_swap('action = "container.recreate_service"\n', ""), r"incident 1: .*alt_actions without an action"),
        (_swap('action = "db.delete_older"\n', ""), r"incident 3: .*params without an action"),
        (_swap("params = { days = 7 }", "params = { days = [7] }"), r"params\.days must be text, a number or true/false"),
        (_swap('note = "Never fsck', 'nota = "Never fsck'), r"incident 5: .*unknown key\(s\) nota"),
        (_swap('signal = "db_integrity", op = "==", value = "failed"', 'signal = "db_integrty", op = "==", value = "failed"'),
         r"incident 5: symptom 1 \('SQLite integrity check fails'\): check 1: .*unknown signal 'db_integrty'"),
        (_swap("weight = 0.95", "weight = 1.5"), r"weight must be a number in \(0, 1\], got 1\.5"),
        (_swap('evidence = "PRAGMA integrity_check on proofs.db failed"', 'evidence = "failed {why}"'),
         r"text names \{why\}"),
        (_swap('kind = "post_incident"', 'kind = "aftermath"'), r"incident 4: section 6: kind must be one of"),
        (_swap('severity = "P2"\nseverity_basis', 'severity = "SEV2"\nseverity_basis'),
         r"incident 7: severity must be one of P0, P1, P2, P3, got 'SEV2'"),
        (_swap("severity_basis = \"P1 'Database corruption'.\"\n", ""), r"incident #5: missing severity_basis"),
        (_swap("number = 7", "number = 8"), r"incidents must be numbered 1\.\.7 in order, got \[1, 2, 3, 4, 5, 6, 8\]"),
        (_swap('id = "memory_leak"', 'id = "ddos"'), r"incident id\(s\) used twice: ddos"),
        (_swap('id = "memory_leak"', 'id = "Memory Leak"'), r"incident 7: id must be lower_snake_case"),
        (_swap('id = "P3"', 'id = "P2"'), r"levels must be P0, P1, P2, P3 in that order"),
        (_swap("response_minutes = 15\n", "response_minutes = 0\n"), r"level 1: response_minutes must be a whole number >= 1"),
        (_swap('security = true', 'security = "yes"'), r"incident 4: security must be true or false"),
        (PACKAGED + "\n[extra]\nx = 1\n", r"^rb\.toml: unknown key\(s\) extra"),
    ],
    ids=["bad toml", "unknown action", "unknown alt action", "alt without action", "params without action",
         "param not scalar", "unknown step key", "unknown signal", "weight out of range", "bad evidence template",
         "bad section kind", "bad severity", "missing key", "numbering", "duplicate id", "bad id", "level order",
         "zero minutes", "bad bool", "unknown top-level"],
)
def test_malformed_runbooks_are_refused_with_a_clear_message(text, message):
    with pytest.raises(RunbookError, match=message):
        parse_runbook(text, source="rb.toml")


def test_an_incident_the_matcher_could_never_find_is_refused():
    text = re.sub(r"\[\[incident\.symptom\.check\]\]\n(?:(?!\[\[)[^\n]*\n)*", "", PACKAGED)
    with pytest.raises(RunbookError, match=r"incident 1: no symptom has a check"):
        parse_runbook(text, source="rb.toml")


def test_an_action_list_can_be_narrowed():
    with pytest.raises(RunbookError, match=r"unknown action id 'diag\.probe_health'"):
        parse_runbook(PACKAGED, "rb.toml", known_actions=EXISTING_ACTION_IDS)
