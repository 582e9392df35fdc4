"""Post-mortem drafts from a real journal file, filled through the Journal API on a fixed clock,
compared with a golden file; and the `python -m x402console.postmortem` command as a process.

Regenerate the golden file after an intended change of the document:
    X402_UPDATE_GOLDEN=1 .venv/bin/pytest tests/integration/test_postmortem.py
and review the diff before committing it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from x402console.core.escalation import EscalationEngine
from x402console.journal import Actor, IncidentNotFound, Journal
from x402console.postmortem import TODO_MARKER, build_postmortem, render_markdown
from x402console.postmortem.cli import add_parser, run_postmortem
from x402console.settings.model import Settings

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "postmortem_incident.md"
T0 = datetime(2025, 3, 1, 3, 0, 0, tzinfo=timezone.utc)
NOW = datetime(2025, 3, 2, 9, 0, 0, tzinfo=timezone.utc)
NOW_ARG = "2025-03-02T09:00:00Z"
HOSTILE = "prover-1: Proof verification failed \x1b]0;owned\x07| <b>vk</b> \x1b[31mred\x1b[0m\r\nforged"
REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, hhmm: str) -> None:
        h, m = (int(x) for x in hhmm.split(":"))
        self.now = T0.replace(hour=h, minute=m)


EVIDENCE_DETAIL = {
    "summary": "evidence bundle written: 2 files",
    "danger": "safe",
    "params": {},
    "details": {
        "bundle_dir": "/var/lib/x402console/evidence/incident-1-20250301T030900Z",
        "manifest": "/var/lib/x402console/evidence/incident-1-20250301T030900Z/MANIFEST.sha256",
        "manifest_sha256": "5f" * 32,
        "files": [
            {"path": "proofs.db", "sha256": "a1" * 32, "bytes": 1048576},
            {"path": "logs/prover-1.log", "sha256": "b2" * 32, "bytes": 20480},
            {"path": "keys/verification_key.json"},  # a file whose hash the action did not give
        ],
        "manifest_json": "/var/lib/x402console/evidence/incident-1-20250301T030900Z/manifest.json",
        "missing": [{"part": "pprof", "item": "prover-1", "reason": "404 (pprof off)"}],
        "complete": True,
    },
    "artifacts": ["/var/lib/x402console/evidence/incident-1-20250301T030900Z"],
}


async def record_escalations(journal: Journal, engine: EscalationEngine, incident_id: int, now: datetime) -> None:
    """What the console does each tick: due steps -> 'escalation' events keyed for fire-once."""
    incident = await journal.incident(incident_id)
    events = await journal.events(incident_id)
    _, steps = engine.evaluate(incident, events, now)
    for step in steps:
        await journal.add_event("escalation", step.summary, "x402console", incident_id, step.details())


async def populate(path: Path) -> int:
    """One security drill incident with everything a post-mortem reads; returns its id."""
    clock = Clock()
    engine = EscalationEngine(clock=clock)
    alice, bob = "alice@ops1 (commander)", "bob@ops2"
    j = await Journal.open(path, clock=clock, actor=Actor("alice", "ops1"), origin="console-a")
    try:
        clock.at("01:00")
        await j.add_event("observation", "disk 70% full on ops1", "x402console")  # outside the window
        clock.at("02:50")
        await j.add_event("observation", HOSTILE, "x402console", details={"line": HOSTILE})
        clock.at("02:56")
        await j.add_event("observation", "error ratio 40% on prover-1", "x402console")
        clock.at("02:58")
        await j.register_operator("commander")
        clock.at("03:00")
        inc = await j.declare_incident("Invalid proofs from prover-1", "P1", alice, security=True, drill=True,
                                       runbook_incident=4)
        await record_escalations(j, engine, inc.id, clock.now)
        clock.at("03:01")
        await j.declare_incident("Memory creeping on prover-2", "P3", bob)
        clock.at("03:04")
        await j.acknowledge(inc.id, bob)
        await j.set_checklist(inc.id, "detection.alert_acknowledged", True, bob)
        clock.at("03:05")
        await j.set_severity(inc.id, "P0", alice, "proofs rejected on-chain")
        await j.set_checklist(inc.id, "detection.severity_assessed", True, alice)
        await record_escalations(j, engine, inc.id, clock.now)
        clock.at("03:06")
        r = await j.action_started("container.restart", "prover-1", bob, inc.id)
        await j.action_finished(r, "refused", {"reason": "security incident #1: Restart container on prover-1 is "
                                                         "refused until evidence is preserved"})
        clock.at("03:07")
        r = await j.action_started("evidence.bundle", "incident", bob, inc.id)
        clock.at("03:09")
        await j.action_finished(r, "succeeded", EVIDENCE_DETAIL)
        clock.at("03:10")
        r = await j.action_started("evidence.bundle", "incident", alice, inc.id)
        await j.action_finished(r, "succeeded", {"summary": "second bundle (older action: no manifest)"})
        clock.at("03:12")
        r = await j.action_started("logs.collect", "prover-1", bob, inc.id)
        await j.action_finished(r, "failed", {"summary": "docker logs: no such container x402-prover-1"})
        await j.set_checklist(inc.id, "response.logs_reviewed", True, bob)
        clock.at("03:15")
        r = await j.action_started("circuits.compare_vk", "prover-1", bob, inc.id)
        await j.action_finished(r, "succeeded", {"summary": "verification_key.json differs from the trusted copy: vk_delta_2"})
        await j.set_checklist(inc.id, "response.root_cause_identified", True, alice)
        clock.at("03:16")
        await j.add_event("note", "TODO: alert when verification_key.json changes", bob, inc.id)
        clock.at("03:17")
        await j.add_event("note", "vk edited at 02:49 by the deploy job", alice, inc.id)
        await j.set_checklist(inc.id, "mitigation.users_notified", True, bob)
        clock.at("03:18")
        await j.set_checklist(inc.id, "mitigation.users_notified", False, alice)
        clock.at("03:20")
        r = await j.action_started("container.restart", "prover-1", bob, inc.id)
        await j.action_finished(r, "succeeded", {"summary": "prover-1 restarted, healthy after 4s"})
        await j.set_checklist(inc.id, "mitigation.fix_applied", True, bob)
        clock.at("03:25")
        await j.action_started("diag.probe_health", "prover-1", bob, inc.id)
        clock.at("03:26")
        r = await j.action_started("abuse.block", "203.0.113.9", bob, inc.id)
        await j.action_finished(r, "cancelled", {"summary": "cancelled at the confirmation"})
        clock.at("03:30")
        await j.mark_unfinished_unknown(everything=True)
        clock.at("03:40")
        await j.mitigate(inc.id, bob, note="restored the trusted verification key; proofs verify again")
        clock.at("04:00")
        await record_escalations(j, engine, inc.id, clock.now)  # team lead: still unresolved after 1 h
        clock.at("04:10")
        await j.resolve(inc.id, alice)
        clock.at("04:30")
        await j.reopen(inc.id, alice, note="invalid proofs again, now on prover-2")
        await record_escalations(j, engine, inc.id, clock.now)  # the on-call tier of the new cycle
        clock.at("04:32")
        await j.acknowledge(inc.id, bob)
        clock.at("04:50")
        await j.resolve(inc.id, alice, note="prover-2 had a stale copy of the key; replaced")
        return inc.id
    finally:
        await j.close()


@pytest.fixture
def journal_file(tmp_path) -> Path:
    path = tmp_path / "journal.db"
    assert asyncio.run(populate(path)) == 1
    return path


def golden_text() -> str:
    return GOLDEN.read_text(encoding="utf-8")


async def _build(path: Path, incident_id: int = 1, settings: Settings | None = None):
    j = await Journal.open(path, actor=Actor("reader", "ops9"))
    try:
        return await build_postmortem(j, incident_id, settings or Settings(), NOW)
    finally:
        await j.close()


# ------------------------------------------------------------------ the document

def test_postmortem_matches_the_golden_file(journal_file):
    text = render_markdown(asyncio.run(_build(journal_file)))
    if os.environ.get("X402_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), f"{GOLDEN} missing: run with X402_UPDATE_GOLDEN=1 to create it"
    assert text == golden_text(), "post-mortem differs from the golden file (X402_UPDATE_GOLDEN=1 regenerates it)"


def test_postmortem_facts_from_the_journal(journal_file):
    pm = asyncio.run(_build(journal_file))
    at = lambda hhmm: T0.replace(hour=int(hhmm[:2]), minute=int(hhmm[3:]))  # noqa: E731
    # First signal: the earliest observation within an hour before the declaration, not the 01:00 one.
    assert pm.first_signal is not None and pm.first_signal.ts == at("02:50")
    ms = {m.name: m for m in pm.milestones}
    assert ms["Declared"].since_signal == timedelta(minutes=10)
    assert ms["Acknowledged"].at == at("03:04")  # the first ack, kept across the reopen
    assert ms["Mitigated"].at == at("03:40")
    assert ms["Resolved"].at == at("04:50") and ms["Resolved"].since_declared == timedelta(minutes=110)
    assert len(pm.reopens) == 1 and dict(pm.reopens[0].previous)["resolved"] == at("04:10")
    # Time at P0 counts only while open: 03:05-04:10 and 04:30-04:50, not the resolved gap.
    assert [(p.severity, p.duration) for p in pm.severity_periods] == [
        ("P1", timedelta(minutes=5)), ("P0", timedelta(minutes=85))]
    assert [(c.old, c.new) for c in pm.severity_changes] == [(None, "P1"), ("P1", "P0")]
    assert pm.peak_severity == "P0" and pm.review_by.isoformat() == "2025-03-04"
    assert pm.outcome_counts == {"cancelled": 1, "failed": 1, "refused": 1, "succeeded": 4, "unknown": 1}
    assert [b.manifest_sha256 for b in pm.evidence] == ["5f" * 32, None]
    assert pm.evidence[0].missing == ("pprof prover-1: 404 (pprof off)",) and pm.evidence[1].missing == ()
    assert [(f.path, f.sha256) for f in pm.evidence[0].files][0] == ("keys/verification_key.json", None)
    # The refused restart ran nothing; the one that ran came after the evidence.
    assert pm.disruptive_before_evidence == ()
    assert [e.details["key"] for e in pm.escalations] == [
        "1:0:tier:0:on-call-engineer", "1:0:tier:2:team-lead", "1:1:tier:0:on-call-engineer"]
    assert [i.text for i in pm.action_items][0] == "alert when verification_key.json changes"
    assert {r.who: r.roles for r in pm.responders}["alice@ops1"] == ("commander",)
    state = {i.item_id: i.checked for p in pm.checklist for i in p.items}
    assert state["mitigation.fix_applied"] and not state["mitigation.users_notified"]

    text = render_markdown(pm)
    assert "\x1b" not in text and "\r" not in text and "owned" not in text
    assert "Memory creeping" not in text  # another incident's events stay out
    assert "disk 70% full" not in text
    assert text.count(TODO_MARKER) >= 8 and "> TODO(author): " in text
    assert "**DRILL.**" in text and "**SECURITY INCIDENT.**" in text


def test_open_incident_without_observations_says_not_yet(tmp_path):
    async def scenario() -> str:
        clock = Clock()
        j = await Journal.open(tmp_path / "j.db", clock=clock, actor=Actor("alice", "ops1"), origin="c")
        try:
            inc = await j.declare_incident("Slow proofs", "P2", "alice@ops1", runbook_incident=3)
            clock.at("03:20")
            r = await j.action_started("container.restart", "prover-1", "alice@ops1", inc.id)
            await j.action_finished(r, "succeeded", {"summary": "restarted"})
            clock.at("03:30")
            await j.action_started("db.vacuum", "proofs.db", "alice@ops1", inc.id)
            pm = await build_postmortem(j, inc.id, Settings(), T0 + timedelta(hours=5))
        finally:
            await j.close()
        assert pm.first_signal is None and pm.milestone("Declared").since_signal == timedelta(0)
        assert pm.milestone("Acknowledged").at is None and pm.milestone("Resolved").at is None
        assert [t.state for t in pm.targets] == ["overdue", "not yet"]  # P2: 4 h response, 3 d resolution
        assert not pm.review_required and pm.review_by is None
        assert pm.disruptive_before_evidence == ()  # not a security incident: not checked
        return render_markdown(pm)

    text = asyncio.run(scenario())
    assert "- Time to acknowledge: not yet" in text and "- Time to resolve: not yet" in text
    assert "the declaration (no earlier observation)" in text
    assert "ongoing: 5h 00m 00s from first signal to 2025-03-01 08:00:00 UTC" in text
    assert "**DRILL.**" not in text and "SECURITY" not in text
    assert "No evidence bundle was recorded" in text
    # The runbook's prevention lines for the incident chosen (Slow Performance) start section 7.
    prevention = text[text.index("## 7. Prevention"):text.index("## 8. Action items")]
    assert "- [ ] Configure auto-scaling based on CPU \\>70%" not in prevention  # ">" is not escaped
    assert "- [ ] Configure auto-scaling based on CPU >70%" in prevention
    assert "- [ ] Monitor queue depth" in prevention
    assert "| `db.vacuum` | proofs.db | alice@ops1 | started | – | no outcome recorded yet |" in text
    assert ("> TODO(author): `db.vacuum` on proofs.db started at 2025-03-01 03:30:00 UTC and has no outcome "
            "recorded") in text
    assert "restarted" in text and "`container.restart` on prover-1 failed" not in text


def test_security_incident_flags_restarts_before_evidence(tmp_path):
    async def scenario():
        clock = Clock()
        j = await Journal.open(tmp_path / "j.db", clock=clock, actor=Actor("alice", "ops1"), origin="c")
        try:
            inc = await j.declare_incident("Key compromise?", "P0", "alice@ops1", security=True)
            clock.at("03:02")
            r = await j.action_started("container.restart", "prover-1", "bob@ops2", inc.id)
            await j.action_finished(r, "succeeded", {"summary": "restarted"})
            r = await j.action_started("db.integrity_check", "proofs.db", "bob@ops2", inc.id)
            await j.action_finished(r, "succeeded", {"summary": "ok"})
            r = await j.action_started("evidence.bundle", "incident", "bob@ops2", inc.id)
            await j.action_finished(r, "failed", {"summary": "disk full"})
            return await build_postmortem(j, inc.id, Settings(), T0 + timedelta(hours=1))
        finally:
            await j.close()

    pm = asyncio.run(scenario())
    assert [a.action_id for a in pm.disruptive_before_evidence] == ["container.restart"]
    assert pm.evidence == ()  # a failed bundle is no evidence
    text = render_markdown(pm)
    assert "- Evidence preserved: NO" in text
    assert "`container.restart` on prover-1 by bob@ops2" in text


def test_unknown_incident_raises_the_journal_error(journal_file):
    with pytest.raises(IncidentNotFound):
        asyncio.run(_build(journal_file, incident_id=42))


# ------------------------------------------------------------------ the command

def run_cli(*args: str, cwd: Path, env_home: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(env_home / "config"), "XDG_STATE_HOME": str(env_home / "state"),
           "PYTHONPATH": str(REPO), **extra_env}
    return subprocess.run([sys.executable, "-m", "x402console.postmortem", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_output_to_stdout_is_the_golden_document(journal_file, tmp_path):
    # Another time zone and locale change nothing: the document is UTC and locale-free.
    got = run_cli("1", "--journal", str(journal_file), "--output", "-", "--now", NOW_ARG, cwd=tmp_path, env_home=tmp_path,
                  TZ="Pacific/Chatham", LC_ALL="C.UTF-8", LANG="de_DE.UTF-8")
    assert got.returncode == 0, got.stderr
    assert got.stdout == golden_text()
    assert list(tmp_path.glob("postmortem-*")) == []


def test_cli_default_file_is_never_overwritten_without_force(journal_file, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    got = run_cli("#1", "--journal", str(journal_file), "--now", NOW_ARG, cwd=work, env_home=tmp_path)
    assert got.returncode == 0, got.stderr
    out = work / "postmortem-1-2025-03-02.md"
    assert out.read_text(encoding="utf-8") == golden_text() and str(out) in got.stderr
    out.write_text("edited by the author\n", encoding="utf-8")
    again = run_cli("1", "--journal", str(journal_file), "--now", NOW_ARG, cwd=work, env_home=tmp_path)
    assert again.returncode == 1 and "already exists; use --force" in again.stderr
    assert out.read_text(encoding="utf-8") == "edited by the author\n"
    forced = run_cli("1", "--journal", str(journal_file), "--now", NOW_ARG, "--force", cwd=work, env_home=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert out.read_text(encoding="utf-8") == golden_text()
    assert sorted(p.name for p in work.iterdir()) == ["postmortem-1-2025-03-02.md"]  # no temp file left


def test_cli_unknown_incident(journal_file, tmp_path):
    got = run_cli("99", "--journal", str(journal_file), "--output", "-", cwd=tmp_path, env_home=tmp_path)
    assert got.returncode == 3 and got.stdout == ""
    assert "no incident #99" in got.stderr and "(incidents: #1, #2)" in got.stderr


@pytest.mark.parametrize("damage", ["not_sqlite", "damaged_pages", "empty", "missing"])
def test_cli_refuses_a_missing_or_corrupt_journal_and_leaves_it_alone(journal_file, tmp_path, damage):
    path = tmp_path / "bad.db"
    if damage == "not_sqlite":
        path.write_bytes(b"this is a log file, not a database\n" * 200)
        expected = "not an SQLite database"
    elif damage == "damaged_pages":
        data = bytearray(journal_file.read_bytes())
        assert len(data) > 3 * 4096
        data[4096:len(data)] = bytes((i * 7 + 3) % 256 for i in range(len(data) - 4096))  # all but page 1
        path.write_bytes(bytes(data))
        expected = "journal"
    elif damage == "empty":
        path.write_bytes(b"")
        expected = "is empty"
    else:
        expected = "no such file"
    before = path.read_bytes() if path.exists() else None
    got = run_cli("1", "--journal", str(path), "--output", "-", cwd=tmp_path, env_home=tmp_path)
    assert got.returncode == 1, got.stderr
    assert expected in got.stderr and got.stderr.startswith("x402console: ") and "Traceback" not in got.stderr
    assert (path.read_bytes() if path.exists() else None) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [(["abc"], "positive number"), (["0"], "positive number"), (["1", "--now", "yesterday"], "--now"),
     (["1", "--detection-window", "-5"], "--detection-window")],
)
def test_cli_bad_arguments(journal_file, tmp_path, args, message):
    got = run_cli(*args, "--journal", str(journal_file), cwd=tmp_path, env_home=tmp_path)
    assert got.returncode == 2 and message in got.stderr


def test_cli_bad_config_file(journal_file, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[targets\n", encoding="utf-8")
    got = run_cli("1", "--config", str(cfg), "--journal", str(journal_file), cwd=tmp_path, env_home=tmp_path)
    assert got.returncode == 2 and "config.toml:1" in got.stderr


def test_journal_from_the_configuration_and_main_parser_wiring(journal_file, tmp_path, capsys):
    """add_parser under a parser shaped like x402console.cli's: its global --config survives."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[environment]\nname = "staging"\njournal = "{journal_file}"\n', encoding="utf-8")
    parser = argparse.ArgumentParser(prog="x402console")
    parser.add_argument("--config", type=Path)
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["--config", str(cfg), "postmortem", "1", "-o", "-", "--now", NOW_ARG])
    assert args.command == "postmortem" and args.config == cfg
    assert parser.parse_args(["postmortem", "1", "--config", "b.toml"]).config == Path("b.toml")
    assert run_postmortem(args) == 0
    out = capsys.readouterr().out
    assert "| Environment | staging |" in out
    assert out.replace("| Environment | staging |", "| Environment | x402 |") == golden_text()
