"""Snapshot tests: the console's screens, as text, against golden files in tests/ui/snapshots/.

The app runs headless (`run_test`) with `observe=False`, so no source runs; fixed snapshots go
through the console's own sink, the store's clock is pinned and the time zone is UTC, so
nothing on screen depends on when the test runs. The screen's text comes from Textual's public
`App.export_screenshot()` (SVG): every text element names its row (clip path) and column (x in
cells of 12.2 px, Rich's SVG geometry), which gives back each line as the terminal shows it.

`X402_UPDATE_SNAPSHOTS=1` rewrites the golden files after a deliberate UI change.
"""

from __future__ import annotations

import difflib
import html
import os
import re
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
from textual.app import App
from textual.pilot import Pilot

from x402console.config import load_config
from x402console.sources.logparse import LogRecord
from x402console.sources.models import (
    ComponentState,
    FleetMetrics,
    HealthSample,
    LogBatch,
    RuntimeState,
    SourceStatus,
)
from x402console.ui.console import ConsoleApp

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("X402_UPDATE_SNAPSHOTS", "") == "1"
FIXED_NOW = 1714532400.0  # 2024-05-01 03:00:00 UTC

# ------------------------------------------------------------------ screen text (shared helper)

_CELL = 12.2  # Rich's SVG export: char_height 20 * font_aspect_ratio 0.61
_TEXT = re.compile(r'<text\b([^>]*)>(.*?)</text>', re.S)
_ATTR_X = re.compile(r'\bx="([-\d.]+)"')
_ATTR_ROW = re.compile(r'clip-path="url\(#[^)]*-line-(\d+)\)"')


def screen_lines(app: App) -> list[str]:
    """The text of every row of the app's current screen (dialogs included), right-stripped."""
    svg = app.export_screenshot()
    width, height = app.size
    rows = [[" "] * width for _ in range(height)]
    for attrs, body in _TEXT.findall(svg):
        x, row = _ATTR_X.search(attrs), _ATTR_ROW.search(attrs)
        if x is None or row is None:
            continue  # the window title, not a cell
        y, col = int(row.group(1)), round(float(x.group(1)) / _CELL)
        if not 0 <= y < height:
            continue
        for i, ch in enumerate(html.unescape(body).replace("\xa0", " ")):
            if 0 <= col + i < width:
                rows[y][col + i] = ch
    return ["".join(r).rstrip() for r in rows]


def screen_text(app: App) -> str:
    return "\n".join(screen_lines(app))


@asynccontextmanager
async def running(app: App, size: tuple[int, int] = (160, 45)) -> AsyncIterator[Pilot]:
    """`app.run_test(size=...)` with notifications on: the console's refusals and errors are
    toasts, and tests read them from the screen."""
    async with app.run_test(size=size, notifications=True) as pilot:
        yield pilot


# ------------------------------------------------------------------ fixed data


def write_settings(tmp: Path, extra: str = "") -> Path:
    """A console configuration on tmp: two static replicas, a journal file, no Prometheus."""
    path = tmp / "config.toml"
    path.write_text(
        f"""
[environment]
name = "snapshot"
journal = "{tmp / 'journal.db'}"
operator = "tester"

[discovery]
mode = "static"

[prometheus]
url = ""

[prover]
memory_limit_bytes = 536870912

[[replicas]]
name = "prover-1"
health_url = "http://127.0.0.1:9/health"
metrics_url = "http://127.0.0.1:9/metrics"

[[replicas]]
name = "prover-2"
health_url = "http://127.0.0.1:10/health"
metrics_url = "http://127.0.0.1:10/metrics"
{extra}
"""
    )
    return path


def _ts(second: int) -> datetime:
    return datetime.fromtimestamp(FIXED_NOW - 60 + second, tz=timezone.utc)


