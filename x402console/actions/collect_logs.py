"""logs.collect: the last N lines of every replica's log into one file (runbook Incident 1:
`docker logs x402-prover-1 --tail=500 > incident_logs.txt`, for every replica at once).

Where the lines come from: a container replica's Docker log, asked for with timestamps and its
stdout/stderr frames kept apart (the stdlib log of the real prover is on stderr, gin's access log
on stdout); a process replica's log file (the drill's, or a [[replicas]] log_file), from which the
last N lines are read as they are. A replica with neither is listed as missing.

File format: one line per log line, `<replica> <stream> <the line as logged>`, stream being
stdout/stderr (Docker; the line starts with Docker's RFC 3339 timestamp), tty (a TTY container:
one stream) or log (a log file, whose lines carry the program's own timestamps). Replicas follow
each other in discovery order; within a replica the order is the log's own. The line bytes are
copied verbatim, escape sequences and invalid UTF-8 included: the file is evidence, and what an
attacker made the prover log (header values, paths) is part of it. Read it with `less` (which
shows escapes as ^[), not `cat`. Only what the console itself prints (progress, summaries) is
sanitised.

Where the file goes: `<dir>/logs-<incident id>-<UTC time>.txt`, dir being the `dir` parameter
or `evidence/` beside the journal (the journal's directory is the one place every console of an
incident already writes to). The file is created exclusively (O_EXCL) under a fresh name, never
over an existing one, and made read-only (0444) once written.

changes_state is False: nothing in the x402 system changes. The file is the console's own
output, in the console's own directory; an observer must be able to preserve evidence too
(runbook, security incidents: DO preserve logs).
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from x402console.actions.base import Action, ActionContext, ActionError, Outcome, Plan, PlanStep, Progress, Target
from x402console.sources.models import ReplicaIdentity
from x402console.sources.sanitize import sanitize_line

__all__ = [
    "CollectLogs",
    "ACTIONS",
    "DEFAULT_LINES",
    "LogSource",
    "LogsReport",
    "environment_target",
    "evidence_root",
    "find_replicas",
    "log_sources",
    "write_logs",
    "append_replica_log",
    "tail_lines",
    "check_writable_place",
    "parse_lines",
    "create_exclusive",
    "utc_stamp",
    "safe_name",
]

DEFAULT_LINES = 500
MAX_LINES = 100_000
# Per replica: N lines of a prover that logs huge lines (attacker-chosen paths) stay bounded.
MAX_BYTES_PER_REPLICA = 64 * 1024 * 1024
_STREAMS = {0: "stdin", 1: "stdout", 2: "stderr"}
_CHUNK = 256 * 1024


# --------------------------------------------------------------------------- names and places


def utc_stamp(t: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if t is None else t))


def safe_name(name: str) -> str:
    """A replica name usable as a file name and as one field of a line."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "replica"
    return cleaned[:100]


def environment_target(ctx: ActionContext) -> Target:
    return Target("environment", ctx.settings.environment.name)


def evidence_root(ctx: ActionContext, params: Mapping[str, Any]) -> Path:
    """The `dir` parameter (absolute), else `evidence/` beside the journal file."""
    given = params.get("dir")
    if given not in (None, ""):
        if not isinstance(given, str):
            raise ActionError(f"dir must be a directory path, not {given!r}")
        p = Path(given).expanduser()
        if not p.is_absolute():
            raise ActionError(f"dir must be an absolute path (got {given!r})")
        return Path(os.path.abspath(p))
    journal = ctx.journal.path if ctx.journal is not None else ctx.settings.environment.journal
    return Path(os.path.abspath(Path(journal).expanduser())).parent / "evidence"


