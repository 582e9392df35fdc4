"""The runbook screen over real pictures: real assess(), match(), the packaged runbook and the
real action registry, in a tiny host app that records the messages the screen sends it."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from textual.app import App
from textual.widgets import OptionList, Static

from x402console.actions.registry import default_registry
from x402console.core.matcher import match
from x402console.core.runbook import load_runbook
from x402console.core.severity import assess
from x402console.core.signals import ReplicaSignal, Signals
from x402console.ui.screens.runbook import IncidentView, RunbookScreen, StepView, resolve_action

from tests.ui.test_console_snapshots import screen_text

RUNBOOK = load_runbook()
REGISTRY = default_registry()


# ------------------------------------------------------------------ pictures


def up(name: str, ok: bool = True) -> ReplicaSignal:
    return ReplicaSignal(name, up=ok, state="running" if ok else "exited")


DB_CORRUPT = Signals(taken_at=0, replicas=(up("prover-1"), up("prover-2")), db_integrity="failed",
                     error_ratio=0.3, proof_rate=4.0, proof_rate_baseline=10.0)
VK_CHANGED = Signals(taken_at=0, replicas=(up("prover-1"),), vk_status="changed", verification_failures=3)
ALL_DOWN = Signals(taken_at=0, replicas=(up("prover-1", False), up("prover-2", False)))
HEALTHY = Signals(taken_at=0, replicas=(up("prover-1"),), error_ratio=0.0, proof_rate=10.0,
                  proof_rate_baseline=10.0, db_integrity="ok", vk_status="match")
P95_AT_LEAST = Signals(taken_at=0, replicas=(up("prover-1"),), latency_p95=2.0, latency_p95_at_least=True,
                       error_ratio=0.0)


def screen_for(signals: Signals, registry: Any = REGISTRY, **kw: Any) -> RunbookScreen:
    return RunbookScreen(assess(signals), match(signals, RUNBOOK), RUNBOOK, registry, **kw)


class Host(App):
    """Stands in for the console: pushes the screen and keeps what it is sent."""

    def __init__(self, screen: RunbookScreen) -> None:
        super().__init__()
        self.runbook_screen = screen
        self.runs: list[RunbookScreen.RunStep] = []
        self.declares: list[RunbookScreen.DeclareFromMatch] = []

    def on_mount(self) -> None:
        self.push_screen(self.runbook_screen)

    def on_runbook_screen_run_step(self, message: RunbookScreen.RunStep) -> None:
        self.runs.append(message)

    def on_runbook_screen_declare_from_match(self, message: RunbookScreen.DeclareFromMatch) -> None:
        self.declares.append(message)


async def until(pilot, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def listed(screen: RunbookScreen) -> list[int]:
    lst = screen.query_one("#runbook-incidents", OptionList)
    ids = [lst.get_option_at_index(i).id for i in range(lst.option_count)]
    return [int(i.removeprefix("incident-")) for i in ids if i]


def highlighted_incident(screen: RunbookScreen) -> int:
    lst = screen.query_one("#runbook-incidents", OptionList)
    assert lst.highlighted is not None
    return int(lst.get_option_at_index(lst.highlighted).id.removeprefix("incident-"))


async def steps_of(pilot, screen: RunbookScreen, incident: int) -> list[StepView]:
    await until(pilot, lambda: screen.current_view() is not None and screen.selected == incident
                and bool(screen.current_view().query(StepView)), f"incident {incident}'s steps")
    await pilot.pause()
    return list(screen.current_view().query(StepView))


def step_with(steps: list[StepView], text: str) -> StepView:
    found = [s for s in steps if s.step.text == text]
    assert found, f"no step {text!r} in {[s.step.text for s in steps]}"
    return found[0]


def shown(widget) -> str:
    return "\n".join(str(s.render()) for s in widget.query(Static))


# ------------------------------------------------------------------ tests


async def test_db_corruption_ranks_incident_5_first_with_its_severity_and_steps() -> None:
    screen = screen_for(DB_CORRUPT)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        steps = await steps_of(pilot, screen, 5)
        assert listed(screen)[0] == 5
        assert highlighted_incident(screen) == 5
        top = str(screen.query_one("#runbook-assessment", Static).render())
        assert "P1" in top and "High" in top
        assert "proofs.db integrity check failed" in top
        # Worst first and as the engine ordered them; the level's targets from the runbook.
        reasons = [r.text for r in assess(DB_CORRUPT).reasons]
        assert [top.index(r) for r in reasons] == sorted(top.index(r) for r in reasons)
        assert "respond within 1 h" in top and "< 1 hour" in top and "resolve within 24 h" in top
        assert "Not observed" in top and "vk_status" in top
        # Its runbook, sections in order, each step's command verbatim.
        texts = [s.step.text for s in steps]
        inc = RUNBOOK.incident(5)
        assert texts == [st.text for sec in inc.sections for st in sec.steps] + [p.text for p in inc.prevention]
        integrity = step_with(steps, "Check database integrity")
        assert integrity.action_id == "db.integrity_check"
        command = integrity.query_one(".step-command", Static)
        assert str(command.render()) == 'sqlite3 proofs.db "PRAGMA integrity_check;"'
        assert "Enter runs it" in shown(integrity) and "key i" in shown(integrity)
        text = screen_text(app)
        assert "Database Corruption" in text and "PRAGMA integrity_check on proofs.db failed" in text
        assert "Symptoms" in text and "SQLite integrity check fails" in text


async def test_vk_changed_is_incident_4_at_p0_with_the_security_warning() -> None:
    screen = screen_for(VK_CHANGED)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        steps = await steps_of(pilot, screen, 4)
        assert listed(screen)[0] == 4
        top = str(screen.query_one("#runbook-assessment", Static).render())
        assert "P0" in top and "Critical" in top and "respond within 15 min" in top and "resolve within 4 h" in top
        assert "SECURITY INCIDENT" in shown(screen.current_view())
        # Immediate actions come first, evidence before the stop (the runbook's order as data).
        assert [s.step.text for s in steps][:3] == ["Preserve Evidence", "STOP SERVICE IMMEDIATELY",
                                                     "Notify Security Team"]


@pytest.mark.parametrize(("mode", "expected"), [("docker", "container.restart_service"),
                                                ("process", "process.restart_service")])
async def test_enter_on_an_action_step_posts_run_step_for_the_mode(mode: str, expected: str) -> None:
    screen = screen_for(ALL_DOWN, mode=mode)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        steps = await steps_of(pilot, screen, 1)
        assert listed(screen)[0] == 1
        restart = step_with(steps, "Restart the prover service")
        assert restart.action_id == expected
        restart.focus()
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.runs), "a RunStep message")
        (run,) = app.runs
        assert (run.action_id, run.params, run.incident) == (expected, {}, 1)
        assert app.screen is screen  # running a step closes nothing


@pytest.mark.parametrize(("mode", "expected"), [("docker", "container.scale"), ("process", "process.scale")])
async def test_focus_incident_opens_an_unmatched_incident_and_passes_the_step_params(mode: str, expected: str) -> None:
    screen = screen_for(ALL_DOWN, mode=mode, focus_incident=3)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        steps = await steps_of(pilot, screen, 3)
        assert highlighted_incident(screen) == 3
        scale = step_with(steps, "Scale horizontally (add more instances)")
        scale.focus()
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.runs), "a RunStep message")
        assert (app.runs[0].action_id, app.runs[0].params) == (expected, {"replicas": 3})


async def test_keys_move_from_the_list_to_the_steps_and_run_the_first() -> None:
    screen = screen_for(ALL_DOWN)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        await steps_of(pilot, screen, 1)
        await pilot.press("enter")  # on the list: go to the incident's steps
        await until(pilot, lambda: isinstance(app.focused, StepView), "a focused step")
        assert app.focused.step.text == "Check if service is running"
        await pilot.press("down")
        assert app.focused.step.text == "Check service logs"
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.runs), "a RunStep message")
        assert (app.runs[0].action_id, app.runs[0].params) == ("logs.collect", {"lines": 100})
        await pilot.press("left")
        assert isinstance(app.focused, OptionList)


async def test_c_copies_a_command_step_verbatim_and_enter_on_it_runs_nothing() -> None:
    screen = screen_for(VK_CHANGED)
    app = Host(screen)
    async with app.run_test(size=(160, 50), notifications=True) as pilot:
        steps = await steps_of(pilot, screen, 4)
        keys = step_with(steps, "Regenerate keys from trusted ceremony")
        assert keys.action_id is None
        assert str(keys.query_one(".step-command", Static).render()) == "cd ceremony\n./automated_setup.sh"
        assert "manual: run it yourself" in shown(keys)
        keys.focus()
        await pilot.press("c")
        assert app.clipboard == keys.step.command == "cd ceremony\n./automated_setup.sh"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.runs == []
        text = screen_text(app)
        assert "Copied to the clipboard" in text and "Manual step" in text


async def test_steps_whose_action_is_not_registered_are_manual() -> None:
    # A real registry without the circuits actions (as a build without that module has).
    small = default_registry(["x402console.actions.database", "x402console.actions.containers",
                              "x402console.actions.evidence"])
    screen = screen_for(VK_CHANGED, registry=small)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        steps = await steps_of(pilot, screen, 4)
        verify = step_with(steps, "Verify circuit integrity")
        assert verify.action_id is None and not verify.runnable
        assert "manual: circuits.verify not available in this console" in shown(verify)
        assert "Enter runs it" not in shown(verify)
        evidence = step_with(steps, "Preserve Evidence")
        assert evidence.runnable and "Enter runs it" in shown(evidence)
        verify.focus()
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.runs == []


def test_resolve_action_picks_the_modes_action_among_the_alternatives() -> None:
    restart = RUNBOOK.incident(7).resolution_steps[0]
    assert restart.action_ids[0] == "container.restart_service"
    assert resolve_action(restart, REGISTRY, "docker") == ("container.restart_service", None)
    assert resolve_action(restart, REGISTRY, "process") == ("process.restart_service", None)
    containers_only = default_registry(["x402console.actions.containers"])
    action, why = resolve_action(restart, containers_only, "process")
    assert action is None and "process.restart_service" in why and "container." not in why
    stop = RUNBOOK.incident(4).sections[0].steps[1]
    assert resolve_action(stop, REGISTRY, "process") == ("process.stop_service", None)
    with pytest.raises(ValueError, match="mode must be one of"):
        screen_for(ALL_DOWN, mode="kubernetes")


async def test_update_inputs_refreshes_severity_and_ranking_but_keeps_the_selection() -> None:
    screen = screen_for(DB_CORRUPT)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        await steps_of(pilot, screen, 5)
        assert listed(screen)[:2] == [5, 2]
        await pilot.press("down")  # the list has focus: incident 2
        steps = await steps_of(pilot, screen, 2)
        chosen = step_with(steps, "Check database health")
        chosen.focus()
        await pilot.pause()
        screen.update_inputs(assess(VK_CHANGED), match(VK_CHANGED, RUNBOOK))
        await pilot.pause(0.2)
        assert listed(screen)[0] == 4
        assert highlighted_incident(screen) == 2 and screen.selected == 2
        assert app.focused is chosen
        view = screen.current_view()
        assert view is not None and view.display and view.incident.number == 2
        top = str(screen.query_one("#runbook-assessment", Static).render())
        assert "P0" in top and "verification key changed" in top and "integrity check failed" not in top
        # Nothing matches any more: all seven, the selection still kept.
        screen.update_inputs(assess(HEALTHY), match(HEALTHY, RUNBOOK))
        await pilot.pause(0.2)
        assert listed(screen) == [1, 2, 3, 4, 5, 6, 7]
        assert highlighted_incident(screen) == 2 and app.focused is chosen


async def test_no_match_lists_all_seven_incidents_at_zero() -> None:
    assert match(HEALTHY, RUNBOOK) == []
    screen = screen_for(HEALTHY)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        await steps_of(pilot, screen, 1)
        assert listed(screen) == [1, 2, 3, 4, 5, 6, 7]
        text = screen_text(app)
        assert "Nothing the console sees matches" in text
        for inc in RUNBOOK.incidents:
            assert f"0% {inc.number} {inc.title}" in text
        assert "Suggested severity: none" in text
        # Any of them can still be opened.
        for _ in range(4):
            await pilot.press("down")
        await steps_of(pilot, screen, 5)
        await pilot.press("d")
        await until(pilot, lambda: bool(app.declares), "a DeclareFromMatch message")
        # No level suggested: the incident's own runbook severity.
        assert (app.declares[0].title, app.declares[0].severity, app.declares[0].runbook_incident) == \
            ("Database Corruption", "P1", 5)


@pytest.mark.parametrize(("signals", "title", "level", "number"), [
    (DB_CORRUPT, "Database Corruption", "P1", 5),
    (VK_CHANGED, "Invalid Proofs Generated", "P0", 4),
    (ALL_DOWN, "Service Down / Not Responding", "P0", 1),
])
async def test_d_declares_from_the_selected_match_at_the_assessed_level(signals: Signals, title: str, level: str,
                                                                        number: int) -> None:
    screen = screen_for(signals)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        await steps_of(pilot, screen, number)
        await pilot.press("d")
        await until(pilot, lambda: bool(app.declares), "a DeclareFromMatch message")
        (msg,) = app.declares
        assert (msg.title, msg.severity, msg.runbook_incident) == (title, level, number)


async def test_uncertain_rules_are_shown_and_escape_closes() -> None:
    screen = screen_for(P95_AT_LEAST)
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: screen.is_mounted, "the screen")
        top = str(screen.query_one("#runbook-assessment", Static).render())
        assert "P2" in top and "Uncertain" in top and "p95 latency is at least 2.0 s" in top
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is not screen, "the screen to close")


async def test_no_assessment_yet_and_a_small_terminal_do_not_crash() -> None:
    screen = RunbookScreen(None, [], RUNBOOK, REGISTRY, focus_incident=99)
    app = Host(screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await steps_of(pilot, screen, 1)
        assert "Suggested severity: none yet" in str(screen.query_one("#runbook-assessment", Static).render())
        assert isinstance(screen.current_view(), IncidentView)
