"""The timeline screen against a real journal file (headless Pilot, a tiny host app).

Each test opens a journal in tmp_path, writes events through the journal's own API, pushes
the screen and drives it with keys; what it shows is read back from the screen's text and
what it writes from the journal file and the export file. A second Journal handle on the
same file stands for another console on the same box.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

import pytest
from textual.app import App
from textual.widgets import Checkbox, Input

from x402console.journal import Journal
from x402console.ui.screens.timeline import TimelineScreen, default_export_name
from x402console.ui.screens.timeline_view import TimelineView, time_cell

from tests.ui.test_console_snapshots import running, screen_text

ME = "alice@ops1"
OSC52_PAYLOAD = "SGFja2VkIGNsaXBib2FyZA=="


class Host(App):
    """Pushes the timeline screen at start, as the console does on `T`."""

    def __init__(self, journal: Journal, incident_id: int | None, *, can_write: bool = True,
                 actor: str = ME) -> None:
        super().__init__()
        self.journal = journal
        self.incident_id = incident_id
        self.can_write = can_write
        self.actor = actor

    def on_mount(self) -> None:
        self.push_screen(TimelineScreen(self.journal, self.incident_id, can_write=self.can_write, actor=self.actor))

    @property
    def timeline(self) -> TimelineScreen:
        screen = self.screen
        assert isinstance(screen, TimelineScreen), screen
        return screen


async def until(pilot, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def on_screen(pilot, app: App, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = screen_text(app)
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not on screen:\n{text}")
        await pilot.pause(0.05)


async def loaded(pilot, app: Host) -> TimelineScreen:
    await until(pilot, lambda: isinstance(app.screen, TimelineScreen) and app.screen.loaded, "the timeline to load")
    return app.timeline


def count_text(app: Host) -> str:
    return str(app.timeline.query_one("#timeline-count").render())


@pytest.fixture
async def journal(tmp_path: Path):
    j = await Journal.open(tmp_path / "journal.db")
    yield j
    await j.close()


async def seed(j: Journal) -> tuple[int, int]:
    """Two incidents and an environment-wide observation; returns the incident ids."""
    one = await j.declare_incident("prover-1 down", "P1", ME)
    two = await j.declare_incident("slow proofs", "P2", "bob@ops2")
    await j.add_event("observation", "prover-1 health probe failing", "console", one.id, {"replica": "prover-1"})
    await j.add_event("note", "restarting prover-1 after evidence", ME, one.id)
    await j.add_event("escalation", "paged the backup on-call", "bob@ops2", one.id)
    await j.add_event("observation", "disk 91% full on ops box", "console", None)
    await j.add_event("note", "latency from the vk file check", "bob@ops2", two.id)
    return one.id, two.id


# ------------------------------------------------------------------ listing and filtering


async def test_lists_the_incidents_events_and_toggles_to_everything(journal: Journal) -> None:
    one, _ = await seed(journal)
    app = Host(journal, one)
    async with running(app, size=(140, 40)) as pilot:
        await loaded(pilot, app)
        text = await on_screen(pilot, app, "4 of 4 events")
        assert "prover-1 health probe failing" in text
        assert "restarting prover-1 after evidence" in text
        assert "paged the backup on-call" in text
        assert "Incident #1 declared: prover-1 down" in text
        # Another incident's events and environment-wide ones are not this incident's timeline.
        assert "disk 91% full" not in text and "latency from the vk" not in text
        # Newest at the bottom: rows follow timeline order on screen.
        assert text.index("health probe failing") < text.index("restarting prover-1") < text.index("paged the backup")
        assert re.search(r"^\s*(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d status_changed ", text, re.M), "UTC HH:MM:SS"

        await pilot.press("a")
        text = await on_screen(pilot, app, "7 of 7 events")
        assert "disk 91% full on ops box" in text and "latency from the vk file check" in text
        assert "everything" in text
        await pilot.press("a")
        await on_screen(pilot, app, "4 of 4 events")


async def test_filters_by_kind_actor_and_text_and_counts(journal: Journal) -> None:
    one, _ = await seed(journal)
    app = Host(journal, one)
    async with running(app, size=(140, 40)) as pilot:
        screen = await loaded(pilot, app)
        await on_screen(pilot, app, "4 of 4 events")

        await pilot.press("1")  # hide observations
        text = await on_screen(pilot, app, "3 of 4 events")
        assert "health probe failing" not in text and "restarting prover-1" in text
        await pilot.press("k")  # every kind again
        await on_screen(pilot, app, "4 of 4 events")

        await pilot.press("slash")
        assert app.focused is screen.query_one("#timeline-text")
        await pilot.press(*"EVIDENCE")  # case-insensitive, as in the export
        text = await on_screen(pilot, app, "1 of 4 events")
        assert "restarting prover-1 after evidence" in text and "paged the backup" not in text

        await pilot.press("escape")  # leaves the box for the list; the filter stays, the screen too
        assert app.focused is screen.query_one(TimelineView)
        assert isinstance(app.screen, TimelineScreen) and "1 of 4 events" in count_text(app)
        await pilot.press("c")
        await on_screen(pilot, app, "4 of 4 events")

        await pilot.press("u")
        await pilot.press(*"bob")  # the user part of bob@ops2 matches
        text = await on_screen(pilot, app, "1 of 4 events")
        assert "paged the backup on-call" in text and "restarting" not in text
        # Narrowing by kind as well: bob wrote no notes on this incident.
        await pilot.press("enter", "1", "2", "3", "5", "6", "7", "8", "9", "0")
        await on_screen(pilot, app, "0 of 4 events")
        assert screen.filter.kinds == frozenset({"note"})
        assert screen.filter.actors == frozenset({"bob"})


# ------------------------------------------------------------------ notes


async def test_a_note_is_committed_then_shown(journal: Journal) -> None:
    one, _ = await seed(journal)
    app = Host(journal, one)
    async with running(app, size=(140, 40)) as pilot:
        await loaded(pilot, app)
        await on_screen(pilot, app, "4 of 4 events")
        await pilot.press("n")
        note_box = app.timeline.query_one("#timeline-note-input", Input)
        assert app.focused is note_box
        await pilot.press(*"rolled back the vk file")
        assert "rolled back the vk file" not in str(app.timeline.query_one(TimelineView).rows)
        await pilot.press("enter")
        text = await on_screen(pilot, app, "5 of 5 events")
        assert "rolled back the vk file" in text
        notes = [e for e in await journal.events(one, kinds=["note"]) if e.summary == "rolled back the vk file"]
        assert len(notes) == 1 and notes[0].actor == ME and notes[0].incident_id == one
        assert not app.timeline.query_one("#timeline-note").display


async def test_read_only_refuses_a_note(journal: Journal) -> None:
    one, _ = await seed(journal)
    app = Host(journal, one, can_write=False)
    async with running(app, size=(140, 40)) as pilot:
        await loaded(pilot, app)
        before = await journal.events()
        await pilot.press("n")
        text = await on_screen(pilot, app, "read-only: adding a note refused")
        assert not app.timeline.query_one("#timeline-note").display
        await pilot.press(*"sneaky", "enter")
        await pilot.pause(0.3)
        assert await journal.events() == before
        assert "read-only" in text


# ------------------------------------------------------------------ export


async def test_export_writes_the_filtered_events_and_refuses_to_overwrite(
    journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _ = await seed(journal)
    monkeypatch.chdir(tmp_path)
    app = Host(journal, one)
    async with running(app, size=(140, 40)) as pilot:
        await loaded(pilot, app)
        await pilot.press("4")  # hide notes
        await on_screen(pilot, app, "3 of 4 events")

        await pilot.press("x")
        path_box = app.timeline.query_one("#timeline-export-path", Input)
        assert app.focused is path_box
        assert path_box.value.startswith(f"timeline-{one}-") and path_box.value.endswith("Z.md")
        path_box.value = "out.jsonl"
        await pilot.press("enter")
        target = tmp_path / "out.jsonl"
        await on_screen(pilot, app, f"wrote 3 events to {target}")
        rows = [json.loads(line) for line in target.read_text().splitlines()]
        assert [r["kind"] for r in rows] == ["status_changed", "observation", "escalation"]
        assert all(r["incident_id"] == one for r in rows)

        # Same path again: refused, the file is untouched.
        target.write_text("keep me\n")
        await pilot.press("x")
        path_box.value = "out.jsonl"
        await pilot.press("enter")
        await on_screen(pilot, app, "exists: tick 'overwrite'")
        assert target.read_text() == "keep me\n"
        assert app.timeline.query_one("#timeline-export").display

        # Ticking the box forces it.
        app.timeline.query_one("#timeline-export-force", Checkbox).value = True
        path_box.focus()
        await pilot.press("enter")
        await on_screen(pilot, app, f"wrote 3 events to {target}")
        assert len(target.read_text().splitlines()) == 3

        # The default name, Markdown by its extension, with the current filter described.
        await pilot.press("x")
        name = path_box.value
        await pilot.press("enter")
        await on_screen(pilot, app, f"wrote 3 events to {tmp_path / name}")
        md = (tmp_path / name).read_text()
        assert md.startswith(f"# Incident #{one} timeline")
        assert "paged the backup on-call" in md and "restarting prover-1" not in md

        # An extension that names no format is refused with the reason.
        await pilot.press("x")
        path_box.value = "out.txt"
        await pilot.press("enter")
        await on_screen(pilot, app, "cannot tell the export format")
        assert not (tmp_path / "out.txt").exists()


# ------------------------------------------------------------------ live, shared journal


async def test_events_of_another_console_appear_within_two_seconds(journal: Journal, tmp_path: Path) -> None:
    one, _ = await seed(journal)
    app = Host(journal, one)
    async with running(app, size=(140, 40)) as pilot:
        await loaded(pilot, app)
        await on_screen(pilot, app, "4 of 4 events")
        other = await Journal.open(tmp_path / "journal.db")
        try:
            await other.add_event("observation", "carol sees 502s from nginx", "carol@ops3", one)
            start = time.monotonic()
            text = await on_screen(pilot, app, "carol sees 502s from nginx", timeout=2.0)
            assert time.monotonic() - start <= 2.0
            assert "5 of 5 events" in text
            # Newest at the bottom: following puts the cursor on it.
            view = app.timeline.query_one(TimelineView)
            assert view.follow and view.selected is not None and view.selected.summary.startswith("carol")
        finally:
            await other.close()


async def test_thousands_of_events_stay_listed_and_browsable(journal: Journal, tmp_path: Path) -> None:
    one, _ = await seed(journal)
    # Bulk rows straight into the real file in one transaction (one commit instead of 3000).
    db = sqlite3.connect(tmp_path / "journal.db")
    with db:
        db.executemany(
            "INSERT INTO timeline_events (incident_id, ts, kind, actor, summary, details, origin, origin_seq)"
            " VALUES (?, ?, 'observation', 'console', ?, '{}', 'bulk', ?)",
            [(one, datetime.now(timezone.utc).isoformat(timespec="microseconds"), f"bulk event {n:04d}", n)
             for n in range(3000)],
        )
    db.close()
    app = Host(journal, one)
    async with running(app, size=(140, 40)) as pilot:
        await loaded(pilot, app)
        text = await on_screen(pilot, app, "3004 of 3004 events")
        assert "bulk event 2999" in text and "bulk event 0000" not in text
        view = app.timeline.query_one(TimelineView)
        view.focus()
        await pilot.press("home")
        text = await on_screen(pilot, app, "Incident #1 declared")
        assert "bulk event 2999" not in text
        assert "paused" in text
        await pilot.press("slash", *"event 1234", "enter")
        text = await on_screen(pilot, app, "1 of 3004 events")
        assert "bulk event 1234" in text


# ------------------------------------------------------------------ hostile text, details


async def test_hostile_text_never_reaches_the_screen(journal: Journal) -> None:
    one, _ = await seed(journal)
    hostile = f"pwned \x1b]52;c;{OSC52_PAYLOAD}\x07 \x1b[2J\x1b[31mred\x1b[0m \x1b]0;title\x07 \u202eevil\x9b6n"
    await journal.add_event("observation", hostile, "mallory\x1b[8m@ops", one,
                            {"header": f"\x1b]52;c;{OSC52_PAYLOAD}\x07", "nested": ["\x1b[1;1H"]})
    app = Host(journal, one)
    async with running(app, size=(160, 45)) as pilot:
        await loaded(pilot, app)
        await on_screen(pilot, app, "pwned")
        view = app.timeline.query_one(TimelineView)
        view.focus()
        await pilot.press("end", "enter")  # the hostile event is the newest: show its details
        text = await on_screen(pilot, app, '"header"')
        svg = app.export_screenshot()
        for shown in (text, svg, view.row_text(len(view.rows) - 1)):
            assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
            assert "\u202e" not in shown
            assert OSC52_PAYLOAD not in shown
        assert "␛" in text and "mallory" in text
        # Escape closes the details first, then the screen.
        await pilot.press("escape")
        await until(pilot, lambda: not app.timeline.query_one("#timeline-details").display, "details to close")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, TimelineScreen), "the timeline to close")


async def test_environment_wide_when_no_incident_in_focus(journal: Journal) -> None:
    await seed(journal)
    app = Host(journal, None)
    async with running(app, size=(140, 40)) as pilot:
        await loaded(pilot, app)
        text = await on_screen(pilot, app, "7 of 7 events")
        assert "disk 91% full on ops box" in text
        await pilot.press("a")
        await on_screen(pilot, app, "no incident in focus")
        await pilot.press("n", *"env-wide note", "enter")
        await on_screen(pilot, app, "8 of 8 events")
        (note,) = [e for e in await journal.events(kinds=["note"]) if e.summary == "env-wide note"]
        assert note.incident_id is None


def test_time_cell_and_default_name() -> None:
    ts = datetime(2026, 11, 26, 3, 4, 5, tzinfo=timezone.utc)
    assert time_cell(ts, date(2026, 11, 26), with_date=False) == "03:04:05"
    assert time_cell(ts, date(2026, 11, 26), with_date=True) == "           03:04:05"
    assert time_cell(ts, date(2026, 11, 27), with_date=True) == "2026-11-26 03:04:05"
    assert default_export_name(7, ts) == "timeline-7-20261126T030405Z.md"
    assert default_export_name(None, ts) == "timeline-all-20261126T030405Z.md"
