"""A real terminal for end-to-end tests: a private tmux server per test, read with capture-pane.

Each `Tmux` runs its own server on a unique socket (`tmux -L`), started with a generated
configuration and never the user's, at a fixed size, so tests neither see nor disturb other
tmux sessions. `kill()` ends the server; the fixtures call it in their finalizers, together
with `stop_leftovers`, which stops whatever a console under test left running (found by the
unique state directory in its argv) should the console fail to exit by itself.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.rig.components import require_binary

SESSION = "main"


def console_argv() -> list[str]:
    """How to run the console: the installed entry point next to this Python, else the module."""
    script = Path(sys.executable).with_name("x402console")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "x402console"]


class TmuxError(RuntimeError):
    pass


class Tmux:
    """One private tmux server with one session of a fixed size."""

    def __init__(self, workdir: Path, width: int = 160, height: int = 45,
                 options: dict[str, str] | None = None) -> None:
        self.binary = require_binary("tmux")
        self.socket = f"x402t-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.width = width
        self.height = height
        self.workdir = workdir
        self.conf = workdir / f"{self.socket}.conf"
        lines = [
            # A dead pane stays readable: if the program under test crashes, its traceback is
            # what capture-pane shows, instead of a vanished session.
            "set-option -g remain-on-exit on",
            "set-option -g history-limit 2000",
            "set-option -g status off",
        ]
        for key, value in (options or {}).items():
            lines.append(f"set-option -g {key} {value}")
        self.conf.write_text("\n".join(lines) + "\n")
        self.started = False
        self.socket_path: Path | None = None

    # ------------------------------------------------------------------ commands
    def tmux(self, *args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
        argv = [self.binary, "-L", self.socket, "-f", str(self.conf), "-u", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
        if check and proc.returncode != 0:
            raise TmuxError(f"tmux {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Run argv as the session's only pane (through `env`, so TERM is what we say)."""
        env_args = [f"{k}={v}" for k, v in {"TERM": "xterm-256color", "LANG": "C.UTF-8", **(env or {})}.items()]
        command = shlex.join(["env", *env_args, *argv])
        self.tmux("new-session", "-d", "-x", str(self.width), "-y", str(self.height), "-s", SESSION, command)
        self.started = True
        self.socket_path = Path(self.display("#{socket_path}"))

    def new_window(self, argv: list[str]) -> str:
        """A second window running argv; returns its pane id (e.g. %3)."""
        out = self.tmux("new-window", "-d", "-P", "-F", "#{pane_id}", "-t", SESSION, shlex.join(argv))
        return out.stdout.strip()

    def send_keys(self, *keys: str, literal: bool = False, target: str = SESSION) -> None:
        self.tmux("send-keys", "-t", target, *(["-l"] if literal else []), *keys)

    def capture(self, escapes: bool = False, target: str = SESSION) -> str:
        """The visible screen; with escapes=True, with the attributes tmux keeps (-e)."""
        args = ["capture-pane", "-p", "-t", target]
        if escapes:
            args.insert(2, "-e")
        return self.tmux(*args).stdout

    def lines(self, target: str = SESSION) -> list[str]:
        return self.capture(target=target).splitlines()

    def display(self, fmt: str, target: str = SESSION) -> str:
        return self.tmux("display-message", "-p", "-t", target, fmt).stdout.rstrip("\n")

    def pane_title(self, target: str = SESSION) -> str:
        return self.display("#{pane_title}", target)

    def pane_pid(self, target: str = SESSION) -> int:
        return int(self.display("#{pane_pid}", target))

    def pane_dead(self, target: str = SESSION) -> bool:
        return self.display("#{pane_dead}", target) == "1"

    def buffers(self) -> list[str]:
        """Contents of every paste buffer (OSC 52 from a program lands here with set-clipboard on)."""
        listing = self.tmux("list-buffers", "-F", "#{buffer_name}", check=False)
        if listing.returncode != 0:
            return []
        out = []
        for name in listing.stdout.split():
            shown = self.tmux("show-buffer", "-b", name, check=False)
            if shown.returncode == 0:
                out.append(shown.stdout)
        return out

    def has_session(self) -> bool:
        return self.tmux("has-session", "-t", SESSION, check=False).returncode == 0

    def kill_session(self) -> None:
        self.tmux("kill-session", "-t", SESSION, check=False)

    def kill(self) -> None:
        """End the server and everything in it (idempotent), and remove its socket file."""
        if self.started:
            self.tmux("kill-server", check=False)
            self.started = False
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)  # kill-server leaves it behind
        self.conf.unlink(missing_ok=True)

    # ------------------------------------------------------------------ waiting
    def wait_for(self, condition: Callable[[str], bool], timeout: float, what: str,
                 target: str = SESSION, interval: float = 0.25) -> str:
        """Capture until condition(screen) holds; on timeout fail showing the last screen."""
        deadline = time.monotonic() + timeout
        screen = ""
        while True:
            try:
                screen = self.capture(target=target)
            except TmuxError as exc:
                screen = f"<capture failed: {exc}>"
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                dead = " (the pane's program has exited)" if self._dead_quietly(target) else ""
                raise AssertionError(f"timed out after {timeout}s waiting for {what}{dead}; "
                                     f"last screen:\n{screen}")
            time.sleep(interval)

    def _dead_quietly(self, target: str) -> bool:
        try:
            return self.pane_dead(target)
        except TmuxError:
            return False


