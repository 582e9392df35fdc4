"""Remediation actions on provers that run as local processes: the container actions' twins.

For the drill without Docker, and hosts that run the prover binary directly: the [[replicas]]
that have a pid_file. A process is stopped with SIGTERM (SIGKILL after the same grace period
`docker stop` gives) and started again with the command line it was started with: the one the
drill recorded in runtime.json, else the one /proc shows while it still runs. Its output goes on
being appended to the same log file, and its pid file and the runtime record are updated, so the
console's process source keeps following it.

A process is identified by pid *and* start time before it is signalled, so a recycled pid is
never killed by mistake. Processes started here get their own session and no parent-death
signal: a prover must outlive the console that restarted it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit


from x402console.actions.replica_ops import Cancelled as _Cancelled
from x402console.actions.replica_ops import Failed as _Failed
from x402console.actions.replica_ops import answers as _answers
from x402console.actions.replica_ops import health_order as _health_order
from x402console.actions.replica_ops import health_timeout as _health_timeout
from x402console.actions.replica_ops import port_free as _port_free
from x402console.actions.base import (
    Action,
    ActionContext,
    ActionError,
    Outcome,
    Plan,
    PlanStep,
    Progress,
    Target,
)
from x402console.drill.containers import next_numbers
from x402console.drill.processes import proc_start_time
from x402console.settings.model import Replica, Settings
from x402console.sources.process_source import boot_time, read_pid_file, read_proc

__all__ = [
    "ACTIONS",
    "RecreateProcess",
    "RestartProcess",
    "RestartProcesses",
    "ScaleProcesses",
    "StartProcesses",
    "StopProcesses",
    "actions",
]

STOP_TIMEOUT = 10.0  # docker stop's grace period, so both modes behave alike
MAX_REPLICAS = 20
_POLL = 0.1
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_SECRET_FLAGS = ("--control-token",)
# Started here and not yet reaped: keeping the Popen lets a later poll() collect the exit status,
# so a stopped prover does not linger as a zombie that still looks alive in /proc.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


# --------------------------------------------------------------------------- runtime records


def _runtime_path(ctx: ActionContext) -> Path | None:
    if ctx.drill_runtime is not None:
        return Path(ctx.drill_runtime)
    source = ctx.settings.source
    if ctx.settings.environment.drill and source is not None:
        candidate = Path(source).parent / "runtime.json"
        if candidate.exists():
            return candidate
    return None


def _load_runtime(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ActionError(f"cannot read the drill's runtime record {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _update_runtime(path: Path | None, records: Sequence[Mapping[str, Any]] = (),
                    remove: Sequence[str] = (), ports: Mapping[str, int] | None = None) -> None:
    """Replace or add process records by name, drop `remove`d ones; the rest of the file stays."""
    if path is None:
        return
    data = _load_runtime(path)
    procs = [p for p in data.get("processes", []) if isinstance(p, dict)]
    # Keep each record where it was: the drill and clean-up read them in order.
    merged: list[dict[str, Any]] = []
    replaced = {r["name"]: dict(r) for r in records}
    for p in procs:
        name = p.get("name")
        if name in replaced:
            merged.append(replaced.pop(name))
        elif name not in remove:
            merged.append(p)
    merged.extend(replaced.values())
    data["processes"] = merged
    port_map = dict(data.get("ports") or {})
    for name in remove:
        port_map.pop(name, None)
        port_map.pop(f"{name}-control", None)
    port_map.update(ports or {})
    data["ports"] = port_map
    _write_json(path, data)


def _write_pid_file(path: Path, pid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- process state


def _alive(pid: int, start_time: int | None) -> bool:
    """The process `pid` that started at `start_time` still runs (a zombie does not count)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    proc = read_proc(pid)
    if proc is None or proc.state in ("Z", "X"):
        return False
    return start_time is None or proc.start_ticks == start_time


def _started_before(pid: int, mtime: float | None) -> bool:
    # Same rule as the process source: a process that started well after its pid file was
    # written got a recycled pid and is not the prover.
    proc = read_proc(pid)
    boot = boot_time()
    if proc is None or boot is None or mtime is None:
        return proc is not None
    return boot + proc.start_ticks / _CLK_TCK <= mtime + 2.0


@dataclass
class _Proc:
    """One process replica as found now."""

    name: str
    number: int | None
    health_url: str
    metrics_url: str
    control_url: str | None
    pid_file: Path | None
    log_file: Path | None
    pid: int | None  # of the live process, identity checked
    start_time: int | None
    argv: list[str] | None  # what starts it again
    cwd: str | None = None
    env: dict[str, str] | None = None  # None: the console's own environment, as the drill did
    source: str = ""  # where argv came from
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.pid is not None

    def ref(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "start_time": self.start_time, "health_url": self.health_url}