def fixed_snapshots() -> list[object]:
    t = FIXED_NOW - 2
    mib = 2**20
    records = []
    for i in range(12):
        replica = "prover-1" if i % 2 == 0 else "prover-2"
        ip = f"203.0.113.{10 + i}"
        records.append(LogRecord(replica=replica, ts=_ts(i), level="info", message=f"Generating proof for {ip}",
                                 client_ip=ip, raw=""))
        records.append(LogRecord(replica=replica, ts=_ts(i), level="info",
                                 message=f"200 POST /generate-proof {80 + i}ms {ip}", client_ip=ip,
                                 http_status=200, raw=""))
    records.append(LogRecord(replica="prover-2", ts=_ts(30), level="error",
                             message="Proof generation failed: witness timeout", raw=""))
    return [
        HealthSample("prover-1", True, t, status_code=200, latency_ms=8.0, status_text="healthy"),
        HealthSample("prover-2", False, t, latency_ms=None, error="connection refused"),
        RuntimeState("prover-1", "running", t, restart_count=0, cpu_percent=1.5, mem_used=29 * mib,
                     mem_limit=512 * mib, mem_percent=5.7),
        RuntimeState("prover-2", "exited", t, restart_count=1, exit_code=2),
        ComponentState("nginx", True, "deny file /etc/nginx/blocked_ips.conf", t),
        SourceStatus("prometheus", False, "Prometheus unreachable: connection refused", None, 5.0, 3),
        FleetMetrics(t, "scrape", proof_rate=4.9, error_rate=0.1, error_ratio=0.021, p50_seconds=0.093,
                     p95_seconds=0.144, rate_limited_rate=None, active_requests=2.0,
                     rss_bytes={"prover-1": 29 * mib}),
        LogBatch(tuple(records)),
    ]


# Values no fixture can pin: the log pane's rate meter decays with wall-clock time. The
# replacement keeps the width of the match and of what follows it up to the border (the text
# after the number moves with the number's width), so borders stay where they are.
_VOLATILE = [(re.compile(r"[\d,.]+ lines/s( *)([^│\n]*)"), "N lines/s")]


def normalise(lines: list[str]) -> str:
    text = "\n".join(lines)
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(
            lambda m, r=replacement: (r + (" " + m.group(2).rstrip() if m.group(2).strip() else "")).ljust(
                len(m.group(0))), text)
    return text.rstrip("\n") + "\n"


@pytest.fixture
def utc(monkeypatch) -> Iterator[None]:
    """Log times are shown in local time: make local time UTC for the test."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def settle(pilot, app: ConsoleApp, condition=lambda: True, timeout: float = 10.0) -> None:
    """Run the app until condition() holds and two frames have gone by."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the console did not reach the expected state")
        await pilot.pause(0.05)
    await pilot.pause(0.3)
    await pilot.pause()


async def settle_on(pilot, app: ConsoleApp, *needles: str, timeout: float = 10.0) -> None:
    """Run the app until every needle is on screen (panes redraw on timers: the header once a
    second, health and metrics every frame tick), then a little more."""
    deadline = time.monotonic() + timeout
    while True:
        text = screen_text(app)
        if all(n in text for n in needles):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"not all of {needles} on screen:\n{text}")
        await pilot.pause(0.1)
    await pilot.pause(0.3)
    await pilot.pause()


async def show_fixed_data(pilot, app: ConsoleApp) -> None:
    await settle(pilot, app, lambda: app.journal is not None)
    for snap in fixed_snapshots():
        app._on_snapshot(snap)  # the sink every source feeds
    # The charts place points against the wall clock (MetricsPane uses time.time()), so no
    # pinned clock makes them repeatable: their histories are emptied before the first frame
    # draws them, and the charts show their axes, thresholds and "no data yet". Charts with
    # data are covered by the pane tests against a live drill.
    for series in app.store.series.values():
        series.points.clear()
    app.store.rss.clear()
    await settle_on(pilot, app, "health 2s", "failing: prometheus")


def compare(name: str, actual: str) -> None:
    golden = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
        return
    if not golden.exists():
        pytest.fail(f"no golden file {golden}; run with X402_UPDATE_SNAPSHOTS=1 to create it", pytrace=False)
    expected = golden.read_text(encoding="utf-8")
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(), "golden", "now",
                                              lineterm=""))
        pytest.fail(f"screen differs from {golden.name} (X402_UPDATE_SNAPSHOTS=1 accepts it):\n{diff}",
                    pytrace=False)


