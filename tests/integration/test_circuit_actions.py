"""Circuit actions with real files and real processes: the drill's keys before and after the
vk_change fault, and verify/test commands that print, fail, hang and leave children behind."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from x402console.actions.base import ActionContext, ActionError, Outcome, Plan, Progress, Target
from x402console.actions.circuits import circuits_dir
from x402console.actions.registry import Registry, default_registry
from x402console.config import load_config
from x402console.settings.model import CircuitSettings, Environment, Settings

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def registry() -> Registry:
    return default_registry(["x402console.actions.circuits"])


async def run(registry: Registry, ctx: ActionContext, action_id: str, target: Target,
              params: dict[str, Any] | None = None, on_progress: Any = None) -> tuple[Plan, Outcome, list[Progress]]:
    plan = await registry.prepare(action_id, ctx, target, params or {})
    progress: list[Progress] = []

    def seen(p: Progress) -> None:
        progress.append(p)
        if on_progress is not None:
            on_progress(p)

    outcome = await registry.execute(plan, ctx, seen)
    return plan, outcome, progress


def settings_in(tmp: Path, **circuits: Any) -> Settings:
    circuits.setdefault("workdir", tmp)
    return Settings(environment=Environment(journal=tmp / "state" / "journal.db"), circuits=CircuitSettings(**circuits))


def py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


# --------------------------------------------------------------------------- compare_vk


async def test_compare_vk_before_during_and_after_the_vk_change_fault(registry, drill_factory) -> None:
    drill = drill_factory(replicas=1)
    ctx = ActionContext(settings=load_config(drill.state.config))
    keys = drill.state.keys
    try:
        (target,) = registry.get("circuits.compare_vk").targets(ctx)
        assert target == Target("file", str(keys / "verification_key.json"))
        assert target.detail["trusted"] == str(keys / "backup" / "verification_key.json")

        plan, same, _ = await run(registry, ctx, "circuits.compare_vk", target)
        assert plan.changes_state is False
        assert plan.steps[0].command == f"sha256sum {keys}/verification_key.json {keys}/backup/verification_key.json"
        assert plan.steps[1].command == f"diff {keys}/verification_key.json {keys}/backup/verification_key.json"
        assert same.status == "succeeded" and same.summary.startswith("verification key matches the trusted copy")
        assert same.details["current_sha256"] == same.details["trusted_sha256"]

        drill.control(drill.replicas[0]).set_fault("vk_change")
        _, changed, _ = await run(registry, ctx, "circuits.compare_vk", target)
        assert changed.status == "failed"
        assert changed.summary.startswith("verification key differs from the trusted copy: 1 value in vk_delta_2")
        (diff,) = changed.details["differences"]
        assert diff["path"] == "vk_delta_2[0][0]" and diff["kind"] == "changed"
        now = json.loads((keys / "verification_key.json").read_text())["vk_delta_2"][0][0]
        trusted = json.loads((keys / "backup" / "verification_key.json").read_text())["vk_delta_2"][0][0]
        assert diff["current"].startswith(f'"{now[:8]}') and diff["trusted"].startswith(f'"{trusted[:8]}')
        assert diff["current"].endswith(f'{now[-8:]}" ({len(now)} chars)')
        assert changed.details["current_sha256"] != changed.details["trusted_sha256"]
        assert "vk_delta_2[0][0]: " in changed.summary

        drill.control(drill.replicas[0]).clear_fault("vk_change")
        _, restored, _ = await run(registry, ctx, "circuits.compare_vk", target)
        assert restored.status == "succeeded"
    finally:
        await ctx.aclose()


async def test_compare_vk_bad_files_give_clear_errors(registry, tmp_path) -> None:
    good = tmp_path / "trusted.json"
    vk = {"protocol": "groth16", "curve": "bn128", "nPublic": 1, "vk_alpha_1": ["1", "2", "1"],
          "vk_beta_2": [["1", "2"]], "vk_gamma_2": [["1", "2"]], "vk_delta_2": [["1", "2"]],
          "vk_alphabeta_12": [], "IC": [["1", "2", "1"], ["3", "4", "1"]]}
    good.write_text(json.dumps(vk, indent=1))
    current = tmp_path / "vk.json"
    ctx = ActionContext(settings=settings_in(tmp_path, verification_key=current, trusted_verification_key=good))

    async def compare() -> Outcome:
        (target,) = registry.get("circuits.compare_vk").targets(ctx)
        return (await run(registry, ctx, "circuits.compare_vk", target))[1]

    missing = await compare()
    assert missing.status == "failed"
    assert missing.summary == f"verification key not found: {current} ([circuits] verification_key)"

    current.write_text('{"protocol": "groth16",\n "curve": }')
    broken = await compare()
    assert broken.summary == f"verification key {current} is not valid JSON: line 2 column 11: Expecting value"

    current.write_bytes(b"\xff\xfe{}")
    assert "is not UTF-8 text" in (await compare()).summary

    # same values, other formatting: not a different key
    current.write_text(json.dumps(vk))
    formatting = await compare()
    assert formatting.status == "succeeded" and "differ only in formatting" in formatting.summary

    # a key of the wrong shape is said even when it differs elsewhere
    current.write_text(json.dumps({**vk, "IC": vk["IC"][:1], "nPublic": 1}))
    shape = await compare()
    assert shape.status == "failed" and "current key: IC has 1 entries, nPublic 1 needs 2" in shape.summary
    assert [d["path"] for d in shape.details["differences"]] == ["IC[1]"]

    good.unlink()
    gone = await compare()
    assert gone.summary == f"trusted copy not found: {good} ([circuits] trusted_verification_key)"

    with pytest.raises(ActionError, match="are the same file"):
        await registry.prepare("circuits.compare_vk", ctx, Target("file", str(good), {"trusted": str(good)}))


# --------------------------------------------------------------------------- verify / test


async def test_verify_streams_lines_and_passes_on_exit_0(registry, tmp_path) -> None:
    code = "import sys\nfor i in range(3): print(f'check {i} ok', flush=True)\nprint('\\x1b]0;owned\\x07warning', file=sys.stderr)"
    ctx = ActionContext(settings=settings_in(tmp_path, verify_command=py(code)), read_only=True)
    (target,) = registry.get("circuits.verify").targets(ctx)
    assert target == Target("environment", str(tmp_path))
    plan, outcome, progress = await run(registry, ctx, "circuits.verify", target)
    assert plan.changes_state is False  # allowed in a read-only console
    assert plan.steps[0].command.startswith(f"cd {tmp_path} && {sys.executable} -c ")
    assert outcome.status == "succeeded", outcome.summary
    messages = [p.message for p in progress]
    assert messages[1:4] == ["check 0 ok", "check 1 ok", "check 2 ok"]
    assert messages[4] == "␛warning"  # the terminal title sequence never reaches the screen
    assert outcome.details["exit_code"] == 0 and outcome.details["lines"] == 4
    (log,) = outcome.artifacts
    assert Path(log).parent == circuits_dir(ctx.settings) == tmp_path / "state" / "evidence" / "circuits"
    text = Path(log).read_text()
    assert "check 2 ok" in text and text.splitlines()[-1].startswith("[exited: exit code 0 after ")


async def test_test_command_failure_gives_the_exit_code_and_last_line(registry, tmp_path) -> None:
    code = "print('proof 1 verified', flush=True); print('proof 2 INVALID', flush=True); raise SystemExit(1)"
    ctx = ActionContext(settings=settings_in(tmp_path, test_command=py(code)))
    (target,) = registry.get("circuits.test").targets(ctx)
    _, outcome, _ = await run(registry, ctx, "circuits.test", target)
    assert outcome.status == "failed"
    assert outcome.summary.endswith("failed with exit code 1; last line: proof 2 INVALID")
    assert outcome.details["tail"] == ["proof 1 verified", "proof 2 INVALID"]


async def test_cancel_stops_the_whole_process_group(registry, tmp_path) -> None:
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            "print('child', child.pid, flush=True)\n"
            "time.sleep(120)")
    ctx = ActionContext(settings=settings_in(tmp_path, verify_command=py(code)))
    (target,) = registry.get("circuits.verify").targets(ctx)
    child: list[int] = []

    def on_progress(p: Progress) -> None:
        if p.message.startswith("child "):
            child.append(int(p.message.split()[1]))
            ctx.cancel.set()

    _, outcome, _ = await asyncio.wait_for(run(registry, ctx, "circuits.verify", target, on_progress=on_progress), 30)
    assert outcome.status == "cancelled" and "process group stopped" in outcome.summary
    assert wait_gone(outcome.details["pid"]) and wait_gone(child[0])
    assert Path(outcome.artifacts[0]).read_text().splitlines()[-1].startswith("[cancelled: ")


async def test_a_console_that_stops_waiting_takes_the_command_down_too(registry, tmp_path) -> None:
    code = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(120)"
    ctx = ActionContext(settings=settings_in(tmp_path, verify_command=py(code)))
    (target,) = registry.get("circuits.verify").targets(ctx)
    plan = await registry.prepare("circuits.verify", ctx, target)
    pids: list[int] = []
    task = asyncio.ensure_future(registry.execute(
        plan, ctx, lambda p: pids.append(int(p.message.split()[1])) if p.message.startswith("pid ") else None))
    deadline = time.monotonic() + 20
    while not pids and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert pids
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_gone(pids[0])
    (log,) = circuits_dir(ctx.settings).iterdir()  # the output so far is kept, under its final name
    assert log.name.startswith("verify-") and log.read_text().splitlines()[-1].startswith("[interrupted: ")


async def test_timeout_stops_the_command(registry, tmp_path) -> None:
    code = "import time; print('started', flush=True); time.sleep(120)"
    ctx = ActionContext(settings=settings_in(tmp_path, test_command=py(code)))
    (target,) = registry.get("circuits.test").targets(ctx)
    _, outcome, _ = await asyncio.wait_for(run(registry, ctx, "circuits.test", target, {"timeout": 1}), 30)
    assert outcome.status == "failed"
    assert outcome.summary.endswith("timed out after 1 s and was stopped; last line: started")
    assert wait_gone(outcome.details["pid"])


async def test_a_background_child_does_not_keep_the_action_waiting(registry, tmp_path) -> None:
    # The command exits at once but leaves a child holding its output pipe open.
    code = ("import subprocess, sys\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            "print('left', c.pid, flush=True)")
    ctx = ActionContext(settings=settings_in(tmp_path, verify_command=py(code)))
    (target,) = registry.get("circuits.verify").targets(ctx)
    _, outcome, progress = await asyncio.wait_for(run(registry, ctx, "circuits.verify", target, {"timeout": 60}), 20)
    assert outcome.status == "succeeded", outcome.summary
    leftover = int(next(p.message for p in progress if p.message.startswith("left ")).split()[1])
    assert wait_gone(leftover)


async def test_unconfigured_or_unrunnable_commands_are_explained(registry, tmp_path) -> None:
    ctx = ActionContext(settings=settings_in(tmp_path))
    (target,) = registry.get("circuits.verify").targets(ctx)
    with pytest.raises(ActionError) as verify:
        await registry.prepare("circuits.verify", ctx, target)
    assert "[circuits] verify_command is not configured" in str(verify.value)
    assert "`npm run verify` does not exist in the real repository" in str(verify.value)
    with pytest.raises(ActionError) as test:
        await registry.prepare("circuits.test", ctx, target)
    assert "`npm run test:circuit` does not exist" in str(test.value) and '["npm", "test"]' in str(test.value)

    ctx = ActionContext(settings=settings_in(tmp_path, verify_command=("no-such-program-x402",)))
    with pytest.raises(ActionError, match="no program 'no-such-program-x402'"):
        await registry.prepare("circuits.verify", ctx, target)
    ctx = ActionContext(settings=settings_in(tmp_path, verify_command=py("pass"), workdir=tmp_path / "absent"))
    with pytest.raises(ActionError, match=r"circuits directory .*absent does not exist"):
        await registry.prepare("circuits.verify", ctx, Target("environment", str(tmp_path / "absent")))
    ctx = ActionContext(settings=settings_in(tmp_path, verify_command=py("pass")))
    for bad in (0, "soon", True):
        with pytest.raises(ActionError, match="timeout must be"):
            await registry.prepare("circuits.verify", ctx, target, {"timeout": bad})
    assert not os.path.exists(tmp_path / "state" / "evidence")


async def test_runs_are_journaled_with_their_evidence_beside_the_journal(registry, tmp_path) -> None:
    from x402console.journal import Journal

    journal = await Journal.open(tmp_path / "elsewhere" / "journal.db")
    try:
        incident = await journal.declare_incident("invalid proofs", "P0", journal.actor, security=True)
        settings = settings_in(tmp_path, verify_command=py("print('constraints ok')"))
        # an observer's read-only console, in a security incident before any evidence bundle:
        # a check is still allowed (it changes nothing)
        ctx = ActionContext(settings=settings, journal=journal, incident_id=incident.id, incident_security=True,
                            read_only=True)
        (target,) = registry.get("circuits.verify").targets(ctx)
        _, outcome, _ = await run(registry, ctx, "circuits.verify", target)
        assert outcome.status == "succeeded", outcome.summary
        (log,) = outcome.artifacts
        assert Path(log).parent == tmp_path / "elsewhere" / "evidence" / "circuits"
        (record,) = await journal.actions(incident.id)
        assert (record.action_id, record.outcome, record.target) == ("circuits.verify", "succeeded", str(tmp_path))
        detail = json.loads(record.detail_json)
        assert detail["artifacts"] == [log] and detail["details"]["exit_code"] == 0
    finally:
        await journal.close()
