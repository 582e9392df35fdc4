"""The incident flow through the console's keys (Pilot, headless), against a real journal file.

Lifecycle, roles, the security guard, escalation paging, the live severity suggestion and the
post-mortem export are driven by key presses and read back from the journal (a SQLite file in
tmp_path) and from the screen's text. The guard, the scribe's refused restart and the severity
suggestion need real replicas: one short process-mode drill serves the module (no Prometheus,
no nginx, light traffic); its journal is not used, each test has its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from textual.widgets import Select

from x402console.config import load_config
from x402console.core.checklist import PHASES
from x402console.drill.environment import DrillEnvironment
from x402console.journal import Journal
from x402console.settings.model import Contact, EscalationTier, NotifyHook
from x402console.ui import incident_ops
from x402console.ui.console import ConsoleApp
from x402console.ui.panes.health import HealthPane
from x402console.ui.screens.action_dialog import ActionDialog
from x402console.ui.screens.action_picker import ActionPicker
from x402console.ui.screens.dialogs import ConfirmScreen, PromptScreen, SeverityScreen

from tests.rig.drill import drill_options
from tests.ui.test_console_behaviour import (
    declare_via_dialog,
    highlight_item,
    journal_ready,
    on_screen,
    settings_in,
    until,
)
from tests.ui.test_console_snapshots import running, screen_text

FIRST_ITEM = PHASES[0].items[0].id
FIRST_ITEM_TEXT = PHASES[0].items[0].text


# ------------------------------------------------------------------ helpers


def with_journal(settings, path: Path):
    """The same settings with their own journal file."""
    return dataclasses.replace(settings, environment=dataclasses.replace(settings.environment, journal=path))


async def confirm_dialog(pilot, app: ConsoleApp, key: str, what: str) -> None:
    """Press `key`, wait for its ConfirmScreen (Cancel focused) and press its confirming button."""
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), f"the {what} dialog")
    await pilot.press("tab")  # Cancel is focused: tab moves to the confirming button
    assert app.focused is not None and app.focused.id == "confirm"
    await pilot.press("enter")
    await until(pilot, lambda: len(app.screen_stack) == 1, f"the {what} dialog to close")


async def type_in_prompt(pilot, app: ConsoleApp, text: str) -> PromptScreen:
    await until(pilot, lambda: isinstance(app.screen, PromptScreen), "a prompt")
    screen = app.screen
    await pilot.press(*text)
    await pilot.press("enter")
    return screen  # type: ignore[return-value]


async def status_is(pilot, app: ConsoleApp, incident_id: int, status: str) -> None:
    await until(pilot, lambda: any(i.id == incident_id and i.status == status for i in app.incidents),
                f"incident #{incident_id} {status} in the console")


def header(app: ConsoleApp) -> str:
    return screen_text(app).splitlines()[0]


async def header_shows(pilot, app: ConsoleApp, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while needle not in header(app):
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in the header:\n{header(app)}")
        await pilot.pause(0.1)
    return header(app)


async def last_event(journal: Journal, incident_id: int | None, kind: str):
    events = await journal.events(incident_id, kinds=(kind,))
    assert events, f"no {kind} event for incident {incident_id}"
    return events[-1]


# ------------------------------------------------------------------ lifecycle through keys


async def test_lifecycle_through_keys_is_journaled_and_shown(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        journal = app.journal
        me = str(journal.actor)

        incident_id = await declare_via_dialog(pilot, app, "proofs failing")
        declared = await last_event(journal, incident_id, "status_changed")
        assert declared.actor == me and declared.details["to"] == "declared"
        await header_shows(pilot, app, "[declared]")

        await confirm_dialog(pilot, app, "A", "acknowledge")
        await status_is(pilot, app, incident_id, "acknowledged")
        acked = await last_event(journal, incident_id, "status_changed")
        assert (acked.actor, acked.details["from"], acked.details["to"]) == (me, "declared", "acknowledged")
        await header_shows(pilot, app, "[acknowledged]")

        # V: the dialog opens with Cancel focused; choose P1 in the list, give a reason.
        await pilot.press("V")
        await until(pilot, lambda: isinstance(app.screen, SeverityScreen), "the severity dialog")
        dialog = app.screen
        assert app.focused is not None and app.focused.id == "cancel"
        assert "x402console" in header(app), "the dialog is centred, not over the header"
        await pilot.press("shift+tab", "shift+tab")  # Cancel -> reason -> severity list
        assert app.focused is dialog.query_one("#severity", Select)
        await pilot.press("enter")  # opens the list on P2
        await pilot.pause(0.2)
        await pilot.press("up", "enter")  # P1
        await until(pilot, lambda: dialog.query_one("#severity", Select).value == "P1", "P1 chosen")
        await pilot.click("#change")  # no reason yet: refused in the dialog
        await pilot.pause(0.2)
        assert app.screen is dialog and "A reason is needed" in screen_text(app)
        await pilot.press(*"error ratio above 20%")
        await pilot.click("#change")
        await until(pilot, lambda: any(i.id == incident_id and i.severity == "P1" for i in app.incidents),
                    "severity P1 in the console")
        assert (await journal.incident(incident_id)).severity == "P1"
        changed = await last_event(journal, incident_id, "severity_changed")
        assert changed.actor == me
        assert changed.details == {"from": "P2", "to": "P1", "reason": "error ratio above 20%"}
        assert " P1 " in await header_shows(pilot, app, "[acknowledged]")

        # X: mark as a security incident, with a reason.
        await pilot.press("X")
        await type_in_prompt(pilot, app, "odd proofs")
        await until(pilot, lambda: any(i.id == incident_id and i.security for i in app.incidents),
                    "the security mark in the console")
        marked = await last_event(journal, incident_id, "status_changed")
        assert marked.actor == me and marked.details == {"security": True, "reason": "odd proofs"}
        await header_shows(pilot, app, "SECURITY")

        await confirm_dialog(pilot, app, "M", "mitigate")
        await status_is(pilot, app, incident_id, "mitigated")
        assert (await last_event(journal, incident_id, "status_changed")).details["to"] == "mitigated"
        await header_shows(pilot, app, "[mitigated]")

        await confirm_dialog(pilot, app, "R", "resolve")
        await status_is(pilot, app, incident_id, "resolved")
        resolved = await journal.incident(incident_id)
        assert resolved.status == "resolved" and resolved.resolved_at is not None
        await header_shows(pilot, app, "no open incident")

        await confirm_dialog(pilot, app, "ctrl+o", "reopen")
        await status_is(pilot, app, incident_id, "declared")
        reopened = await journal.incident(incident_id)
        assert reopened.status == "declared" and reopened.resolved_at is None and reopened.acknowledged_at is None
        event = await last_event(journal, incident_id, "status_changed")
        assert event.actor == me and (event.details["from"], event.details["to"]) == ("resolved", "declared")
        await header_shows(pilot, app, f"[declared] SECURITY #{incident_id} proofs failing")

        await pilot.press("W")
        await type_in_prompt(pilot, app, "restarted nothing yet")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the note prompt to close")
        note = await last_event(journal, incident_id, "note")
        assert (note.actor, note.summary) == (me, "restarted nothing yet")

        # The timeline screen shows every step.
        await pilot.press("T")
        text = await on_screen(pilot, app, "restarted nothing yet")
        assert "Severity P2 -> P1: error ratio above 20%" in text
        assert f"Incident #{incident_id} reopened" in text


# ------------------------------------------------------------------ roles


async def test_observer_refuses_declare_note_and_checklist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incident_ops, "ESCALATION_INTERVAL", 0.5)  # the escalation tick, short for the test
    settings = settings_in(tmp_path)  # the runbook's first tier pages at once: not from an observer
    app = ConsoleApp(settings, role="observer", observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        other = await Journal.open(settings.environment.journal)
        try:
            await pilot.press("D")
            await on_screen(pilot, app, "declaring an incident refused")
            assert len(app.screen_stack) == 1, "no declare dialog for an observer"
            assert await other.incidents() == ()

            incident = await other.declare_incident("replica down", "P1", other.actor)
            await until(pilot, lambda: app.focus_incident_id == incident.id, "the incident in the observer console")
            # The observer sees the clocks (several escalation ticks pass below) but pages nobody.
            await header_shows(pilot, app, "response +")
            await pilot.press("W")
            await on_screen(pilot, app, "adding a note refused")
            assert len(app.screen_stack) == 1, "no note prompt for an observer"
            await highlight_item(pilot, app, FIRST_ITEM)
            await pilot.press("space")
            await on_screen(pilot, app, "ticking the checklist refused")
            await pilot.pause(1.2)  # a journal poll later
            assert f"[ ] {FIRST_ITEM_TEXT}" in screen_text(app)
            assert not any(s.checked for s in (await other.checklist_state(incident.id)).values())
            # Joining is recorded for every console (role_changed); nothing else from an observer:
            # no incident, note, tick, observation or escalation.
            written = [e for e in await other.events() if e.origin == app.journal.origin and e.kind != "role_changed"]
            assert written == [], f"the observer wrote {written}"
            assert await other.events(incident.id, kinds=("escalation",)) == ()
        finally:
            await other.close()


async def test_scribe_records_notes_and_ticks_but_not_lifecycle(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    app = ConsoleApp(settings, role="scribe", observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        assert " scribe " in await header_shows(pilot, app, "scribe")
        await pilot.press("D")
        await on_screen(pilot, app, "role scribe: declaring an incident refused")
        assert len(app.screen_stack) == 1 and await app.journal.incidents() == ()

        other = await Journal.open(settings.environment.journal)
        try:
            incident = await other.declare_incident("latency above 5 s", "P2", other.actor)
        finally:
            await other.close()
        await until(pilot, lambda: app.focus_incident_id == incident.id, "the incident in the scribe console")
        for key, what in (("A", "acknowledge the incident refused"), ("V", "changing severity refused")):
            await pilot.press(key)
            await on_screen(pilot, app, what)
            assert len(app.screen_stack) == 1, f"{key} opened a dialog for a scribe"
        now = await app.journal.incident(incident.id)
        assert (now.status, now.severity) == ("declared", "P2")
        assert await app.journal.events(incident.id, kinds=("severity_changed",)) == ()

        await pilot.press("W")
        await type_in_prompt(pilot, app, "p95 at 6 s on prover-2")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the note prompt to close")
        note = await last_event(app.journal, incident.id, "note")
        assert note.summary == "p95 at 6 s on prover-2" and note.actor == str(app.journal.actor)

        await highlight_item(pilot, app, FIRST_ITEM)
        await pilot.press("space")
        await on_screen(pilot, app, f"[x] {FIRST_ITEM_TEXT}")
        assert (await app.journal.checklist_state(incident.id))[FIRST_ITEM].checked


# ------------------------------------------------------------------ escalation


class Pager:
    """A webhook receiver on 127.0.0.1 that keeps every POST body."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        pager = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                pager.posts.append({"path": self.path, "body": json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/page"
        self.thread = threading.Thread(target=self.server.serve_forever, name="pager", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def pager() -> Iterator[Pager]:
    p = Pager()
    try:
        yield p
    finally:
        p.close()


async def test_an_unacknowledged_incident_pages_once_across_two_consoles(
        tmp_path: Path, pager: Pager, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incident_ops, "ESCALATION_INTERVAL", 0.5)  # the escalation tick, short for the test
    base = settings_in(tmp_path)
    settings = dataclasses.replace(
        base,
        contacts=(Contact("on-call", role="on-call engineer", hook="pager"),),
        escalation_tiers=(EscalationTier("on-call engineer", 0, ("on-call",), "unacknowledged", 15),),
        notify_hooks=(NotifyHook("pager", "webhook", url=pager.url, timeout_seconds=5.0),),
    )
    first = ConsoleApp(settings, observe=False)
    second = ConsoleApp(settings, observe=False)
    async with running(first) as p1, running(second) as p2:
        await journal_ready(p1, first)
        await journal_ready(p2, second)
        incident_id = await declare_via_dialog(p1, first, "all replicas down")
        await until(p1, lambda: len(pager.posts) >= 1, "the page to arrive", timeout=15)
        await until(p2, lambda: second.focus_incident_id == incident_id, "the incident in the second console")
        # Both consoles tick several more times; neither pages again.
        await p1.pause(2.0)
        await p2.pause(1.0)
        assert len(pager.posts) == 1, pager.posts
        body = pager.posts[0]["body"]
        assert body["incident"] == incident_id and body["severity"] == "P2" and body["title"] == "all replicas down"

        events = await first.journal.events(incident_id, kinds=("escalation", "system"))
        escalations = [e for e in events if e.kind == "escalation"]
        deliveries = [e for e in events if e.kind == "system"]
        assert len(escalations) == 1 and len(deliveries) == 1, events
        key = escalations[0].details["key"]
        assert key.startswith(f"{incident_id}:0:tier:0") and escalations[0].details["contacts"] == ["on-call"]
        assert deliveries[0].details["ok"] is True and deliveries[0].details["contact"] == "on-call"
        assert "sent" in deliveries[0].summary and "NOT" not in deliveries[0].summary
        # The console that recorded the step says so (normally the one that declared).
        toasts = [screen_text(a) for a in (first, second)]
        assert sum("escalation: Page on-call engineer" in t for t in toasts) == 1, toasts

    # A console that comes later (or one racing the first) records the same step: refused.
    late = await Journal.open(settings.environment.journal)
    try:
        assert await late.record_escalation(key, "again", late.actor, incident_id, {"key": key}) is None
        assert len(await late.events(incident_id, kinds=("escalation",))) == 1
    finally:
        await late.close()


# ------------------------------------------------------------------ post-mortem


async def test_postmortem_export_writes_a_draft_in_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        incident_id = await declare_via_dialog(pilot, app, "database corruption on prover-1")
        await confirm_dialog(pilot, app, "R", "resolve")
        await status_is(pilot, app, incident_id, "resolved")
        await pilot.press("P")
        await until(pilot, lambda: list(workdir.glob("postmortem-*.md")), "the post-mortem file")
        (path,) = workdir.glob("postmortem-*.md")
        assert path.name.startswith(f"postmortem-{incident_id}-")
        text = path.read_text()
        assert "database corruption on prover-1" in text
        assert "TODO(author)" in text
        text = await on_screen(pilot, app, "post-mortem draft written")
        assert "no incident in focus" not in text  # the resolved incident is the one written up


# ------------------------------------------------------------------ on a drill (process mode): actions, guard, suggestion


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> Iterator[DrillEnvironment]:
    env = DrillEnvironment(drill_options(tmp_path_factory.mktemp("flow"), traffic_rate=6.0, traffic_clients=10,
                                         invalid_ratio=0.0))
    try:
        env.start()
        yield env
    finally:
        env.stop()


def drill_console(drill: DrillEnvironment, journal: Path, **kw) -> ConsoleApp:
    """A console on the drill's replicas with a journal of its own (the test's tmp_path)."""
    return ConsoleApp(with_journal(load_config(drill.state.config), journal), drill_env=drill, **kw)


def focused_security(app: ConsoleApp, incident_id: int) -> bool:
    inc = app.focused_incident()
    return inc is not None and inc.id == incident_id and inc.security


async def replica_pid(drill: DrillEnvironment, name: str) -> int:
    replica = next(r for r in drill.replicas if r.name == name)
    return int((await asyncio.to_thread(drill.control(replica).status))["pid"])


async def replica_selected(pilot, app: ConsoleApp, name: str) -> None:
    await until(pilot, lambda: app._q("#health", HealthPane).selected_replica() == name,
                f"{name} selected in the health pane", timeout=30)
    assert app.focused is not None and app.focused.id == "health-table"


async def pick_action(pilot, app: ConsoleApp, key: str) -> None:
    """`.` on the health pane, then the action's own key."""
    await pilot.press("full_stop")
    await until(pilot, lambda: isinstance(app.screen, ActionPicker), "the action picker")
    await pilot.pause(0.1)
    await pilot.press(key)


async def action_outcome(pilot, app: ConsoleApp, timeout: float = 60.0):
    dialog = app.screen
    assert isinstance(dialog, ActionDialog)
    await until(pilot, lambda: dialog.outcome is not None or "refused:" in screen_text(app)
                or "failed:" in screen_text(app), f"{dialog.plan.action_id} to finish", timeout=timeout)
    outcome = dialog.outcome
    await pilot.press("escape")
    await until(pilot, lambda: len(app.screen_stack) == 1, "the action dialog to close")
    return outcome


@pytest.mark.slow
async def test_scribe_actions_run_read_only(drill: DrillEnvironment, tmp_path: Path) -> None:
    app = drill_console(drill, tmp_path / "journal.db", role="scribe")
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        await replica_selected(pilot, app, "prover-1")
        pid = await replica_pid(drill, "prover-1")

        await pick_action(pilot, app, "p")  # process.restart
        await on_screen(pilot, app, "read-only: Restart replica process changes prover-1")
        assert len(app.screen_stack) == 1, "no plan dialog for a refused restart"
        (record,) = await app.journal.actions()
        assert (record.action_id, record.target, record.outcome) == ("process.restart", "prover-1", "refused")
        assert "read-only" in record.detail["reason"] and record.actor == str(app.journal.actor)
        assert await replica_pid(drill, "prover-1") == pid

        await pick_action(pilot, app, "h")  # diag.probe_health: asks for its timeout first
        await pilot.press("enter")  # empty: the default
        await until(pilot, lambda: isinstance(app.screen, ActionDialog), "the probe's plan dialog")
        await pilot.click("#run")
        outcome = await action_outcome(pilot, app, timeout=30)
        assert outcome is not None and outcome.status == "succeeded", outcome
        probe = [r for r in await app.journal.actions() if r.action_id == "diag.probe_health"]
        assert [(r.target, r.outcome) for r in probe] == [("prover-1", "succeeded")]


# ------------------------------------------------------------------ the security guard


@pytest.mark.slow
async def test_security_guard_asks_for_the_typed_override(drill: DrillEnvironment, tmp_path: Path) -> None:
    app = drill_console(drill, tmp_path / "journal.db")
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        journal = app.journal
        first = await journal.declare_incident("forged proofs suspected", "P0", journal.actor, drill=True)
        await journal.set_security(first.id, True, journal.actor, "proofs verify that should not")
        await until(pilot, lambda: focused_security(app, first.id), "the security incident in focus")
        await header_shows(pilot, app, "SECURITY")
        await replica_selected(pilot, app, "prover-1")
        pid = await replica_pid(drill, "prover-1")

        # A wrong name is refused in the prompt; Escape runs nothing.
        await pick_action(pilot, app, "p")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), "the override prompt")
        text = await on_screen(pilot, app, "Override the security guard")
        assert "Type prover-1 to go on" in text
        prompt = await type_in_prompt(pilot, app, "prover-2")
        await on_screen(pilot, app, "Type 'prover-1' exactly to confirm.")
        assert app.screen is prompt
        await pilot.press("escape")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the prompt to close")
        await pilot.pause(0.5)
        # (The guard's refusal itself may be journaled; nothing started.)
        assert {r.outcome for r in await journal.actions(first.id)} <= {"refused"}, "nothing ran"
        assert await replica_pid(drill, "prover-1") == pid

        # The replica's name: the plan says the guard is overridden; Run restarts the replica.
        await pick_action(pilot, app, "p")
        await type_in_prompt(pilot, app, "prover-1")
        await until(pilot, lambda: isinstance(app.screen, ActionDialog), "the restart plan")
        await on_screen(pilot, app, "Security guard overridden")
        await pilot.click("#run")
        outcome = await action_outcome(pilot, app, timeout=60)
        assert outcome is not None and outcome.status == "succeeded", outcome
        assert await replica_pid(drill, "prover-1") != pid
        (done,) = [r for r in await journal.actions(first.id) if r.outcome == "succeeded"]
        assert done.action_id == "process.restart" and done.target == "prover-1"
        assert done.detail["params"]["security_override"] is True
        notes = await journal.events(first.id, kinds=("note",))
        assert any("Security guard overridden" in n.summary for n in notes), notes

        # A second security incident: after an evidence bundle (E) no override is asked for.
        await journal.resolve(first.id, journal.actor)
        second = await journal.declare_incident("keys changed", "P0", journal.actor, drill=True)
        await journal.set_security(second.id, True, journal.actor, "verification key differs")
        await until(pilot, lambda: focused_security(app, second.id), "the second security incident in focus")
        await pilot.press("E")
        await until(pilot, lambda: isinstance(app.screen, ActionDialog), "the evidence plan")
        await pilot.click("#run")
        outcome = await action_outcome(pilot, app, timeout=90)
        assert outcome is not None and outcome.status == "succeeded", outcome
        (bundle,) = await journal.actions(second.id)
        assert (bundle.action_id, bundle.outcome) == ("evidence.bundle", "succeeded")

        await pick_action(pilot, app, "p")
        await until(pilot, lambda: isinstance(app.screen, (ActionDialog, PromptScreen)), "the restart")
        assert isinstance(app.screen, ActionDialog), "an override asked for after evidence was preserved"
        assert "Security guard overridden" not in screen_text(app)
        await pilot.press("escape")  # Cancel: nothing runs
        await until(pilot, lambda: len(app.screen_stack) == 1, "the plan to close")
        assert [r.action_id for r in await journal.actions(second.id)] == ["evidence.bundle"]


