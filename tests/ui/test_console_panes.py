"""Each pane of the console against a real drill environment (Pilot, headless).

One drill per module serves the live-data tests: two prover processes with traffic, Prometheus
scraping them and nginx in front, and the console on the configuration the drill wrote. Faults
that damage a drill (a crashed replica, a stopped Prometheus) get a drill of their own.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from x402console.config import load_config, write_config
from x402console.drill.environment import DrillEnvironment
from x402console.ui.console import ConsoleApp

from tests.rig.components import free_port
from tests.rig.drill import drill_options, require_nginx, require_prometheus
from tests.ui.test_console_snapshots import running, screen_lines, screen_text

pytestmark = [pytest.mark.slow, pytest.mark.prometheus, pytest.mark.nginx]

LIVE = 60  # bound on waiting for data from the drill (Prometheus needs a few scrapes)
RATE = re.compile(r"\brate \d+(?:\.\d+)?/s")


async def until(pilot, condition: Callable[[], bool], what: str, timeout: float = LIVE,
                app: ConsoleApp | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            shown = f"; screen:\n{screen_text(app)}" if app is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{shown}")
        await pilot.pause(0.1)


HEALTH_COLUMNS = (("replica", "replica"), ("state", "state"), ("health", "health"), ("lat", "latency"),
                  ("rst", "restarts"), ("up", "uptime"), ("CPU", "CPU"), ("MEM", "MEM"), ("tgt", "target"))


def health_cells(app: ConsoleApp) -> dict[str, dict[str, str]]:
    """The health table as shown: {replica: {column: cell text}}, cut at the header's columns."""
    lines = screen_lines(app)
    for index, line in enumerate(lines):
        if re.search(r"\breplica\s+state\s+health\s", line):
            break
    else:
        return {}
    header, starts, pos = lines[index], [], 0
    for label, _ in HEALTH_COLUMNS:
        pos = re.search(rf"(?<!\S){re.escape(label)}(?!\S)", header[pos:]).start() + pos
        starts.append(pos)
        pos += len(label)
    rows: dict[str, dict[str, str]] = {}
    for line in lines[index + 1:]:
        cells = [line[a:b] for a, b in zip(starts, starts[1:])] + [line[starts[-1]:].split("\u2502")[0]]
        name = cells[0].strip()
        if not re.fullmatch(r"[\w.-]+", name or "-") or not cells[1].strip():
            break
        rows[name] = {key: cell.strip() for (_, key), cell in zip(HEALTH_COLUMNS, cells)}
    return rows


def running_and_healthy(app: ConsoleApp, replica: str) -> bool:
    row = health_cells(app).get(replica)
    return row is not None and row["state"].startswith("running") and row["health"].startswith("200")


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> Iterator[DrillEnvironment]:
    require_prometheus()
    require_nginx()
    tmp = tmp_path_factory.mktemp("panes")
    env = DrillEnvironment(drill_options(tmp, prometheus="on", nginx="on", traffic_rate=5.0, traffic_clients=20))
    try:
        env.start()
        yield env
    finally:
        env.stop()


def console_for(drill: DrillEnvironment) -> ConsoleApp:
    return ConsoleApp(load_config(drill.state.config), drill_env=drill)


async def test_every_pane_goes_live(drill: DrillEnvironment) -> None:
    app = console_for(drill)
    async with running(app) as pilot:
        await until(pilot, lambda: all(app.live_panes().values()), "every pane to have data", app=app)
        await until(pilot, lambda: all(running_and_healthy(app, r.name) for r in drill.replicas),
                    "both replicas running and healthy", app=app)
        text = screen_text(app)
        assert "DRILL" in text.splitlines()[0]
        for title in ("1 Service health", "2 Metrics", "3 Logs", "4 Checklist"):
            assert title in text


async def test_health_pane_rows_show_process_state_and_prometheus_targets(drill: DrillEnvironment) -> None:
    app = console_for(drill)
    async with running(app) as pilot:
        names = [r.name for r in drill.replicas]
        await until(pilot, lambda: all(running_and_healthy(app, n) and health_cells(app)[n]["target"] == "up"
                                       for n in names), "rows running, 200 and target up", app=app)
        cells = health_cells(app)
        assert sorted(cells) == sorted(names)
        for name in names:
            row = cells[name]
            assert re.fullmatch(r"\d+ms", row["latency"]), row
            assert row["MEM"] != "–" and "MiB" in row["MEM"], row  # process-mode memory from /proc
            assert row["restarts"] == "0"
        components = await _on_screen(pilot, app, "● prometheus")
        assert "● nginx" in components
        assert "failing:" not in screen_text(app).splitlines()[1]