def _number(name: str) -> int | None:
    found = re.search(r"-(\d+)$", name)
    return int(found.group(1)) if found else None


def _proc_cmdline(pid: int) -> tuple[list[str] | None, str | None, dict[str, str] | None]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        argv = [a.decode(errors="surrogateescape") for a in raw.rstrip(b"\0").split(b"\0")] if raw else None
        cwd = os.readlink(f"/proc/{pid}/cwd")
        env_raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None, None, None
    env = {}
    for item in env_raw.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode(errors="surrogateescape")] = v.decode(errors="surrogateescape")
    return argv, cwd, env


def _resolve(replica: Replica, records: Mapping[str, Mapping[str, Any]]) -> _Proc:
    record = dict(records.get(replica.name) or {})
    pid: int | None = None
    start: int | None = None
    file_pid, _, mtime = read_pid_file(Path(replica.pid_file)) if replica.pid_file else (None, None, None)
    rec_pid = record.get("pid") if isinstance(record.get("pid"), int) else None
    rec_start = record.get("start_time") if isinstance(record.get("start_time"), int) else None
    if file_pid is not None and file_pid == rec_pid:
        if _alive(file_pid, rec_start):
            pid, start = file_pid, rec_start
    elif file_pid is not None and _alive(file_pid, None) and _started_before(file_pid, mtime):
        pid, start = file_pid, proc_start_time(file_pid)
    elif file_pid is None and rec_pid is not None and _alive(rec_pid, rec_start):
        pid, start = rec_pid, rec_start
    argv = list(record["argv"]) if isinstance(record.get("argv"), list) and record["argv"] else None
    cwd = record.get("cwd") if isinstance(record.get("cwd"), str) else None
    env = None
    source = "runtime.json" if argv else ""
    if argv is not None:
        env = recorded_env(record)
    if argv is None and pid is not None:
        argv, cwd, env = _proc_cmdline(pid)
        source = f"/proc/{pid}/cmdline" if argv else ""
    log_file = replica.log_file or (Path(record["log_path"]) if record.get("log_path") else None)
    return _Proc(
        name=replica.name,
        number=_number(replica.name),
        health_url=replica.health_url,
        metrics_url=replica.metrics_url,
        control_url=replica.control_url,
        pid_file=Path(replica.pid_file) if replica.pid_file else None,
        log_file=Path(log_file) if log_file else None,
        pid=pid,
        start_time=start,
        argv=argv,
        cwd=cwd,
        env=env,
        source=source,
        record=record,
    )


def recorded_env(record: Mapping[str, Any]) -> dict[str, str] | None:
    """The console's environment plus the variables an action set for this replica (the runtime
    record's "env"), or None (the console's environment) when none were set."""
    extra = record.get("env")
    if not isinstance(extra, dict) or not extra:
        return None
    return {**os.environ, **{str(k): str(v) for k, v in extra.items()}}


def with_env(p: _Proc, overrides: Mapping[str, str]) -> None:
    """Start `p` with `overrides` set on top of its environment, and keep them in its runtime
    record so that a later restart starts it the same way."""
    p.env = {**(p.env if p.env is not None else os.environ), **overrides}
    p.record = {**p.record, "env": {**(p.record.get("env") or {}), **overrides}}


def _process_replicas(settings: Settings) -> list[Replica]:
    return [r for r in settings.replicas if r.pid_file]


def _list(ctx: ActionContext) -> list[_Proc]:
    runtime = _load_runtime(_runtime_path(ctx))
    records = {p.get("name"): p for p in runtime.get("processes", []) if isinstance(p, dict)}
    procs = [_resolve(r, records) for r in _process_replicas(ctx.settings)]
    return sorted(procs, key=lambda p: (p.number is None, p.number or 0, p.name))


def _find(procs: Sequence[_Proc], target: Target) -> _Proc:
    for p in procs:
        if p.name == target.name:
            return p
    names = ", ".join(p.name for p in procs) or "none"
    raise ActionError(f"no process replica {target.name!r} (replicas with a pid_file: {names})")


def _shown(argv: Sequence[str]) -> str:
    """The command line as a shell would take it, secrets replaced (plans are shown and kept)."""
    out = list(argv)
    for i, arg in enumerate(out):
        for flag in _SECRET_FLAGS:
            if arg == flag and i + 1 < len(out):
                out[i + 1] = "***"
            elif arg.startswith(flag + "="):
                out[i] = f"{flag}=***"
    return shlex.join(out)


