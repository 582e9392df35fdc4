"""Read-only diagnostics of the provers: health probes, pprof captures and the memory trend.

The runbook's diagnosis commands (INCIDENT_RESPONSE.md Incident 1 `curl /health`, Incident 7
`docker stats`, `curl /debug/pprof/goroutine`, `curl /debug/pprof/heap > heap.prof`) done so the
answer is usable in an incident: every replica at once, each failure said in plain words
(refused: the process is gone; timed out waiting: it is hung; reset: it died mid-answer), and
memory growth as a rate and a time-to-limit rather than a column of numbers to eyeball.

Facts relied on (reference/x402-system.md): the real prover registers no pprof routes, so
/debug/pprof/* answers gin's plain `404 page not found`; as coded its rate limiter covers every
route, /health and /metrics included (10 requests per minute per client address).

Files written here (pprof captures) go to the console's evidence directory,
`<journal directory>/evidence/diagnostics/` (beside journal.db: ~/.local/state/x402console/ by
default, the drill's state directory in a drill; evidence/ is shared with the evidence bundle), named `<replica>-<profile>-<UTC time>.<ext>`,
mode 0600, and never overwrite an existing file. Nothing here changes a prover, so every action
is "safe" and allowed in a read-only console.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import math
import os
import re
import shlex
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx

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
from x402console.core.format import bytes_h, duration_h
from x402console.sources.health import (
    HEALTH_BODY_LIMIT,
    FetchError,
    describe_http_error,
    fetch_bounded,
    judge_health,
)
from x402console.sources.models import ReplicaIdentity
from x402console.sources.sanitize import sanitize_line

__all__ = [
    "ACTIONS",
    "MemoryTrend",
    "MemoryTrendAction",
    "PprofCapture",
    "ProbeHealth",
    "ProbeHealthAll",
    "diagnostics_dir",
    "evidence_root",
    "fit_memory_trend",
    "known_replicas",
    "publish_unique",
    "utc_stamp",
]

MIB = 1024 * 1024
BODY_EXCERPT = 200
PROFILE_LIMIT = 64 * MIB  # a goroutine dump of a badly leaking build can be large, not unbounded
PPROF_TIMEOUT = 30.0
DEFAULT_SAMPLE_SECONDS = 10
MAX_SAMPLE_SECONDS = 600
# Growth smaller than this over the whole window is not called growth: RSS moves by a few
# hundred KiB as allocators settle, and a 10 s window cannot tell that from a leak.
MIN_GROWTH_BYTES = 1 * MIB
# The slope must stand this many standard errors above zero: noise around a flat line gives a
# non-zero slope by chance, a leak gives one the points agree on.
SIGNIFICANCE = 2.0


# --------------------------------------------------------------------------- where evidence goes


def evidence_root(settings: Any, journal: Any = None) -> Path:
    """The console's evidence directory: `evidence/` beside the journal in use (else the
    configured one), the same place the evidence bundle and log collection write to, so a
    drill keeps its own and every console sharing a journal finds the files."""
    path = getattr(journal, "path", None) or settings.environment.journal
    return Path(os.path.abspath(Path(path).expanduser())).parent / "evidence"


def diagnostics_dir(settings: Any, journal: Any = None) -> Path:
    return evidence_root(settings, journal) / "diagnostics"


def utc_stamp(now: float | None = None) -> str:
    return datetime.fromtimestamp(now if now is not None else time.time(), timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "replica"


def publish_unique(tmp: Path, directory: Path, stem: str, suffix: str) -> Path:
    """Give `tmp` its final name without ever replacing a file: os.link fails if the name is
    taken, and the next free name (-1, -2, ...) is tried."""
    for i in range(10_000):
        final = directory / f"{stem}{'' if i == 0 else f'-{i}'}{suffix}"
        try:
            os.link(tmp, final)
        except FileExistsError:
            continue
        tmp.unlink(missing_ok=True)
        return final
    raise OSError(errno.EEXIST, f"no free file name for {stem}{suffix} in {directory}")


def _make_private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


# --------------------------------------------------------------------------- which replicas


def known_replicas(ctx: ActionContext) -> tuple[list[ReplicaIdentity], list[str]]:
    """(replicas, notes): containers found on the Docker hosts (discovery modes other than
    static) followed by the [[replicas]] entries no container already stands for. Blocking
    (Docker calls): call it in a thread from async code."""
    from x402console.sources.discovery import discover_containers, discover_static

    settings = ctx.settings
    static = discover_static(settings)
    if settings.discovery.mode == "static":
        return static, []
    found: list[ReplicaIdentity] = []
    notes: list[str] = []
    for host in settings.docker_hosts:
        try:
            found += discover_containers(ctx.docker(host.name), settings, host)
        except Exception as exc:  # an engine that does not answer hides only its own replicas
            notes.append(f"Docker host {host.name}: replicas not listed ({exc})")
    names = {r.name for r in found}
    found += [r for r in static if r.name not in names]
    return found, notes


def _replica_target(r: ReplicaIdentity) -> Target:
    detail: dict[str, Any] = {"health_url": r.health_url, "metrics_url": r.metrics_url}
    if r.container_id:
        detail["container_id"] = r.container_id
    if r.docker_host:
        detail["docker_host"] = r.docker_host
    return Target("replica", r.name, detail)


def _service_name(ctx: ActionContext, replicas: Sequence[ReplicaIdentity]) -> str:
    # The same name the container and process actions give the service, so the registry's
    # one-action-per-target rule sees one service.
    d = ctx.settings.discovery
    if d.mode == "compose":
        return d.compose_service
    prefixes = {re.sub(r"-\d+$", "", r.name) for r in replicas}
    return prefixes.pop() if len(prefixes) == 1 else "prover"


def _listed(ctx: ActionContext) -> list[ReplicaIdentity]:
    try:
        return known_replicas(ctx)[0]
    except Exception:
        return []


def _replica_targets(ctx: ActionContext) -> list[Target]:
    return [_replica_target(r) for r in _listed(ctx)]


def _service_targets(ctx: ActionContext) -> list[Target]:
    replicas = _listed(ctx)
    if not replicas:
        return []
    return [Target("service", _service_name(ctx, replicas))]


async def _resolve_replica(ctx: ActionContext, target: Target) -> ReplicaIdentity:
    replicas, notes = await asyncio.to_thread(known_replicas, ctx)
    for r in replicas:
        if r.name == target.name:
            return r
    detail = target.detail or {}
    if detail.get("health_url"):
        # A replica the caller knows the URLs of (a target offered before it left discovery).
        return ReplicaIdentity(
            name=target.name, kind="url", health_url=str(detail["health_url"]),
            metrics_url=str(detail.get("metrics_url") or ""), container_id=detail.get("container_id"),
            docker_host=detail.get("docker_host"),
        )
    names = ", ".join(r.name for r in replicas) or "none"
    extra = f" ({'; '.join(notes)})" if notes else ""
    raise ActionError(f"no replica named {target.name!r} (known: {names}){extra}")


async def _all_replicas(ctx: ActionContext) -> tuple[list[ReplicaIdentity], list[str]]:
    replicas, notes = await asyncio.to_thread(known_replicas, ctx)
    if not replicas:
        raise ActionError("no prover replicas are known: configure [[replicas]] or Docker discovery"
                          + (f" ({'; '.join(notes)})" if notes else ""))
    return replicas, notes


def _number(params: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    raw = params.get(name, default)
    if isinstance(raw, bool):
        raise ActionError(f"{name} must be a number of seconds, not {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ActionError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ActionError(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _host_port(url: str) -> str:
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return url


async def _until_cancelled(ctx: ActionContext, work: Any) -> tuple[bool, Any]:
    """(finished, result) of awaiting `work`; (False, None) when ctx.cancel came first."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(ctx.cancel.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return True, task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False, None
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    finally:
        stop.cancel()


