"""evidence.bundle: preserve the evidence of an incident before anything is restarted (runbook,
Security Incidents: "DO NOT restart services immediately (preserve evidence)", "DO preserve logs
and database state"; Incident 4 step 3). Its success is what lets the registry's security guard
allow restarts again.

One new directory per run, `evidence-<incident id>-<UTC time>/` under the `dir` parameter or
`evidence/` beside the journal, holding (collected in this order: most volatile first, as
RFC 3227 advises, because a prover that crashes or leaks memory changes those first):

  runtime/<replica>.inspect.json   Docker mode: `docker inspect` of the container (a JSON list, as
                                   the CLI prints it)
  runtime/<replica>.process.json   process mode: /proc of the prover process: argv, cwd, exe,
                                   status, stat, limits, open file descriptors and environment
  metrics/<replica>.txt            the replica's /metrics text, verbatim
  pprof/<replica>.goroutine.txt    /debug/pprof/goroutine?debug=2 and /debug/pprof/heap (as served:
  pprof/<replica>.heap.prof        protobuf from Go, for `go tool pprof`), only when [prover] pprof
  pprof/NOTE.txt                   is on; NOTE.txt says why there are none (the real prover answers
                                   404: it registers no pprof routes)
  logs/incident_logs.txt           the last N lines of every replica (format: see collect_logs.py)
  prometheus/...                   prometheus_queries() below, all evaluated at one instant (range
                                   queries: the last `window_minutes`), plus /api/v1/alerts,
                                   /api/v1/targets, /api/v1/rules and buildinfo; queries.json maps
                                   each file to its expression. Each body is kept as Prometheus sent it.
  keys/verification_key.json       the configured verification key, its .sha256, and the trusted
  keys/trusted_verification_key.json  copy when one is configured (runbook Incident 4: diff them)
  database/proofs.db               a consistent snapshot made with SQLite's online backup API
  database/integrity_check.txt     PRAGMA integrity_check of that snapshot
  database/raw/...                 only when no consistent copy could be made: the file bytes as
                                   found (a corrupt page is itself evidence), marked as such
  manifest.json                    what is in the bundle (path, bytes, sha256 per file), what could
                                   not be collected and why, what was masked, when and by whom
  MANIFEST.sha256                  every other file in `sha256sum` format: `sha256sum -c
                                   MANIFEST.sha256` inside the directory verifies the bundle
  INCOMPLETE                       only in a bundle that was cancelled part-way

Secrets: the values of environment variables whose names contain TOKEN, SECRET, KEY, PASSWORD,
PASSWD or CREDENTIAL, the values of command-line flags named like them (--control-token ...), and
passwords inside URLs (scheme://user:password@) are replaced by *** in the runtime files, and the
manifest lists every replacement. The rest of the environment is kept: variables such as
GIN_MODE or RATE_LIMIT_PER_MINUTE are exactly what an investigation asks about (runbook
Incident 6: the prover ignores them). The logs are kept verbatim (they hold no credentials the
prover did not log itself, and changing them would spoil them as evidence).

A part that cannot be collected (Prometheus down, a replica unreachable, no pprof) is recorded in
the manifest's `missing` list and the bundle still succeeds; it fails only when nothing at all
could be collected. Cancelling stops between parts (and inside the database copy); the
directory is kept, marked INCOMPLETE, with a manifest of what it holds. Every file ends 0444 and
every directory 0555.

Outcome details (the post-mortem reads these): bundle_dir, manifest (MANIFEST.sha256),
manifest_json, manifest_sha256 (sha256 of MANIFEST.sha256: kept in the journal, it lets anyone
later prove the bundle is the one collected), files [{path relative to bundle_dir, sha256, bytes}],
missing [{part, item, reason}], skipped, complete, parts.

changes_state is False: nothing in the x402 system changes (the database is only read, in short
read transactions). An observer console must be able to preserve evidence; the plan warns that a
rollback-journal database may delay the prover's writes by up to max_lock_seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from x402console import __version__
from x402console.actions import sqlite_ops as ops
from x402console.actions.base import Action, ActionContext, ActionError, Outcome, Plan, PlanStep, Progress, Target
from x402console.actions.collect_logs import (
    DEFAULT_LINES,
    LogsReport,
    check_writable_place,
    create_exclusive,
    environment_target,
    evidence_root,
    find_replicas,
    log_sources,
    parse_lines,
    safe_name,
    utc_stamp,
    write_logs,
)
from x402console.core.format import bytes_h
from x402console.sources.models import ReplicaIdentity
from x402console.sources.sanitize import sanitize_line

__all__ = ["EvidenceBundle", "ACTIONS", "prometheus_queries", "PROMETHEUS_ENDPOINTS", "mask_env", "mask_argv",
           "mask_inspect", "process_info", "sha256_file", "BUNDLE_FORMAT"]

BUNDLE_FORMAT = "x402console-evidence/1"
MASK = "***"
SECRET_NAME = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_SECRET_FLAG = re.compile(r"^--?[A-Za-z0-9_.-]*(token|secret|password|passwd|credential|api[-_]?key|private[-_]?key)"
                          r"[A-Za-z0-9_.-]*$", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):(?P<pw>[^/@\s]+)@")
DEFAULT_WINDOW_MINUTES = 60
MAX_WINDOW_MINUTES = 24 * 60
DEFAULT_MAX_LOCK_S = 1.0
METRICS_LIMIT = 32 * 1024 * 1024
PPROF_LIMIT = 64 * 1024 * 1024
PROMETHEUS_LIMIT = 32 * 1024 * 1024
PPROF_TIMEOUT_S = 15.0
_MAX_FDS = 4096
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

PARTS = ("runtime", "metrics", "pprof", "logs", "prometheus", "keys", "database")


# --------------------------------------------------------------------------- secrets


def _mask_url_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def mask_env(items: Mapping[str, str] | Sequence[str]) -> tuple[Any, list[str]]:
    """Environment with secret-looking values masked, and the names that were masked.

    Takes a mapping (from /proc/PID/environ) or a list of "NAME=value" (docker inspect's
    Config.Env) and returns the same shape."""
    masked: list[str] = []

    def one(name: str, value: str) -> str:
        if SECRET_NAME.search(name):
            masked.append(name)
            return MASK
        cleaned = _mask_url_passwords(value)
        if cleaned != value:
            masked.append(f"{name} (password in a URL)")
        return cleaned

    if isinstance(items, Mapping):
        return {k: one(k, v) for k, v in items.items()}, masked
    out = []
    for item in items:
        name, sep, value = str(item).partition("=")
        out.append(f"{name}={one(name, value)}" if sep else str(item))
    return out, masked


def mask_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """argv with the values of secret-named flags masked (`--flag value` and `--flag=value`)."""
    out = [str(a) for a in argv]
    masked: list[str] = []
    for i, arg in enumerate(out):
        flag, eq, _ = arg.partition("=")
        if not _SECRET_FLAG.match(flag):
            continue
        if eq:
            out[i] = f"{flag}={MASK}"
            masked.append(flag)
        elif i + 1 < len(out) and not out[i + 1].startswith("-"):
            out[i + 1] = MASK
            masked.append(flag)
    for i, arg in enumerate(out):
        cleaned = _mask_url_passwords(arg)
        if cleaned != arg:
            out[i] = cleaned
            masked.append("password in a URL")
    return out, masked


# --------------------------------------------------------------------------- the bundle on disk


class _Cancelled(Exception):
    pass


@dataclass
class _Bundle:
    root: Path
    missing: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    redactions: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return p

    def write(self, rel: str, data: bytes | str) -> Path:
        """A new file (never over an existing one), synced to disk."""
        p = self.path(rel)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(raw)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        return p

    def write_json(self, rel: str, obj: Any) -> Path:
        return self.write(rel, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")

    def miss(self, part: str, item: str, reason: str) -> None:
        self.missing.append({"part": part, "item": item, "reason": reason})

    def skip(self, part: str, reason: str) -> None:
        self.skipped.append({"part": part, "reason": reason})

    def files(self, exclude: Sequence[str] = ()) -> list[Path]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if p.relative_to(self.root).as_posix() not in exclude:
                    out.append(p)
        return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


def _iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        return ops.sqlite_error_text(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


# --------------------------------------------------------------------------- runtime state


def _read(path: str, limit: int = 1024 * 1024) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def process_info(pid: int) -> tuple[dict[str, Any], list[str]]:
    """What /proc says about a live process, secrets masked; and what was masked."""
    from x402console.sources.process_source import boot_time

    base = f"/proc/{pid}"
    info: dict[str, Any] = {"pid": pid, "collected_at": _iso()}
    errors: dict[str, str] = {}
    masked: list[str] = []
    try:
        raw = _read(f"{base}/cmdline")
        argv = [a.decode("utf-8", "backslashreplace") for a in raw.rstrip(b"\0").split(b"\0")] if raw else []
        info["cmdline"], m = mask_argv(argv)
        masked += [f"cmdline {x}" for x in m]
    except OSError as exc:
        errors["cmdline"] = _reason(exc)
    for name in ("cwd", "exe", "root"):
        try:
            info[name] = os.readlink(f"{base}/{name}")
        except OSError as exc:
            errors[name] = _reason(exc)
    for name in ("status", "stat", "limits", "io", "oom_score", "cgroup"):
        try:
            info[name] = _read(f"{base}/{name}").decode("utf-8", "backslashreplace")
        except OSError as exc:
            errors[name] = _reason(exc)
    stat = info.get("stat")
    if isinstance(stat, str):
        try:
            start_ticks = int(stat[stat.rfind(")") + 2:].split()[19])
            boot = boot_time()
            info["start_ticks"] = start_ticks
            if boot is not None:
                info["started_at"] = _iso(boot + start_ticks / _CLK_TCK)
        except (IndexError, ValueError):
            pass
    try:
        env_raw = _read(f"{base}/environ", 4 * 1024 * 1024)
        env: dict[str, str] = {}
        for item in env_raw.split(b"\0"):
            if b"=" in item:
                k, v = item.split(b"=", 1)
                env[k.decode("utf-8", "backslashreplace")] = v.decode("utf-8", "backslashreplace")
        info["environ"], m = mask_env(env)
        masked += [f"environ {x}" for x in m]
    except OSError as exc:
        errors["environ"] = _reason(exc)
    try:
        fds = []
        for fd in sorted(os.listdir(f"{base}/fd"), key=lambda s: int(s) if s.isdigit() else 0)[:_MAX_FDS]:
            with contextlib.suppress(OSError):
                fds.append({"fd": int(fd), "target": os.readlink(f"{base}/fd/{fd}")})
        info["fds"] = fds
    except OSError as exc:
        errors["fds"] = _reason(exc)
    if errors:
        info["errors"] = errors
    return info, masked


def mask_inspect(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`docker inspect` output with the environment and secret flags masked."""
    data = json.loads(json.dumps(attrs, default=str))
    masked: list[str] = []
    config = data.get("Config") or {}
    if isinstance(config.get("Env"), list):
        config["Env"], m = mask_env(config["Env"])
        masked += [f"Config.Env {x}" for x in m]
    for key, holder in (("Cmd", config), ("Entrypoint", config), ("Args", data)):
        value = holder.get(key)
        if isinstance(value, list):
            holder[key], m = mask_argv(value)
            masked += [f"{key} {x}" for x in m]
    return data, masked


