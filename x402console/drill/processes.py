"""Child processes of the drill environment: started, recorded, stopped, and found again.

Each child gets its own session (so a stop reaches its whole process group) and a parent-death
signal (so a SIGKILLed drill does not leave provers behind while it is still possible). Every
child is recorded with its start time from /proc, so that a later run can tell a leftover of a
crashed drill from an unrelated process that reused the PID.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM us when the drill dies.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def proc_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def is_same_process(pid: int, start_time: int | None) -> bool:
    return start_time is not None and proc_start_time(pid) == start_time


@dataclass
class ProcessRecord:
    """What runtime.json keeps about one child."""

    name: str
    pid: int
    start_time: int | None
    argv: list[str]
    log_path: str
    # Keys other writers (the console's actions: "env", "cwd" of a tuned replica) put in the
    # record; kept verbatim so the drill's next save of runtime.json does not drop them.
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            **self.extra,
            "name": self.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "argv": self.argv,
            "log_path": self.log_path,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ProcessRecord":
        known = {"name", "pid", "start_time", "argv", "log_path"}
        return cls(d["name"], int(d["pid"]), d.get("start_time"), list(d.get("argv", [])), d.get("log_path", ""),
                   {k: v for k, v in d.items() if k not in known})


class ManagedProcess:
    """One child process whose stdout and stderr go to a log file, as `docker logs` merges them."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, pid_file: Path | None = None) -> None:
        self.name = name
        # A pid file lets a console that did not start the process find it (process-mode replicas).
        self.pid_file = pid_file
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ProcessRecord:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab", buffering=0)
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        if self.pid_file:
            tmp = self.pid_file.with_suffix(".tmp")
            tmp.write_text(f"{self.proc.pid}\n")
            os.replace(tmp, self.pid_file)
        return self.record()

    def record(self) -> ProcessRecord:
        assert self.proc is not None
        return ProcessRecord(self.name, self.proc.pid, proc_start_time(self.proc.pid), self.argv, str(self.log_path))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_leftover(record: ProcessRecord, timeout: float = 5.0) -> bool:
    """Stop a process recorded by an earlier run, if it is still that same process.

    Returns True when something was stopped.
    """
    if not is_same_process(record.pid, record.start_time):
        return False
    _signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_same_process(record.pid, record.start_time):
            return True
        time.sleep(0.05)
    _signal_group(record.pid, signal.SIGKILL)
    return True
