"""FileWake: inotify wake-ups for the log file follower, on real files in a temporary directory."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from x402console.sources.file_wake import FileWake


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "prover.log"
    path.write_text("")
    return path


@pytest.fixture
def wake(log: Path) -> Iterator[FileWake]:
    watch = FileWake([log])
    assert watch.watching, watch.error
    yield watch
    watch.close()


def later(seconds: float, fn) -> threading.Timer:
    t = threading.Timer(seconds, fn)
    t.start()
    return t


def test_an_append_wakes_the_waiter_before_the_timeout(log: Path, wake: FileWake) -> None:
    assert wake.wait(0.05) is False  # nothing happened yet
    t = later(0.1, lambda: log.open("a").write("second\n"))
    started = time.monotonic()
    assert wake.wait(5.0) is True
    assert time.monotonic() - started < 2.0
    t.join()


def test_a_write_before_the_wait_is_not_lost(log: Path, wake: FileWake) -> None:
    with log.open("a") as f:
        f.write("between the read and the wait\n")
    assert wake.wait(5.0) is True
    assert wake.wait(0.05) is False  # drained: the next wait sleeps again


def test_other_files_in_the_directory_do_not_wake_it(log: Path, wake: FileWake) -> None:
    (log.parent / "unrelated.txt").write_text("noise\n")
    assert wake.wait(0.2) is False


def test_rotation_and_recreation_wake_it(log: Path, wake: FileWake) -> None:
    os.rename(log, log.parent / "prover.log.1")
    assert wake.wait(2.0) is True
    log.write_text("new file\n")
    assert wake.wait(2.0) is True


def test_interrupt_ends_a_long_wait_promptly(wake: FileWake) -> None:
    t = later(0.1, wake.interrupt)
    started = time.monotonic()
    assert wake.wait(30.0) is False
    assert time.monotonic() - started < 5.0
    t.join()


def test_a_missing_directory_is_reported_and_falls_back_to_sleeping(tmp_path: Path) -> None:
    wake = FileWake([tmp_path / "no-such-dir" / "prover.log"])
    try:
        assert not wake.watching
        assert "no-such-dir" in (wake.error or "")
        started = time.monotonic()
        assert wake.wait(0.1) is False
        assert time.monotonic() - started >= 0.09
    finally:
        wake.close()