async def _part_runtime(ctx: ActionContext, b: _Bundle, replicas: list[ReplicaIdentity]) -> AsyncIterator[str]:
    from x402console.actions import processes

    procs: dict[str, Any] = {}
    if any(r.kind == "process" for r in replicas):
        try:
            procs = {p.name: p for p in await asyncio.to_thread(processes._list, ctx)}
        except ActionError as exc:
            b.miss("runtime", "processes", str(exc))
    for r in replicas:
        name = safe_name(r.name)
        if r.kind == "container" and r.container_id:
            yield f"docker inspect of {sanitize_line(r.name, 100)}"
            try:
                client = await asyncio.to_thread(ctx.docker, r.docker_host)
                attrs = await asyncio.to_thread(client.api.inspect_container, r.container_id)
            except Exception as exc:
                b.miss("runtime", r.name, f"docker inspect failed: {_reason(exc)}")
                continue
            data, masked = mask_inspect(attrs)
            b.write_json(f"runtime/{name}.inspect.json", [data])
            b.redactions += [f"runtime/{name}.inspect.json: {m}" for m in masked]
        elif r.kind == "process":
            p = procs.get(r.name)
            if p is None:
                b.miss("runtime", r.name, "no pid_file is configured: the process cannot be identified")
                continue
            if p.pid is None:
                b.miss("runtime", r.name, f"not running: {p.pid_file} names no live process of this replica")
                continue
            yield f"/proc of {sanitize_line(r.name, 100)} (pid {p.pid})"
            info, masked = await asyncio.to_thread(process_info, p.pid)
            info["replica"] = r.name
            info["pid_file"] = str(p.pid_file) if p.pid_file else None
            b.write_json(f"runtime/{name}.process.json", info)
            b.redactions += [f"runtime/{name}.process.json: {m}" for m in masked]
        else:
            b.miss("runtime", r.name, "known by URL only: no container and no process to inspect")


