"""The console in a real terminal: `x402console drill` in tmux, read back with capture-pane.

Each mode (local processes; containers on the Docker engine) gets one drill console per module,
started the way a trainee starts it. The screen must show live data in every pane, and when
the terminal goes away (tmux kill-session) the console and everything its drill started must
be gone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.rig.components import docker_client, missing, require_binary
from tests.rig.tmux import (Tmux, console_argv, descendants, processes_with, quit_console, stop_leftovers,
                            wait_gone)

pytestmark = [pytest.mark.tmux, pytest.mark.slow]

CONSOLE = console_argv()
LIVE_TIMEOUT = 90  # bound on waiting for live data (Docker mode builds its image on first use)

RATE = re.compile(r"\brate \d+(?:\.\d+)?/s")


def health_row(screen: str, replica: str) -> str | None:
    for line in screen.splitlines():
        if re.search(rf"\b{re.escape(replica)}\s+running\b", line) and re.search(r"\b200\b", line):
            return line
    return None


def log_line_from(screen: str, replica: str) -> bool:
    return re.search(rf"\b{re.escape(replica)} \d\d:\d\d:\d\d ", screen) is not None


def pane_report(screen: str) -> dict[str, bool]:
    """Which panes show live values on this screen."""
    return {
        "header": "x402console" in screen.splitlines()[0] and "DRILL" in screen,
        "health": all(health_row(screen, r) for r in ("prover-1", "prover-2")),
        "metrics": RATE.search(screen) is not None,
        "logs": log_line_from(screen, "prover-1") and log_line_from(screen, "prover-2"),
        "checklist": "Detection Phase" in screen and "[ ]" in screen,
    }


@dataclass
class DrillConsole:
    """A drill console in its own tmux server; started on first use."""

    workdir: Path
    mode: str  # process | docker
    extra: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)  # e.g. setsid, to run the console under
    name: str = ""
    tmux: Tmux | None = None

    @property
    def state(self) -> Path:
        return (self.workdir / f"drill-{self.name or self.mode}").resolve()

    def start(self) -> Tmux:
        if self.tmux is None:
            self.tmux = Tmux(self.workdir, width=160, height=45)
            docker = ["--docker"] if self.mode == "docker" else []
            argv = [*CONSOLE, "drill", *docker, "--state-dir", str(self.state), "--port", "0", "--rate", "5",
                    *self.extra]
            self.tmux.start([*self.prefix, *argv])
        return self.tmux

    def wait_live(self) -> str:
        tmux = self.start()
        return tmux.wait_for(lambda s: bool(s.strip()) and all(pane_report(s).values()), LIVE_TIMEOUT,
                             f"live data in every pane ({self.mode} mode)")

    def close(self) -> None:
        if self.tmux is not None:
            quit_console(self.tmux, self.state)
            self.tmux.kill()
            self.tmux = None
        stop_leftovers(self.state)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tmux-console")


@pytest.fixture(scope="module")
def process_console(workdir: Path) -> Iterator[DrillConsole]:
    # Prometheus and nginx when installed (as a trainee would get them): the metrics pane then
    # reads Prometheus, not the replicas.
    console = DrillConsole(workdir, "process", ["--prometheus", "auto", "--nginx", "auto"])
    yield console
    console.close()


@pytest.fixture(scope="module")
def docker_console(workdir: Path) -> Iterator[DrillConsole]:
    client = docker_client()  # skip (locally) or fail (CI) without an engine
    _require_free_engine(client)
    console = DrillConsole(workdir, "docker", ["--prometheus", "off", "--nginx", "off"])
    yield console
    console.close()


def test_process_mode_shows_live_data_in_every_pane(process_console: DrillConsole) -> None:
    screen = process_console.wait_live()
    row = health_row(screen, "prover-1")
    assert row is not None and "healthy" in row
    assert "3 Logs" in screen and "4 Checklist" in screen
    # The data keeps flowing: the log pane's line counter moves on.
    tmux = process_console.tmux
    assert tmux is not None
    first = _lines_count(screen)
    tmux.wait_for(lambda s: _lines_count(s) > first, 30, "more log lines after the first screen")


@pytest.mark.docker
def test_docker_mode_shows_live_data_in_every_pane(docker_console: DrillConsole) -> None:
    screen = docker_console.wait_live()
    assert "drill (docker)" in screen.splitlines()[0]
    assert "docker:local" in screen, "the Docker engine should be listed among the components"


def _lines_count(screen: str) -> int:
    m = re.search(r"lines ([\d,]+) ", screen)
    return int(m.group(1).replace(",", "")) if m else -1


# Why these tests exist: when the pty goes away, Textual's output thread
# (textual.drivers._writer_thread.WriterThread) dies on its first write (EIO) and nothing drains
# its bounded queue (30 writes) any more. Once 30 frames are queued, the next write blocks the
# event loop in Queue.put forever, and with it every exit path that runs on the loop (SIGHUP via
# loop.add_signal_handler, _check_terminal, the drill's stop in cli._run_drill).
EXIT_TIMEOUT = 15  # a clean exit (journal, sources, the drill's processes) takes a few seconds


def assert_exits_with_everything(console: DrillConsole, procs: list[tuple[int, int]]) -> None:
    left = wait_gone(procs, EXIT_TIMEOUT)
    assert not left, f"still running {EXIT_TIMEOUT} s after the terminal went away: {left}"
    assert processes_with(str(console.state)) == []
    if console.mode == "docker":
        assert _containers_of(console.state) == [], "the drill's containers outlived the console"


@pytest.mark.parametrize("mode", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_exits_when_its_terminal_goes_away(mode: str, request) -> None:
    console: DrillConsole = request.getfixturevalue(f"{mode}_console")
    console.wait_live()
    tmux = console.tmux
    assert tmux is not None
    procs = descendants(tmux.pane_pid())
    # The console, its traffic generator and (process mode) the replicas; containers are the
    # engine's children, checked by label.
    assert len(procs) >= (3 if mode == "process" else 2), f"expected the console and its children, found {procs}"
    if mode == "docker":
        assert _containers_of(console.state), "the docker drill should have containers"
    tmux.kill_session()
    assert_exits_with_everything(console, procs)


def test_exits_when_its_terminal_vanishes_without_a_hangup_signal(workdir: Path) -> None:
    """An SSH session can drop without SIGHUP reaching the console (it runs in its own session
    here, via setsid): the console must notice its terminal is gone and exit all the same."""
    setsid = require_binary("setsid")
    console = DrillConsole(workdir, "process", ["--prometheus", "off", "--nginx", "off"], [setsid, "-w"], "nohup")
    try:
        console.wait_live()
        assert console.tmux is not None
        leader = console.tmux.pane_pid()  # setsid -w itself, which tmux's hangup does reach
        procs = [pt for pt in descendants(leader) if pt[0] != leader]  # the console and its drill
        assert len(procs) >= 3, f"expected the console and its children, found {procs}"
        console.tmux.kill_session()
        assert_exits_with_everything(console, procs)
    finally:
        console.close()


def _require_free_engine(client) -> None:
    """A Docker drill names its containers x402-prover-N like Compose does, so one engine runs
    one Docker drill at a time; another live drill's containers make this one refuse to start."""
    from x402console.drill.containers import LABEL_DRILL, owner_alive

    busy = [c.name for c in client.containers.list(all=True, filters={"label": LABEL_DRILL})
            if owner_alive(c.labels)]
    if busy:
        missing("docker", f"another running drill holds this engine's drill containers: {', '.join(busy)}")


def _containers_of(state: Path) -> list[str]:
    client = docker_client()
    found = client.containers.list(all=True, filters={"label": f"x402console.drill.state-dir={state}"})
    return [c.name for c in found]