def check_writable_place(d: Path) -> None:
    """Raise ActionError when `d` cannot be created or written (plan time: nothing is made)."""
    probe = d
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ActionError(f"cannot write evidence under {d}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ActionError(f"cannot write evidence under {d}: {probe} is not writable by this user")


def create_exclusive(d: Path, stem: str, suffix: str = "", *, directory: bool = False) -> Path:
    """Make `d/stem+suffix` (or stem-2, stem-3 ...) that did not exist; never reuses a name."""
    d.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        p = d / (f"{stem}{suffix}" if i == 1 else f"{stem}-{i}{suffix}")
        try:
            if directory:
                p.mkdir(mode=0o700)
            else:
                os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return p
        except FileExistsError:
            continue
    raise ActionError(f"no free name for {stem}{suffix} in {d}")


def parse_lines(params: Mapping[str, Any]) -> int:
    raw = params.get("lines", DEFAULT_LINES)
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_LINES:
        raise ActionError(f"lines must be a whole number from 1 to {MAX_LINES}, not {raw!r}")
    return raw


# --------------------------------------------------------------------------- which replicas


def _docker_replicas(ctx: ActionContext) -> tuple[list[ReplicaIdentity], list[str]]:
    from x402console.sources.discovery import DiscoveryError, discover_containers

    found: list[ReplicaIdentity] = []
    problems: list[str] = []
    for host in ctx.settings.docker_hosts:
        try:
            client = ctx.docker(host.name)
            found += discover_containers(client, ctx.settings, host)
        except (ActionError, DiscoveryError) as exc:
            problems.append(str(exc))
        except Exception as exc:  # the engine went away mid-call
            problems.append(f"docker host {host.name}: {type(exc).__name__}: {exc}")
    return found, problems


async def find_replicas(ctx: ActionContext) -> tuple[list[ReplicaIdentity], list[str]]:
    """Every replica the configuration knows: containers on the Docker hosts (unless discovery is
    static) and the [[replicas]] entries not among them. Also what could not be asked."""
    from x402console.sources.discovery import discover_static

    static = discover_static(ctx.settings)
    if ctx.settings.discovery.mode == "static":
        return static, []
    found, problems = await asyncio.to_thread(_docker_replicas, ctx)
    names = {r.name for r in found}
    return found + [r for r in static if r.name not in names], problems


@dataclass(frozen=True)
class LogSource:
    replica: str
    kind: str  # "container" | "file" | "none"
    container_id: str | None = None
    docker_host: str | None = None
    path: Path | None = None

    def command(self, lines: int, container_name: str | None = None) -> str | None:
        if self.kind == "container":
            return f"docker logs --timestamps --tail={lines} {container_name or (self.container_id or '')[:12]}"
        if self.kind == "file" and self.path is not None:
            return f"tail -n {lines} {self.path}"
        return None


def log_sources(replicas: list[ReplicaIdentity]) -> list[LogSource]:
    out = []
    for r in replicas:
        if r.kind == "container" and r.container_id:
            out.append(LogSource(r.name, "container", r.container_id, r.docker_host))
        elif r.log_file:
            out.append(LogSource(r.name, "file", path=Path(r.log_file)))
        else:
            out.append(LogSource(r.name, "none"))
    return out


# --------------------------------------------------------------------------- reading


def _container_lines(ctx: ActionContext, src: LogSource, tail: int) -> tuple[list[tuple[str, bytes]], str]:
    """(stream, line) pairs of the last `tail` lines of a container's log, and its name."""
    client = ctx.docker(src.docker_host)
    api = client.api
    info = api.inspect_container(src.container_id)
    name = str(info.get("Name", "")).lstrip("/") or (src.container_id or "")[:12]
    tty = bool((info.get("Config") or {}).get("Tty"))
    params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": 0, "tail": tail}
    response = api._get(api._url("/containers/{0}/logs", src.container_id), params=params, stream=False)
    api._raise_for_status(response)
    data = response.content
    out: list[tuple[str, bytes]] = []
    if tty:
        out = [("tty", line) for line in data.splitlines(keepends=False)]
        return out, name
    pending: dict[str, bytes] = {}
    pos = 0
    # The engine sends 8-byte frame headers: stream id, 3 pad bytes, big-endian length.
    while pos + 8 <= len(data):
        stream_id, length = struct.unpack(">BxxxL", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        pos += 8 + length
        stream = _STREAMS.get(stream_id, f"stream{stream_id}")
        buf = pending.get(stream, b"") + chunk
        *complete, rest = buf.split(b"\n")
        out.extend((stream, line) for line in complete)
        pending[stream] = rest
    out.extend((s, rest) for s, rest in pending.items() if rest)
    return out, name


def tail_lines(path: Path, n: int, max_bytes: int = MAX_BYTES_PER_REPLICA) -> tuple[list[bytes], bool]:
    """The last `n` lines of a file as they are (without their newline), and whether the byte
    limit cut the first of them."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return [], False
        f.seek(size - 1)
        ends_with_newline = f.read(1) == b"\n"
        wanted = n + 1 if ends_with_newline else n
        pos = size
        buf = b""
        while pos > 0 and buf.count(b"\n") < wanted and size - pos < max_bytes:
            step = min(_CHUNK, pos, max_bytes - (size - pos))
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
    lines = buf.split(b"\n")
    if ends_with_newline:
        lines.pop()
    cut = False
    if len(lines) > n:
        lines = lines[-n:]
    elif pos > 0:
        cut = True  # the byte limit fell inside the first line kept
    return lines, cut


@dataclass
class LogsReport:
    path: Path
    replicas: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)
    lines: int = 0
    bytes: int = 0
    cancelled: bool = False

    @property
    def collected(self) -> int:
        return sum(1 for r in self.replicas if r.get("lines") is not None)


async def append_replica_log(ctx: ActionContext, src: LogSource, lines: int, f: Any, report: LogsReport) -> None:
    """Append the last `lines` lines of one source to the open binary file `f`; what could not
    be read goes into report.missing."""
    prefix = safe_name(src.replica).encode()
    entry: dict[str, Any] = {"replica": src.replica, "kind": src.kind}
    report.replicas.append(entry)
    try:
        if src.kind == "container":
            pairs, name = await asyncio.to_thread(_container_lines, ctx, src, lines)
            entry["source"] = f"docker logs --timestamps --tail={lines} {name}"
        elif src.kind == "file" and src.path is not None:
            got, cut = await asyncio.to_thread(tail_lines, src.path, lines)
            pairs = [("log", line) for line in got]
            entry["source"] = str(src.path)
            if cut:
                entry["note"] = f"the first line kept was cut {MAX_BYTES_PER_REPLICA} bytes before the end"
        else:
            raise LookupError("no log source: not a container and no log_file configured")
    except Exception as exc:
        reason = _reason(exc)
        entry["error"] = reason
        report.missing.append({"part": "logs", "item": src.replica, "reason": reason})
        return
    written = 0
    for stream, line in pairs:
        record = prefix + b" " + stream.encode() + b" " + line + b"\n"
        f.write(record)
        written += len(record)
    entry["lines"] = len(pairs)
    entry["bytes"] = written
    report.lines += len(pairs)
    report.bytes += written


async def write_logs(
    ctx: ActionContext, sources: list[LogSource], lines: int, out: Path
) -> AsyncIterator[tuple[str, float] | LogsReport]:
    """Append every source's last lines to `out` (already created, empty), yielding a progress
    message and fraction before each replica, then the LogsReport. Stops early (the report says
    how far it got) when ctx.cancel is set."""
    report = LogsReport(out)
    with open(out, "ab") as f:
        for i, src in enumerate(sources):
            if ctx.cancel.is_set():
                report.cancelled = True
                break
            yield f"logs of {sanitize_line(src.replica, 100)} ...", i / max(1, len(sources))
            await append_replica_log(ctx, src, lines, f, report)
        f.flush()
        os.fsync(f.fileno())
    yield report


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# --------------------------------------------------------------------------- the action


class CollectLogs(Action):
    id = "logs.collect"
    key = "c"
    title = "Collect logs to a file"
    help = ("The last N lines (default 500) of every replica's log, each line prefixed by its replica, into one "
            "new read-only file beside the journal (runbook: docker logs --tail=500 > incident_logs.txt).")
    pane = "logs"
    danger = "safe"
    changes_state = False
    target_kind = "environment"
    param_help = {
        "lines": f"lines per replica (default {DEFAULT_LINES}, at most {MAX_LINES})",
        "dir": "directory for the file (default: evidence/ beside the journal)",
    }

    def targets(self, ctx: ActionContext) -> list[Target]:
        return [environment_target(ctx)]

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        lines = parse_lines(params)
        root = evidence_root(ctx, params)
        check_writable_place(root)
        replicas, problems = await find_replicas(ctx)
        sources = log_sources(replicas)
        if not sources and not problems:
            raise ActionError("no prover replicas are configured or discovered: there are no logs to collect")
        incident = ctx.incident_id if ctx.incident_id is not None else "none"
        name = f"logs-{incident}-<UTC time>.txt"
        steps = [PlanStep(f"Create {root / name} (a new file, never an existing one)")]
        for src in sources:
            cmd = src.command(lines)
            if cmd is None:
                steps.append(PlanStep(f"{src.replica}: no log source (not a container, no log_file): listed as missing"))
            else:
                steps.append(PlanStep(f"Last {lines} lines of {src.replica}, each prefixed '{safe_name(src.replica)} <stream> '",
                                      f"{cmd} >> {root / name}"))
        steps.append(PlanStep("Make the file read-only", f"chmod 0444 {root / name}"))
        warnings = tuple(f"Replicas not found: {p}" for p in problems)
        return self.make_plan(target, steps, {"lines": lines, "dir": str(root)}, warnings=warnings)

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        lines = int(plan.params["lines"])
        root = Path(plan.params["dir"])
        replicas, problems = await find_replicas(ctx)
        sources = log_sources(replicas)
        if not sources:
            why = f": {sanitize_line('; '.join(problems), 1000)}" if problems else ""
            yield Outcome("failed", f"no replica to collect logs from{why}")
            return
        incident = ctx.incident_id if ctx.incident_id is not None else "none"
        try:
            out = await asyncio.to_thread(create_exclusive, root, f"logs-{incident}-{utc_stamp()}", ".txt")
        except (OSError, ActionError) as exc:
            yield Outcome("failed", f"cannot create the log file in {root}: {_reason(exc)}")
            return
        yield Progress(f"Collecting the last {lines} lines of {len(sources)} replicas into {sanitize_line(out.name)} ...", 0.0)
        report = LogsReport(out)
        async for item in write_logs(ctx, sources, lines, out):
            if isinstance(item, LogsReport):
                report = item
            else:
                yield Progress(item[0], item[1])
        os.chmod(out, 0o444)
        missing = report.missing + [{"part": "logs", "item": "discovery", "reason": p} for p in problems]
        details = {"file": str(out), "lines_per_replica": lines, "lines": report.lines, "bytes": report.bytes,
                   "replicas": report.replicas, "missing": missing}
        if report.cancelled:
            yield Outcome("cancelled", f"cancelled after {report.collected} of {len(sources)} replicas; the partial file "
                          f"{sanitize_line(str(out), 500)} is kept (read-only)", details, (str(out),))
            return
        if report.collected == 0:
            yield Outcome("failed", "no replica's log could be read: " + "; ".join(
                sanitize_line(f"{m['item']}: {m['reason']}", 300) for m in missing), details, (str(out),))
            return
        gaps = f"; missing: {', '.join(sanitize_line(m['item'], 100) for m in missing)}" if missing else ""
        yield Outcome("succeeded", f"{report.lines} log lines of {report.collected} replicas written to "
                      f"{sanitize_line(str(out), 500)}{gaps}", details, (str(out),))


ACTIONS = (CollectLogs,)
