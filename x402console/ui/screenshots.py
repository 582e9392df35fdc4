"""Make the README's screenshots from the real app on the drill environment.

    python -m x402console.ui.screenshots [--out screenshots] [--settle 20]

Starts a two-replica drill (with Prometheus and nginx when installed), opens the console on it
headless at 160x45, waits until every pane shows live data and the charts have some history,
saves `console-healthy.svg`; then arms the high-error-rate scenario, declares an incident,
ticks the first checklist items, waits again and saves `console-incident.svg`. On that incident
it then saves the runbook screen (`runbook.svg`: the suggested severity with its reasons and the
matched runbook incident's steps), the plan of a restart of prover-1 as the `.` picker opens it
(`action-plan.svg`, Cancel focused; cancelled, nothing runs) and, after a real read-only health
probe and a note, the incident's timeline (`timeline.svg`). Also a compact 80x24 view.
Everything it starts is stopped at the end; the whole run takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from x402console.config import load_config
from x402console.drill.environment import DrillEnvironment, DrillOptions

# The severity pass runs every ASSESS_INTERVAL (5 s) in the console; shorter here so the
# runbook screen has a fresh assessment without waiting a whole interval after the scenario.
SHOT_ASSESS_INTERVAL = 1.0
WAIT_LIMIT = 15.0  # bound on waiting for one screen to reach the state worth saving


async def _settle(pilot, app, seconds: float) -> None:
    deadline = time.monotonic() + 30
    while not all(app.live_panes().values()) and time.monotonic() < deadline:
        await pilot.pause(0.1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await pilot.pause(0.5)


async def _wait_for(pilot, what: str, ready: Callable[[], Any], limit: float = WAIT_LIMIT) -> None:
    """Wait until `ready()` holds: a screenshot of a half-drawn screen is worse than none."""
    deadline = time.monotonic() + limit
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"screenshots: {what} not ready after {limit:.0f} s")
        await pilot.pause(0.2)
    await pilot.pause(0.5)  # let the frame that shows it be painted


def _screen_named(app, name: str) -> Any:
    return app.screen if type(app.screen).__name__ == name else None


def _matched(app, runbook_incident: int) -> bool:
    a = app.assessment
    return (a is not None and bool(a.level) and bool(a.reasons)
            and any(m.incident == runbook_incident and m.score > 0 for m in app.matches))


async def _runbook_shot(pilot, app, out: Path, runbook_incident: int) -> Path:
    await _wait_for(pilot, "the severity pass", lambda: _matched(app, runbook_incident))
    await pilot.press("B")
    await _wait_for(pilot, "the runbook screen", lambda: (s := _screen_named(app, "RunbookScreen")) is not None
                    and s.current_view() is not None and bool(s.current_view().query("StepView")))
    await pilot.press("right")
    await _wait_for(pilot, "the focused step", lambda: app.screen.focused_step() is not None)
    # The first step the console can run in focus: its action and "Enter runs it" show.
    for _ in range(8):
        if app.screen.focused_step().runnable:
            break
        await pilot.press("down")
        await pilot.pause(0.1)
    await pilot.pause(0.3)
    path = Path(app.save_screenshot("runbook.svg", str(out)))
    await pilot.press("escape")
    await _wait_for(pilot, "the console", lambda: len(app.screen_stack) == 1)
    return path


async def _action_plan_shot(pilot, app, out: Path) -> Path:
    await pilot.press("1")  # the health pane, its first row (prover-1) selected
    await _wait_for(pilot, "prover-1 selected", lambda: app._q("#health").selected_replica() == "prover-1")
    await pilot.press("full_stop")
    await _wait_for(pilot, "the action picker", lambda: _screen_named(app, "ActionPicker") is not None)
    restart = next(a for a in app._actions_for("health") if a.id in ("process.restart", "container.restart"))
    await pilot.press(restart.key)
    await _wait_for(pilot, "the restart plan", lambda: (s := _screen_named(app, "ActionDialog")) is not None
                    and s.focused is not None and s.focused.id == "cancel")
    path = Path(app.save_screenshot("action-plan.svg", str(out)))
    await pilot.press("escape")  # Cancel: nothing was run
    await _wait_for(pilot, "the console", lambda: len(app.screen_stack) == 1)
    return path


async def _timeline_shot(pilot, app, out: Path, incident_id: int) -> Path:
    journal = app.journal
    # A real action on the incident (read-only), so its start and outcome are on the timeline.
    ctx = app._action_context()
    target = next(t for t in app.remediation_registry.get("diag.probe_health").targets(ctx) if t.name == "prover-1")
    plan = await app.remediation_registry.prepare("diag.probe_health", ctx, target, {})
    await app.remediation_registry.execute(plan, ctx, None)
    await journal.add_event("note", "errors on both replicas since the scenario; restart held back,"
                            " looking at the prove step first", journal.actor, incident_id)
    await journal.set_checklist(incident_id, "response.logs_reviewed", True, journal.actor)

    async def kinds() -> set[str]:
        return {e.kind for e in await journal.events(incident_id)}

    wanted = {"observation", "note", "checklist", "action_started", "action_finished", "status_changed"}
    deadline = time.monotonic() + WAIT_LIMIT
    while not wanted <= await kinds() and time.monotonic() < deadline:
        await pilot.pause(0.5)
    await pilot.press("T")
    await _wait_for(pilot, "the timeline", lambda: (s := _screen_named(app, "TimelineScreen")) is not None
                    and s.loaded and len(s.events) > 0)
    # The action's outcome selected, its details open: what the probe saw, as journaled.
    view = app.screen.query_one("#timeline-events")
    for _ in range(len(view.rows)):
        if view.selected is not None and view.selected.kind == "action_finished":
            break
        await pilot.press("up")
    await pilot.press("enter")
    await _wait_for(pilot, "the event's details", lambda: app.screen.query_one("#timeline-details").display)
    path = Path(app.save_screenshot("timeline.svg", str(out)))
    await pilot.press("escape")  # the details, then the timeline
    await pilot.press("escape")
    await _wait_for(pilot, "the console", lambda: len(app.screen_stack) == 1)
    return path


async def _shoot(env: DrillEnvironment, out: Path, settle: float) -> list[Path]:
    from x402console.ui.console import ConsoleApp

    settings = load_config(env.state.config)
    made: list[Path] = []
    app = ConsoleApp(settings, drill_env=env)
    async with app.run_test(size=(160, 45)) as pilot:
        await _settle(pilot, app, settle)
        made.append(Path(app.save_screenshot("console-healthy.svg", str(out))))
        await asyncio.to_thread(env.arm_scenario)
        runbook_incident = env.scenario.incident if env.scenario else 2
        incident = await app.journal.declare_incident("Proof error ratio above 20 %", "P1", app.journal.actor,
                                                      drill=True, runbook_incident=runbook_incident)
        for item in ("detection.alert_acknowledged", "detection.severity_assessed",
                     "response.health_checked"):
            await app.journal.set_checklist(incident.id, item, True, app.journal.actor)
        await app.journal.acknowledge(incident.id, app.journal.actor)
        await _settle(pilot, app, settle)
        made.append(Path(app.save_screenshot("console-incident.svg", str(out))))
        made.append(await _runbook_shot(pilot, app, out, runbook_incident))
        made.append(await _action_plan_shot(pilot, app, out))
        made.append(await _timeline_shot(pilot, app, out, incident.id))
    app = ConsoleApp(settings, drill_env=env)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot, app, 3)
        made.append(Path(app.save_screenshot("console-compact-80x24.svg", str(out))))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--settle", type=float, default=20.0, help="seconds of history before each shot")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from x402console.ui import incident_ops

    with tempfile.TemporaryDirectory(prefix="x402-shots-") as tmp:
        env = DrillEnvironment(DrillOptions(state_dir=Path(tmp) / "drill", prover_port=0, prometheus_port=0,
                                            nginx_port=0, scenario="high_error_rate", scenario_delay=3600,
                                            seed=1))
        saved_interval = incident_ops.ASSESS_INTERVAL
        incident_ops.ASSESS_INTERVAL = SHOT_ASSESS_INTERVAL
        env.start()
        try:
            made = asyncio.run(_shoot(env, args.out, args.settle))
        finally:
            env.stop()
            incident_ops.ASSESS_INTERVAL = saved_interval
    for p in made:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