def _flag(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _port_of(argv: Sequence[str]) -> int | None:
    value = _flag(argv, "--port")
    return int(value) if value and value.isdigit() else None


# --------------------------------------------------------------------------- stop and start


def _signal(pid: int, sig: int) -> None:
    try:
        # The drill starts each prover as a session leader: signal its group, as docker stop
        # signals the container's whole process tree.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _terminate(pid: int, start_time: int | None, timeout: float = STOP_TIMEOUT) -> str:
    """SIGTERM, then SIGKILL after `timeout`; returns how it ended."""
    if not _alive(pid, start_time):
        return "had already exited"
    try:
        _signal(pid, signal.SIGTERM)
    except PermissionError:
        raise _Failed(f"not allowed to signal pid {pid} (it belongs to another user)") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, start_time):
            return "stopped"
        time.sleep(_POLL)
    _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not _alive(pid, start_time):
            return f"killed (did not stop within {timeout:g} s of SIGTERM)"
        time.sleep(_POLL)
    raise _Failed(f"pid {pid} survives SIGKILL (uninterruptible sleep?)")


def _spawn(p: _Proc) -> tuple[int, int | None]:
    """Start the replica's command line again, appending to its log; returns (pid, start time)."""
    assert p.argv
    port = _port_of(p.argv)
    if port is not None and not _port_free(port):
        raise _Failed(f"port {port} is busy: another process listens on 127.0.0.1:{port} "
                      f"(see `ss -ltnp 'sport = :{port}'`); {p.name} was not started")
    if p.log_file is not None:
        p.log_file.parent.mkdir(parents=True, exist_ok=True)
        log: Any = open(p.log_file, "ab", buffering=0)
    else:
        log = subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            p.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=p.cwd or None,
            env=p.env if p.env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise _Failed(f"cannot start {p.name} ({p.argv[0]}): {exc.strerror or exc}") from None
    finally:
        if log is not subprocess.DEVNULL:
            log.close()  # the child holds its own descriptor
    _CHILDREN[proc.pid] = proc
    return proc.pid, proc_start_time(proc.pid)


def _log_tail(path: Path | None, since: int, lines: int = 8) -> str:
    if path is None:
        return "  (no log file)"
    try:
        with open(path, "rb") as f:
            f.seek(since)
            text = f.read(64 * 1024).decode(errors="replace")
    except OSError as exc:
        return f"  (cannot read {path}: {exc.strerror})"
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (no output)"


def _log_size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


