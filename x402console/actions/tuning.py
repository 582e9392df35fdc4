"""Runbook Incident 6 "Enable additional rate limiting" (and Incident 3's CACHE_SIZE), done for real.

The runbook runs `export RATE_LIMIT_PER_MINUTE=5 && docker-compose restart prover`. That changes
nothing twice over: a restart keeps a container's environment (and compose passes only the
variables its file names), and the prover as coded never reads the variable: main.go hard-codes
NewRateLimiter(10, time.Minute) and NewProofCache(1000, time.Hour) (reference 4.2, 4.3).

These actions put the variable into each replica's environment for real, one replica at a time,
waiting for /health in between: containers are recreated with it (restart cannot change a
container's environment), processes are started again with it (and runtime.json keeps it for
later restarts). When [prover] honours_env is false, which is the real build, the plan and the
outcome say plainly that the running build ignores it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from x402console.actions import containers as ctr
from x402console.actions import processes as prc
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

__all__ = ["ACTIONS", "SetCacheSize", "SetRateLimit", "actions"]


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


class _EnvTuning(Action):
    pane: ClassVar[str] = "abuse"
    danger: ClassVar[str] = "disruptive"
    changes_state: ClassVar[bool] = True
    target_kind: ClassVar[str] = "service"
    # It restarts every prover: refused in a security incident until evidence is preserved.
    security_guarded: ClassVar[bool] = True
    variable: ClassVar[str]
    low: ClassVar[int] = 1
    high: ClassVar[int]
    coded_value: ClassVar[str]  # what the real build uses whatever the variable says
    reference: ClassVar[str]
    restart_effect: ClassVar[str]

    def targets(self, ctx: ActionContext) -> list[Target]:
        if prc._process_replicas(ctx.settings):
            return prc._service_targets(ctx)
        return ctr._service_targets(ctx)

    # ------------------------------------------------------------------ parameters
    def _value(self, params: Mapping[str, Any]) -> int:
        raw = params.get("value")
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise ActionError(f"value: the new {self.variable} is needed (a whole number from {self.low} to {self.high})")
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ActionError(f"value: {self.variable} must be a whole number, not {raw!r}")
        text = str(raw).strip()
        if not text.isdigit():
            raise ActionError(f"value: {self.variable} must be a whole number from {self.low} to {self.high}, not {raw!r}")
        value = int(text)
        if not self.low <= value <= self.high:
            raise ActionError(f"value: {self.variable}={value} is outside {self.low}..{self.high}")
        return value

    def _ignored(self) -> str:
        return (f"The running build ignores {self.variable}: [prover] honours_env is false, as for the real main.go, "
                f"which hard-codes {self.coded_value} and never reads the variable (reference/x402-system.md "
                f"{self.reference}). The replicas are restarted with it set, and the change has NO effect on "
                f"their behaviour.")

    def _mode(self, ctx: ActionContext, target: Target) -> str:
        detail = target.detail or {}
        if detail.get("mode") == "process":
            return "process"
        if "docker_host" in detail:
            return "docker"
        return "process" if prc._process_replicas(ctx.settings) else "docker"

    # ------------------------------------------------------------------ plan
    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        value = self._value(params)
        timeout = prc._health_timeout(params)
        mode = self._mode(ctx, target)
        warnings: list[str] = []
        if not ctx.settings.prover.honours_env:
            warnings.append(self._ignored())
        warnings.append(self.restart_effect)
        out: dict[str, Any] = {"mode": mode, "variable": self.variable, "value": str(value), "health_timeout": timeout,
                               "honours_env": ctx.settings.prover.honours_env}
        if mode == "process":
            steps, before, count = await self._process_plan(ctx, value, timeout, out, warnings)
        else:
            steps, before, count = await self._docker_plan(ctx, target, value, timeout, out, warnings)
        out["before"] = before
        if count == 1:
            warnings.append("there is only one replica: the service is down while it restarts")
        now = ", ".join(f"{n}: {v if v is not None else 'unset'}" for n, v in before.items())
        warnings.insert(0, f"{self.variable} now: {now}")
        return dataclasses.replace(
            self.make_plan(target, steps, out, warnings=tuple(warnings), cancellable=True),
            title=f"Set {self.variable}={value} on {target.name} ({count} replicas, one at a time)",
        )

    async def _process_plan(self, ctx: ActionContext, value: int, timeout: float, out: dict[str, Any],
                            warnings: list[str]) -> tuple[list[PlanStep], dict[str, str | None], int]:
        procs = await asyncio.to_thread(prc._list, ctx)
        if not procs:
            raise ActionError("no process replicas are configured ([[replicas]] with a pid_file)")
        for p in procs:
            prc._need_argv(p)
        ordered = await prc._health_order(ctx, procs)
        steps: list[PlanStep] = []
        for p in ordered:
            steps += prc._stop_commands(p)
            log = shlex.quote(str(p.log_file)) if p.log_file else "/dev/null"
            pid_file = f"; echo $! > {shlex.quote(str(p.pid_file))}" if p.pid_file else ""
            steps.append(PlanStep(
                f"Start {p.name} again with {self.variable}={value} added to its environment (command line from "
                f"{p.source}; the variable is kept in the drill's runtime record so later restarts keep it)",
                f"{self.variable}={value} setsid {prc._shown(p.argv or [])} >> {log} 2>&1 < /dev/null &{pid_file}"))
            steps.append(PlanStep(f"Wait up to {timeout:g} s until {p.name} answers /health", f"curl -f {p.health_url}"))
        out["processes"] = [p.ref() for p in ordered]
        warnings.append(f"`export {self.variable}={value}` in a shell reaches only processes started from that shell; "
                        "here each prover process gets it directly. A start script that does not set it will start "
                        "them without it.")
        return steps, {p.name: self._process_value(p) for p in procs}, len(procs)

    def _process_value(self, p: Any) -> str | None:
        env = p.env
        if p.pid is not None:
            live = prc._proc_cmdline(p.pid)[2]
            if live is not None:
                env = live
        if env is None:
            env = os.environ
        return env.get(self.variable)

    async def _docker_plan(self, ctx: ActionContext, target: Target, value: int, timeout: float, out: dict[str, Any],
                           warnings: list[str]) -> tuple[list[PlanStep], dict[str, str | None], int]:
        host = ctr._docker_host(ctx.settings, target)
        _, replicas = await ctr._replicas(ctx, host)
        if not replicas:
            raise ActionError(f"no replica containers of {target.name} on docker host {host.name}")
        ordered = await ctr._health_order(ctx, replicas)
        cli = ctr._cli(host)
        steps: list[PlanStep] = []
        for r in ordered:
            tmp = f"{r.id[:12]}_{r.container}"
            image = (r.attrs.get("Config") or {}).get("Image", "?")
            steps += [
                PlanStep(f"Read the configuration of {r.container}", f"{cli} inspect {r.container}"),
                PlanStep(f"Create its replacement with the same configuration and {self.variable}={value} in its environment",
                         f"{cli} create --name {tmp} -e {self.variable}={value} <configuration of {r.container}> {image}"),
                PlanStep(f"Stop and remove {r.container}, give the replacement its name and start it",
                         f"{cli} stop {r.container} && {cli} rm {r.id[:12]} && {cli} rename {tmp} {r.container} "
                         f"&& {cli} start {r.container}"),
                PlanStep(f"Wait up to {timeout:g} s until {r.name} answers /health", f"curl -f {r.health_url}"),
            ]
        out["docker_host"] = host.name
        out["containers"] = [r.ref() for r in ordered]
        compose = ctr._compose_cli(host, ctx.settings.discovery.compose_project)
        warnings.append(
            f"The runbook's `export {self.variable}={value} && docker-compose restart prover` cannot do this: a restart "
            f"keeps the container's environment. The containers are recreated instead; the compose file is not "
            f"changed, so a later `{compose} up` recreates them without {self.variable} unless the file's environment "
            f"lists it.")
        warnings += ctr._recreate_warnings(replicas)
        before = {r.name: _env_value((r.attrs.get("Config") or {}).get("Env") or [], self.variable) for r in replicas}
        return steps, before, len(replicas)

    # ------------------------------------------------------------------ run
    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        done: list[str] = []
        overrides = {self.variable: str(plan.params["value"])}
        timeout = float(plan.params["health_timeout"])
        try:
            if plan.params["mode"] == "process":
                refs = plan.params["processes"]
                for i, ref in enumerate(refs):
                    if ctx.cancel.is_set():
                        raise prc._Cancelled(f"before restarting {ref['name']}")
                    async for p in prc._restart_one(ctx, plan, ref, done, timeout, env_overrides=overrides):
                        yield Progress(p.message, i / len(refs))
                names = [r["name"] for r in refs]
            else:
                host = ctr._docker_host(ctx.settings, plan.target)
                client = await asyncio.to_thread(ctr._client, ctx, host)
                refs = plan.params["containers"]
                # Each recreate runs to its end once begun; cancel is honoured between replicas.
                inner = dataclasses.replace(plan, cancellable=False)
                for i, ref in enumerate(refs):
                    if ctx.cancel.is_set():
                        raise ctr._Cancelled(f"before recreating {ref['container']}")
                    async for p in ctr._recreate_one(ctx, inner, client, ref, done, timeout, env_overrides=overrides):
                        yield Progress(p.message, i / len(refs))
                names = [r["name"] for r in refs]
        except (prc._Cancelled, ctr._Cancelled) as exc:
            yield Outcome("cancelled", f"cancelled {exc}; {_done(done)}", {"done": list(done)})
            return
        except (prc._Failed, ctr._Failed, ActionError) as exc:
            yield Outcome("failed", f"{exc}\n{_done(done)}", {"done": list(done)})
            return
        except OSError as exc:
            yield Outcome("failed", f"{exc.strerror or exc}; {_done(done)}", {"done": list(done)})
            return
        except Exception as exc:
            yield Outcome("failed", f"{ctr._engine_error(exc)}; {_done(done)}", {"done": list(done)})
            return
        yield Progress("asking the replicas what they now use", 1.0)
        observed = await self._observed(ctx, names)
        details: dict[str, Any] = {"done": list(done), "variable": self.variable, "value": plan.params["value"],
                                   "observed": observed, "honours_env": plan.params["honours_env"]}
        seen = {n: v for n, v in observed.items() if v is not None}
        report = "; ".join(f"{n} reports {v}" for n, v in seen.items())
        head = f"{len(names)} replicas restarted one at a time with {self.variable}={plan.params['value']}"
        if not plan.params["honours_env"]:
            yield Outcome("succeeded", f"{head}, but this has NO effect: the running build ignores {self.variable} and "
                          f"keeps {self.coded_value} ({self.reference})" + (f"; {report}" if report else ""), details)
            return
        wrong = {n: v for n, v in seen.items() if str(v) != str(plan.params["value"])}
        if wrong:
            yield Outcome("failed", f"{head}, but " + "; ".join(f"{n} still reports {v}" for n, v in wrong.items())
                          + " (does this build read the variable? check [prover] honours_env)", details)
            return
        yield Outcome("succeeded", f"{head}; all answer /health" + (f"; {report}" if report else ""), details)

    async def _observed(self, ctx: ActionContext, names: Sequence[str]) -> dict[str, Any]:
        """What each replica says it uses, when it can say (None: it cannot be asked)."""
        return {n: None for n in names}


def _env_value(env: Sequence[str], name: str) -> str | None:
    for item in env:
        key, _, value = str(item).partition("=")
        if key == name:
            return value
    return None


def _done(done: Sequence[str]) -> str:
    return ("done: " + "; ".join(done)) if done else "nothing was changed"


def _health_urls(ctx: ActionContext, names: Sequence[str]) -> dict[str, str]:
    urls = {r.name: r.health_url for r in ctx.settings.replicas if r.name in names}
    missing = [n for n in names if n not in urls]
    if missing and ctx.settings.discovery.mode != "static":
        from x402console.sources.discovery import discover_containers

        for host in ctx.settings.docker_hosts:
            try:
                for ident in discover_containers(ctx.docker(host.name), ctx.settings, host.name):
                    if ident.name in missing:
                        urls[ident.name] = ident.health_url
            except Exception:
                continue
    return urls


class SetRateLimit(_EnvTuning):
    id: ClassVar[str] = "abuse.set_rate_limit"
    key: ClassVar[str] = "L"
    title: ClassVar[str] = "Set the per-IP rate limit"
    help: ClassVar[str] = ("Restart the replicas one by one with RATE_LIMIT_PER_MINUTE set (runbook Incident 6 "
                           "'Enable additional rate limiting'); the real build ignores it, and the plan says so")
    variable: ClassVar[str] = "RATE_LIMIT_PER_MINUTE"
    high: ClassVar[int] = 100_000
    coded_value: ClassVar[str] = "10 requests per minute per IP"
    reference: ClassVar[str] = "section 4.3"
    restart_effect: ClassVar[str] = ("Restarting empties every IP's rate-limit bucket (the limiter keeps nothing): "
                                     "clients that were being refused get a fresh allowance at once.")
    param_help: ClassVar[Mapping[str, str]] = {
        "value": "requests per minute per client IP (the runbook suggests 5)",
        "health_timeout": "seconds to wait for each replica's /health (default 60)",
    }

    async def _observed(self, ctx: ActionContext, names: Sequence[str]) -> dict[str, Any]:
        # Only the drill's simulator can tell its limit (its fault-control /status); the real
        # prover has no route that shows it.
        token = _drill_token(ctx)
        out: dict[str, Any] = {n: None for n in names}
        if not token:
            return out
        controls = {r.name: r.control_url for r in ctx.settings.replicas if r.control_url}

        async def ask(name: str) -> None:
            url = controls.get(name)
            if not url:
                return
            try:
                r = await ctx.http.get(url.rstrip("/") + "/status", headers={"Authorization": f"Bearer {token}"},
                                       timeout=3.0)
                if r.status_code == 200:
                    out[name] = r.json().get("rate_limit_per_minute")
            except Exception:
                pass

        await asyncio.gather(*(ask(n) for n in names))
        return out


class SetCacheSize(_EnvTuning):
    id: ClassVar[str] = "abuse.set_cache_size"
    key: ClassVar[str] = "C"
    title: ClassVar[str] = "Set the proof cache size"
    help: ClassVar[str] = ("Restart the replicas one by one with CACHE_SIZE set (runbook Incident 3 `export "
                           "CACHE_SIZE=1000`); the real build ignores it, and the plan says so")
    variable: ClassVar[str] = "CACHE_SIZE"
    high: ClassVar[int] = 10_000_000
    coded_value: ClassVar[str] = "1000 entries"
    reference: ClassVar[str] = "section 4.2"
    restart_effect: ClassVar[str] = "Restarting empties the in-memory proof cache: every request is a miss until it fills again."
    param_help: ClassVar[Mapping[str, str]] = {
        "value": "proofs kept in each replica's cache",
        "health_timeout": "seconds to wait for each replica's /health (default 60)",
    }

    async def _observed(self, ctx: ActionContext, names: Sequence[str]) -> dict[str, Any]:
        # GET /cache/stats answers {"maxSize": ...} on the real prover too (reference 1.3).
        urls = await asyncio.to_thread(_health_urls, ctx, names)
        out: dict[str, Any] = {n: None for n in names}

        async def ask(name: str) -> None:
            url = urls.get(name)
            if not url:
                return
            try:
                r = await ctx.http.get(_base_url(url) + "/cache/stats", timeout=3.0)
                if r.status_code == 200:
                    out[name] = r.json().get("maxSize")
            except Exception:
                pass

        await asyncio.gather(*(ask(n) for n in names))
        return out


def _drill_token(ctx: ActionContext) -> str | None:
    path = prc._runtime_path(ctx)
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    token = data.get("control_token") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


ACTIONS: tuple[type[Action], ...] = (SetRateLimit, SetCacheSize)


def actions() -> list[Action]:
    return [cls() for cls in ACTIONS]