async def test_metrics_pane_shows_prometheus_numbers(drill: DrillEnvironment) -> None:
    app = console_for(drill)
    async with running(app) as pilot:
        # Prometheus needs a few scrapes before rate() has two samples: until then it says "–".
        text = await _on_screen(pilot, app, "rate N/s",
                                pattern=r"\brate \d+(?:\.\d+)?/s .*\bp95 \d+(?:\.\d+)?m?s\b")
        assert "[prometheus]" in text
        # The alert rules were read from Prometheus: none firing, or the ones that are.
        assert "alerts: none firing" in text or "FIRING" in text or "pending" in text


async def test_log_pane_shows_lines_from_every_replica(drill: DrillEnvironment) -> None:
    app = console_for(drill)
    async with running(app) as pilot:
        pane = app.query_one("#logs")
        await until(pilot, lambda: {r.name for r in drill.replicas} <= set(pane.buffer.replicas),
                    "lines from both replicas", app=app)
        for replica in drill.replicas:
            await _on_screen(pilot, app, f"{replica.name} ", pattern=rf"{replica.name} \d\d:\d\d:\d\d ")
        await _on_screen(pilot, app, "POST /generate-proof")


async def test_checklist_pane_shows_the_runbook_phases(drill: DrillEnvironment) -> None:
    app = console_for(drill)
    async with running(app) as pilot:
        await until(pilot, lambda: app.live_panes()["checklist"], "the journal", app=app)
        text = await _on_screen(pilot, app, "Post-Incident Phase")
        for phase in ("Detection Phase", "Response Phase", "Mitigation Phase", "Recovery Phase"):
            assert phase in text
        assert "No incident in focus" in text
        assert "0/20" in text


async def test_a_closed_port_prometheus_url_is_shown_as_an_error(drill: DrillEnvironment, tmp_path: Path) -> None:
    config = drill.config_dict()
    config["prometheus"]["url"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config["environment"]["journal"] = str(tmp_path / "journal.db")
    write_config(config, tmp_path / "config.toml")
    app = ConsoleApp(load_config(tmp_path / "config.toml"), drill_env=drill)
    async with running(app) as pilot:
        text = await _on_screen(pilot, app, "Prometheus unreachable", timeout=30)
        assert "refused" in text  # the cause, as the OS said it (the line may wrap before it)
        assert "failing: prometheus" in text.splitlines()[1]
        # The rest goes on: health and logs are live, the app still runs.
        await until(pilot, lambda: running_and_healthy(app, "prover-1"), "health despite Prometheus", app=app)
        await pilot.pause(2)
        assert app.is_running


# ------------------------------------------------------------------ faults in a drill of their own


async def test_a_crashed_replica_shows_down_with_its_error(drill_factory) -> None:
    env = drill_factory(traffic_rate=2.0, traffic_clients=10)
    app = console_for(env)
    victim, survivor = env.replicas[1], env.replicas[0]
    async with running(app) as pilot:
        await until(pilot, lambda: running_and_healthy(app, victim.name), "the replica up first", app=app)
        try:
            env.control(victim).set_fault("crash")
        except Exception:
            pass  # the process exits before it can answer: that is the fault working
        await until(pilot, lambda: not health_cells(app)[victim.name]["health"].startswith("200")
                    and not health_cells(app)[victim.name]["state"].startswith("running"),
                    "the crashed replica's row to show it down", timeout=30, app=app)
        row = health_cells(app)[victim.name]
        assert row["state"].startswith(("exited", "missing", "dead")), row
        assert re.search(r"refused|error|timeout|down", row["health"], re.I), row
        assert running_and_healthy(app, survivor.name), "the other replica is unaffected"
        assert app.is_running


async def test_a_stopped_prometheus_is_shown_as_an_error(drill_factory) -> None:
    require_prometheus()
    env = drill_factory(prometheus="on", traffic_rate=2.0, traffic_clients=10)
    app = console_for(env)
    async with running(app) as pilot:
        await until(pilot, lambda: app.store.metrics is not None and app.store.metrics.source == "prometheus",
                    "metrics from Prometheus", app=app)
        assert env.prometheus is not None and env.prometheus.process is not None
        await until(pilot, lambda: any(t.health == "up" for t in app.store.targets), "targets up", app=app)
        env.prometheus.process.stop(timeout=10)
        text = await _on_screen(pilot, app, "Prometheus unreachable", timeout=30)
        assert "failing: prometheus" in text.splitlines()[1]
        # the target column no longer claims "up": it says the last answer is stale
        text = await _on_screen(pilot, app, "up? (prometheus down)", timeout=10)
        await pilot.pause(2)
        assert app.is_running
        assert running_and_healthy(app, env.replicas[0].name)


async def _on_screen(pilot, app: ConsoleApp, needle: str, timeout: float = LIVE, pattern: str | None = None) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = screen_text(app)
        if (re.search(pattern, text) if pattern else needle in text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern or needle!r} not on screen after {timeout}s:\n{text}")
        await pilot.pause(0.2)
