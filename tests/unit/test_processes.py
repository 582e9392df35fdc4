"""Process records and leftover clean-up, with real child processes."""

import os
import subprocess
import sys
import time

from x402console.drill.processes import ManagedProcess, ProcessRecord, is_same_process, kill_leftover, proc_start_time
from x402console.drill.state import Runtime, StateDir


def test_start_time_identifies_a_process():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        st = proc_start_time(p.pid)
        assert st is not None and is_same_process(p.pid, st)
        assert not is_same_process(p.pid, st + 1)  # a reused PID has another start time
    finally:
        p.kill()
        p.wait()
    assert not is_same_process(p.pid, st)


def test_managed_process_logs_both_streams_and_stops_its_group(tmp_path):
    # The grandchild is started before the marker lines, so it exists when the stop comes.
    code = "import sys,time,subprocess; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); " \
           "print('out', flush=True); print('err', file=sys.stderr, flush=True); time.sleep(60)"
    mp = ManagedProcess("t", [sys.executable, "-c", code], tmp_path / "t.log")
    rec = mp.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"err" not in (tmp_path / "t.log").read_bytes():
        time.sleep(0.05)
    assert b"out" in (tmp_path / "t.log").read_bytes()
    pgid = os.getpgid(rec.pid)
    assert pgid == rec.pid  # its own session, so the stop reaches grandchildren too
    mp.stop(timeout=3)
    assert not mp.alive()
    assert _live_members(pgid) == []


def _live_members(pgid: int) -> list[int]:
    # Killed orphans may stay zombies until init reaps them: count only live members.
    deadline = time.monotonic() + 3
    while True:
        live = []
        for pid in subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split():
            try:
                stat = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            if stat[stat.rfind(")") + 2] != "Z":
                live.append(int(pid))
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.05)


def test_leftovers_of_a_crashed_run_are_stopped(tmp_path):
    # A process that outlived its drill (started without the parent-death signal).
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    state = StateDir(tmp_path)
    state.save_runtime(Runtime(drill_id="old", processes=[ProcessRecord("prover-1", p.pid, proc_start_time(p.pid), [], "")]))
    stopped = state.cleanup_leftovers()
    p.wait(5)
    assert stopped == [f"process prover-1 (pid {p.pid})"]
    assert not state.runtime_file.exists()


def test_a_reused_pid_is_left_alone(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        rec = ProcessRecord("prover-1", p.pid, (proc_start_time(p.pid) or 0) - 5, [], "")
        assert kill_leftover(rec) is False
        assert p.poll() is None
    finally:
        p.kill()
        p.wait()


def test_a_truncated_runtime_file_does_not_stop_the_next_start(tmp_path):
    state = StateDir(tmp_path)
    state.runtime_file.write_text('{"drill_id": "x", "processes": [{"na')
    assert state.cleanup_leftovers() == []
    assert not state.runtime_file.exists()


def test_a_second_drill_on_the_same_state_dir_is_refused(tmp_path):
    import pytest

    from x402console.drill.state import DrillBusy

    a, b = StateDir(tmp_path), StateDir(tmp_path)
    a.lock()
    try:
        with pytest.raises(DrillBusy, match=str(os.getpid())):
            b.lock()
    finally:
        a.unlock()
    b.lock()
    b.unlock()
