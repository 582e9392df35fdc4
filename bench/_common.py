"""Shared helpers of the console benchmarks: medians, process CPU time, tmux driving, drills.

Figures only: nothing here passes or fails on time. Every process or tmux server started
through these helpers is stopped by its owner (`Tmux.close`, `HeadlessDrill.stop`), by pid,
never by name.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
CONSOLE = [PYTHON, "-m", "x402console"]
SIZE = (160, 45)
# Apps under test run with a bytecode cache, as an installed package would (pip compiles it).
# It lives under /tmp so the source tree gets no __pycache__; this also overrides a
# PYTHONDONTWRITEBYTECODE=1 in the caller's environment, which would make the console
# compile every one of its own modules from source at each start (the measured cost of that
# is printed separately by bench_startup.py).
PYCACHE_ENV = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": "/tmp/x402-bench-pycache"}
NO_PYCACHE_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": ""}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The baseline every start-up and idle figure is compared with: the smallest Textual app that
# draws something, run by the same interpreter.
MINIMAL_APP_CLASS = '''
from textual.app import App, ComposeResult
from textual.widgets import Static


class MinimalApp(App):
    def compose(self) -> ComposeResult:
        yield Static("READY")
'''
MINIMAL_APP_SCRIPT = MINIMAL_APP_CLASS + "\nMinimalApp().run()\n"


def minimal_app_class() -> type:
    namespace: dict = {}
    exec(MINIMAL_APP_CLASS, namespace)
    return namespace["MinimalApp"]


# --------------------------------------------------------------------------- statistics
def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], scale: float = 1.0, fmt: str = "{:.0f}") -> str:
    """min..max of the runs, to show how noisy a median is."""
    if not values:
        return "-"
    return f"{fmt.format(min(values) * scale)}..{fmt.format(max(values) * scale)}"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


# --------------------------------------------------------------------------- process CPU
def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may hold spaces and parentheses: the fields start after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def process_cpu(pid: int) -> float:
    """utime+stime of one process (all its threads), in seconds; 0 once it is gone."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    # After the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    return (int(f[11]) + int(f[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        f = _stat_fields(int(entry))
        if f is not None:
            children.setdefault(int(f[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (threads included)."""
    return process_cpu(pid) + sum(process_cpu(c) for c in descendants(pid))


def pid_alive(pid: int) -> bool:
    f = _stat_fields(pid)
    return f is not None and f[0] != "Z"


class CpuMeter:
    """CPU seconds of a process tree between two moments (children sampled as they come and go)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = tree_cpu(pid)

    def used(self) -> float:
        return tree_cpu(self.pid) - self.start


# --------------------------------------------------------------------------- tmux
def tmux_quote(arg: str) -> str:
    """One argument in tmux's command syntax: double quotes, with the escapes its parser knows
    (a control-mode command is one line, so newlines must be written as \\n)."""
    escapes = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return '"' + "".join(escapes.get(ch, ch) for ch in arg) + '"'


class Tmux:
    """A private tmux server (own -L socket) whose windows all have the same fixed size.

    A placeholder window keeps the server up, so a measured spawn does not pay for starting
    the server. Commands are passed as argv so tmux execs them directly (no shell): the pane's
    pid is the app's pid.

    Spawns and captures go through one control-mode client (`tmux -C`, output notifications
    off) instead of a tmux process per call: polling capture-pane every 10 ms by starting a
    client each time cost the bench about half a core, which on a two-core machine slowed the
    app being measured by ~15 % (measured: all panes live 810 vs 925 ms in-process marks).
    """

    def __init__(self, size: tuple[int, int] = SIZE, term: str = "xterm-256color") -> None:
        self.socket = f"x402bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.size = size
        self.pids: list[int] = []
        self._tmux("new-session", "-d", "-s", "hold", "-x", str(size[0]), "-y", str(size[1]), "sleep", "86400",
                   ";", "set", "-g", "default-terminal", term,
                   ";", "set", "-g", "remain-on-exit", "off")
        self.socket_path = self._tmux("display-message", "-p", "#{socket_path}").strip()
        self._control = subprocess.Popen(
            ["tmux", "-L", self.socket, "-f", "/dev/null", "-C", "attach-session", "-t", "hold", "-f", "no-output"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
        )
        self._control_out = self._control.stdout
        self._read_block()  # the attach command's own (empty) answer

    def _read_block(self) -> tuple[bool, list[str]]:
        """The next %begin..%end (ok) or %begin..%error block; notifications between are skipped."""
        lines: list[str] = []
        inside = False
        while True:
            raw = self._control_out.readline()  # type: ignore[union-attr]
            if not raw:
                raise RuntimeError("the tmux control client went away")
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not inside:
                inside = line.startswith("%begin ")
                continue
            if line.startswith("%end ") or line.startswith("%error "):
                return line.startswith("%end "), lines
            lines.append(line)

    def control(self, *args: str) -> str:
        """One tmux command through the control client; its output."""
        self._control.stdin.write((" ".join(tmux_quote(a) for a in args) + "\n").encode())  # type: ignore[union-attr]
        ok, lines = self._read_block()
        if not ok:
            raise RuntimeError(f"tmux {' '.join(args[:2])} failed: {' '.join(lines)}")
        return "\n".join(lines) + "\n"

    def _tmux(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                             capture_output=True, text=True, timeout=10)
        if check and out.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args[:2])} failed: {out.stderr.strip()}")
        return out.stdout

    def spawn(self, argv: Sequence[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> tuple[str, int]:
        """A new window running argv; returns (pane id, pid)."""
        extra: list[str] = []
        for k, v in {**PYCACHE_ENV, **(env or {})}.items():
            extra += ["-e", f"{k}={v}"]
        out = self.control("new-window", "-d", "-P", "-F", "#{pane_id} #{pane_pid}", "-t", "hold:",
                           "-c", str(cwd), *extra, *argv)
        pane, pid = out.split()
        self.pids.append(int(pid))
        return pane, int(pid)

    def capture(self, pane: str) -> str:
        try:
            return self.control("capture-pane", "-p", "-t", pane)
        except RuntimeError:
            return ""  # the pane is gone

    def wait_for(self, pane: str, predicate: Callable[[str], bool], timeout: float,
                 interval: float = 0.01, start: float | None = None) -> float | None:
        """Seconds from `start` (default now) until the capture satisfies predicate; None on timeout."""
        start = time.perf_counter() if start is None else start
        deadline = start + timeout
        while time.perf_counter() < deadline:
            if predicate(self.capture(pane)):
                return time.perf_counter() - start
            time.sleep(interval)
        return None

    def stop_pane(self, pid: int, timeout: float = 5.0) -> None:
        """SIGTERM the app (the console ends cleanly on it), SIGKILL if it lingers."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not pid_alive(pid):
                return
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.02)

    def close(self) -> None:
        for pid in self.pids:
            self.stop_pane(pid)
        if self._control.poll() is None:
            self._control.stdin.close()  # type: ignore[union-attr]
            try:
                self._control.wait(5)
            except subprocess.TimeoutExpired:
                self._control.kill()
        self._tmux("kill-server", check=False)
        if self.socket_path:  # tmux leaves the socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


# --------------------------------------------------------------------------- drills
class HeadlessDrill:
    """`x402console drill --headless` in its own process (as an operator would run it)."""

    def __init__(self, state_dir: Path, rate: float, replicas: int = 2, prometheus: str = "off") -> None:
        self.state_dir = state_dir
        self.config = state_dir / "config.toml"
        self.log = state_dir.parent / f"{state_dir.name}-drill.out"
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "w")
        argv = [*CONSOLE, "drill", "--headless", "--state-dir", str(state_dir), "--port", "0",
                "--replicas", str(replicas), "--prometheus", prometheus, "--nginx", "off",
                "--rate", str(rate)]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"drill exited ({self.proc.returncode}): {self.log.read_text()[-800:]}")
            if "config " in self.log.read_text():
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"drill did not start in 90 s: {self.log.read_text()[-800:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                # Last resort: the drill's own process group (start_new_session), ours alone.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()


async def declare_bench_incident(journal_path: Path | str) -> None:
    """One open incident, so the checklist pane shows journal state a terminal capture can see."""
    from x402console.journal import Journal

    journal = await Journal.open(journal_path)
    try:
        if not [i for i in await journal.incidents() if i.is_open]:
            await journal.declare_incident("benchmark incident", "P3", journal.actor, drill=True)
    finally:
        await journal.close()


def journal_path_of(config: Path) -> Path:
    from x402console.config import load_config

    return Path(load_config(config).environment.journal)


# --------------------------------------------------------------------------- screen predicates
HEALTH_ROW = re.compile(r"prover-\d\s+running\s+200\b")
RATE = re.compile(r"\brate \d+(\.\d+)?/s")
LOG_LINE = re.compile(r"^│prover-\d \d\d:\d\d:\d\d ", re.M)


def live_on_screen(text: str, replicas: int = 2) -> dict[str, bool]:
    """What a person would read as live data in each pane of the console's capture."""
    return {
        "health": len(HEALTH_ROW.findall(text)) >= replicas,
        "metrics": bool(RATE.search(text)),
        "logs": bool(LOG_LINE.search(text)),
        # With an open incident, the checklist lists its items once the journal has been read.
        "checklist": "Detection Phase" in text and "No incident in focus" not in text,
    }