# ------------------------------------------------------------------ severity suggestion


@pytest.mark.slow
async def test_a_fault_shows_a_suggestion_and_records_one_observation(
        drill: DrillEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incident_ops, "ASSESS_INTERVAL", 0.5)  # more passes in less time
    app = drill_console(drill, tmp_path / "journal.db")
    controls = [drill.control(r) for r in drill.replicas]
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        try:
            for c in controls:
                await asyncio.to_thread(c.set_fault, "error_ratio", ratio=0.5)

            def error_reason():
                a = app.assessment
                return next((r for r in (a.reasons if a else ()) if r.rule_id.startswith("error_ratio")), None)

            await until(pilot, lambda: error_reason() is not None, "an error-ratio reason", timeout=45)
            # The header follows the assessment at its next frame: wait for the two to agree.
            await until(pilot, lambda: app.suggestion() is not None
                        and f"suggested  {app.suggestion()[0]} " in header(app), "the suggestion in the header")
            level, why = app.suggestion()
            assert level in ("P0", "P1", "P2"), (level, why)  # the error ratio alone is P2 or worse
            rule = error_reason().rule_id

            async def observed() -> list:
                return [e for e in await app.journal.events(kinds=("observation",)) if e.details.get("rule") == rule]

            deadline = time.monotonic() + 10
            while not (seen := await observed()) and time.monotonic() < deadline:
                await pilot.pause(0.2)
            assert len(seen) == 1, seen
            assert seen[0].details["level"] in ("P1", "P2") and seen[0].incident_id is None
            await pilot.pause(3.0)  # several more passes with the fault still on
            assert await observed() == seen, "the observation was recorded again"
            assert error_reason() is not None, "the fault is still seen"
        finally:
            for c in controls:
                await asyncio.to_thread(c.clear_all)


