"""Blocking and unblocking against the drill's real nginx on loopback, through the registry.

Clients come from their own 127.0.0.x source addresses (nginx sees them as $remote_addr), so a
deny line really refuses one of them with 403 while another is still served by the prover. Each
test uses its own source addresses: requests that reach the prover count against its limit of
10 per minute per IP.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rig.drill import drill_options, require_nginx
from x402console.actions.abuse import NeedsConfirmation
from x402console.actions.base import ActionContext, ActionError, Outcome, Plan, Refused, Target
from x402console.actions.registry import Registry, default_registry
from x402console.config import load_config
from x402console.drill.environment import DrillEnvironment
from x402console.journal import Journal

pytestmark = [pytest.mark.nginx, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrillEnvironment]:
    require_nginx()
    env = DrillEnvironment(drill_options(tmp_path_factory.mktemp("abuse-nginx"), nginx="on", replicas=1))
    env.start()
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture
def deny_file(drill: DrillEnvironment) -> Iterator[Path]:
    """The deny file, put back as it was (and nginx reloaded) after each test."""
    path = drill.nginx.deny_file  # type: ignore[union-attr]
    original = path.read_bytes()
    mode = stat.S_IMODE(path.stat().st_mode)
    yield path
    path.write_bytes(original)
    os.chmod(path, mode)
    subprocess.run(drill.nginx.reload_command(), check=False, capture_output=True, timeout=30)  # type: ignore[union-attr]


@pytest.fixture
def registry() -> Registry:
    return default_registry(["x402console.actions.abuse"])


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "journal.db")
    try:
        yield j
    finally:
        await j.close()


@pytest.fixture
async def ctx(drill: DrillEnvironment, journal: Journal) -> AsyncIterator[ActionContext]:
    context = ActionContext(settings=load_config(drill.state.config), journal=journal,
                            drill_runtime=drill.state.runtime_file)
    yield context
    await context.aclose()


async def run(registry: Registry, ctx: ActionContext, action_id: str, target: Target,
              params: dict[str, Any] | None = None) -> tuple[Plan, Outcome]:
    plan = await registry.prepare(action_id, ctx, target, params or {})
    return plan, await registry.execute(plan, ctx.fresh())


def get_from(source: str, drill: DrillEnvironment) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, trust_env=False, timeout=5.0) as client:
        return client.get(drill.nginx.url + "/health")  # type: ignore[union-attr]


def served_by_prover(r: httpx.Response) -> bool:
    # 200 or the prover's own 429 both passed nginx; nginx's refusal is an HTML 403.
    return r.status_code in (200, 429) and r.headers.get("content-type", "").startswith("application/json")


def wait_for(source: str, drill: DrillEnvironment, refused: bool, timeout: float = 5.0) -> httpx.Response:
    """nginx applies a reload in its new workers a moment after `nginx -s reload` returns."""
    deadline = time.monotonic() + timeout
    while True:
        r = get_from(source, drill)
        if (r.status_code == 403) == refused or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


async def test_block_refuses_a_source_and_unblock_serves_it_again(registry, ctx, journal, drill, deny_file) -> None:
    assert served_by_prover(get_from("127.0.0.5", drill))
    original = deny_file.read_bytes()
    os.chmod(deny_file, 0o640)
    target = Target("ip", "127.0.0.5")

    # loopback: the address must be typed as confirmation
    with pytest.raises(NeedsConfirmation, match="loopback") as needed:
        await registry.prepare("abuse.block", ctx, target, {})
    assert needed.value.confirm_text == "127.0.0.5"
    with pytest.raises(Refused, match="does not match"):
        await registry.prepare("abuse.block", ctx, target, {"confirm": "127.0.0.50"})
    assert deny_file.read_bytes() == original

    plan, outcome = await run(registry, ctx, "abuse.block", target, {"confirm": "127.0.0.5", "reason": "drill attacker"})
    assert plan.danger == "destructive"
    assert "+deny 127.0.0.5;  # x402console" in plan.params["file_change"]
    commands = [s.command for s in plan.steps if s.command]
    assert " ".join(drill.nginx.test_command()) in commands  # type: ignore[union-attr]
    assert " ".join(drill.nginx.reload_command()) in commands  # type: ignore[union-attr]
    assert any("iptables -I INPUT -s 127.0.0.5 -j DROP" in s.description for s in plan.steps)
    assert outcome.status == "succeeded", outcome.summary

    text = deny_file.read_text()
    shown = next(line[1:] for line in plan.params["file_change"].splitlines() if line.startswith("+deny"))
    assert text == original.decode() + shown + "\n"  # exactly the line the plan showed
    assert "drill attacker" in shown
    assert stat.S_IMODE(deny_file.stat().st_mode) == 0o640
    assert wait_for("127.0.0.5", drill, refused=True).status_code == 403
    assert served_by_prover(get_from("127.0.0.6", drill))

    with pytest.raises(ActionError, match="already blocked"):
        await registry.prepare("abuse.block", ctx, target, {"confirm": "127.0.0.5"})
    _, listed = await run(registry, ctx, "abuse.list_blocks", Target("file", str(deny_file)))
    assert [e["cidr"] for e in listed.details["entries"]] == ["127.0.0.5"]

    assert [t.name for t in registry.get("abuse.unblock").targets(ctx)] == ["127.0.0.5"]
    plan, outcome = await run(registry, ctx, "abuse.unblock", target)
    assert "-deny 127.0.0.5;" in plan.params["file_change"]
    assert outcome.status == "succeeded", outcome.summary
    assert deny_file.read_bytes() == original
    assert served_by_prover(wait_for("127.0.0.5", drill, refused=False))

    records = [(r.action_id, r.outcome) for r in await journal.actions()]
    # Asking for the typed address (twice: missing, then wrong) is a question, not a refusal:
    # only what ran is recorded.
    assert records == [("abuse.block", "succeeded"), ("abuse.list_blocks", "succeeded"),
                       ("abuse.unblock", "succeeded")]


async def test_a_deny_file_nginx_rejects_is_put_back_byte_for_byte(registry, ctx, drill, deny_file) -> None:
    # someone edited the file by hand and never reloaded: nginx still runs the old configuration
    broken = deny_file.read_bytes() + b"deny 999.1.1.1;\r\n"
    deny_file.write_bytes(broken)
    plan, outcome = await run(registry, ctx, "abuse.block", Target("ip", "127.0.0.7"), {"confirm": "127.0.0.7"})
    assert any("line 2 is not a plain" in w and "999.1.1.1" in w for w in plan.warnings)

    assert outcome.status == "failed"
    assert "nginx rejected the new file" in outcome.summary and "999.1.1.1" in outcome.summary
    nginx = outcome.details["nginx"]
    assert nginx["restored"] and nginx["restore_verified"] and "reload" not in nginx
    assert deny_file.read_bytes() == broken
    # nginx was never reloaded, so it still serves, and 127.0.0.7 is not blocked
    assert served_by_prover(get_from("127.0.0.8", drill))
    assert served_by_prover(get_from("127.0.0.7", drill))


async def test_a_failed_reload_puts_the_file_back_and_reloads_again(registry, ctx, drill, deny_file) -> None:
    original = deny_file.read_bytes()
    nginx = ctx.settings.nginx
    # A reload command nginx refuses: a second `pid` directive given with -g.
    bad = dataclasses.replace(nginx, reload_command=(*nginx.reload_command, "-g", "pid /nonexistent/nginx.pid;"))
    bad_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, nginx=bad))
    _, outcome = await run(registry, bad_ctx, "abuse.block", Target("ip", "127.0.0.9"), {"confirm": "127.0.0.9"})
    assert outcome.status == "failed"
    assert "reloading nginx failed" in outcome.summary and "duplicate" in outcome.summary
    assert "reloading nginx again failed too" in outcome.summary
    details = outcome.details["nginx"]
    assert details["test"]["returncode"] == 0 and details["reload"]["returncode"] != 0
    assert details["restore_reload"]["returncode"] != 0
    assert deny_file.read_bytes() == original
    assert served_by_prover(get_from("127.0.0.9", drill))


async def test_a_read_only_console_lists_blocks_but_cannot_block(registry, drill, journal, deny_file) -> None:
    ctx = ActionContext(settings=load_config(drill.state.config), journal=journal, read_only=True)
    try:
        with pytest.raises(Refused, match="read-only"):
            await registry.prepare("abuse.block", ctx, Target("ip", "203.0.113.7"), {})
        _, listed = await run(registry, ctx, "abuse.list_blocks", Target("file", str(deny_file)))
        assert listed.status == "succeeded" and "blocks nothing" in listed.summary
    finally:
        await ctx.aclose()
    (refused, listed_record) = await journal.actions()
    assert (refused.action_id, refused.outcome) == ("abuse.block", "refused")
    assert refused.detail["reason"].startswith("read-only")


async def test_a_network_is_blocked_and_an_address_inside_it_cannot_be_unblocked_alone(registry, ctx, drill, deny_file) -> None:
    _, outcome = await run(registry, ctx, "abuse.block", Target("ip", "203.0.113.7"), {"cidr": "203.0.113.0/24"})
    assert outcome.status == "succeeded", outcome.summary
    assert "deny 203.0.113.0/24;" in deny_file.read_text()
    with pytest.raises(ActionError, match="already blocked"):
        await registry.prepare("abuse.block", ctx, Target("ip", "203.0.113.99"), {})
    with pytest.raises(ActionError, match="unblock 203.0.113.0/24 instead"):
        await registry.prepare("abuse.unblock", ctx, Target("ip", "203.0.113.7"), {})
    with pytest.raises(ActionError, match="does not contain"):
        await registry.prepare("abuse.block", ctx, Target("ip", "198.51.100.7"), {"cidr": "203.0.112.0/24"})
    with pytest.raises(ActionError, match="host bits set: the network is 198.51.100.0/24"):
        await registry.prepare("abuse.block", ctx, Target("ip", "198.51.100.7"), {"cidr": "198.51.100.7/24"})


async def test_blocking_everything_or_a_huge_range_needs_the_range_typed(registry, ctx, deny_file) -> None:
    original = deny_file.read_bytes()
    with pytest.raises(NeedsConfirmation, match="every IPv4 address") as needed:
        await registry.prepare("abuse.block", ctx, Target("ip", "0.0.0.0/0"), {})
    assert needed.value.confirm_text == "0.0.0.0/0"
    with pytest.raises(NeedsConfirmation, match=r"very wide range \(16,777,216 addresses\)"):
        await registry.prepare("abuse.block", ctx, Target("ip", "10.0.0.0/8"), {})
    with pytest.raises(NeedsConfirmation, match="does not match 10.0.0.0/8"):
        await registry.prepare("abuse.block", ctx, Target("ip", "10.0.0.0/8"), {"confirm": "10.0.0.0/9"})
    plan = await registry.prepare("abuse.block", ctx, Target("ip", "10.0.0.0/8"), {"confirm": "10.0.0.0/8"})
    assert plan.danger == "destructive" and any("very wide range" in w for w in plan.warnings)
    with pytest.raises(ActionError, match="'all' would deny every client"):
        await registry.prepare("abuse.block", ctx, Target("ip", "all"), {})
    assert deny_file.read_bytes() == original  # planning changes nothing
