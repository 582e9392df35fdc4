"""Several real processes on one journal file: concurrent writers, and writers killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from x402console.journal import Journal, utc_now

REPO = Path(__file__).resolve().parents[2]
PER_WRITER = 200

WRITER = """
import asyncio, json, sys
from x402console.journal import Journal

async def main(path, name, per_writer, total):
    loop = asyncio.get_running_loop()
    j = await Journal.open(path)
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # start together
    seen, last = [], 0

    async def tail():
        nonlocal last
        for e in await j.events_after(last):
            seen.append([e.id, e.summary, e.ts.isoformat()])
            last = e.id

    for i in range(per_writer):
        await j.add_event("observation", f"{name}-{i}", name, details={"i": i})
        await tail()
        # A console writes between other work. Back-to-back commits would let one process keep
        # the lock: SQLite's busy handler sleeps the waiter rather than queueing it.
        await asyncio.sleep(0.002)
    deadline = loop.time() + 30
    while len(seen) < total and loop.time() < deadline:
        await asyncio.sleep(0.02)
        await tail()
    await j.close()
    print(json.dumps(seen), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""

KILLED_AFTER_EVENT = """
import asyncio, sys
from x402console.journal import Journal

async def main(path):
    j = await Journal.open(path)
    ev = await j.add_event("note", "written just before SIGKILL", "alice", details={"pid": __import__("os").getpid()})
    print(ev.id, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # wait to be killed

asyncio.run(main(sys.argv[1]))
"""

KILLED_DURING_ACTION = """
import asyncio, sys
from x402console.journal import Journal

async def main(path):
    j = await Journal.open(path)
    await j.register_operator("commander")
    inc = await j.declare_incident("Service down", "P0", "bob@ops2")
    rid = await j.action_started("restart_container", "prover-1", "bob@ops2", inc.id)
    print(inc.id, rid, j.origin, flush=True)
    # The action "runs" here; the process dies before recording an outcome.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
async def spawn():
    """Start `python -c SCRIPT args...`; every process is killed and reaped at teardown."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(script: str, *args: str) -> asyncio.subprocess.Process:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, *args, cwd=REPO, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def read_line(proc: asyncio.subprocess.Process, timeout: float = 30) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        err = await proc.stderr.read() if proc.stderr else b""
        raise AssertionError(f"child exited ({await proc.wait()}) without output: {err.decode(errors='replace')}")
    return line.decode().strip()


async def kill9(proc: asyncio.subprocess.Process) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL


async def test_two_processes_write_200_each_and_both_tail_all_400_in_order(tmp_path, spawn):
    path = tmp_path / "shared" / "journal.db"  # neither exists yet: both processes create it at once
    total = 2 * PER_WRITER
    writers = [await spawn(WRITER, str(path), name, str(PER_WRITER), str(total)) for name in ("A", "B")]
    for w in writers:
        assert await read_line(w) == "ready"
    for w in writers:
        assert w.stdin is not None
        w.stdin.write(b"go\n")
        await w.stdin.drain()
    seen_by = [json.loads(await read_line(w, timeout=60)) for w in writers]
    for w in writers:
        assert await asyncio.wait_for(w.wait(), 10) == 0

    j = await Journal.open(path)
    try:
        everything = await j.events_after(0)
        by_time = await j.events()
    finally:
        await j.close()
    ids = [e.id for e in everything]
    summaries = [e.summary for e in everything]
    assert len(everything) == total
    assert ids == sorted(set(ids))
    assert sorted(summaries) == sorted(f"{n}-{i}" for n in "AB" for i in range(PER_WRITER))
    for name in "AB":  # each writer's own events appear in the order it wrote them
        mine = [e for e in everything if e.actor == name]
        assert [e.summary for e in mine] == [f"{name}-{i}" for i in range(PER_WRITER)]
        assert [e.origin_seq for e in mine] == list(range(1, PER_WRITER + 1))
        assert len({e.origin for e in mine}) == 1
    # The two writers really interleaved (otherwise this test proves little about concurrency).
    switches = sum(1 for a, b in zip(everything, everything[1:]) if a.actor != b.actor)
    assert switches > 1
    # Timestamps are taken under the write lock, so time order and commit (id) order agree.
    assert [e.id for e in by_time] == ids
    # Each tailing console saw exactly the committed sequence: nothing missed, nothing twice.
    for seen in seen_by:
        assert [s[0] for s in seen] == ids
        assert [s[1] for s in seen] == summaries


async def test_an_event_survives_sigkill_right_after_add_event_returns(tmp_path, spawn):
    path = tmp_path / "journal.db"
    child = await spawn(KILLED_AFTER_EVENT, str(path))
    event_id = int(await read_line(child))
    await kill9(child)
    j = await Journal.open(path)
    try:
        found = [e for e in await j.events() if e.id == event_id]
        assert [(e.summary, e.details["pid"]) for e in found] == [("written just before SIGKILL", child.pid)]
    finally:
        await j.close()


async def test_an_action_cut_off_by_sigkill_is_marked_unknown(tmp_path, spawn):
    path = tmp_path / "journal.db"
    child = await spawn(KILLED_DURING_ACTION, str(path))
    incident_id, record_id, child_origin = (await read_line(child)).split()
    incident_id, record_id = int(incident_id), int(record_id)
    await kill9(child)

    offset = timedelta(0)
    j = await Journal.open(path, clock=lambda: utc_now() + offset)
    try:
        (pending,) = await j.open_actions()
        assert (pending.id, pending.outcome, pending.origin) == (record_id, "started", child_origin)
        # The dead console's heartbeat is still fresh: it may only be slow, so nothing is marked.
        assert await j.mark_unfinished_unknown(stale_after=60) == ()
        offset = timedelta(seconds=120)
        (marked,) = await j.mark_unfinished_unknown(stale_after=60)
        assert (marked.id, marked.outcome) == (record_id, "unknown")
        assert await j.open_actions() == ()
        last = (await j.events(incident_id))[-1]
        assert last.kind == "action_finished"
        assert last.summary == "restart_container on prover-1: started, outcome unknown"
        assert last.details["record_id"] == record_id
        assert await j.mark_unfinished_unknown(stale_after=60) == ()  # once only
    finally:
        await j.close()