# ------------------------------------------------------------------ declare pre-filled from the live signals


async def test_declare_is_prefilled_from_the_severity_engine_and_the_best_match(tmp_path: Path) -> None:
    from textual.widgets import Input

    from x402console.core.matcher import match
    from x402console.core.severity import assess
    from x402console.core.signals import ReplicaSignal, Signals
    from x402console.ui.screens.dialogs import DeclareScreen

    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        # What the severity pass computes from the store, here from a picture with a changed key.
        signals = Signals(taken_at=time.time(), vk_status="changed", verification_failures=12,
                          replicas=(ReplicaSignal("prover-1", up=True), ReplicaSignal("prover-2", up=True)))
        app.assessment = assess(signals, app.settings.severity, app.settings.targets)
        app.matches = match(signals, thresholds=app.settings.severity)
        best = app.matches[0]
        assert (app.assessment.level, best.incident) == ("P0", 4)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, DeclareScreen), "the declare dialog")
        assert app.screen.query_one("#severity", Select).value == "P0"
        box = app.screen.query_one("#title", Input)
        assert box.value == "" and best.title in box.placeholder
        await pilot.click("#declare")  # an empty title keeps the suggestion
        await until(pilot, lambda: app.incidents, "the incident in the console")
        (incident,) = app.incidents
        # the runbook's Incident 4 is a security incident: declared as one, so the evidence
        # guard holds from the first minute
        assert (incident.title, incident.severity, incident.runbook_incident, incident.security) == \
            (best.title, "P0", 4, True)
