"""The firewall side of abuse.block / abuse.unblock, with real iptables, in a private network
namespace (`unshare -n`): the rules never touch this machine's own firewall.

Inside the namespace only loopback exists: a TCP server listens on 127.0.0.1, and connections
come from chosen 127.0.0.x source addresses. A DROP rule for one source makes its connection
time out while another source still connects. nginx is not configured there (the deny file's
directory does not exist), so the firewall is the only layer.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.rig.components import missing

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def _connects(source: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        s.bind((source, 0))
        try:
            s.connect(("127.0.0.1", port))
            return True
        except OSError:  # timeout included: a dropped SYN is never answered
            return False


def _iptables_s(cmd: str = "iptables") -> list[str]:
    out = subprocess.run([cmd, "-S", "INPUT"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("-A")]


async def _flow(results: dict[str, Any]) -> None:
    from x402console.actions.abuse import NeedsConfirmation
    from x402console.actions.base import ActionContext, ActionError, Target
    from x402console.actions.registry import default_registry
    from x402console.settings.model import Discovery, FirewallSettings, NginxSettings, PrometheusSettings, Settings

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]

    def accept_forever() -> None:
        while True:
            listener.accept()[0].close()

    threading.Thread(target=accept_forever, daemon=True).start()

    tmp = Path(tempfile.mkdtemp())
    settings = Settings(
        nginx=NginxSettings(deny_file=tmp / "no-nginx-here" / "blocked_ips.conf"),
        firewall=FirewallSettings(iptables=True),
        prometheus=PrometheusSettings(url=None),
        discovery=Discovery(mode="static"),
        docker_hosts=(),
    )
    reg = default_registry(["x402console.actions.abuse"])
    ctx = ActionContext(settings=settings)

    async def run(action_id: str, name: str, params: dict[str, Any] | None = None) -> Any:
        plan = await reg.prepare(action_id, ctx, Target("ip" if action_id != "abuse.list_blocks" else "file", name),
                                 params or {})
        return plan, await reg.execute(plan, ctx.fresh())

    results["before"] = [_connects("127.0.0.5", port), _connects("127.0.0.6", port)]
    try:
        await reg.prepare("abuse.block", ctx, Target("ip", "127.0.0.5"), {})
    except NeedsConfirmation as exc:
        results["unconfirmed"] = str(exc)
    plan, outcome = await run("abuse.block", "127.0.0.5", {"confirm": "127.0.0.5"})
    results["block_commands"] = [s.command for s in plan.steps if s.command]
    results["block_warnings"] = list(plan.warnings)
    results["block"] = [outcome.status, outcome.summary]
    results["rules_after_block"] = _iptables_s()
    results["after_block"] = [_connects("127.0.0.5", port), _connects("127.0.0.6", port)]
    try:
        await reg.prepare("abuse.block", ctx, Target("ip", "127.0.0.5"), {"confirm": "127.0.0.5"})
    except ActionError as exc:
        results["again"] = str(exc)
    _, v6 = await run("abuse.block", "2001:db8::7")
    results["v6"] = [v6.status, v6.summary, _iptables_s("ip6tables")]
    _, listed = await run("abuse.list_blocks", str(settings.nginx.deny_file))
    results["listed"] = [listed.summary, listed.details.get("firewall")]
    plan, outcome = await run("abuse.unblock", "127.0.0.5")
    results["unblock_commands"] = [s.command for s in plan.steps if s.command]
    results["unblock"] = [outcome.status, outcome.summary]
    results["rules_after_unblock"] = _iptables_s()
    results["after_unblock"] = [_connects("127.0.0.5", port), _connects("127.0.0.6", port)]
    try:
        await reg.prepare("abuse.unblock", ctx, Target("ip", "127.0.0.5"), {})
    except ActionError as exc:
        results["unblock_again"] = str(exc)
    await ctx.aclose()


def _inside() -> None:
    """Runs in the private namespace; prints the observations as one JSON line."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    results: dict[str, Any] = {}
    asyncio.run(_flow(results))
    print(json.dumps(results))


def test_firewall_block_and_unblock_in_a_private_network_namespace() -> None:
    if os.geteuid() != 0:
        missing("iptables", "needs root to use a private network namespace")
    for binary in ("unshare", "iptables", "ip6tables", "ip"):
        if shutil.which(binary) is None:
            missing(binary, f"no `{binary}` binary")
    probe = subprocess.run(["unshare", "-n", "iptables", "-S", "INPUT"], capture_output=True, text=True)
    if probe.returncode != 0:
        missing("iptables", f"iptables does not work in a private namespace here: {probe.stderr.strip()}")

    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c",
         "from tests.integration.test_abuse_firewall_netns import _inside; _inside()"],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout.strip().splitlines()[-1])

    assert r["before"] == [True, True]
    assert "loopback" in r["unconfirmed"]
    assert r["block_commands"] == ["iptables -I INPUT -s 127.0.0.5 -j DROP"]
    assert any("nginx is not changed" in w for w in r["block_warnings"])
    assert r["block"][0] == "succeeded", r["block"]
    assert r["rules_after_block"] == ["-A INPUT -s 127.0.0.5/32 -j DROP"]
    assert r["after_block"] == [False, True]
    assert "already blocked" in r["again"]
    assert r["v6"][0] == "succeeded" and r["v6"][2] == ["-A INPUT -s 2001:db8::7/128 -j DROP"]
    assert r["listed"][1] == ["127.0.0.5/32", "2001:db8::7/128"]
    assert r["unblock_commands"] == ["iptables -D INPUT -s 127.0.0.5 -j DROP"]
    assert r["unblock"][0] == "succeeded" and "removed 1 firewall rule" in r["unblock"][1]
    assert r["rules_after_unblock"] == []
    assert r["after_unblock"] == [True, True]
    assert "blocked neither" in r["unblock_again"]
    # this machine's own firewall was never touched
    assert "127.0.0.5" not in subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