# --------------------------------------------------------------------------- HTTP parts


async def _get(ctx: ActionContext, url: str, timeout: float, limit: int, **kw: Any) -> Any:
    from x402console.sources.health import fetch_bounded

    return await fetch_bounded(ctx.http, kw.pop("method", "GET"), url, timeout=timeout, limit=limit, **kw)


async def _part_metrics(ctx: ActionContext, b: _Bundle, replicas: list[ReplicaIdentity]) -> AsyncIterator[str]:
    from x402console.sources.health import FetchError

    timeout = float(ctx.settings.prover.health_timeout_seconds)
    wanted = [r for r in replicas if r.metrics_url]
    for r in replicas:
        if not r.metrics_url:
            b.miss("metrics", r.name, "no metrics URL is known")
    if not wanted:
        return
    yield f"/metrics of {len(wanted)} replicas"

    async def one(r: ReplicaIdentity) -> None:
        try:
            got = await _get(ctx, r.metrics_url, timeout, METRICS_LIMIT)
        except FetchError as exc:
            b.miss("metrics", r.name, f"{r.metrics_url}: {exc}")
            return
        if got.status_code != 200:
            b.miss("metrics", r.name, f"{r.metrics_url}: HTTP {got.status_code}: {sanitize_line(got.body[:200], 200)}")
            return
        b.write(f"metrics/{safe_name(r.name)}.txt", got.body)
        if got.truncated:
            b.miss("metrics", r.name, f"cut at {METRICS_LIMIT} bytes")

    await asyncio.gather(*(one(r) for r in wanted))


PPROF_NOTE_OFF = (
    "No pprof profiles were collected: [prover] pprof is false in the console's configuration.\n\n"
    "The real prover (prover/main.go) registers no /debug/pprof routes: they answer 404 there, so the\n"
    "runbook's Incident 7 commands (curl .../debug/pprof/goroutine, .../debug/pprof/heap) only work on a\n"
    "build that imports net/http/pprof. Set [prover] pprof = true for such a build.\n"
)