# ---------------------------------------------------------------------- processes


def processes_with(marker: str) -> list[int]:
    """Pids whose argv contains `marker` (a unique state directory), like `pgrep -f`; the tmux
    server, whose argv holds the command it was started with, is not one of them."""
    found = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == b"tmux":
            continue
        if any(marker.encode() in arg for arg in argv):
            found.append(int(entry.name))
    return sorted(found)


def start_time(pid: int) -> int | None:
    """Kernel start time of pid (tells a live process from a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields and fields[0] == b"Z":
        return None  # a zombie has finished; only its parent has not reaped it yet
    return int(fields[19])


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of pid and everything below it, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        st = start_time(p)
        if st is not None:
            out.append((p, st))
        todo.extend(children.get(p, []))
    return out


def alive(procs: list[tuple[int, int]]) -> list[int]:
    return [p for p, st in procs if start_time(p) == st]


def wait_gone(procs: list[tuple[int, int]], timeout: float) -> list[int]:
    """Wait until none of procs runs; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = alive(procs)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def quit_console(tmux: Tmux, state_dir: Path, timeout: float = 20) -> bool:
    """Leave a drill console the ordinary way (its `q` key, terminal still there) and wait for
    everything under the state directory to stop. True when it did."""
    if not tmux.started or not tmux.has_session() or tmux.pane_dead():
        return not processes_with(str(state_dir))
    tmux.send_keys("Escape")  # a dialog or an input box would take the q
    time.sleep(0.3)
    tmux.send_keys("q")
    procs = [(p, st) for p in processes_with(str(state_dir)) if (st := start_time(p)) is not None]
    return not wait_gone(procs, timeout)


def stop_leftovers(state_dir: Path, grace: float = 3.0) -> list[int]:
    """Stop what a drill console under test left behind: its processes and its containers.

    Only things carrying this test's unique state directory are touched. Returns the pids
    that had to be stopped here (empty when the console cleaned up after itself). The grace
    is short: a console that outlived its test is usually one that hangs, deaf to SIGTERM.
    """
    marker = str(state_dir)
    procs = [(p, st) for p in processes_with(marker) if (st := start_time(p)) is not None]
    # The drill runs its traffic generator without the state dir in its argv: it is recorded
    # in runtime.json, which the drill's own clean-up reads.
    for pid, _ in procs:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    left = wait_gone(procs, grace)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(procs, 5)
    try:
        from x402console.drill.state import StateDir

        StateDir(state_dir).cleanup_leftovers()
    except Exception:
        pass
    _remove_containers(state_dir)
    return [p for p, _ in procs]


def _remove_containers(state_dir: Path) -> None:
    try:
        import docker

        client = docker.from_env(timeout=10)
        found = client.containers.list(all=True, filters={"label": f"x402console.drill.state-dir={state_dir}"})
    except Exception:
        return  # no engine: nothing of ours can be running there
    for c in found:
        try:
            c.remove(force=True)
        except Exception:
            pass


@pytest.fixture
def tmux_factory(tmp_path: Path) -> Iterator[Callable[..., Tmux]]:
    """Make private tmux servers with `tmux_factory(width=, height=, options=)`; all killed at the end."""
    made: list[Tmux] = []

    def make(**kw) -> Tmux:
        t = Tmux(tmp_path, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.kill()