async def _wait_healthy(ctx: ActionContext, plan: Plan, p: _Proc, pid: int, start: int | None,
                        log_offset: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer yet"
    while True:
        if not _alive(pid, start):
            child = _CHILDREN.pop(pid, None)
            code = child.returncode if child is not None else "?"
            raise _Failed(f"{p.name} (pid {pid}) exited with code {code} instead of coming up; last log lines:\n"
                          f"{_log_tail(p.log_file, log_offset)}")
        ok, last = await _answers(ctx, p.health_url)
        if ok:
            return
        if loop.time() >= deadline:
            raise _Failed(f"{p.name} (pid {pid}) did not answer {p.health_url} within {timeout:g} s (last: {last})")
        if plan.cancellable and ctx.cancel.is_set():
            raise _Cancelled(f"stopped waiting for {p.name} to answer /health")
        await asyncio.sleep(_POLL * 2)


def _record(p: _Proc, pid: int, start: int | None) -> dict[str, Any]:
    record = dict(p.record)
    record.update(name=p.name, pid=pid, start_time=start, argv=list(p.argv or []),
                  log_path=str(p.log_file) if p.log_file else record.get("log_path", ""))
    if p.cwd:
        record["cwd"] = p.cwd
    return record


async def _start(ctx: ActionContext, plan: Plan, p: _Proc, runtime: Path | None, done: list[str]) -> tuple[int, int | None, int]:
    offset = _log_size(p.log_file)
    pid, start = await asyncio.to_thread(_spawn, p)
    if p.pid_file is not None:
        _write_pid_file(p.pid_file, pid)
    _update_runtime(runtime, [_record(p, pid, start)])
    done.append(f"started {p.name} (pid {pid})")
    return pid, start, offset


def _current(ctx: ActionContext, ref: Mapping[str, Any]) -> _Proc:
    """The replica again at run time; refuses when it was restarted by someone else meanwhile."""
    try:
        p = _find(_list(ctx), Target("replica", ref["name"]))
    except ActionError as exc:
        raise _Failed(str(exc)) from None
    if p.pid is not None and ref.get("pid") is not None and p.pid != ref["pid"]:
        raise _Failed(f"{p.name} changed since the plan was made (pid {ref['pid']} is now {p.pid}): plan again")
    if not p.argv:
        raise _Failed(f"{p.name}: its command line is no longer known (runtime record gone and not running)")
    return p


def _stop_commands(p: _Proc) -> list[PlanStep]:
    if p.pid is None:
        return [PlanStep(f"{p.name} is not running: nothing to stop")]
    return [PlanStep(f"Stop {p.name}: SIGTERM to pid {p.pid}, SIGKILL after {STOP_TIMEOUT:g} s if still running",
                     f"kill -TERM {p.pid}")]


def _start_commands(p: _Proc, timeout: float) -> list[PlanStep]:
    assert p.argv
    log = shlex.quote(str(p.log_file)) if p.log_file else "/dev/null"
    pid_file = f"; echo $! > {shlex.quote(str(p.pid_file))}" if p.pid_file else ""
    where = f" (cwd {p.cwd})" if p.cwd else ""
    return [
        PlanStep(f"Start {p.name} again with the same command line (from {p.source}){where}, appending to its log",
                 f"setsid {_shown(p.argv)} >> {log} 2>&1 < /dev/null &{pid_file}"),
        PlanStep(f"Wait up to {timeout:g} s until {p.name} answers /health", f"curl -f {p.health_url}"),
    ]


def _need_argv(p: _Proc) -> None:
    if not p.argv:
        raise ActionError(
            f"cannot restart {p.name}: its command line is unknown (no record in the drill's runtime.json, "
            f"and the process is not running, so /proc cannot tell)"
        )


# --------------------------------------------------------------------------- action base


def _done_summary(done: Sequence[str]) -> str:
    return ("done: " + "; ".join(done)) if done else "nothing was changed"


def _replica_targets(ctx: ActionContext) -> list[Target]:
    return [Target("replica", r.name, {"pid_file": str(r.pid_file)}) for r in _process_replicas(ctx.settings)]


def _service_name(settings: Settings) -> str:
    names = [r.name for r in _process_replicas(settings)]
    prefixes = {re.sub(r"-\d+$", "", n) for n in names}
    return prefixes.pop() if len(prefixes) == 1 else "prover"


def _service_targets(ctx: ActionContext) -> list[Target]:
    if not _process_replicas(ctx.settings):
        return []
    return [Target("service", _service_name(ctx.settings), {"mode": "process"})]


class _ProcessAction(Action):
    pane: ClassVar[str] = "health"
    changes_state: ClassVar[bool] = True

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        done: list[str] = []
        try:
            async for item in self._steps(ctx, plan, done):
                yield item
        except _Cancelled as exc:
            yield Outcome("cancelled", f"cancelled: {exc}; {_done_summary(done)}", {"done": list(done)})
        except (_Failed, ActionError) as exc:
            yield Outcome("failed", f"{exc}" + (f"\n{_done_summary(done)}" if done else ""), {"done": list(done)})
        except OSError as exc:
            yield Outcome("failed", f"{exc.strerror or exc} ({exc.filename or 'system call'}); {_done_summary(done)}",
                          {"done": list(done)})
        except Exception as exc:
            yield Outcome("failed", f"unexpected error: {type(exc).__name__}: {exc}; {_done_summary(done)}",
                          {"done": list(done)})

    def _steps(self, ctx: ActionContext, plan: Plan, done: list[str]) -> AsyncIterator[Progress | Outcome]:
        raise NotImplementedError

    def _check_cancel(self, ctx: ActionContext, plan: Plan, where: str) -> None:
        if plan.cancellable and ctx.cancel.is_set():
            raise _Cancelled(where)


async def _restart_one(ctx: ActionContext, plan: Plan, ref: Mapping[str, Any], done: list[str],
                       timeout: float, env_overrides: Mapping[str, str] | None = None) -> AsyncIterator[Progress]:
    p = await asyncio.to_thread(_current, ctx, ref)
    if env_overrides:
        with_env(p, env_overrides)
    runtime = _runtime_path(ctx)
    if p.pid is not None:
        yield Progress(f"stopping {p.name} (SIGTERM to pid {p.pid})")
        how = await asyncio.to_thread(_terminate, p.pid, p.start_time)
        done.append(f"{p.name} (pid {p.pid}) {how}")
    yield Progress(f"starting {p.name}")
    pid, start, offset = await _start(ctx, plan, p, runtime, done)
    yield Progress(f"waiting for {p.name} (pid {pid}) to answer {p.health_url}")
    await _wait_healthy(ctx, plan, p, pid, start, offset, timeout)
    yield Progress(f"{p.name} answers /health again (pid {pid})")


# --------------------------------------------------------------------------- restart / recreate


class RestartProcess(_ProcessAction):
    id: ClassVar[str] = "process.restart"
    key: ClassVar[str] = "p"
    title: ClassVar[str] = "Restart replica process"
    help: ClassVar[str] = "SIGTERM one prover process and start it again with the same command line (runbook Incident 1, 7)"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "replica"
    security_guarded: ClassVar[bool] = True
    _verb: ClassVar[str] = "Restart"

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _replica_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = _health_timeout(params)
        procs = await asyncio.to_thread(_list, ctx)
        p = _find(procs, target)
        _need_argv(p)
        warnings = list(self._extra_warnings())
        if not any(o.running for o in procs if o.name != p.name):
            warnings.append(f"{p.name} is the only running replica: the service is down until it answers again")
        if p.running:
            warnings.append("requests in flight on this replica are cut off")
        return Plan(
            action_id=self.id,
            title=f"{self._verb} {p.name}" + ("" if p.running else " (not running: start it)"),
            target=target,
            danger=self.danger,
            steps=tuple(_stop_commands(p) + _start_commands(p, timeout)),
            params={"processes": [p.ref()], "health_timeout": timeout},
            warnings=tuple(warnings),
            cancellable=True,
        )

    def _extra_warnings(self) -> tuple[str, ...]:
        return ()

    async def _steps(self, ctx, plan, done):  # type: ignore[override]
        ref = plan.params["processes"][0]
        async for p in _restart_one(ctx, plan, ref, done, plan.params["health_timeout"]):
            yield p
        yield Outcome("succeeded", f"{ref['name']} restarted and answers /health", {"done": list(done)})


class RecreateProcess(RestartProcess):
    id: ClassVar[str] = "process.recreate"
    key: ClassVar[str] = "e"
    title: ClassVar[str] = "Force-recreate replica process"
    help: ClassVar[str] = "For a process, recreate is a restart: there is no container configuration to rebuild"
    _verb: ClassVar[str] = "Recreate (restart)"

    def _extra_warnings(self) -> tuple[str, ...]:
        return ("a process has no container to rebuild: recreate is a restart with the same command line "
                "(the runbook's `docker-compose up -d --force-recreate` applies to containers)",)


class RestartProcesses(_ProcessAction):
    id: ClassVar[str] = "process.restart_service"
    key: ClassVar[str] = "P"
    title: ClassVar[str] = "Restart service processes (rolling)"
    help: ClassVar[str] = "Restart every prover process one after another, waiting for /health in between"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "service"
    security_guarded: ClassVar[bool] = True

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = _health_timeout(params)
        procs = await asyncio.to_thread(_list, ctx)
        if not procs:
            raise ActionError("no process replicas are configured ([[replicas]] with a pid_file)")
        for p in procs:
            _need_argv(p)
        ordered = await _health_order(ctx, procs)
        steps = [s for p in ordered for s in _stop_commands(p) + _start_commands(p, timeout)]
        warnings = ["one replica at a time, so the others keep serving (the runbook's `docker-compose restart prover` "
                    "restarts all at once)"]
        if len(procs) == 1:
            warnings.append("there is only one replica: the service is down while it restarts")
        return Plan(
            action_id=self.id,
            title=f"Rolling restart of {target.name} ({len(procs)} processes)",
            target=target,
            danger=self.danger,
            steps=tuple(steps),
            params={"processes": [p.ref() for p in ordered], "health_timeout": timeout},
            warnings=tuple(warnings),
            cancellable=True,
        )

    async def _steps(self, ctx, plan, done):  # type: ignore[override]
        refs = plan.params["processes"]
        for i, ref in enumerate(refs):
            self._check_cancel(ctx, plan, f"before restarting {ref['name']}")
            async for p in _restart_one(ctx, plan, ref, done, plan.params["health_timeout"]):
                yield Progress(p.message, i / len(refs))
        yield Outcome("succeeded", f"restarted {len(refs)} processes one by one; all answer /health", {"done": list(done)})


# --------------------------------------------------------------------------- stop / start


class StopProcesses(_ProcessAction):
    id: ClassVar[str] = "process.stop_service"
    key: ClassVar[str] = "K"
    title: ClassVar[str] = "Stop service processes (all replicas)"
    help: ClassVar[str] = "SIGTERM every prover process at once (runbook Incident 4: STOP SERVICE IMMEDIATELY)"
    danger: ClassVar[str] = "destructive"
    target_kind: ClassVar[str] = "service"
    security_guarded: ClassVar[bool] = True

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        procs = await asyncio.to_thread(_list, ctx)
        running = [p for p in procs if p.running]
        if not running:
            raise ActionError(f"no process of {target.name} is running")
        pids = " ".join(str(p.pid) for p in running)
        return Plan(
            action_id=self.id,
            title=f"Stop {target.name}: {len(running)} processes",
            target=target,
            danger=self.danger,
            steps=(
                PlanStep(f"SIGTERM every replica at once ({', '.join(f'{p.name} pid {p.pid}' for p in running)}), "
                         f"SIGKILL what still runs after {STOP_TIMEOUT:g} s; log files and records are kept",
                         f"kill -TERM {pids}"),
            ),
            params={"processes": [p.ref() for p in running]},
            warnings=("the service stops answering completely until it is started again",),
            confirm_text=target.name,
            cancellable=False,
        )

    async def _steps(self, ctx, plan, done):  # type: ignore[override]
        refs = plan.params["processes"]
        yield Progress(f"stopping {', '.join(r['name'] for r in refs)}")

        async def stop(ref: Mapping[str, Any]) -> str | None:
            try:
                how = await asyncio.to_thread(_terminate, ref["pid"], ref["start_time"])
            except _Failed as exc:
                return f"{ref['name']}: {exc}"
            done.append(f"{ref['name']} (pid {ref['pid']}) {how}")
            return None

        problems = [p for p in await asyncio.gather(*(stop(r) for r in refs)) if p]
        if problems:
            yield Outcome("failed", "; ".join(problems) + f"; {_done_summary(done)}", {"done": list(done)})
            return
        yield Outcome("succeeded", f"stopped {len(refs)} processes; logs and records kept", {"done": list(done)})


class StartProcesses(_ProcessAction):
    id: ClassVar[str] = "process.start_service"
    key: ClassVar[str] = "o"
    title: ClassVar[str] = "Start service processes"
    help: ClassVar[str] = "Start the stopped prover processes with their recorded command lines and wait for /health"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "service"

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = _health_timeout(params)
        procs = await asyncio.to_thread(_list, ctx)
        if not procs:
            raise ActionError("no process replicas are configured ([[replicas]] with a pid_file)")
        stopped = [p for p in procs if not p.running]
        if not stopped:
            raise ActionError(f"every process of {target.name} is already running")
        for p in stopped:
            _need_argv(p)
        steps = [s for p in stopped for s in _start_commands(p, timeout)]
        return Plan(
            action_id=self.id,
            title=f"Start {target.name}: {len(stopped)} processes",
            target=target,
            danger=self.danger,
            steps=tuple(steps),
            params={"processes": [p.ref() for p in stopped], "health_timeout": timeout},
            cancellable=True,
        )

    async def _steps(self, ctx, plan, done):  # type: ignore[override]
        refs = plan.params["processes"]
        runtime = _runtime_path(ctx)
        started = []
        for ref in refs:
            self._check_cancel(ctx, plan, f"before starting {ref['name']}")
            p = await asyncio.to_thread(_current, ctx, ref)
            if p.running:
                done.append(f"{p.name} was already running (pid {p.pid})")
                continue
            yield Progress(f"starting {p.name}")
            started.append((p, *await _start(ctx, plan, p, runtime, done)))
        for p, pid, start, offset in started:
            yield Progress(f"waiting for {p.name} (pid {pid}) to answer {p.health_url}")
            await _wait_healthy(ctx, plan, p, pid, start, offset, plan.params["health_timeout"])
        yield Outcome("succeeded", f"started {len(started)} processes; all answer /health", {"done": list(done)})


# --------------------------------------------------------------------------- scale


def _replicas_param(params: Mapping[str, Any]) -> int:
    raw = params.get("replicas")
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ActionError(f"replicas: a whole number from 1 to {MAX_REPLICAS} is needed, not {raw!r}")
    if not 1 <= raw <= MAX_REPLICAS:
        raise ActionError(f"replicas: {raw} is outside 1..{MAX_REPLICAS}")
    return raw


def _free_port(avoid: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            avoid.add(port)
            return port


def _with_flag(argv: Sequence[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == flag and i + 1 < len(out):
            out[i + 1] = value
        elif arg.startswith(flag + "="):
            out[i] = f"{flag}={value}"
    return out


def _without_flag(argv: Sequence[str], flag: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def _with_port(url: str | None, port: int) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{host}:{port}", parts.path, parts.query, parts.fragment))


def _used_ports(procs: Sequence[_Proc], runtime: Mapping[str, Any]) -> set[int]:
    used = {int(v) for v in (runtime.get("ports") or {}).values() if isinstance(v, int)}
    for p in procs:
        for url in (p.health_url, p.control_url):
            if url:
                port = urlsplit(url).port
                if port:
                    used.add(port)
    return used


def _new_replica(template: _Proc, number: int, avoid: set[int]) -> dict[str, Any]:
    """Placement and command line of replica `number`, copied from `template`."""
    assert template.argv and template.number is not None
    prefix = re.sub(r"-\d+$", "", template.name)
    name = f"{prefix}-{number}"
    port = _free_port(avoid)
    argv = _with_flag(template.argv, "--port", str(port))
    argv = [name if a == template.name else a for a in argv]  # --name prover-2 -> prover-3
    control_port = None
    if _flag(argv, "--control-port") not in (None, "0"):
        control_port = _free_port(avoid)
        argv = _with_flag(argv, "--control-port", str(control_port))
    # The drill gives scheduled backups to one replica only: two would write the same files.
    argv = _without_flag(argv, "--backup-interval")
    log_dir = template.log_file.parent if template.log_file else (template.pid_file.parent if template.pid_file else None)
    return {
        "name": name,
        "number": number,
        "port": port,
        "control_port": control_port,
        "argv": argv,
        "cwd": template.cwd,
        "health_url": _with_port(template.health_url, port),
        "metrics_url": _with_port(template.metrics_url, port),
        "control_url": _with_port(template.control_url, control_port) if control_port else None,
        "log_file": str(log_dir / f"{name}.log") if log_dir else None,
        "pid_file": str(template.pid_file.parent / f"{name}.pid") if template.pid_file else None,
    }


def _config_path(ctx: ActionContext) -> Path:
    source = ctx.settings.source
    if source is None:
        raise ActionError("scaling processes changes the [[replicas]] of the configuration file, and these settings "
                          "were not loaded from a file")
    return Path(source)


def _rewrite_config(path: Path, add: Sequence[Mapping[str, Any]] = (), remove: Sequence[str] = ()) -> None:
    """Add or drop [[replicas]] entries; every other key of the file is written back as it was."""
    import tomllib

    from x402console.config import ConfigError, load_config, write_config

    try:
        load_config(path)  # refuse to rewrite a file the console itself would refuse
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        replicas = [r for r in data.get("replicas", []) if r.get("name") not in set(remove)]
        for new in add:
            entry = {"name": new["name"], "health_url": new["health_url"], "metrics_url": new["metrics_url"]}
            for key in ("log_file", "pid_file", "control_url"):
                if new.get(key):
                    entry[key] = new[key]
            replicas.append(entry)
        data["replicas"] = replicas
        write_config(data, path)
    except ConfigError as exc:
        raise _Failed(f"cannot update the configuration: {exc}") from None
    except (OSError, ValueError) as exc:
        raise _Failed(f"cannot update the configuration {path}: {exc}") from None


class ScaleProcesses(_ProcessAction):
    id: ClassVar[str] = "process.scale"
    key: ClassVar[str] = "n"
    title: ClassVar[str] = "Scale service processes"
    help: ClassVar[str] = "Start or stop prover processes to reach N replicas; the configuration's [[replicas]] follow (runbook Incident 3)"
    danger: ClassVar[str] = "disruptive"
    target_kind: ClassVar[str] = "service"
    security_guarded: ClassVar[bool] = True
    param_help: ClassVar[Mapping[str, str]] = {"replicas": f"how many replicas to run (1..{MAX_REPLICAS})"}

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        wanted = _replicas_param(params)
        timeout = _health_timeout(params)
        config = _config_path(ctx)
        procs = await asyncio.to_thread(_list, ctx)
        numbered = [p for p in procs if p.number is not None]
        if not numbered:
            raise ActionError("no numbered process replicas (prover-1, prover-2, ...) to scale")
        current = len(procs)
        if wanted == current:
            raise ActionError(f"{target.name} already has {current} replicas")
        steps: list[PlanStep] = []
        warnings: list[str] = []
        out: dict[str, Any] = {"replicas": wanted, "health_timeout": timeout, "config": str(config)}
        if wanted > current:
            templates = [p for p in numbered if p.argv]
            if not templates:
                raise ActionError("cannot scale up: no replica's command line is known (no runtime.json record, "
                                  "none running) to start a new one like it")
            template = max(templates, key=lambda p: p.number or 0)
            if _port_of(template.argv or []) is None:
                raise ActionError(f"cannot scale up: {template.name}'s command line has no --port argument to give "
                                  f"a new replica its own port")
            runtime = _load_runtime(_runtime_path(ctx))
            avoid = _used_ports(procs, runtime)
            news = [_new_replica(template, n, avoid) for n in next_numbers([p.number for p in numbered], wanted)]
            for new in news:
                log = shlex.quote(new["log_file"]) if new["log_file"] else "/dev/null"
                pid_file = f"; echo $! > {shlex.quote(new['pid_file'])}" if new["pid_file"] else ""
                steps.append(PlanStep(f"Start {new['name']} on 127.0.0.1:{new['port']} with {template.name}'s command line",
                                      f"setsid {_shown(new['argv'])} >> {log} 2>&1 < /dev/null &{pid_file}"))
            steps.append(PlanStep(f"Add {', '.join(n['name'] for n in news)} to [[replicas]] in {config} "
                                  f"and to the drill's runtime record"))
            for new in news:
                steps.append(PlanStep(f"Wait up to {timeout:g} s until {new['name']} answers /health",
                                      f"curl -f {new['health_url']}"))
            warnings.append("load balancer (nginx) and Prometheus targets are not changed (runbook: 'Update load "
                            "balancer to distribute traffic')")
            out["create"] = news
            title = f"Scale {target.name} from {current} to {wanted} processes"
        else:
            order = sorted(procs, key=lambda p: -(p.number or 0))[: current - wanted]
            for p in order:
                steps += _stop_commands(p)
            steps.append(PlanStep(f"Remove {', '.join(p.name for p in order)} from [[replicas]] in {config}, "
                                  f"the runtime record and their pid files (log files are kept)"))
            kept = sorted((p.name for p in procs if p not in order), key=lambda n: _number(n) or 0)
            warnings.append(f"keeps {', '.join(kept)}; requests in flight on the stopped ones are cut off")
            out["remove"] = [p.ref() for p in order]
            title = f"Scale {target.name} from {current} down to {wanted} processes"
        return Plan(
            action_id=self.id,
            title=title,
            target=target,
            danger=self.danger,
            steps=tuple(steps),
            params=out,
            warnings=tuple(warnings),
            cancellable=False,  # the configuration is rewritten as one step with the processes
        )

    async def _steps(self, ctx, plan, done):  # type: ignore[override]
        config = Path(plan.params["config"])
        runtime = _runtime_path(ctx)
        if "create" in plan.params:
            started = []
            for new in plan.params["create"]:
                p = _Proc(name=new["name"], number=new["number"], health_url=new["health_url"],
                          metrics_url=new["metrics_url"], control_url=new.get("control_url"),
                          pid_file=Path(new["pid_file"]) if new.get("pid_file") else None,
                          log_file=Path(new["log_file"]) if new.get("log_file") else None,
                          pid=None, start_time=None, argv=list(new["argv"]), cwd=new.get("cwd"), source="scale")
                yield Progress(f"starting {p.name} on 127.0.0.1:{new['port']}")
                pid, start, offset = await _start(ctx, plan, p, runtime, done)
                ports = {p.name: new["port"]}
                if new.get("control_port"):
                    ports[f"{p.name}-control"] = new["control_port"]
                _update_runtime(runtime, ports=ports)
                started.append((p, pid, start, offset))
            yield Progress(f"adding {', '.join(p.name for p, *_ in started)} to {config}")
            try:
                await asyncio.to_thread(_rewrite_config, config, plan.params["create"])
            except _Failed as exc:
                raise _Failed(f"{exc}; the new processes run but the console does not know them until they are "
                              f"added to [[replicas]] (or scaled down again)") from None
            done.append(f"added {', '.join(p.name for p, *_ in started)} to {config.name}")
            for p, pid, start, offset in started:
                yield Progress(f"waiting for {p.name} (pid {pid}) to answer {p.health_url}")
                await _wait_healthy(ctx, plan, p, pid, start, offset, plan.params["health_timeout"])
            yield Outcome("succeeded", f"scaled to {plan.params['replicas']} processes: "
                          f"{', '.join(p.name for p, *_ in started)} answer /health", {"done": list(done)})
            return
        refs = plan.params["remove"]
        for ref in refs:
            if ref.get("pid") is not None:
                yield Progress(f"stopping {ref['name']} (pid {ref['pid']})")
                how = await asyncio.to_thread(_terminate, ref["pid"], ref["start_time"])
                done.append(f"{ref['name']} (pid {ref['pid']}) {how}")
        names = [r["name"] for r in refs]
        yield Progress(f"removing {', '.join(names)} from {config}")
        pid_files = [r.pid_file for r in _process_replicas(ctx.settings) if r.name in names and r.pid_file]
        await asyncio.to_thread(_rewrite_config, config, (), names)
        _update_runtime(runtime, remove=names)
        for path in pid_files:
            Path(path).unlink(missing_ok=True)
        done.append(f"removed {', '.join(names)} from {config.name}")
        yield Outcome("succeeded", f"scaled down to {plan.params['replicas']} processes; stopped {', '.join(names)}",
                      {"done": list(done)})


ACTIONS: tuple[type[Action], ...] = (
    RestartProcess,
    RestartProcesses,
    RecreateProcess,
    ScaleProcesses,
    StopProcesses,
    StartProcesses,
)


def actions() -> list[Action]:
    return [cls() for cls in ACTIONS]
