"""Runbook Incident 6 (Rate Limit Bypass / DDoS): find the abusive clients, block and unblock them.

The runbook's `docker logs x402-prover-1 | grep "rate_limit" | awk '{print $X}'` finds nothing as
coded (a 429 writes no application line, only `| 429 |` in gin's access line) and leaves the
column a placeholder. abuse.top_ips counts the access lines of every replica per client IP.

Blocking writes nginx's deny file (nginx_deny.py: atomic, `nginx -t`, reload, byte-for-byte
rollback) and, when configured, the firewall rule (firewall.py); the plan always shows both as
commands. Blocks that would cut off the operator, this machine, the console's own monitoring or
a huge range need the address typed again as the `confirm` parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shlex
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

from x402console.actions import firewall
from x402console.actions import nginx_deny as deny
from x402console.actions.base import (
    Action,
    ActionContext,
    ActionError,
    NeedsConfirmation,  # re-exported: a risky block needs the address typed as `confirm`
    Outcome,
    Plan,
    PlanStep,
    Progress,
    Target,
)

__all__ = ["ACTIONS", "BlockIP", "ListBlocks", "NeedsConfirmation", "TopIPs", "UnblockIP", "actions", "count_clients"]

PANE = "abuse"
DEFAULT_LINES = 5000
DEFAULT_MINUTES = 10
DEFAULT_LIMIT = 10
MAX_TAIL_BYTES = 64 * 1024 * 1024
METRICS_TIMEOUT_S = 3.0
SPOOFING_NOTE = ("The provers take the client IP from X-Forwarded-For (gin trusts every proxy, reference 1.4): "
                 "behind nginx that is the real peer (nginx sets it to $remote_addr), but a client reaching a prover "
                 "directly can put any address there, and an nginx block does not stop it.")


# --------------------------------------------------------------------------- parameters


def _int_param(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, default)
    if raw is None or raw == "":
        raw = default
    if isinstance(raw, bool):
        raise ActionError(f"{name} must be a whole number, got {raw!r}")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ActionError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ActionError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _network(target: Target, params: Mapping[str, Any]) -> deny.Checked:
    """The network to act on: params["cidr"] when given (it must contain the target's address),
    else the target's name."""
    given = params.get("cidr")
    text = given if isinstance(given, str) and given.strip() else target.name
    try:
        checked = deny.parse_network(text)
    except deny.DenyError as exc:
        raise ActionError(str(exc)) from None
    if given and target.name and target.name.strip() != str(given).strip():
        try:
            inner = ipaddress.ip_network(target.name.strip(), strict=False)
        except ValueError:
            inner = None
        if inner is not None and (inner.version != checked.network.version or not inner.subnet_of(checked.network)):  # type: ignore[arg-type]
            raise ActionError(f"cidr {checked.text} does not contain the chosen address {target.name}")
    return checked


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


# --------------------------------------------------------------------------- nginx and firewall layers


def deny_path(settings: Any) -> Path:
    return deny.real_path(Path(settings.nginx.deny_file))


def _nginx_usable(settings: Any) -> tuple[bool, str]:
    path = deny_path(settings)
    if not path.parent.is_dir():
        return False, f"the deny file's directory {path.parent} does not exist (no nginx here?)"
    return True, ""


def _nginx_steps(settings: Any, path: Path) -> list[PlanStep]:
    steps = []
    if settings.nginx.test_command:
        steps.append(PlanStep("Check the whole nginx configuration with the new file", shlex.join(settings.nginx.test_command)))
    if settings.nginx.reload_command:
        steps.append(PlanStep("Reload nginx (running workers finish their requests)", shlex.join(settings.nginx.reload_command)))
    steps.append(PlanStep(f"If the check or the reload fails, put the previous {path.name} back byte-for-byte "
                          f"(and reload again after a failed reload)"))
    return steps


def _unknown_warnings(df: deny.DenyFile, path: Path) -> list[str]:
    out = []
    for line, text in df.unknown()[:5]:
        out.append(f"{path.name} line {line} is not a plain `deny <address>;` line and is kept as it is: {text[:120]!r}"
                   + (" (it denies every client)" if re.search(r"\bdeny\s+all\b", text) else ""))
    more = len(df.unknown()) - 5
    if more > 0:
        out.append(f"... and {more} more lines kept as they are")
    return out


def _firewall_step(settings: Any, net: deny.IPNetwork, verb: str) -> tuple[PlanStep | None, str | None]:
    """(the step, or None; a warning when the equivalent command cannot even be built)."""
    builder = firewall.block_argv if verb == "block" else firewall.unblock_argv
    try:
        argv = builder(settings, net)
    except firewall.FirewallError as exc:
        if settings.firewall.iptables:
            raise ActionError(f"[firewall]: {exc}") from None
        return None, f"no equivalent firewall command: {exc}"
    what = "Drop" if verb == "block" else "Stop dropping"
    if settings.firewall.iptables:
        return PlanStep(f"{what} packets from {deny.network_text(net)} at the firewall "
                        f"({'checked first with -C, so it is never added twice' if verb == 'block' else 'every copy of the rule'})",
                        firewall.shown(argv)), None
    return PlanStep(f"Not run ([firewall] iptables = false), the equivalent firewall rule: {firewall.shown(argv)}"), None


def _sed_delete(address: str) -> str:
    return "\\|^[[:space:]]*deny[[:space:]]+" + re.escape(address) + "[[:space:]]*;|d"


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.asynccontextmanager
async def _locked(directory: Path) -> AsyncIterator[None]:
    cm = deny.directory_lock(directory)
    try:
        await asyncio.to_thread(cm.__enter__)
    except TimeoutError as exc:
        raise ActionError(str(exc)) from None
    try:
        yield
    finally:
        cm.__exit__(None, None, None)


async def _nginx_answers(ctx: ActionContext) -> str | None:
    url = ctx.settings.nginx.url
    if not url:
        return None
    import httpx

    try:
        r = await ctx.http.get(url, timeout=3.0)
        return f"nginx answers on {url} (HTTP {r.status_code})"
    except httpx.HTTPError as exc:
        return f"nginx does not answer on {url} after the reload: {type(exc).__name__}"


# --------------------------------------------------------------------------- block / unblock


class BlockIP(Action):
    id: ClassVar[str] = "abuse.block"
    key: ClassVar[str] = "b"
    title: ClassVar[str] = "Block IP or network"
    help: ClassVar[str] = ("Deny a client address or CIDR network in nginx's deny file (checked with nginx -t, reloaded, "
                           "rolled back on failure) and, if configured, at the firewall (runbook Incident 6)")
    pane: ClassVar[str] = PANE
    danger: ClassVar[str] = "disruptive"
    changes_state: ClassVar[bool] = True
    target_kind: ClassVar[str] = "ip"
    param_help: ClassVar[Mapping[str, str]] = {
        "cidr": "address or CIDR network to block (default: the chosen address), e.g. 203.0.113.7 or 198.51.100.0/24",
        "confirm": "type the address again to block loopback, your own or this machine's address, Prometheus, "
                   "nginx, a prover, or a very wide range",
        "reason": "a note written beside the deny line",
    }

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        checked = _network(target, params)
        net, text = checked.network, checked.text
        risks = deny.hazards(net, await deny.protected_addresses(ctx.settings))
        if checked.broad:
            risks.insert(0, checked.broad)
        confirm = params.get("confirm")
        confirm = confirm.strip() if isinstance(confirm, str) else confirm
        if risks:
            if confirm in (None, ""):
                raise NeedsConfirmation(
                    f"blocking {text} is risky: it covers {'; '.join(risks)}. Type {text} as the confirmation "
                    f"to block it anyway", text)
            if confirm != text:
                raise NeedsConfirmation(f"the confirmation {confirm!r} does not match {text}; type {text} exactly", text)
        settings = ctx.settings
        usable, why = _nginx_usable(settings)
        if not usable and not settings.firewall.iptables:
            raise ActionError(f"nowhere to block {text}: {why}, and [firewall] iptables is false. Set [nginx] deny_file "
                              f"to the file nginx includes, or enable [firewall] iptables")
        steps: list[PlanStep] = []
        warnings: list[str] = [f"Blocking {text} is confirmed although it covers: {'; '.join(risks)}"] if risks else []
        out: dict[str, Any] = {"cidr": text, "nginx": usable, "firewall": bool(settings.firewall.iptables)}
        if params.get("reason"):
            out["reason"] = deny.one_line(str(params["reason"]))[:200]
        if risks:
            out["confirm"] = text
        already: list[str] = []
        if usable:
            path = deny_path(settings)
            _, old_text = await asyncio.to_thread(deny.read_text, path)
            df = deny.DenyFile.parse(old_text)
            there = df.exact(net) or df.covering(net)
            if there:
                e = there[0]
                already.append(f"{path.name} line {e.line} already denies {e.shown}")
                steps.append(PlanStep(f"Nothing to add to {path}: line {e.line} already denies {e.shown}"))
            else:
                # Kept in the plan so the line written is the line shown.
                comment = out["comment"] = self._comment(ctx, out.get("reason"))
                new_text = df.with_block(net, comment).render()
                out["file_change"] = deny.diff(old_text, new_text, path)
                added = new_text.splitlines()[-1]
                steps.append(PlanStep(
                    f"Add `{added}` to {path} (temporary file in the same directory, fsync, rename; mode and owner kept)",
                    f"echo {_q(f'deny {text};')} >> {_q(path)}"))
                steps += _nginx_steps(settings, path)
                if not path.exists():
                    warnings.append(f"{path} does not exist yet and is created: nginx reads it only if its configuration "
                                    f"has `include {path};` in the server block")
                inside = df.inside(net)
                if inside:
                    warnings.append(f"{len(inside)} narrower entries become redundant and stay: "
                                    + ", ".join(f"{e.shown} (line {e.line})" for e in inside[:5]))
            warnings += _unknown_warnings(df, path)
        else:
            warnings.append(f"nginx is not changed: {why}")
        step, note = _firewall_step(settings, net, "block")
        if step is not None:
            steps.append(step)
        if note:
            warnings.append(note)
        if settings.firewall.iptables:
            check = await firewall.present(settings, net)
            if check.ok:
                already.append(f"the firewall already drops {text}")
            priv = firewall.privilege_warning(settings)
            if priv:
                warnings.append(priv)
        layers = (1 if usable else 0) + (1 if settings.firewall.iptables else 0)
        if already and len(already) == layers:
            raise ActionError(f"{text} is already blocked: " + "; ".join(already))
        warnings.append(SPOOFING_NOTE)
        return self.make_plan(target, steps, out, warnings=tuple(warnings), cancellable=False,
                              danger="destructive" if risks else self.danger)

    @staticmethod
    def _comment(ctx: ActionContext, reason: str | None) -> str:
        parts = [f"x402console {ctx.actor.who} {_stamp()}"]
        if ctx.incident_id is not None:
            parts.append(f"incident #{ctx.incident_id}")
        if reason:
            parts.append(reason)
        return " ".join(parts)

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        net = deny.parse_network(plan.params["cidr"]).network
        text = deny.network_text(net)
        done: list[str] = []
        details: dict[str, Any] = {"cidr": text}
        if plan.params.get("nginx"):
            path = deny_path(ctx.settings)
            yield Progress(f"adding deny {text}; to {path}")
            async with _locked(path.parent):
                old, old_text = await asyncio.to_thread(deny.read_text, path)
                df = deny.DenyFile.parse(old_text)
                there = df.exact(net) or df.covering(net)
                if there:
                    done.append(f"{path.name} line {there[0].line} already denies {there[0].shown}")
                else:
                    comment = plan.params.get("comment") or self._comment(ctx, plan.params.get("reason"))
                    new = df.with_block(net, comment).render()
                    yield Progress("checking the configuration and reloading nginx")
                    report = await deny.apply(path, old, new.encode("utf-8", "surrogateescape"),
                                              ctx.settings.nginx.test_command, ctx.settings.nginx.reload_command)
                    details["nginx"] = report.details()
                    if not report.ok:
                        yield Outcome("failed", f"{text} was not blocked: {report.failure}", details)
                        return
                    done.append(f"nginx denies {text} ({path.name} line {len(new.splitlines())}, checked and reloaded)")
                    done += report.notes
            answer = await _nginx_answers(ctx)
            if answer:
                done.append(answer)
        async for step in _firewall_then_done(ctx, plan, net, text, "blocked", details, done):
            yield step


async def _firewall_then_done(ctx: ActionContext, plan: Plan, net: Any, text: str, verb: str,
                              details: dict[str, Any], done: list[str]) -> AsyncIterator[Progress | Outcome]:
    """The firewall half of a block or unblock (when the plan has it), then the one outcome."""
    if plan.params.get("firewall"):
        adding = verb == "blocked"
        yield Progress(f"{'adding' if adding else 'removing'} the firewall rule for {text}")
        fw = await (firewall.block if adding else firewall.unblock)(ctx.settings, net)
        details["firewall"] = fw.details()
        if not fw.ok:
            before = "; ".join(done) or "nothing else was changed"
            yield Outcome("failed", f"firewall: {fw.summary} ({before})", {**details, "done": done})
            return
        done.append(fw.summary)
    details["done"] = done
    yield Outcome("succeeded", f"{verb} {text}: " + "; ".join(done), details)


class UnblockIP(Action):
    id: ClassVar[str] = "abuse.unblock"
    key: ClassVar[str] = "u"
    title: ClassVar[str] = "Unblock IP or network"
    help: ClassVar[str] = "Remove a deny line from nginx's deny file (checked, reloaded, rolled back on failure) and the firewall rule"
    pane: ClassVar[str] = PANE
    danger: ClassVar[str] = "disruptive"
    changes_state: ClassVar[bool] = True
    target_kind: ClassVar[str] = "ip"
    param_help: ClassVar[Mapping[str, str]] = {"cidr": "address or network exactly as blocked (default: the chosen entry)"}

    def targets(self, ctx: ActionContext) -> list[Target]:
        path = deny_path(ctx.settings)
        _, text = deny.read_text(path) if path.is_file() else (None, "")
        return [Target("ip", e.shown, {"line": e.line, "comment": e.comment})
                for e in deny.DenyFile.parse(text).entries()]

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        checked = _network(target, params)
        net, text = checked.network, checked.text
        settings = ctx.settings
        usable, why = _nginx_usable(settings)
        steps: list[PlanStep] = []
        warnings: list[str] = []
        out: dict[str, Any] = {"cidr": text, "nginx": False, "firewall": bool(settings.firewall.iptables)}
        if usable:
            path = deny_path(settings)
            _, old_text = await asyncio.to_thread(deny.read_text, path)
            df = deny.DenyFile.parse(old_text)
            exact = df.exact(net)
            if exact:
                new_text, changed = df.without_block(net)
                out["nginx"] = True
                out["file_change"] = deny.diff(old_text, new_text.render(), path)
                lines = ", ".join(str(n) for n in changed)
                steps.append(PlanStep(
                    f"Remove `deny {text};` from {path} (line {lines}; temporary file, fsync, rename; mode and owner kept)",
                    f"sed -E -i {_q(_sed_delete(exact[0].text))} {_q(path)}"))
                steps += _nginx_steps(settings, path)
                warnings += _unknown_warnings(df, path)
            else:
                covering = df.covering(net)
                if covering and not settings.firewall.iptables:
                    e = covering[0]
                    raise ActionError(f"{text} is not blocked on its own: {path.name} line {e.line} denies the whole "
                                      f"network {e.shown}; unblock {e.shown} instead (that unblocks all of it)")
                if not settings.firewall.iptables:
                    listed = ", ".join(e.shown for e in df.entries()[:10]) or "nothing"
                    raise ActionError(f"{text} is not in {path} (it denies: {listed})")
                warnings.append(f"{path.name} has no line denying {text}: only the firewall is changed")
        elif not settings.firewall.iptables:
            raise ActionError(f"nothing to unblock {text} in: {why}, and [firewall] iptables is false")
        step, note = _firewall_step(settings, net, "unblock")
        if step is not None:
            steps.append(step)
        if note:
            warnings.append(note)
        if settings.firewall.iptables and not out["nginx"]:
            check = await firewall.present(settings, net)
            if not check.ok:
                raise ActionError(f"{text} is blocked neither in nginx's deny file nor at the firewall")
        warnings.append(f"Requests from {text} reach the provers again, limited only by their own 10 per minute per IP.")
        return self.make_plan(target, steps, out, warnings=tuple(warnings), cancellable=False)

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        net = deny.parse_network(plan.params["cidr"]).network
        text = deny.network_text(net)
        done: list[str] = []
        details: dict[str, Any] = {"cidr": text}
        if plan.params.get("nginx"):
            path = deny_path(ctx.settings)
            yield Progress(f"removing deny {text}; from {path}")
            async with _locked(path.parent):
                old, old_text = await asyncio.to_thread(deny.read_text, path)
                new_df, changed = deny.DenyFile.parse(old_text).without_block(net)
                if not changed:
                    done.append(f"{path.name} no longer denies {text} (someone removed it meanwhile)")
                else:
                    report = await deny.apply(path, old, new_df.render().encode("utf-8", "surrogateescape"),
                                              ctx.settings.nginx.test_command, ctx.settings.nginx.reload_command)
                    details["nginx"] = report.details()
                    if not report.ok:
                        yield Outcome("failed", f"{text} is still blocked: {report.failure}", details)
                        return
                    done.append(f"removed deny {text}; from {path.name} (line {', '.join(map(str, changed))}), "
                                f"checked and reloaded")
                    done += report.notes
        async for step in _firewall_then_done(ctx, plan, net, text, "unblocked", details, done):
            yield step


class ListBlocks(Action):
    id: ClassVar[str] = "abuse.list_blocks"
    key: ClassVar[str] = "l"
    title: ClassVar[str] = "List blocked addresses"
    help: ClassVar[str] = "The deny lines of nginx's deny file (and the firewall's DROP rules when configured). Read-only."
    pane: ClassVar[str] = PANE
    danger: ClassVar[str] = "safe"
    changes_state: ClassVar[bool] = False
    target_kind: ClassVar[str] = "file"

    def targets(self, ctx: ActionContext) -> list[Target]:
        return [Target("file", str(deny_path(ctx.settings)))]

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        path = deny.real_path(Path(target.name)) if target.name else deny_path(ctx.settings)
        steps = [PlanStep(f"Read {path}", f"grep -n '^[[:space:]]*deny' {_q(path)}")]
        if ctx.settings.firewall.iptables:
            try:
                steps.append(PlanStep("List the firewall chain's rules", firewall.shown(firewall.list_argv(ctx.settings))))
                steps.append(PlanStep("... and IPv6", firewall.shown(firewall.list_argv(ctx.settings, 6))))
            except firewall.FirewallError as exc:
                raise ActionError(f"[firewall]: {exc}") from None
        return self.make_plan(target, steps, {"path": str(path)})

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        path = Path(plan.params["path"])
        try:
            data, text = await asyncio.to_thread(deny.read_text, path)
        except OSError as exc:
            yield Outcome("failed", f"cannot read {path}: {exc.strerror or exc}")
            return
        df = deny.DenyFile.parse(text)
        entries = [{"cidr": e.shown, "line": e.line, "written": e.text, "comment": e.comment} for e in df.entries()]
        details: dict[str, Any] = {"path": str(path), "exists": data is not None, "entries": entries,
                                   "unknown_lines": [{"line": n, "text": t} for n, t in df.unknown()]}
        parts = []
        if data is None:
            parts.append(f"no deny file at {path}: nginx blocks nothing through it")
        elif not entries:
            parts.append(f"{path.name} blocks nothing")
        else:
            shown = ", ".join(f"{e['cidr']} (line {e['line']})" for e in entries[:8])
            more = f" and {len(entries) - 8} more" if len(entries) > 8 else ""
            parts.append(f"{len(entries)} blocked in {path.name}: {shown}{more}")
        if df.unknown():
            parts.append(f"{len(df.unknown())} lines not understood (kept as they are)")
        if ctx.settings.firewall.iptables:
            rules: list[str] = []
            for version in (4, 6):
                result = await deny.run_command(firewall.list_argv(ctx.settings, version))
                if not result.ok:
                    parts.append(f"firewall: {firewall.shown(result.argv)} failed: {result.output(300)}")
                    continue
                rules += firewall.parse_drop_rules(result.stdout, firewall.chain_of(ctx.settings))
            details["firewall"] = rules
            parts.append(f"firewall drops {', '.join(rules) if rules else 'nothing'} in {firewall.chain_of(ctx.settings)}")
        yield Outcome("succeeded", "; ".join(parts), details)


# --------------------------------------------------------------------------- top offending clients


@dataclass
class ClientTally:
    requests: int = 0
    status_429: int = 0
    status_400: int = 0
    status_403: int = 0
    replicas: set[str] = field(default_factory=set)
    last_seen: datetime | None = None

    def add(self, status: int | None, replica: str, ts: datetime | None) -> None:
        self.requests += 1
        if status == 429:
            self.status_429 += 1
        elif status == 400:
            self.status_400 += 1
        elif status == 403:
            self.status_403 += 1
        self.replicas.add(replica)
        if ts is not None and (self.last_seen is None or ts > self.last_seen):
            self.last_seen = ts


def count_clients(lines_by_replica: Mapping[str, Sequence[str]], since: datetime | None) -> tuple[dict[str, ClientTally], dict[str, Any]]:
    """Requests per client IP from prover log lines (both shapes), and how they were counted.

    Access lines (one per request, 429s included) are counted; application lines with a client IP
    only when a replica has no access lines at all (a log without gin's access log), where a
    "Rate limit exceeded" line counts as a 429 and a validation failure as a 400.
    """
    from x402console.sources.logparse import parse_log_line

    tallies: dict[str, ClientTally] = {}
    info: dict[str, Any] = {"lines": 0, "undated": 0, "app_lines_used": []}
    for replica, lines in lines_by_replica.items():
        access: list[Any] = []
        app: list[Any] = []
        for line in lines:
            info["lines"] += 1
            rec = parse_log_line(line, replica)
            if not rec.client_ip:
                continue
            if since is not None and rec.ts is not None and rec.ts < since:
                continue
            if rec.ts is None:
                info["undated"] += 1
            (access if rec.http_status is not None else app).append(rec)
        if access:
            for rec in access:
                tallies.setdefault(rec.client_ip, ClientTally()).add(rec.http_status, replica, rec.ts)
        elif app:
            info["app_lines_used"].append(replica)
            for rec in app:
                status = 429 if rec.operation == "rate_limit" else 400 if rec.operation == "validation" else None
                tallies.setdefault(rec.client_ip, ClientTally()).add(status, replica, rec.ts)
    return tallies, info


def _ranked(tallies: Mapping[str, ClientTally], limit: int, protected: Sequence[deny.Protected]) -> list[dict[str, Any]]:
    total = sum(t.requests for t in tallies.values()) or 1
    ranked = sorted(tallies.items(), key=lambda kv: (-kv[1].requests, -kv[1].status_429, kv[0]))
    out = []
    for ip, t in ranked[:limit]:
        row: dict[str, Any] = {
            "ip": ip, "requests": t.requests, "status_429": t.status_429, "status_400": t.status_400,
            "share": round(t.requests / total, 4), "replicas": sorted(t.replicas),
            "last_seen": t.last_seen.isoformat(timespec="seconds") if t.last_seen else None,
        }
        if t.status_403:
            row["status_403"] = t.status_403
        try:
            risks = deny.hazards(ipaddress.ip_network(ip), protected)
        except ValueError:
            risks = []
        if risks:
            row["protected"] = risks[0]
        out.append(row)
    return out


def tail_lines(path: Path, count: int, max_bytes: int = MAX_TAIL_BYTES) -> list[str]:
    """The last `count` lines of a file (reading backwards, at most max_bytes)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        pos = end
        data = b""
        block = 256 * 1024
        while pos > 0 and data.count(b"\n") <= count and end - pos < max_bytes:
            step = min(block, pos, max_bytes - (end - pos))
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.split(b"\n")
    if pos > 0:
        lines = lines[1:]  # cut mid-line
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln.decode("utf-8", "replace") for ln in lines[-count:]]


@dataclass(frozen=True)
class _LogSource:
    replica: str
    kind: str  # file | docker
    path: str | None = None
    container: str | None = None
    container_id: str | None = None
    docker_host: str | None = None
    metrics_url: str | None = None

    def command(self, settings: Any, lines: int, minutes: int, limit: int) -> str:
        count = (" | grep -F '[GIN]' | awk -F'|' '{gsub(/ /, \"\", $4); print $4}'"
                 f" | sort | uniq -c | sort -rn | head -{limit}")
        if self.kind == "file":
            return f"tail -n {lines} {_q(self.path or '')}{count}"
        host = next((h for h in settings.docker_hosts if h.name == self.docker_host), None)
        cli = "docker" if host is None or host.url.startswith("unix://") else f"docker -H {host.url}"
        since = f" --since {minutes}m" if minutes else ""
        return f"{cli} logs{since} --tail {lines} {self.container} 2>&1{count}"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _log_sources(ctx: ActionContext) -> tuple[list[_LogSource], list[str]]:
    settings = ctx.settings
    sources: dict[str, _LogSource] = {}
    notes: list[str] = []
    for r in settings.replicas:
        if r.log_file:
            sources[r.name] = _LogSource(r.name, "file", path=str(r.log_file), metrics_url=r.metrics_url)
    if settings.discovery.mode != "static":
        from x402console.sources.discovery import discover_containers

        for host in settings.docker_hosts:
            try:
                client = ctx.docker(host.name)
                found = discover_containers(client, settings, host.name)
            except Exception as exc:
                notes.append(f"Docker host {host.name}: cannot list the prover containers: {exc}")
                continue
            for ident in found:
                if ident.name in sources or not ident.container_id:
                    continue
                try:
                    name = client.api.inspect_container(ident.container_id)["Name"].lstrip("/")
                except Exception:
                    name = ident.container_id[:12]
                sources[ident.name] = _LogSource(ident.name, "docker", container=name, container_id=ident.container_id,
                                                 docker_host=host.name, metrics_url=ident.metrics_url)
    for r in settings.replicas:
        if r.name not in sources:
            notes.append(f"{r.name}: no log file configured and no container found, so its requests are not counted")
    return list(sources.values()), notes


def _read_source(ctx: ActionContext, src: _LogSource, lines: int, minutes: int) -> list[str]:
    if src.kind == "file":
        return tail_lines(Path(src.path or ""), lines)
    client = ctx.docker(src.docker_host)
    kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": True, "tail": lines}
    if minutes:
        kwargs["since"] = int(time.time() - minutes * 60)
    raw = client.api.logs(src.container_id, **kwargs)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.splitlines()


_NGINX_LINE = re.compile(r'^(\S+) \S+ \S+ \[([^\]]+)\] "[^"]*" (\d{3}) ')


def count_nginx(lines: Sequence[str], since: datetime | None) -> dict[str, ClientTally]:
    """Requests per client in nginx's access log (combined format), 403s being its own refusals."""
    tallies: dict[str, ClientTally] = {}
    for line in lines:
        m = _NGINX_LINE.match(line)
        if m is None:
            continue
        try:
            ts = datetime.strptime(m.group(2), "%d/%b/%Y:%H:%M:%S %z")
        except ValueError:
            ts = None
        if since is not None and ts is not None and ts < since:
            continue
        tallies.setdefault(m.group(1), ClientTally()).add(int(m.group(3)), "nginx", ts)
    return tallies


async def _scrape_rate_limited(ctx: ActionContext, sources: Sequence[_LogSource]) -> dict[str, Any]:
    """rate_limit_exceeded_total from each replica's /metrics: exported at all, and by IP."""
    from x402console.sources.exposition import parse_exposition

    name = ctx.settings.metrics.rate_limited_total
    exported: list[str] = []
    missing: list[str] = []
    unreachable: list[str] = []
    by_ip: dict[str, float] = {}

    async def one(src: _LogSource) -> None:
        if not src.metrics_url:
            return
        try:
            r = await ctx.http.get(src.metrics_url, timeout=METRICS_TIMEOUT_S)
        except Exception as exc:
            unreachable.append(f"{src.replica} ({type(exc).__name__})")
            return
        if r.status_code != 200:
            unreachable.append(f"{src.replica} (HTTP {r.status_code})")
            return
        fam = parse_exposition(r.content, r.headers.get("content-type")).family(name)
        if fam is None:
            missing.append(src.replica)
            return
        exported.append(src.replica)
        for s in fam.samples:
            if s.name in (name, f"{name}_total", fam.name, f"{fam.name}_total"):
                ip = s.labels.get("ip", "")
                by_ip[ip] = by_ip.get(ip, 0.0) + s.value

    await asyncio.gather(*(one(s) for s in sources))
    return {"metric": name, "exported_by": sorted(exported), "not_exported_by": sorted(missing),
            "unreachable": sorted(unreachable), "total": sum(by_ip.values()),
            "by_ip": dict(sorted(by_ip.items(), key=lambda kv: -kv[1])[:10])}


async def _prometheus_rate(ctx: ActionContext, minutes: int) -> dict[str, Any] | None:
    settings = ctx.settings
    if not settings.prometheus.url:
        return None
    from x402console.sources.promapi import PromAPIError
    from x402console.sources.prometheus import PrometheusSource

    job = settings.prometheus.job.replace("\\", "\\\\").replace('"', '\\"')
    expr = f'sum by (ip) (rate({settings.metrics.rate_limited_total}{{job="{job}"}}[{max(minutes, 1)}m]))'
    try:
        result = await PrometheusSource(settings).query(ctx.http, expr)
    except PromAPIError as exc:
        return {"query": expr, "error": str(exc)}
    rates = {s.metric.get("ip", ""): s.value for s in result.vector}
    return {"query": expr, "per_second_by_ip": dict(sorted(rates.items(), key=lambda kv: -kv[1])[:10]),
            "per_second": sum(rates.values())}


def _metrics_note(ctx: ActionContext, scrape: Mapping[str, Any], prom: Mapping[str, Any] | None, log_429: int) -> str:
    name = scrape["metric"]
    coded = not ctx.settings.prover.honours_env
    if not scrape["exported_by"]:
        if not scrape["not_exported_by"]:
            return f"{name} could not be read from any replica"
        where = ", ".join(scrape["not_exported_by"])
        if coded or log_429:
            # A labelled counter shows no series until it is first incremented, and as coded the
            # 429 path never increments it.
            return (f"{name} has no series on {where}: the coded build never increments it (reference 2.1)"
                    + (f", although the logs show {log_429} answers 429; they are counted from the access log"
                       if log_429 else ""))
        return f"{name} is not exported by {where}"
    per_s = f"; Prometheus: {prom['per_second']:.2f}/s" if prom and "per_second" in prom else ""
    if scrape["total"] == 0 and log_429:
        return (f"{name} is exported but stays at 0 although the logs show {log_429} answers 429: the coded build never "
                f"increments it (reference 2.1); the 429s above are counted from the access log{per_s}")
    if scrape["total"] == 0:
        return f"{name} is 0" + (" (the coded build never increments it, reference 2.1)" if coded else "") + per_s
    top = ", ".join(f"{ip or '?'} {v:g}" for ip, v in list(scrape["by_ip"].items())[:3])
    return f"{name}: {scrape['total']:g} since the replicas started; most: {top}{per_s}"


class TopIPs(Action):
    id: ClassVar[str] = "abuse.top_ips"
    key: ClassVar[str] = "t"
    title: ClassVar[str] = "Top client IPs"
    help: ClassVar[str] = ("The clients sending the most requests (and 429s, 400s) over the replicas' recent log lines, "
                           "with the rate-limit metric and nginx's view: runbook Incident 6 'Identify attacking IPs'. Read-only.")
    pane: ClassVar[str] = PANE
    danger: ClassVar[str] = "safe"
    changes_state: ClassVar[bool] = False
    target_kind: ClassVar[str] = "service"
    param_help: ClassVar[Mapping[str, str]] = {
        "lines": f"log lines read per replica (default {DEFAULT_LINES})",
        "minutes": f"only requests of the last N minutes (default {DEFAULT_MINUTES}; 0 = every line read)",
        "limit": f"how many clients to list (default {DEFAULT_LIMIT})",
        "nginx_access_log": "nginx's access log (default: found from [nginx] test_command's configuration)",
    }

    def targets(self, ctx: ActionContext) -> list[Target]:
        return [Target("service", service_name(ctx.settings))]

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        lines = _int_param(params, "lines", DEFAULT_LINES, 1, 1_000_000)
        minutes = _int_param(params, "minutes", DEFAULT_MINUTES, 0, 7 * 24 * 60)
        limit = _int_param(params, "limit", DEFAULT_LIMIT, 1, 1000)
        sources, notes = await asyncio.to_thread(_log_sources, ctx)
        if not sources:
            raise ActionError("no replica logs to read: no [[replicas]] log_file and no prover container found"
                              + (f" ({'; '.join(notes)})" if notes else ""))
        steps = [PlanStep(f"Count requests per client IP in {s.replica}'s last {lines} log lines"
                          + (f" of the last {minutes} min" if minutes else "")
                          + " (access lines; add `grep -F '| 429 |'` for the limited ones)",
                          s.command(ctx.settings, lines, minutes, limit)) for s in sources]
        name = ctx.settings.metrics.rate_limited_total
        steps.append(PlanStep(f"Read {name} from each replica's /metrics",
                              f"curl -s {sources[0].metrics_url} | grep ^{name}" if sources[0].metrics_url else None))
        if ctx.settings.prometheus.url:
            steps.append(PlanStep(f"Ask Prometheus for its rate by IP over {max(minutes, 1)} min",
                                  f"curl -s {ctx.settings.prometheus.url.rstrip('/')}/api/v1/query --data-urlencode "
                                  f"{_q(f'query=sum by (ip) (rate({name}[{max(minutes, 1)}m]))')}"))
        access_log = params.get("nginx_access_log")
        nginx_log: Path | None = Path(str(access_log)) if access_log else None
        if nginx_log is None and (ctx.settings.nginx.url or deny_path(ctx.settings).exists()):
            nginx_log = await asyncio.to_thread(deny.access_log_of, ctx.settings.nginx.test_command)
        if nginx_log is not None:
            steps.append(PlanStep("Count nginx's own view (403 = refused by a deny line)",
                                  f"tail -n {lines} {_q(nginx_log)} | awk '{{print $1}}' | sort | uniq -c | sort -rn | head -{limit}"))
        return self.make_plan(
            target, steps,
            {"lines": lines, "minutes": minutes, "limit": limit, "sources": [s.as_dict() for s in sources],
             "nginx_access_log": str(nginx_log) if nginx_log else None},
            warnings=tuple(notes),
        )

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        lines, minutes, limit = plan.params["lines"], plan.params["minutes"], plan.params["limit"]
        sources = [_LogSource(**s) for s in plan.params["sources"]]
        since = datetime.now(timezone.utc) - timedelta(minutes=minutes) if minutes else None
        notes: list[str] = []
        by_replica: dict[str, list[str]] = {}
        for i, src in enumerate(sources):
            yield Progress(f"reading {src.replica}'s log", i / (len(sources) + 2))
            try:
                by_replica[src.replica] = await asyncio.to_thread(_read_source, ctx, src, lines, minutes)
            except Exception as exc:
                notes.append(f"{src.replica}: cannot read its log: {getattr(exc, 'strerror', None) or exc}")
        if not by_replica:
            yield Outcome("failed", "no replica log could be read: " + "; ".join(notes), {"notes": notes})
            return
        tallies, info = await asyncio.to_thread(count_clients, by_replica, since)
        if info["app_lines_used"]:
            notes.append(f"no access lines in {', '.join(info['app_lines_used'])}: counted application lines with a "
                         f"client IP instead (a request may count twice)")
        if info["undated"]:
            notes.append(f"{info['undated']} lines had no time and were counted whatever their age")
        protected = await deny.protected_addresses(ctx.settings)
        clients = _ranked(tallies, limit, protected)
        total = sum(t.requests for t in tallies.values())
        total_429 = sum(t.status_429 for t in tallies.values())
        yield Progress("reading the rate-limit metric", (len(sources)) / (len(sources) + 2))
        scrape = await _scrape_rate_limited(ctx, sources)
        prom = await _prometheus_rate(ctx, minutes)
        metrics: dict[str, Any] = {"scrape": scrape, "note": _metrics_note(ctx, scrape, prom, total_429)}
        if prom is not None:
            metrics["prometheus"] = prom
        details: dict[str, Any] = {"clients": clients, "total_requests": total, "total_429": total_429,
                                   "distinct_clients": len(tallies), "minutes": minutes, "lines_per_replica": lines,
                                   "replicas": sorted(by_replica), "metrics": metrics, "notes": notes}
        nginx_log = plan.params.get("nginx_access_log")
        if nginx_log:
            try:
                nlines = await asyncio.to_thread(tail_lines, Path(nginx_log), lines)
                ntallies = count_nginx(nlines, since)
                details["nginx"] = {"access_log": nginx_log, "clients": _ranked(ntallies, limit, protected),
                                    "total_requests": sum(t.requests for t in ntallies.values()),
                                    "refused_403": sum(t.status_403 for t in ntallies.values())}
            except OSError as exc:
                notes.append(f"nginx access log {nginx_log}: {exc.strerror or exc}")
        window = f"the last {minutes} min" if minutes else f"the last {lines} lines per replica"
        if not clients:
            yield Outcome("succeeded", f"no client requests in {window} of {', '.join(sorted(by_replica))}", details)
            return
        head = "; ".join(
            f"{c['ip']} {c['requests']} ({c['share']:.0%}), {c['status_429']}x429"
            + (f", {c['status_400']}x400" if c["status_400"] else "")
            + (f" [{c['protected'].split(' (')[0]}]" if c.get("protected") else "")
            for c in clients[:3])
        summary = (f"{total} requests from {len(tallies)} clients in {window} over {len(by_replica)} replicas; "
                   f"top: {head}. {metrics['note']}")
        if "nginx" in details:
            summary += f". nginx refused {details['nginx']['refused_403']} with 403"
        yield Outcome("succeeded", summary, details)


def service_name(settings: Any) -> str:
    names = [r.name for r in settings.replicas]
    if settings.discovery.mode == "compose":
        return settings.discovery.compose_service
    prefixes = {re.sub(r"-\d+$", "", n) for n in names}
    return prefixes.pop() if len(prefixes) == 1 else "prover"


ACTIONS: tuple[type[Action], ...] = (TopIPs, BlockIP, UnblockIP, ListBlocks)


def actions() -> list[Action]:
    return [cls() for cls in ACTIONS]