HEALTH = ("1 Service health", "connection refused")
METRICS = ("2 Metrics", "rate 4.9/s")
LOGS = ("3 Logs", "Proof generation failed", "lines 25 ·")
CHECKLIST = ("4 Checklist", "Post-mortem scheduled")
CASES = [
    # name, size, keys pressed before the shot, what must be on screen before it is taken
    ("wide-160x45", (160, 45), [], HEALTH + METRICS + LOGS + CHECKLIST),
    ("health-120x40", (120, 40), ["1"], HEALTH),
    ("metrics-120x40", (120, 40), ["2"], METRICS),
    ("logs-120x40", (120, 40), ["3"], LOGS),
    ("checklist-120x40", (120, 40), ["4"], CHECKLIST),
    ("health-80x24", (80, 24), ["1"], HEALTH),
    ("metrics-80x24", (80, 24), ["2"], METRICS),
    ("logs-80x24", (80, 24), ["3"], LOGS),
]


@pytest.mark.parametrize("name,size,keys,shown", CASES, ids=[c[0] for c in CASES])
async def test_screen_matches_its_snapshot(name: str, size: tuple[int, int], keys: list[str],
                                           shown: tuple[str, ...], tmp_path: Path, utc) -> None:
    app = ConsoleApp(load_config(write_settings(tmp_path)), observe=False)
    app.store.clock = lambda: FIXED_NOW
    async with running(app, size) as pilot:
        await show_fixed_data(pilot, app)
        for key in keys:
            await pilot.press(key)
        await settle_on(pilot, app, *shown)
        compare(name, normalise(screen_lines(app)))


async def test_declare_dialog_snapshot(tmp_path: Path, utc) -> None:
    app = ConsoleApp(load_config(write_settings(tmp_path)), observe=False)
    app.store.clock = lambda: FIXED_NOW
    async with running(app, (80, 24)) as pilot:
        await settle(pilot, app, lambda: app.journal is not None)
        await pilot.press("D")
        await settle(pilot, app, lambda: len(app.screen_stack) > 1)
        compare("declare-dialog-80x24", normalise(screen_lines(app)))


async def test_snapshots_do_not_depend_on_the_clock(tmp_path: Path, utc) -> None:
    """Two renderings a few seconds apart are the same text (else the goldens would flake)."""
    shots = []
    for run in range(2):
        (tmp_path / str(run)).mkdir()
        app = ConsoleApp(load_config(write_settings(tmp_path / str(run))), observe=False)
        app.store.clock = lambda: FIXED_NOW
        async with running(app, (160, 45)) as pilot:
            await show_fixed_data(pilot, app)
            await settle_on(pilot, app, *(HEALTH + METRICS + LOGS + CHECKLIST))
            if run == 1:
                await pilot.pause(2.1)  # the header ticks every second
            shots.append(normalise(screen_lines(app)))
    diff = "\n".join(difflib.unified_diff(shots[0].splitlines(), shots[1].splitlines(), "first", "later",
                                          lineterm=""))
    assert not diff, f"the screen changed with nothing but time passing:\n{diff}"
    assert "prover-1" in shots[0] and "rate 4.9/s" in shots[0]


async def test_screen_lines_reads_cells_back_from_the_svg() -> None:
    """The helper itself: text placed at known cells comes back at those cells."""

    class Probe(App):
        def compose(self):
            from textual.widgets import Static

            yield Static("hello  world\n  x <&> y", id="s")

    app = Probe()
    async with app.run_test(size=(30, 4)) as pilot:
        await pilot.pause()
        lines = screen_lines(app)
    assert lines[:2] == ["hello  world", "  x <&> y"]
    assert len(lines) == 4


async def test_compact_log_pane_shows_its_lines_as_soon_as_it_is_switched_to(tmp_path: Path, utc) -> None:
    """Lines that arrived while the pane was hidden are drawn on switching, not a refresh later."""
    app = ConsoleApp(load_config(write_settings(tmp_path)), observe=False)
    app.store.clock = lambda: FIXED_NOW
    async with running(app, (80, 24)) as pilot:
        await show_fixed_data(pilot, app)
        await pilot.press("3")
        await settle_on(pilot, app, "lines 25 ·")
        await pilot.press("1")
        await settle_on(pilot, app, *HEALTH)
        # ten more lines while the log pane is hidden
        more = tuple(LogRecord(replica="prover-1", ts=_ts(40), level="info", message=f"late line {i}", raw="")
                     for i in range(10))
        app._on_snapshot(LogBatch(more))
        await pilot.pause()
        await pilot.press("3")
        # a few event-loop turns, far less than the 1 s refresh tick
        for _ in range(3):
            await pilot.pause()
        text = screen_text(app)
        assert "lines 35 ·" in text and "late line 9" in text, text