# --------------------------------------------------------------------------- health probes


def _reset(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
            return True
        if "connection reset" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def explain_fetch_error(exc: FetchError, url: str, timeout: float) -> tuple[str, str]:
    """(kind, plain words) for a probe that got no HTTP answer."""
    where = _host_port(url)
    if exc.refused:
        return "refused", f"connection refused: nothing listens on {where} (the process is down or not started)"
    if exc.timed_out and exc.connected:
        return "hung", (f"timed out after {timeout:g} s waiting for an answer: {where} accepts connections "
                        f"but does not answer (hung)")
    if exc.timed_out:
        return "timeout", (f"timed out after {timeout:g} s connecting to {where} (host unreachable, "
                           f"or a firewall drops the packets)")
    if _reset(exc):
        return "reset", f"connection reset by {where} before it answered (the process crashed or was killed mid-request)"
    if exc.connected:
        return "closed", f"{where} closed the connection without a valid answer ({exc})"
    return "error", f"{where}: {exc}"


def _body_excerpt(body: bytes) -> str:
    return sanitize_line(body[: BODY_EXCERPT * 2], max_len=BODY_EXCERPT) if body else ""


def curl_health(url: str, timeout: float) -> str:
    return f"curl -sS -m {timeout:g} -w '\\nHTTP %{{http_code}} in %{{time_total}}s\\n' {shlex.quote(url)}"


async def probe_replica(client: httpx.AsyncClient, replica: ReplicaIdentity, timeout: float) -> dict[str, Any]:
    """One /health probe, never raising: what came back, or what went wrong in plain words."""
    url = replica.health_url
    out: dict[str, Any] = {"replica": replica.name, "url": url, "ok": False, "status_code": None,
                           "latency_ms": None, "status": None, "error": None, "error_kind": None, "body": ""}
    if not url:
        out.update(error="no health URL is known for this replica", error_kind="config")
        return out
    try:
        fetched = await fetch_bounded(client, "GET", url, timeout=timeout, limit=HEALTH_BODY_LIMIT,
                                      headers={"Accept": "application/json"})
    except FetchError as exc:
        kind, words = explain_fetch_error(exc, url, timeout)
        out.update(error=words, error_kind=kind)
        return out
    ok, error, status_text = judge_health(fetched)
    out.update(ok=ok, status_code=fetched.status_code, latency_ms=round(fetched.latency_ms, 1),
               status=status_text, body=_body_excerpt(fetched.body))
    if not ok:
        out.update(error=error, error_kind="http" if fetched.status_code != 200 else "body")
    return out


def _probe_line(result: Mapping[str, Any]) -> str:
    name = result["replica"]
    if result["ok"]:
        return f"{name}: healthy, HTTP {result['status_code']} in {result['latency_ms']:.0f} ms"
    if result["status_code"] is not None:
        return f"{name}: {result['error']} (in {result['latency_ms']:.0f} ms)"
    return f"{name}: {result['error']}"


class _HealthAction(Action):
    pane: ClassVar[str] = "health"
    danger: ClassVar[str] = "safe"
    changes_state: ClassVar[bool] = False
    param_help: ClassVar[Mapping[str, str]] = {"timeout": "seconds to wait for each answer (default [prover] health_timeout_seconds)"}

    def _timeout(self, ctx: ActionContext, params: Mapping[str, Any]) -> float:
        return _number(params, "timeout", float(ctx.settings.prover.health_timeout_seconds), 0.1, 120.0)

    def _plan(self, target: Target, replicas: Sequence[ReplicaIdentity], timeout: float, notes: Sequence[str]) -> Plan:
        steps = [PlanStep(f"GET {r.name}'s health URL, waiting up to {timeout:g} s for the answer",
                          curl_health(r.health_url, timeout)) for r in replicas]
        return self.make_plan(target, steps, {"timeout": timeout, "replicas": [_ref(r) for r in replicas]},
                              warnings=tuple(notes))

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        timeout = float(plan.params["timeout"])
        replicas = [_unref(r) for r in plan.params["replicas"]]
        yield Progress(f"probing {len(replicas)} replica{'s' if len(replicas) != 1 else ''} (up to {timeout:g} s each) ...")
        finished, results = await _until_cancelled(
            ctx, asyncio.gather(*(probe_replica(ctx.http, r, timeout) for r in replicas)))
        if not finished:
            yield Outcome("cancelled", "health probe cancelled before every replica answered")
            return
        for res in results:
            yield Progress(_probe_line(res))
        bad = [r for r in results if not r["ok"]]
        details = {"replicas": list(results), "timeout": timeout}
        if len(results) == 1:
            yield Outcome("failed" if bad else "succeeded", _probe_line(results[0]), details)
            return
        if not bad:
            yield Outcome("succeeded", f"all {len(results)} replicas healthy: "
                          + ", ".join(f"{r['replica']} {r['latency_ms']:.0f} ms" for r in results), details)
            return
        yield Outcome("failed", f"{len(bad)} of {len(results)} replicas unhealthy: "
                      + "; ".join(_probe_line(r) for r in bad), details)


def _ref(r: ReplicaIdentity) -> dict[str, Any]:
    return {"name": r.name, "kind": r.kind, "health_url": r.health_url, "metrics_url": r.metrics_url,
            "container_id": r.container_id, "docker_host": r.docker_host}


def _unref(ref: Mapping[str, Any]) -> ReplicaIdentity:
    return ReplicaIdentity(name=ref["name"], kind=ref.get("kind") or "url", health_url=ref.get("health_url") or "",
                           metrics_url=ref.get("metrics_url") or "", container_id=ref.get("container_id"),
                           docker_host=ref.get("docker_host"))


class ProbeHealth(_HealthAction):
    id: ClassVar[str] = "diag.probe_health"
    key: ClassVar[str] = "h"
    title: ClassVar[str] = "Probe /health now"
    help: ClassVar[str] = ("GET the replica's /health now (runbook Incident 1: curl /health): status, latency, "
                           "body, or why it did not answer (refused, hung, reset). Read-only.")
    target_kind: ClassVar[str] = "replica"

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _replica_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = self._timeout(ctx, params)
        replica = await _resolve_replica(ctx, target)
        return self._plan(target, [replica], timeout, ())


class ProbeHealthAll(_HealthAction):
    id: ClassVar[str] = "diag.probe_health_all"
    key: ClassVar[str] = "H"
    title: ClassVar[str] = "Probe /health of every replica"
    help: ClassVar[str] = ("GET every replica's /health at once (runbook Incident 1): which answer, how fast, "
                           "and why the others do not. Read-only.")
    target_kind: ClassVar[str] = "service"

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        timeout = self._timeout(ctx, params)
        replicas, notes = await _all_replicas(ctx)
        return self._plan(target, replicas, timeout, notes)


# --------------------------------------------------------------------------- pprof


PROFILES: tuple[tuple[str, str, str], ...] = (
    # (name, query, what it is for)
    ("goroutine", "debug=2", "every goroutine's full stack (goroutine leaks)"),
    ("heap", "", "heap profile as `go tool pprof` reads it (memory leaks)"),
)
NO_PPROF_HINT = (
    "The real prover registers no pprof routes (reference: /debug/pprof/* is 404), so the runbook's "
    "`curl http://localhost:8080/debug/pprof/heap` cannot work there. Use the memory trend (metrics pane) "
    "and `docker stats` instead; a build that serves pprof is configured with [prover] pprof = true."
)


def _profile_suffix(content_type: str, head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return ".pb.gz"
    if content_type.startswith("text/") or (head and head.isascii()):
        return ".txt"
    return ".pprof"


def profile_summary(name: str, text_head: str) -> dict[str, Any]:
    """What a text profile says at a glance (goroutine count, heap in use)."""
    out: dict[str, Any] = {}
    if name == "goroutine":
        total = re.match(r"goroutine profile: total (\d+)", text_head)
        if total:
            out["goroutines"] = int(total.group(1))
        else:
            blocks = re.findall(r"(?m)^goroutine \d+ \[", text_head)
            if blocks:
                out["goroutines"] = len(blocks)
    elif name == "heap":
        head = re.match(r"heap profile: (\d+): (\d+) \[", text_head)
        if head:
            out["in_use_objects"], out["in_use_bytes"] = int(head.group(1)), int(head.group(2))
    return out


class PprofCapture(Action):
    id: ClassVar[str] = "diag.pprof"
    key: ClassVar[str] = "g"
    title: ClassVar[str] = "Capture goroutine and heap profiles"
    help: ClassVar[str] = ("Save /debug/pprof/goroutine and /debug/pprof/heap of one replica to the evidence "
                           "directory (runbook Incident 7). Only builds that serve pprof: the real prover does not.")
    pane: ClassVar[str] = "health"
    danger: ClassVar[str] = "safe"
    changes_state: ClassVar[bool] = False
    target_kind: ClassVar[str] = "replica"
    param_help: ClassVar[Mapping[str, str]] = {"timeout": f"seconds allowed for each profile (default {PPROF_TIMEOUT:g})"}

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _replica_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        if not ctx.settings.prover.pprof:
            raise ActionError(f"pprof is off for this system ([prover] pprof = false). {NO_PPROF_HINT}")
        timeout = _number(params, "timeout", PPROF_TIMEOUT, 1.0, 600.0)
        replica = await _resolve_replica(ctx, target)
        if not replica.health_url:
            raise ActionError(f"no URL is known for {replica.name}")
        base = _origin(replica.health_url) + "/debug/pprof/"
        directory = diagnostics_dir(ctx.settings, ctx.journal)
        stem = f"{_safe_name(replica.name)}-<profile>-<UTC time>"
        steps = [PlanStep(f"Check that {replica.name} serves pprof", f"curl -sS -o /dev/null -w '%{{http_code}}\\n' {shlex.quote(base)}")]
        for name, query, what in PROFILES:
            url = base + name + (f"?{query}" if query else "")
            steps.append(PlanStep(f"Save the {name} profile: {what}",
                                  f"curl -sS -m {timeout:g} {shlex.quote(url)} > {shlex.quote(str(directory / stem.replace('<profile>', name)))}"))
        return self.make_plan(
            target, steps, {"timeout": timeout, "base_url": base, "replica": replica.name, "directory": str(directory)},
            warnings=(f"Files go to {directory} (never overwritten); read a binary heap profile with `go tool pprof FILE`.",),
        )

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        base = str(plan.params["base_url"])
        name = str(plan.params["replica"])
        timeout = float(plan.params["timeout"])
        directory = Path(plan.params["directory"])
        yield Progress(f"checking {base} ...")
        try:
            index = await fetch_bounded(ctx.http, "GET", base, timeout=min(timeout, 10.0), limit=64 * 1024)
        except FetchError as exc:
            _, words = explain_fetch_error(exc, base, min(timeout, 10.0))
            yield Outcome("failed", f"{name}: {words}; no profile captured", {"error": words})
            return
        if index.status_code == 404:
            yield Outcome("failed", f"{name} serves no /debug/pprof (HTTP 404 {_body_excerpt(index.body)!r}). {NO_PPROF_HINT}",
                          {"status_code": 404, "pprof": False})
            return
        if index.status_code != 200:
            why = "rate limited by the prover" if index.status_code == 429 else _body_excerpt(index.body)
            yield Outcome("failed", f"{name}: {base} answered HTTP {index.status_code} ({why}); no profile captured",
                          {"status_code": index.status_code})
            return
        await asyncio.to_thread(_make_private_dir, directory)
        captured: list[dict[str, Any]] = []
        problems: list[str] = []
        stamp = utc_stamp()
        for i, (profile, query, _) in enumerate(PROFILES):
            if ctx.cancel.is_set():
                break
            url = base + profile + (f"?{query}" if query else "")
            yield Progress(f"saving the {profile} profile of {name} ...", i / len(PROFILES))
            try:
                info = await self._save(ctx, url, directory, f"{_safe_name(name)}-{profile}-{stamp}", timeout, profile)
            except _Problem as exc:
                problems.append(f"{profile}: {exc}")
                continue
            if info is None:
                break  # cancelled mid-way; the partial file is gone
            captured.append(info)
            yield Progress(f"{profile}: {bytes_h(info['bytes'])} -> {info['file']}", (i + 1) / len(PROFILES))
        artifacts = tuple(c["file"] for c in captured)
        details = {"profiles": captured, "problems": problems, "directory": str(directory)}
        if ctx.cancel.is_set() and len(captured) < len(PROFILES):
            yield Outcome("cancelled", f"pprof capture cancelled; saved {len(captured)} of {len(PROFILES)} profiles",
                          details, artifacts)
            return
        facts = []
        for c in captured:
            if "goroutines" in c:
                facts.append(f"{c['goroutines']} goroutines")
            if "in_use_bytes" in c:
                facts.append(f"{bytes_h(c['in_use_bytes'])} heap in use")
        saved = ", ".join(f"{c['profile']} ({bytes_h(c['bytes'])})" for c in captured)
        facts_text = f"; {', '.join(facts)}" if facts else ""
        if problems:
            yield Outcome("failed", f"{name}: saved {saved or 'nothing'}; failed: {'; '.join(problems)}", details, artifacts)
            return
        yield Outcome("succeeded", f"{name}: saved {saved} in {directory}{facts_text}", details, artifacts)

    async def _save(self, ctx: ActionContext, url: str, directory: Path, stem: str, timeout: float,
                    profile: str) -> dict[str, Any] | None:
        """Stream one profile to a temporary file, then publish it under a free name.
        None when cancelled; _Problem with plain words when it could not be saved."""
        tmp = directory / f".{stem}.{os.getpid()}.partial"
        digest = hashlib.sha256()
        size = 0
        head = b""
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                async with asyncio.timeout(timeout):
                    async with ctx.http.stream("GET", url, timeout=httpx.Timeout(timeout)) as resp:
                        if resp.status_code != 200:
                            body = await resp.aread()
                            raise _Problem(f"HTTP {resp.status_code} {_body_excerpt(body[:400])!r}")
                        content_type = resp.headers.get("content-type", "")
                        async for chunk in resp.aiter_bytes():
                            if ctx.cancel.is_set():
                                return None
                            size += len(chunk)
                            if size > PROFILE_LIMIT:
                                raise _Problem(f"larger than {bytes_h(PROFILE_LIMIT)}; not saved")
                            if len(head) < 65536:
                                head += chunk[: 65536 - len(head)]
                            digest.update(chunk)
                            fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            final = publish_unique(tmp, directory, stem, _profile_suffix(content_type, head[:512]))
        except _Problem:
            raise
        except TimeoutError:
            raise _Problem(f"not complete after {timeout:g} s") from None
        except httpx.HTTPError as exc:
            _, words = explain_fetch_error(describe_http_error(exc, timeout), url, timeout)
            raise _Problem(words) from None
        except OSError as exc:
            raise _Problem(f"cannot write in {directory}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        info: dict[str, Any] = {"profile": profile, "file": str(final), "bytes": size, "sha256": digest.hexdigest(),
                                "url": url}
        if final.suffix == ".txt":
            info.update(profile_summary(profile, head.decode("utf-8", "replace")))
        return info


class _Problem(Exception):
    """One profile could not be saved; the message is for the operator."""


# --------------------------------------------------------------------------- memory trend (pure)


@dataclass(frozen=True)
class MemoryTrend:
    """A least-squares line through (seconds, resident bytes) points, and what it means.

    verdict: "growing" (slope significantly above zero and at least min_growth_bytes over the
    window), "not growing", "over limit" (the newest point is at or above the limit), or
    "too few points" (no line can be fitted). eta_seconds: time from the newest point until
    the fitted line reaches the limit (0 when over it; None when not growing or no limit).
    """

    verdict: str
    points: int
    span_seconds: float = 0.0
    first_bytes: float | None = None
    last_bytes: float | None = None
    slope_bytes_per_s: float | None = None
    slope_stderr: float | None = None
    limit_bytes: float | None = None
    eta_seconds: float | None = None

    @property
    def growing(self) -> bool:
        return self.verdict == "growing"

    @property
    def mib_per_minute(self) -> float | None:
        return None if self.slope_bytes_per_s is None else self.slope_bytes_per_s * 60 / MIB


def fit_memory_trend(
    points: Iterable[tuple[float, float]],
    limit_bytes: float | None = None,
    *,
    min_points: int = 3,
    min_growth_bytes: float = MIN_GROWTH_BYTES,
    significance: float = SIGNIFICANCE,
) -> MemoryTrend:
    """Fit resident memory against time and say whether it grows and when it hits the limit."""
    pts = sorted((float(t), float(v)) for t, v in points if math.isfinite(t) and math.isfinite(v))
    limit = float(limit_bytes) if limit_bytes is not None and limit_bytes > 0 else None
    n = len(pts)
    if n == 0:
        return MemoryTrend("too few points", 0, limit_bytes=limit)
    first, last = pts[0][1], pts[-1][1]
    span = pts[-1][0] - pts[0][0]
    base = dict(points=n, span_seconds=span, first_bytes=first, last_bytes=last, limit_bytes=limit)
    over = limit is not None and last >= limit
    if n < max(2, min_points) or span <= 0:
        return MemoryTrend("over limit" if over else "too few points", eta_seconds=0.0 if over else None, **base)
    tm = math.fsum(t for t, _ in pts) / n
    vm = math.fsum(v for _, v in pts) / n
    sxx = math.fsum((t - tm) ** 2 for t, _ in pts)
    sxy = math.fsum((t - tm) * (v - vm) for t, v in pts)
    slope = sxy / sxx
    intercept = vm - slope * tm
    rss = math.fsum((v - (intercept + slope * t)) ** 2 for t, v in pts)
    stderr = math.sqrt(rss / (n - 2) / sxx) if n > 2 else 0.0
    base.update(slope_bytes_per_s=slope, slope_stderr=stderr)
    if over:
        return MemoryTrend("over limit", eta_seconds=0.0, **base)
    growing = slope > 0 and slope * span >= min_growth_bytes and slope > significance * stderr
    if not growing:
        return MemoryTrend("not growing", **base)
    eta = None
    if limit is not None:
        fitted_now = intercept + slope * pts[-1][0]
        eta = max(0.0, (limit - fitted_now) / slope)
    return MemoryTrend("growing", eta_seconds=eta, **base)


def describe_trend(name: str, trend: MemoryTrend) -> str:
    if trend.points == 0:
        return f"{name}: no samples"
    now = f"{bytes_h(trend.last_bytes)}"
    pts = f"{trend.points} point{'s' if trend.points != 1 else ''} over {duration_h(round(trend.span_seconds))}"
    if trend.verdict == "growing":
        rate = f"{trend.mib_per_minute:.1f} MiB/min ({bytes_h(trend.slope_bytes_per_s)}/s)"
        if trend.eta_seconds is not None:
            return (f"{name}: growing {rate}, at {now}; reaches its {bytes_h(trend.limit_bytes)} limit in "
                    f"~{duration_h(trend.eta_seconds)} ({pts})")
        return f"{name}: growing {rate}, at {now}; no memory limit known ({pts})"
    if trend.verdict == "over limit":
        return f"{name}: at {now}, already at or over its {bytes_h(trend.limit_bytes)} limit ({pts})"
    if trend.verdict == "not growing":
        return f"{name}: not growing, at {now} ({pts})"
    return f"{name}: too few points to fit a trend ({pts})"


# --------------------------------------------------------------------------- memory trend (action)


class MemoryTrendAction(Action):
    id: ClassVar[str] = "diag.memory_trend"
    key: ClassVar[str] = "m"
    title: ClassVar[str] = "Memory growth per replica"
    help: ClassVar[str] = ("Resident memory growth rate of each replica (least-squares fit) and the time until it "
                           "reaches its memory limit (runbook Incident 7). Prometheus history when available, "
                           "else samples /metrics every second. Read-only.")
    pane: ClassVar[str] = "metrics"
    danger: ClassVar[str] = "safe"
    changes_state: ClassVar[bool] = False
    target_kind: ClassVar[str] = "service"
    param_help: ClassVar[Mapping[str, str]] = {
        "source": "auto (Prometheus if configured and answering, else direct) | prometheus | scrape",
        "seconds": f"direct sampling: how long to sample (default {DEFAULT_SAMPLE_SECONDS})",
        "interval": "direct sampling: seconds between samples (default 1)",
        "window_minutes": "Prometheus: how far back to look (default [metrics] window_minutes)",
    }

    def targets(self, ctx: ActionContext) -> list[Target]:
        return _service_targets(ctx)

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        s = ctx.settings
        source = str(params.get("source", "auto"))
        if source not in ("auto", "prometheus", "scrape"):
            raise ActionError(f"source must be auto, prometheus or scrape, not {source!r}")
        if source == "prometheus" and not s.prometheus.url:
            raise ActionError("source prometheus, but no Prometheus is configured ([prometheus] url)")
        seconds = _number(params, "seconds", DEFAULT_SAMPLE_SECONDS, 2, MAX_SAMPLE_SECONDS)
        interval = _number(params, "interval", 1.0, 0.1, 60.0)
        if interval * 2 > seconds:
            raise ActionError(f"interval {interval:g} s leaves fewer than 3 samples in {seconds:g} s")
        window = _number(params, "window_minutes", float(s.metrics.window_minutes), 1, 7 * 24 * 60)
        replicas, notes = await _all_replicas(ctx)
        metric = s.metrics.resident_memory
        use_prom = source == "prometheus" or (source == "auto" and bool(s.prometheus.url))
        steps = []
        if use_prom:
            expr = f'{metric}{{job="{s.prometheus.job}"}}'
            steps.append(PlanStep(
                f"Ask Prometheus for {metric} of every replica over the last {window:g} min",
                f"curl -sS {shlex.quote(s.prometheus.url.rstrip('/') + '/api/v1/query_range')} "
                f"--data-urlencode {shlex.quote('query=' + expr)} --data start=$(($(date +%s)-{int(window * 60)})) "
                f"--data end=$(date +%s) --data step={_prom_step(window * 60):g}"))
        if source == "scrape" or source == "auto":
            when = "If Prometheus cannot answer, sample" if use_prom else "Sample"
            for r in replicas:
                steps.append(PlanStep(f"{when} {r.name}'s {metric} every {interval:g} s for {seconds:g} s",
                                      f"curl -sS {shlex.quote(r.metrics_url)} | grep '^{metric}'"))
        steps.append(PlanStep("Fit a least-squares line per replica; time until it reaches the memory limit "
                              "(container limit in Docker, else [prover] memory_limit_bytes)"))
        warnings = list(notes)
        if (source == "scrape" or not use_prom) and not s.prover.honours_env:
            warnings.append("As coded, the prover rate-limits /metrics too (10 requests per minute per client "
                            "address, shared with the console's own probes): samples answered 429 are skipped. "
                            "Prometheus history avoids this.")
        return self.make_plan(target, steps, {
            "source": "prometheus" if source == "prometheus" else ("auto" if use_prom else "scrape"),
            "seconds": seconds, "interval": interval, "window_minutes": window,
            "replicas": [_ref(r) for r in replicas],
        }, warnings=tuple(warnings))

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        p = plan.params
        replicas = [_unref(r) for r in p["replicas"]]
        notes: list[str] = []
        series: dict[str, list[tuple[float, float]]] | None = None
        used = "scrape"
        failures: dict[str, list[str]] = {}
        if p["source"] in ("auto", "prometheus"):
            yield Progress(f"asking Prometheus for {ctx.settings.metrics.resident_memory} over {p['window_minutes']:g} min ...")
            series, problem = await _prometheus_series(ctx, replicas, float(p["window_minutes"]) * 60)
            if problem:
                if p["source"] == "prometheus":
                    yield Outcome("failed", problem, {"source": "prometheus"})
                    return
                notes.append(f"{problem}; sampled /metrics directly instead")
                series = None
            else:
                used = "prometheus"
                missing = [r.name for r in replicas if r.name not in series]
                if missing:
                    notes.append(f"Prometheus has no {ctx.settings.metrics.resident_memory} for {', '.join(missing)} "
                                 f"(not scraped, or scraped under another instance name)")
        if series is None:
            sampler = _Sampler(ctx, replicas, float(p["seconds"]), float(p["interval"]))
            async for progress in sampler.run():
                yield progress
            if ctx.cancel.is_set():
                yield Outcome("cancelled", f"memory sampling cancelled after {sampler.elapsed:.0f} s", {"source": "scrape"})
                return
            series, failures = sampler.points, sampler.failures
        limits = await asyncio.to_thread(_limits, ctx, replicas, list(series))
        results = []
        for name, pts in series.items():
            limit, limit_source = limits.get(name, (None, "none"))
            trend = fit_memory_trend(pts, limit)
            entry = _trend_details(name, trend, limit_source)
            if failures.get(name):
                entry["problems"] = _count_problems(failures[name])
                entry["failed_samples"] = len(failures[name])
            results.append((name, trend, entry))
        if not results:
            yield Outcome("failed", "no replica gave a resident memory value", {"source": used, "notes": notes})
            return
        lines = []
        for name, trend, entry in results:
            line = describe_trend(name, trend)
            if "problems" in entry:
                line += f"; {entry['failed_samples']} sample{'s' if entry['failed_samples'] != 1 else ''} failed: {entry['problems']}"
            lines.append(line)
        details = {"source": used, "replicas": [e for _, _, e in results], "notes": notes}
        usable = [t for _, t, _ in results if t.verdict != "too few points"]
        status = "succeeded" if usable else "failed"
        growing = [n for n, t, _ in results if t.verdict in ("growing", "over limit")]
        head = (f"memory growing on {', '.join(growing)}" if growing else "no replica's memory is growing") if usable \
            else "too few memory samples to fit a trend"
        summary = f"{head} ({'Prometheus' if used == 'prometheus' else 'direct /metrics samples'}):\n" + "\n".join(lines)
        if notes:
            summary += "\n" + "\n".join(notes)
        yield Outcome(status, summary, details)


def _trend_details(name: str, trend: MemoryTrend, limit_source: str) -> dict[str, Any]:
    return {
        "replica": name, "verdict": trend.verdict, "points": trend.points, "span_seconds": round(trend.span_seconds, 3),
        "first_bytes": trend.first_bytes, "last_bytes": trend.last_bytes,
        "slope_bytes_per_s": None if trend.slope_bytes_per_s is None else round(trend.slope_bytes_per_s, 1),
        "mib_per_minute": None if trend.mib_per_minute is None else round(trend.mib_per_minute, 3),
        "limit_bytes": trend.limit_bytes, "limit_source": limit_source,
        "eta_seconds": None if trend.eta_seconds is None else round(trend.eta_seconds, 1),
    }


def _count_problems(problems: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for p in problems:
        counts[p] = counts.get(p, 0) + 1
    return "; ".join(f"{p}" + (f" ({n}x)" if n > 1 else "") for p, n in counts.items())


def _prom_step(window_s: float) -> float:
    # About 240 points: plenty for a line, far under Prometheus' 11,000-point limit.
    return max(1.0, round(window_s / 240))


async def _prometheus_series(ctx: ActionContext, replicas: Sequence[ReplicaIdentity],
                             window_s: float) -> tuple[dict[str, list[tuple[float, float]]], str | None]:
    """(points per replica, problem): the problem says why Prometheus could not be used."""
    from x402console.sources.promapi import PromAPIError
    from x402console.sources.prometheus import PrometheusSource, instance_of

    s = ctx.settings
    if not s.prometheus.url:
        return {}, "no Prometheus is configured"
    source = PrometheusSource(s, lambda: tuple(replicas), client=ctx.http, history=False)
    metric = s.metrics.resident_memory
    job = s.prometheus.job.replace("\\", "\\\\").replace('"', '\\"')
    end = time.time()
    try:
        result = await source.range_query(f'{metric}{{job="{job}"}}', end - window_s, end, _prom_step(window_s),
                                          client=ctx.http)
    except PromAPIError as exc:
        return {}, str(exc)
    by_instance = {}
    for r in replicas:
        for url in (r.metrics_url, r.health_url):
            inst = instance_of(url) if url else None
            if inst:
                by_instance.setdefault(inst, r.name)
    out: dict[str, list[tuple[float, float]]] = {}
    for series in result.matrix:
        inst = series.metric.get("instance", "")
        name = by_instance.get(inst) or inst or "?"
        out.setdefault(name, []).extend(series.values)
    if not out:
        return {}, f"Prometheus has no {metric}{{job=\"{s.prometheus.job}\"}} samples in the last {window_s / 60:g} min"
    return out, None


class _Sampler:
    """Samples every replica's resident memory from /metrics on its own schedule, so a hung
    replica (each request waits the whole timeout) never delays the others' samples."""

    def __init__(self, ctx: ActionContext, replicas: Sequence[ReplicaIdentity], seconds: float, interval: float) -> None:
        self.ctx = ctx
        self.replicas = list(replicas)
        self.seconds = seconds
        self.interval = interval
        self.timeout = max(0.5, min(float(ctx.settings.prometheus.timeout_seconds), interval * 2))
        self.points: dict[str, list[tuple[float, float]]] = {r.name: [] for r in replicas}
        self.failures: dict[str, list[str]] = {r.name: [] for r in replicas}
        self.latest: dict[str, float] = {}
        self.started = 0.0
        self.elapsed = 0.0

    async def _one(self, replica: ReplicaIdentity) -> None:
        from x402console.sources.exposition import MAX_BYTES, parse_exposition

        metric = self.ctx.settings.metrics.resident_memory
        n = int(self.seconds / self.interval + 1e-9) + 1
        for i in range(n):
            due = self.started + i * self.interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif i and delay < -self.interval:
                continue  # the previous request overran this slot: skip it rather than bunch up
            try:
                fetched = await fetch_bounded(self.ctx.http, "GET", replica.metrics_url, timeout=self.timeout,
                                              limit=MAX_BYTES, headers={"Accept": "text/plain;version=0.0.4"})
            except FetchError as exc:
                self.failures[replica.name].append(explain_fetch_error(exc, replica.metrics_url, self.timeout)[1])
                continue
            at = time.monotonic() - self.started
            if fetched.status_code != 200:
                why = " (rate limited)" if fetched.status_code == 429 else ""
                self.failures[replica.name].append(f"HTTP {fetched.status_code}{why}")
                continue
            value = parse_exposition(fetched.body, fetched.headers.get("content-type")).value(metric)
            if value is None or not math.isfinite(value):
                self.failures[replica.name].append(f"no {metric} in /metrics")
                continue
            self.points[replica.name].append((at, value))
            self.latest[replica.name] = value

    async def run(self) -> AsyncIterator[Progress]:
        self.started = time.monotonic()
        tasks = [asyncio.ensure_future(self._one(r)) for r in self.replicas]
        done = asyncio.ensure_future(asyncio.gather(*tasks, return_exceptions=True))
        cancelled = asyncio.ensure_future(self.ctx.cancel.wait())
        try:
            while True:
                await asyncio.wait({done, cancelled}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                self.elapsed = time.monotonic() - self.started
                if done.done() or cancelled.done():
                    break
                now = ", ".join(f"{n} {bytes_h(v)}" for n, v in self.latest.items()) or "no answer yet"
                yield Progress(f"sampling {self.elapsed:.0f}/{self.seconds:g} s: {now}",
                               min(1.0, self.elapsed / self.seconds))
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(done, return_exceptions=True)
            cancelled.cancel()


def _limits(ctx: ActionContext, replicas: Sequence[ReplicaIdentity],
            names: Sequence[str]) -> dict[str, tuple[float | None, str]]:
    """(limit bytes, where it came from) per replica name: the container's memory limit in
    Docker mode, else [prover] memory_limit_bytes (compose deploy.resources.limits.memory)."""
    configured = float(ctx.settings.prover.memory_limit_bytes) or None
    by_name = {r.name: r for r in replicas}
    out: dict[str, tuple[float | None, str]] = {}
    for name in names:
        r = by_name.get(name)
        if r is not None and r.container_id:
            try:
                attrs = ctx.docker(r.docker_host).api.inspect_container(r.container_id)
                limit = int((attrs.get("HostConfig") or {}).get("Memory") or 0)
            except Exception as exc:
                out[name] = (configured, f"[prover] memory_limit_bytes (container not inspected: {exc})")
                continue
            if limit > 0:
                out[name] = (float(limit), "container memory limit")
                continue
            out[name] = (configured, "[prover] memory_limit_bytes (the container has no memory limit)")
            continue
        out[name] = (configured, "[prover] memory_limit_bytes")
    return out


ACTIONS = (ProbeHealth, ProbeHealthAll, PprofCapture, MemoryTrendAction)


def actions() -> list[Action]:
    return [cls() for cls in ACTIONS]
