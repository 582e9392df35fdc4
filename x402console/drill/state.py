"""The drill's state directory: where everything a drill makes lives, and what it left running.

Layout (all under one directory so a trainee or the console can find it):
    config.toml            the console configuration the drill writes for itself
    runtime.json           processes and containers of the running drill (for clean-up)
    drill.lock             held while a drill runs; a second drill on the same directory refuses
    proofs.db, backups/    the provers' database and backups (shared by the replicas)
    keys/                  verification_key.json, payment_proof.pk; keys/backup/ the trusted copy
    logs/                  one log file per process
    prometheus/, nginx/    generated configuration and data of those components
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from x402console.drill.processes import ProcessRecord, kill_leftover


class DrillBusy(RuntimeError):
    """Another drill holds this state directory."""


@dataclass
class Runtime:
    drill_id: str = ""
    mode: str = "process"
    processes: list[ProcessRecord] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    scenario: str | None = None

    def to_dict(self) -> dict:
        return {
            "drill_id": self.drill_id,
            "mode": self.mode,
            "processes": [p.to_dict() for p in self.processes],
            "containers": self.containers,
            "ports": self.ports,
            "scenario": self.scenario,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Runtime":
        return cls(
            drill_id=str(d.get("drill_id", "")),
            mode=str(d.get("mode", "process")),
            processes=[ProcessRecord.from_dict(p) for p in d.get("processes", [])],
            containers=list(d.get("containers", [])),
            ports={k: int(v) for k, v in d.get("ports", {}).items()},
            scenario=d.get("scenario"),
        )


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self._lock: IO[str] | None = None

    # paths -------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def runtime_file(self) -> Path:
        return self.root / "runtime.json"

    @property
    def db(self) -> Path:
        return self.root / "proofs.db"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def nginx(self) -> Path:
        return self.root / "nginx"

    def prepare(self) -> None:
        for d in (self.root, self.backups, self.keys, self.logs):
            d.mkdir(parents=True, exist_ok=True)

    # lock --------------------------------------------------------------------------------
    def lock(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.root / "drill.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            raise DrillBusy(f"another drill is running on {self.root} (pid {holder or '?'})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock = fh

    def unlock(self) -> None:
        if self._lock:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # runtime -----------------------------------------------------------------------------
    def save_runtime(self, runtime: Runtime) -> None:
        tmp = self.runtime_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(runtime.to_dict(), indent=2))
        os.replace(tmp, self.runtime_file)

    def load_runtime(self) -> Runtime | None:
        try:
            return Runtime.from_dict(json.loads(self.runtime_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            # A runtime file cut short by a crash: nothing in it can be trusted, and the
            # container clean-up (by label) still runs.
            return Runtime()

    def clear_runtime(self) -> None:
        self.runtime_file.unlink(missing_ok=True)

    def cleanup_leftovers(self) -> list[str]:
        """Stop whatever a crashed earlier run recorded here. Returns what was stopped."""
        runtime = self.load_runtime()
        stopped: list[str] = []
        if runtime is None:
            return stopped
        for rec in runtime.processes:
            if kill_leftover(rec):
                stopped.append(f"process {rec.name} (pid {rec.pid})")
        self.clear_runtime()
        return stopped