async def _part_pprof(ctx: ActionContext, b: _Bundle, replicas: list[ReplicaIdentity]) -> AsyncIterator[str]:
    from x402console.sources.health import FetchError

    if not ctx.settings.prover.pprof:
        b.skip("pprof", "[prover] pprof is false: the real prover exposes no /debug/pprof (404)")
        b.write("pprof/NOTE.txt", PPROF_NOTE_OFF)
        return
    notes: list[str] = []
    timeout = max(PPROF_TIMEOUT_S, float(ctx.settings.prover.health_timeout_seconds))
    for r in replicas:
        base = r.metrics_url or r.health_url
        if not base:
            b.miss("pprof", r.name, "no URL is known")
            continue
        origin = _origin(base)
        yield f"pprof of {sanitize_line(r.name, 100)}"
        for profile, query, suffix in (("goroutine", "?debug=2", "goroutine.txt"), ("heap", "", "heap.prof")):
            url = f"{origin}/debug/pprof/{profile}{query}"
            try:
                got = await _get(ctx, url, timeout, PPROF_LIMIT)
            except FetchError as exc:
                b.miss("pprof", f"{r.name} {profile}", f"{url}: {exc}")
                notes.append(f"{r.name}: {url}: {exc}")
                continue
            if got.status_code == 404:
                reason = (f"{url} answered 404: this build exposes no pprof endpoints "
                          "(the real prover registers none)")
                b.miss("pprof", f"{r.name} {profile}", reason)
                notes.append(f"{r.name}: {reason}")
                continue
            if got.status_code != 200:
                reason = f"{url}: HTTP {got.status_code}: {sanitize_line(got.body[:200], 200)}"
                b.miss("pprof", f"{r.name} {profile}", reason)
                notes.append(f"{r.name}: {reason}")
                continue
            b.write(f"pprof/{safe_name(r.name)}.{suffix}", got.body)
    if notes:
        b.write("pprof/NOTE.txt", "Some pprof profiles could not be collected ([prover] pprof is true):\n\n"
                + "".join(f"- {sanitize_line(n, 1000)}\n" for n in notes))


