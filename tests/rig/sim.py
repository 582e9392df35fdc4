"""Run simulated provers (`python -m x402console.drill.sim`) as real subprocesses in tests.

`start_sim(base_dir, ...)` spawns one on free loopback ports with its own state dir and control
token, captures stdout/stderr to files, and waits until GET /health answers 200. The readiness
probe carries `X-Forwarded-For: 198.51.100.254` (a documentation address reserved for the rig)
so it does not spend 127.0.0.1's 10-requests-per-minute budget that tests may want to measure.

Use the `sim_factory` fixture (or the `running_sim` context manager): every process it starts
is terminated at teardown, even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rig.components import free_port
from x402console.drill.sim.control_client import SimControl

PROBE_IP = "198.51.100.254"
START_TIMEOUT_S = 15.0


class SimStartError(RuntimeError):
    pass


@dataclass
class RunningSim:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    control_port: int
    token: str
    state_dir: Path
    stdout_path: Path
    stderr_path: Path
    log_format: str
    control: SimControl
    args: list[str] = field(default_factory=list)

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def log_path(self) -> Path:
        """Where the application log lines go: stderr for gin (stdlib log), stdout for json."""
        return self.stderr_path if self.log_format == "gin" else self.stdout_path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    @property
    def db_path(self) -> Path:
        return self.state_dir / "proofs.db"

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, trust_env=False, **kwargs)

    def wait_for_output(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll captured output (the process flushes every line) until predicate holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        self.control.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


def sim_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "x402console.drill.sim", *args]


def start_sim(
    base_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    state_dir: Path | None = None,
    port: int | None = None,
    name: str = "sim",
) -> RunningSim:
    """Spawn a simulator. `args` are extra CLI flags (e.g. "--profile", "intended")."""
    base_dir.mkdir(parents=True, exist_ok=True)
    state_dir = state_dir or base_dir / f"{name}-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    control_port = free_port()
    token = secrets.token_hex(16)
    stdout_path = base_dir / f"{name}.stdout.log"
    stderr_path = base_dir / f"{name}.stderr.log"
    argv = [
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        "--control-port",
        str(control_port),
        *args,
    ]
    log_format = "json" if ("json" in args or ("intended" in args and "gin" not in args)) else "gin"
    full_env = {**os.environ, "X402_SIM_CONTROL_TOKEN": token, **(env or {})}
    with open(stdout_path, "ab") as out, open(stderr_path, "ab") as err:
        proc = subprocess.Popen(
            sim_command(*argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=full_env, cwd=state_dir
        )
    sim = RunningSim(
        proc=proc,
        url=f"http://127.0.0.1:{port}",
        port=port,
        control_port=control_port,
        token=token,
        state_dir=state_dir,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        log_format=log_format,
        control=SimControl(f"http://127.0.0.1:{control_port}", token),
        args=argv,
    )
    if wait_ready:
        try:
            wait_healthy(sim)
        except BaseException:
            sim.stop()
            raise
    return sim


def wait_healthy(sim: RunningSim, timeout: float = START_TIMEOUT_S) -> float:
    """Seconds until /health answered 200; SimStartError if the process died or timed out."""
    started = time.monotonic()
    deadline = started + timeout
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if sim.proc.poll() is not None:
                raise SimStartError(f"simulator exited with {sim.proc.returncode}:\n{sim.stderr}\n{sim.stdout}")
            try:
                r = client.get(sim.url + "/health", headers={"X-Forwarded-For": PROBE_IP})
                if r.status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
    raise SimStartError(f"simulator not healthy after {timeout}s:\n{sim.stderr}\n{sim.stdout}")


@contextlib.contextmanager
def running_sim(base_dir: Path, *args: str, **kwargs: Any) -> Iterator[RunningSim]:
    sim = start_sim(base_dir, *args, **kwargs)
    try:
        yield sim
    finally:
        sim.stop()


class SimFactory:
    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.started: list[RunningSim] = []

    def __call__(self, *args: str, **kwargs: Any) -> RunningSim:
        kwargs.setdefault("name", f"sim{len(self.started) + 1}")
        sim = start_sim(self.base_dir, *args, **kwargs)
        self.started.append(sim)
        return sim

    def stop_all(self) -> None:
        for sim in self.started:
            with contextlib.suppress(Exception):
                sim.stop()


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[SimFactory]:
    factory = SimFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def module_sim_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFactory]:
    factory = SimFactory(tmp_path_factory.mktemp("sims"))
    try:
        yield factory
    finally:
        factory.stop_all()


def metric_families(text: str) -> dict[str, Any]:
    """Parsed exposition text, keyed by family name as the parser reports it."""
    from prometheus_client.parser import text_string_to_metric_families

    return {fam.name: fam for fam in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], family: str, sample_name: str | None = None, **labels: str) -> float | None:
    """The value of one sample (by sample name and exact label subset), or None if absent."""
    fam = families.get(family)
    if fam is None:
        return None
    wanted = sample_name or family
    for s in fam.samples:
        if s.name == wanted and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def xff(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}
