"""Make the README's screenshots from the real app on the drill environment.

    python -m x402console.ui.screenshots [--out screenshots] [--settle 25]

Starts a two-replica drill (with Prometheus and nginx when installed), opens the console on it
headless at 160x45, waits until every pane shows live data and the charts have some history,
saves `console-healthy.svg`; then arms the high-error-rate scenario, declares an incident,
ticks the first checklist items, waits again and saves `console-incident.svg`. Also a compact
80x24 view. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from x402console.config import load_config
from x402console.drill.environment import DrillEnvironment, DrillOptions


async def _settle(pilot, app, seconds: float) -> None:
    deadline = time.monotonic() + 30
    while not all(app.live_panes().values()) and time.monotonic() < deadline:
        await pilot.pause(0.1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await pilot.pause(0.5)


async def _shoot(env: DrillEnvironment, out: Path, settle: float) -> list[Path]:
    from x402console.ui.console import ConsoleApp

    settings = load_config(env.state.config)
    made: list[Path] = []
    app = ConsoleApp(settings, drill_env=env)
    async with app.run_test(size=(160, 45)) as pilot:
        await _settle(pilot, app, settle)
        made.append(Path(app.save_screenshot("console-healthy.svg", str(out))))
        await asyncio.to_thread(env.arm_scenario)
        incident = await app.journal.declare_incident("Proof error ratio above 20 %", "P1", app.journal.actor,
                                                      drill=True, runbook_incident=2)
        for item in ("detection.alert_acknowledged", "detection.severity_assessed",
                     "response.health_checked"):
            await app.journal.set_checklist(incident.id, item, True, app.journal.actor)
        await app.journal.acknowledge(incident.id, app.journal.actor)
        await _settle(pilot, app, settle)
        made.append(Path(app.save_screenshot("console-incident.svg", str(out))))
    app = ConsoleApp(settings, drill_env=env)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot, app, 3)
        made.append(Path(app.save_screenshot("console-compact-80x24.svg", str(out))))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--settle", type=float, default=25.0, help="seconds of history before each shot")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="x402-shots-") as tmp:
        env = DrillEnvironment(DrillOptions(state_dir=Path(tmp) / "drill", prover_port=0, prometheus_port=0,
                                            nginx_port=0, scenario="high_error_rate", scenario_delay=3600,
                                            seed=1))
        env.start()
        try:
            made = asyncio.run(_shoot(env, args.out, args.settle))
        finally:
            env.stop()
    for p in made:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