def prometheus_queries(settings: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(instant, range) PromQL by file name: the x402 metrics the runbook's incidents turn on."""
    m = settings.metrics
    job = settings.prometheus.job.replace("\\", "\\\\").replace('"', '\\"')
    sel = f'{{job="{job}"}}'
    dur = f"{m.duration_histogram}_bucket{sel}"
    ver = f"{m.verification_histogram}_bucket{sel}"

    def q(quantile: float, bucket: str, window: str) -> str:
        return f"histogram_quantile({quantile}, sum by (le, instance) (rate({bucket}[{window}])))"

    instant = {
        "up": f"up{sel}",
        "proofs_total": f"{m.proofs_total}{sel}",
        "errors_total": f"{m.errors_total}{sel}",
        "proof_rate_5m": f"rate({m.proofs_total}{sel}[5m])",
        "error_rate_5m": f"rate({m.errors_total}{sel}[5m])",
        "duration_p50_5m": q(0.5, dur, "5m"),
        "duration_p95_5m": q(0.95, dur, "5m"),
        "duration_p99_5m": q(0.99, dur, "5m"),
        "verification_p95_5m": q(0.95, ver, "5m"),
        "resident_memory_bytes": f"{m.resident_memory}{sel}",
        "active_requests": f"{m.active_requests}{sel}",
        "go_goroutines": f"go_goroutines{sel}",
        "rate_limited_by_ip_1h": f"topk(50, sum by (ip) (increase({m.rate_limited_total}{sel}[1h])))",
        "verification_failures_5m": f"rate(verification_failures_total{sel}[5m])",
        "alerts_series": "ALERTS",
    }
    ranged = {
        "up": f"up{sel}",
        "proof_rate_1m": f"rate({m.proofs_total}{sel}[1m])",
        "error_rate_1m": f"rate({m.errors_total}{sel}[1m])",
        "duration_p95_1m": q(0.95, dur, "1m"),
        "resident_memory_bytes": f"{m.resident_memory}{sel}",
        "active_requests": f"{m.active_requests}{sel}",
    }
    return instant, ranged


PROMETHEUS_ENDPOINTS = {
    "buildinfo": "/api/v1/status/buildinfo",
    "alerts": "/api/v1/alerts",
    "targets": "/api/v1/targets",
    "rules": "/api/v1/rules",
}


async def _part_prometheus(ctx: ActionContext, b: _Bundle, window_minutes: int) -> AsyncIterator[str]:
    from x402console.sources.health import FetchError

    url = ctx.settings.prometheus.url
    if not url:
        b.skip("prometheus", "no [prometheus] url is configured")
        return
    base = url.rstrip("/")
    timeout = float(ctx.settings.prometheus.timeout_seconds)
    index: dict[str, Any] = {"prometheus": base, "evaluated_at": None, "queries": {}}
    yield f"Prometheus at {sanitize_line(base, 200)}"
    for name, path in PROMETHEUS_ENDPOINTS.items():
        try:
            got = await _get(ctx, base + path, timeout + 1.0, PROMETHEUS_LIMIT, headers={"Accept": "application/json"})
        except FetchError as exc:
            if name == "buildinfo":
                b.miss("prometheus", "*", f"unreachable at {base}: {exc}")
                return
            b.miss("prometheus", name, f"{path}: {exc}")
            continue
        b.write(f"prometheus/{name}.json", got.body)
        index["queries"][name] = {"kind": "endpoint", "path": path, "file": f"prometheus/{name}.json",
                                  "http_status": got.status_code}
        if got.status_code != 200:
            b.miss("prometheus", name, f"{path}: HTTP {got.status_code}: {sanitize_line(got.body[:200], 200)}")
    now = time.time()
    index["evaluated_at"] = _iso(now)
    instant, ranged = prometheus_queries(ctx.settings)
    window = window_minutes * 60
    step = max(15.0, window / 240)
    jobs: list[tuple[str, str, str, dict[str, str]]] = []
    for name, expr in instant.items():
        jobs.append((f"instant/{name}", "/api/v1/query", expr, {"query": expr, "time": f"{now:.3f}"}))
    for name, expr in ranged.items():
        jobs.append((f"range/{name}", "/api/v1/query_range", expr,
                     {"query": expr, "start": f"{now - window:.3f}", "end": f"{now:.3f}", "step": f"{step:g}"}))
    yield f"{len(jobs)} Prometheus queries at {index['evaluated_at']}"
    for rel, path, expr, form in jobs:
        form = {**form, "timeout": f"{timeout:g}s"}
        entry: dict[str, Any] = {"kind": path.rsplit("/", 1)[1], "expr": expr, **{k: v for k, v in form.items() if k != "query"}}
        try:
            got = await _get(ctx, base + path, timeout + 1.0, PROMETHEUS_LIMIT, method="POST", data=form,
                             headers={"Accept": "application/json"})
        except FetchError as exc:
            b.miss("prometheus", rel, f"{expr}: {exc}")
            entry["error"] = str(exc)
            index["queries"][rel] = entry
            continue
        b.write(f"prometheus/{rel}.json", got.body)
        entry.update(file=f"prometheus/{rel}.json", http_status=got.status_code)
        index["queries"][rel] = entry
        status = None
        with contextlib.suppress(ValueError, UnicodeDecodeError, AttributeError):
            status = json.loads(got.body).get("status")
        if got.status_code != 200 or status != "success":
            b.miss("prometheus", rel, f"{expr}: HTTP {got.status_code}: {sanitize_line(got.body[:200], 200)}")
    b.write_json("prometheus/queries.json", index)


async def _part_logs(ctx: ActionContext, b: _Bundle, replicas: list[ReplicaIdentity], lines: int) -> AsyncIterator[str]:
    sources = log_sources(replicas)
    if not sources:
        b.miss("logs", "*", "no replica is known")
        return
    out = b.path("logs/incident_logs.txt")
    os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    report = LogsReport(out)
    async for item in write_logs(ctx, sources, lines, out):
        if isinstance(item, LogsReport):
            report = item
        else:
            yield item[0]
    b.missing += report.missing
    b.facts["logs"] = {"lines_per_replica": lines, "lines": report.lines, "replicas": report.replicas}
    if report.cancelled:
        raise _Cancelled()


# --------------------------------------------------------------------------- files


async def _part_keys(ctx: ActionContext, b: _Bundle) -> AsyncIterator[str]:
    c = ctx.settings.circuits
    vk = Path(c.verification_key).expanduser()
    trusted = Path(c.trusted_verification_key).expanduser()
    yield f"verification key {sanitize_line(str(vk), 300)}"
    facts: dict[str, Any] = {"path": str(vk)}
    try:
        data = await asyncio.to_thread(vk.read_bytes)
    except OSError as exc:
        b.miss("keys", "verification_key.json", _reason(exc))
        data = None
    if data is not None:
        digest = hashlib.sha256(data).hexdigest()
        b.write("keys/verification_key.json", data)
        b.write("keys/verification_key.json.sha256", f"{digest}  verification_key.json\n")
        facts["sha256"] = digest
    if trusted.exists():
        try:
            tdata = await asyncio.to_thread(trusted.read_bytes)
            b.write("keys/trusted_verification_key.json", tdata)
            facts["trusted_path"] = str(trusted)
            facts["trusted_sha256"] = hashlib.sha256(tdata).hexdigest()
            if "sha256" in facts:
                facts["matches_trusted"] = facts["trusted_sha256"] == facts["sha256"]
        except OSError as exc:
            b.miss("keys", "trusted_verification_key.json", _reason(exc))
    b.facts["verification_key"] = facts


async def _part_database(ctx: ActionContext, b: _Bundle, max_lock_s: float) -> AsyncIterator[str]:
    from x402console.actions.database import db_path_of

    db = db_path_of(ctx.settings)
    facts: dict[str, Any] = {"source": str(db)}
    b.facts["database"] = facts
    if not db.exists():
        b.miss("database", db.name, f"no database at {db}")
        return
    dst = b.path("database/proofs.db")
    yield f"consistent copy of {sanitize_line(db.name, 200)} (SQLite online backup)"
    pages = [0, 0]

    def on_step(done: int, total: int) -> None:
        pages[:] = [done, total]

    job = asyncio.ensure_future(asyncio.to_thread(
        ops.online_backup, db, dst, max_lock_s=max_lock_s, on_step=on_step, cancelled=ctx.cancel.is_set))
    try:
        while True:
            finished, _ = await asyncio.wait({job}, timeout=1.0)
            if finished:
                break
            yield f"copying {sanitize_line(db.name, 200)}: {pages[0]}/{pages[1]} pages"
        report = job.result()
    except ops.StepAborted:
        dst.unlink(missing_ok=True)
        b.miss("database", db.name, "cancelled during the copy")
        raise _Cancelled() from None
    except (ops.LockBudgetExceeded, sqlite3.Error, OSError) as exc:
        dst.unlink(missing_ok=True)
        reason = f"no consistent copy: {_reason(exc)}"
        if isinstance(exc, ops.LockBudgetExceeded):
            reason += (f" (the prover kept writing; raise max_lock_seconds to about {max(1, round(exc.estimate_s * 1.5))} "
                       "to allow a copy that blocks its writes that long)")
        b.miss("database", db.name, reason)
        yield "no consistent copy: keeping the raw file bytes instead"
        await asyncio.to_thread(_raw_copy, b, db, reason)
        return
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await job
        dst.unlink(missing_ok=True)
        raise
    facts.update(mode=report.mode, restarts=report.restarts, seconds=round(report.seconds, 3),
                 pages=report.pages, notes=report.notes)
    yield "integrity_check of the copy"
    rows = await asyncio.to_thread(ops.check_file, dst, "integrity_check", 100)
    b.write("database/integrity_check.txt", "\n".join(rows) + "\n")
    facts["integrity_check"] = rows[:20]
    facts["integrity_ok"] = rows == ["ok"]
    with contextlib.suppress(sqlite3.Error):
        facts["proofs"] = await asyncio.to_thread(_count, dst)


def _count(db: Path) -> int | None:
    con = ops.connect(db, readonly=True)
    try:
        return int(con.execute("SELECT COUNT(*) FROM proofs").fetchone()[0])
    finally:
        con.close()


def _raw_copy(b: _Bundle, db: Path, reason: str) -> None:
    copied = []
    for p in (db, *ops.side_files(db).values()):
        try:
            with open(p, "rb") as src, open(b.path(f"database/raw/{p.name}"), "xb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
                dst.flush()
                os.fsync(dst.fileno())
            copied.append(p.name)
        except OSError as exc:
            b.miss("database", f"raw {p.name}", _reason(exc))
    if copied:
        b.write("database/raw/README.txt",
                "These are the database file bytes as found, copied while the prover may have been writing:\n"
                "they may be inconsistent. They were kept because a consistent copy could not be made:\n"
                f"{reason}\n\nCopied: {', '.join(copied)}\n")
        b.facts["database"]["raw_copy"] = copied


# --------------------------------------------------------------------------- manifest


INCOMPLETE_TEXT = (
    "THIS EVIDENCE BUNDLE IS INCOMPLETE.\n\n"
    "Its collection was cancelled at {when} by {who}. Parts collected: {done}.\n"
    "Parts not collected: {todo}.\nmanifest.json and MANIFEST.sha256 describe exactly what is here.\n"
)


def _finish(b: _Bundle, head: dict[str, Any], complete: bool, done: list[str]) -> dict[str, Any]:
    """Write INCOMPLETE (if so), manifest.json and MANIFEST.sha256; make it all read-only."""
    if not complete:
        todo = [p for p in PARTS if p not in done]
        b.write("INCOMPLETE", INCOMPLETE_TEXT.format(when=_iso(), who=head.get("collected_by"),
                                                     done=", ".join(done) or "none", todo=", ".join(todo)))
    files = []
    for p in b.files(exclude=("manifest.json", "MANIFEST.sha256")):
        files.append({"path": p.relative_to(b.root).as_posix(), "sha256": sha256_file(p), "bytes": p.stat().st_size})
    manifest = {
        **head,
        "finished_at": _iso(),
        "complete": complete,
        "parts": b.parts,
        "files": files,
        "missing": b.missing,
        "skipped": b.skipped,
        "redactions": b.redactions,
        "facts": b.facts,
        "verify": "cd into this directory and run: sha256sum -c MANIFEST.sha256",
    }
    b.write_json("manifest.json", manifest)
    entries = files + [{"path": "manifest.json", "sha256": sha256_file(b.root / "manifest.json")}]
    b.write("MANIFEST.sha256", "".join(f"{e['sha256']}  {e['path']}\n" for e in sorted(entries, key=lambda e: e["path"])))
    _read_only(b.root)
    return {"files": files, "manifest_sha256": sha256_file(b.root / "MANIFEST.sha256")}


def _read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o444)
        ops.fsync_dir(Path(dirpath))
        os.chmod(dirpath, 0o555)


# --------------------------------------------------------------------------- the action


def _window(params: Mapping[str, Any]) -> int:
    raw = params.get("window_minutes", DEFAULT_WINDOW_MINUTES)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_WINDOW_MINUTES:
        raise ActionError(f"window_minutes must be a whole number from 1 to {MAX_WINDOW_MINUTES}, not {raw!r}")
    return raw


def _max_lock(params: Mapping[str, Any]) -> float:
    raw = params.get("max_lock_seconds", DEFAULT_MAX_LOCK_S)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= 600:
        raise ActionError(f"max_lock_seconds must be seconds from 0 to 600, not {raw!r}")
    return float(raw)


class EvidenceBundle(Action):
    id = "evidence.bundle"
    key = "e"
    title = "Preserve evidence (bundle)"
    help = ("Collect a read-only, checksummed evidence bundle: a consistent proofs.db snapshot, every replica's logs, "
            "/metrics and runtime state, Prometheus queries and alerts, pprof profiles, the verification key. "
            "Runbook, security incidents: preserve evidence before any restart.")
    pane = "incident"
    danger = "safe"
    changes_state = False
    target_kind = "environment"
    preserves_evidence = True
    param_help = {
        "lines": f"log lines per replica (default {DEFAULT_LINES})",
        "window_minutes": f"Prometheus range queries cover this many minutes back (default {DEFAULT_WINDOW_MINUTES})",
        "max_lock_seconds": "rollback-journal database only: longest the snapshot may block the prover's writes "
                            f"(default {DEFAULT_MAX_LOCK_S:g})",
        "dir": "directory for the bundle (default: evidence/ beside the journal)",
    }

    def targets(self, ctx: ActionContext) -> list[Target]:
        return [environment_target(ctx)]

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        from x402console.actions.database import db_path_of

        lines = parse_lines(params)
        window = _window(params)
        max_lock = _max_lock(params)
        root = evidence_root(ctx, params)
        check_writable_place(root)
        replicas, problems = await find_replicas(ctx)
        incident = ctx.incident_id if ctx.incident_id is not None else "none"
        bundle = root / f"evidence-{incident}-<UTC time>"
        s = ctx.settings
        names = ", ".join(r.name for r in replicas) or "none found"
        db = db_path_of(s)
        steps = [
            PlanStep(f"Create {bundle}/ (a new directory, never an existing one)"),
            PlanStep(f"Runtime state of each replica ({names}): docker inspect, or /proc of the process; "
                     "secret-named environment values and flags masked",
                     "docker inspect <container>  |  cat /proc/<pid>/{cmdline,status,environ,limits}"),
            PlanStep("/metrics of each replica", "curl -s <replica>/metrics"),
            PlanStep("pprof goroutine and heap profiles of each replica" if s.prover.pprof else
                     "pprof: not collected ([prover] pprof is false; the real prover serves none): a NOTE.txt says so",
                     "curl -s <replica>/debug/pprof/goroutine?debug=2; curl -s <replica>/debug/pprof/heap"
                     if s.prover.pprof else None),
            PlanStep(f"Last {lines} log lines of every replica", f"docker logs --timestamps --tail={lines} <container>"),
            PlanStep(f"Prometheus: the fixed x402 queries now and over the last {window} min, alerts, targets, rules"
                     if s.prometheus.url else "Prometheus: not configured, skipped",
                     f"curl -s {s.prometheus.url.rstrip('/')}/api/v1/alerts" if s.prometheus.url else None),
            PlanStep("Verification key (and the trusted copy) with sha256", f"cp {s.circuits.verification_key} keys/; sha256sum"),
            PlanStep(f"Consistent snapshot of {db.name} with the online backup API, then integrity_check of the copy",
                     f"sqlite3 {db} \".backup '{bundle}/database/proofs.db'\""),
            PlanStep("manifest.json and MANIFEST.sha256, then make every file read-only",
                     "sha256sum ... > MANIFEST.sha256; chmod -R a-w <bundle>"),
        ]
        warnings = [f"Replicas not found: {p}" for p in problems]
        if db.exists():
            mode = await asyncio.to_thread(ops.journal_mode_of, db)
            if mode != "wal":
                warnings.append(
                    f"{db.name} is in {mode} journal mode: if the prover writes continually, the snapshot may end in "
                    f"one step that blocks its writes for up to {max_lock:g}s (max_lock_seconds); beyond that no "
                    "consistent copy is made and the raw file bytes are kept instead.")
        if ctx.incident_id is None:
            warnings.append("No incident is in focus: this bundle will not lift a security incident's restart guard.")
        params_out = {"lines": lines, "window_minutes": window, "max_lock_seconds": max_lock, "dir": str(root)}
        return self.make_plan(target, steps, params_out, warnings=tuple(warnings), cancellable=True)

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        p = plan.params
        root = Path(p["dir"])
        started = time.monotonic()
        incident = ctx.incident_id if ctx.incident_id is not None else "none"
        try:
            bundle_dir = await asyncio.to_thread(create_exclusive, root, f"evidence-{incident}-{utc_stamp()}",
                                                 directory=True)
        except (OSError, ActionError) as exc:
            yield Outcome("failed", f"cannot create the evidence directory in {root}: {_reason(exc)}")
            return
        b = _Bundle(bundle_dir)
        head = {
            "format": BUNDLE_FORMAT,
            "incident_id": ctx.incident_id,
            "incident_security": bool(ctx.incident_security),
            "environment": ctx.settings.environment.name,
            "drill": bool(ctx.settings.environment.drill),
            "collected_by": str(ctx.actor),
            "host": socket.gethostname(),
            "started_at": _iso(),
            "params": dict(p),
        }
        head["console_version"] = __version__
        yield Progress(f"Evidence bundle {bundle_dir.name}: finding replicas ...", 0.0)
        replicas, problems = await find_replicas(ctx)
        for problem in problems:
            b.miss("runtime", "discovery", problem)
        head["replicas"] = [{"name": r.name, "kind": r.kind, "container_id": r.container_id,
                             "health_url": r.health_url, "metrics_url": r.metrics_url} for r in replicas]

        def parts() -> list[tuple[str, str, AsyncIterator[str]]]:
            return [
                ("runtime", "Runtime state", _part_runtime(ctx, b, replicas)),
                ("metrics", "/metrics", _part_metrics(ctx, b, replicas)),
                ("pprof", "pprof profiles", _part_pprof(ctx, b, replicas)),
                ("logs", "Logs", _part_logs(ctx, b, replicas, int(p["lines"]))),
                ("prometheus", "Prometheus", _part_prometheus(ctx, b, int(p["window_minutes"]))),
                ("keys", "Verification key", _part_keys(ctx, b)),
                ("database", "Database snapshot", _part_database(ctx, b, float(p["max_lock_seconds"]))),
            ]

        done: list[str] = []
        try:
            async for item in _collect(ctx, b, parts(), done):
                yield item
        except asyncio.CancelledError:
            # The console stopped waiting (it is closing): seal what is there, marked incomplete.
            with contextlib.suppress(Exception):
                _finish(b, head, False, done)
            raise
        yield Progress("Writing the manifest and making the bundle read-only ...", 0.98)
        complete = done == list(PARTS)
        try:
            sealed = await asyncio.to_thread(_finish, b, head, complete, done)
        except OSError as exc:
            yield Outcome("failed", f"could not finish the bundle {bundle_dir}: {_reason(exc)}",
                          {"bundle_dir": str(bundle_dir)}, (str(bundle_dir),))
            return
        files = sealed["files"]
        total = sum(f["bytes"] for f in files)
        seconds = round(time.monotonic() - started, 3)
        details = {
            "bundle_dir": str(bundle_dir),
            "manifest": str(bundle_dir / "MANIFEST.sha256"),
            "manifest_json": str(bundle_dir / "manifest.json"),
            "manifest_sha256": sealed["manifest_sha256"],
            "files": files,
            "missing": b.missing,
            "skipped": b.skipped,
            "complete": complete,
            "parts": b.parts,
            "bytes": total,
            "seconds": seconds,
        }
        artifacts = (str(bundle_dir), details["manifest"], details["manifest_json"])
        evidence_files = [f for f in files if f["path"] not in ("INCOMPLETE", "pprof/NOTE.txt")]
        where = sanitize_line(str(bundle_dir), 500)
        if not complete:
            yield Outcome("cancelled", f"evidence collection cancelled; the partial bundle {where} is kept, marked "
                          f"INCOMPLETE ({len(files)} files, {bytes_h(total)})", details, artifacts)
            return
        if not evidence_files:
            yield Outcome("failed", f"no evidence could be collected ({len(b.missing)} parts failed: "
                          + "; ".join(sanitize_line(f"{m['part']} {m['item']}: {m['reason']}", 200) for m in b.missing[:5])
                          + f"); see {where}/manifest.json", details, artifacts)
            return
        gaps = ""
        if b.missing:
            parts_missing = sorted({m["part"] for m in b.missing})
            gaps = f"; partial: {len(b.missing)} items missing ({', '.join(parts_missing)}), see manifest.json"
        yield Outcome("succeeded", f"evidence bundle {where}: {len(files)} files, {bytes_h(total)} in {seconds:.1f}s, "
                      f"MANIFEST.sha256 {sealed['manifest_sha256'][:16]}…{gaps}", details, artifacts)

async def _collect(ctx: ActionContext, b: _Bundle, parts: list[tuple[str, str, AsyncIterator[str]]],
                   done: list[str]) -> AsyncIterator[Progress]:
    """Run the parts in order, streaming their progress; a part's name goes into `done` once it
    ran to its end. Stops at the first cancellation (between parts, or inside one)."""
    stopped = False
    for i, (name, label, steps) in enumerate(parts):
        if stopped or ctx.cancel.is_set():
            stopped = True
            await steps.aclose()
            continue
        t0 = time.monotonic()
        before_missing = len(b.missing)
        before_files = len(b.files())
        yield Progress(f"{label} ...", i / len(parts))
        try:
            async for message in steps:
                yield Progress(f"{label}: {message}", i / len(parts))
        except _Cancelled:
            stopped = True
        except Exception as exc:  # one part's surprise must not cost the others
            b.miss(name, "*", f"{type(exc).__name__}: {_reason(exc)}")
        finally:
            await steps.aclose()
        new_missing = len(b.missing) - before_missing
        new_files = len(b.files()) - before_files
        skipped = any(s["part"] == name for s in b.skipped)
        status = ("cancelled" if stopped else "skipped" if skipped and not new_missing else
                  "ok" if not new_missing else "partial" if new_files else "failed")
        b.parts[name] = {"status": status, "seconds": round(time.monotonic() - t0, 3), "files": new_files,
                         "missing": new_missing}
        if not stopped:
            done.append(name)

ACTIONS = (EvidenceBundle,)
