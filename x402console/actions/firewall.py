"""The firewall rule the runbook gives for Incident 6 (`iptables -A INPUT -s <IP> -j DROP`).

Built here, shown in every block plan as the equivalent command, and run only when
`[firewall] iptables = true`. Rules are inserted (-I) rather than appended (-A): an appended
DROP sits behind any ACCEPT already in the chain (e.g. one for port 80) and never matches.
IPv6 networks go to ip6tables. Each change is checked first with -C so a block is never added
twice and an unblock removes every copy.

This is a library for the abuse actions (abuse.py); it holds no actions itself.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from x402console.actions.nginx_deny import CommandResult, IPNetwork, network_text, run_command

_CHAIN = re.compile(r"^[A-Za-z0-9_.-]{1,28}$")
MAX_DUPLICATES = 16  # an unblock removes at most this many identical rules


class FirewallError(ValueError):
    """The configured firewall command cannot be used as asked; str() says why."""


def command_for(settings: Any, net: IPNetwork) -> list[str]:
    """iptables_command for IPv4; the same with ip6tables for IPv6 (['sudo', 'iptables'] ->
    ['sudo', 'ip6tables'])."""
    cmd = [str(c) for c in settings.firewall.iptables_command]
    if not cmd:
        raise FirewallError("[firewall] iptables_command is empty")
    if net.version == 4:
        return cmd
    for i in range(len(cmd) - 1, -1, -1):
        head, sep, base = cmd[i].rpartition("/")
        if base.startswith("iptables"):
            cmd[i] = f"{head}{sep}ip6{base[2:]}"  # iptables-nft -> ip6tables-nft
            return cmd
    raise FirewallError(f"{net} is IPv6, and no ip6tables command can be made from iptables_command "
                        f"{shlex.join(cmd)} (no element named iptables)")


def chain_of(settings: Any) -> str:
    chain = str(settings.firewall.chain)
    if not _CHAIN.match(chain):
        raise FirewallError(f"[firewall] chain {chain!r} is not an iptables chain name")
    return chain


def rule(settings: Any, net: IPNetwork) -> list[str]:
    return [chain_of(settings), "-s", network_text(net), "-j", "DROP"]


def block_argv(settings: Any, net: IPNetwork) -> list[str]:
    return [*command_for(settings, net), "-I", *rule(settings, net)]


def unblock_argv(settings: Any, net: IPNetwork) -> list[str]:
    return [*command_for(settings, net), "-D", *rule(settings, net)]


def check_argv(settings: Any, net: IPNetwork) -> list[str]:
    return [*command_for(settings, net), "-C", *rule(settings, net)]


def list_argv(settings: Any, version: int = 4) -> list[str]:
    import ipaddress

    probe = ipaddress.ip_network("192.0.2.0/24" if version == 4 else "2001:db8::/32")
    return [*command_for(settings, probe), "-S", chain_of(settings)]


def shown(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def privilege_warning(settings: Any) -> str | None:
    """iptables needs root (CAP_NET_ADMIN); say so before a run fails on it."""
    cmd = [str(c) for c in settings.firewall.iptables_command]
    if os.geteuid() == 0 or (cmd and os.path.basename(cmd[0]) in ("sudo", "doas", "nsenter", "ip")):
        return None
    return (f"iptables needs root and this console runs as uid {os.geteuid()}: the rule will be refused unless "
            f"[firewall] iptables_command runs it with privileges (e.g. [\"sudo\", \"-n\", \"iptables\"])")


_DROP_RULE = re.compile(r"^-A\s+(\S+)\s+-s\s+(\S+)\s+-j\s+DROP\s*$")


def parse_drop_rules(text: str, chain: str) -> list[str]:
    """Sources DROPped in `chain` in `iptables -S` output (only the plain rules this module makes)."""
    out = []
    for line in text.splitlines():
        m = _DROP_RULE.match(line.strip())
        if m and m.group(1) == chain:
            out.append(m.group(2))
    return out


@dataclass
class FirewallReport:
    ok: bool = False
    results: list[CommandResult] = field(default_factory=list)
    summary: str = ""

    def details(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.summary,
                "commands": [{"command": shown(r.argv), "returncode": r.returncode, "output": r.output()}
                             for r in self.results]}


async def present(settings: Any, net: IPNetwork) -> CommandResult:
    return await run_command(check_argv(settings, net))


async def block(settings: Any, net: IPNetwork) -> FirewallReport:
    report = FirewallReport()
    check = await present(settings, net)
    report.results.append(check)
    if check.ok:
        report.ok = True
        report.summary = f"the firewall already drops {network_text(net)} ({chain_of(settings)})"
        return report
    if check.returncode in (126, 127, 124):
        report.summary = f"cannot run {check.argv[0]}: {check.output()}"
        return report
    added = await run_command(block_argv(settings, net))
    report.results.append(added)
    report.ok = added.ok
    report.summary = (f"firewall drops {network_text(net)} (rule inserted at the top of {chain_of(settings)})" if added.ok
                      else f"{shown(added.argv)} failed: {added.output()}")
    return report


async def unblock(settings: Any, net: IPNetwork) -> FirewallReport:
    report = FirewallReport()
    removed = 0
    for _ in range(MAX_DUPLICATES):
        check = await present(settings, net)
        report.results.append(check)
        if not check.ok:
            if check.returncode in (126, 127, 124):
                report.summary = f"cannot run {check.argv[0]}: {check.output()}"
                return report
            break
        deleted = await run_command(unblock_argv(settings, net))
        report.results.append(deleted)
        if not deleted.ok:
            report.summary = f"{shown(deleted.argv)} failed: {deleted.output()}"
            return report
        removed += 1
    report.ok = True
    report.summary = (f"removed {removed} firewall rule{'s' if removed != 1 else ''} dropping {network_text(net)}"
                      if removed else f"the firewall had no rule dropping {network_text(net)}")
    return report
