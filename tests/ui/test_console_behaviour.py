"""What the console does with keys, its journal and its configuration (headless, real journal).

The console runs with `observe=False` (no sources): these tests are about incidents and the
checklist in the journal (a real SQLite file shared by two consoles), read-only mode, the
keymap, help, the command palette and the compact layout. Everything is driven by key presses
and read back from the journal and from the screen's text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Callable

import pytest
from textual.widget import Widget
from textual.widgets import OptionList

from x402console.config import ConfigError, load_config
from x402console.core.checklist import PHASES
from x402console.journal import Journal
from x402console.sources.models import FleetMetrics
from x402console.ui.console import ConsoleApp
from x402console.ui.panes.keybar import KeyBar
from x402console.ui.screens.dialogs import ConfirmScreen, DeclareScreen

from tests.ui.test_console_snapshots import running, screen_text, write_settings

FIRST_ITEM = PHASES[0].items[0].id
FIRST_ITEM_TEXT = PHASES[0].items[0].text


# ------------------------------------------------------------------ helpers


async def until(pilot, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def journal_ready(pilot, app: ConsoleApp) -> None:
    await until(pilot, lambda: app.journal is not None or app.journal_error is not None, "the journal to open")
    assert app.journal is not None, app.journal_error


async def on_screen(pilot, app: ConsoleApp, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = screen_text(app)
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not on screen:\n{text}")
        await pilot.pause(0.1)


async def declare_via_dialog(pilot, app: ConsoleApp, title: str) -> int:
    await pilot.press("D")
    await until(pilot, lambda: isinstance(app.screen, DeclareScreen), "the declare dialog")
    await pilot.click("#title")
    await pilot.press(*title)
    await pilot.click("#declare")
    await until(pilot, lambda: any(i.title == title for i in app.incidents), "the incident in the console")
    (incident,) = [i for i in app.incidents if i.title == title]
    return incident.id


async def highlight_item(pilot, app: ConsoleApp, item_id: str) -> None:
    """Focus the checklist (key 4) and move the highlight to item_id with the arrow keys."""
    await pilot.press("4")
    pane = app.query_one("#checklist", OptionList)
    await until(pilot, lambda: pane.has_focus, "the checklist to take focus")
    for _ in range(40):
        h = pane.highlighted
        if h is not None and pane.get_option_at_index(h).id == item_id:
            return
        await pilot.press("down")
    raise AssertionError(f"could not highlight {item_id}")


async def other_console_journal(path: Path) -> Journal:
    """A second handle on the journal file, as another console on the same box would have."""
    return await Journal.open(path)


def settings_in(tmp: Path, extra: str = ""):
    return load_config(write_settings(tmp, extra))


# ------------------------------------------------------------------ incidents and dialogs


async def test_dialogs_focus_cancel_so_enter_never_confirms(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, DeclareScreen), "the declare dialog")
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.press("enter")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the dialog to close")
        assert await app.journal.incidents() == ()

        incident_id = await declare_via_dialog(pilot, app, "prover down")
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirm dialog")
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.press("enter")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the dialog to close")
        await pilot.pause(0.2)
        assert (await app.journal.incident(incident_id)).status == "declared"


async def test_declare_acknowledge_resolve_are_recorded_in_the_journal(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    app = ConsoleApp(settings, observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        incident_id = await declare_via_dialog(pilot, app, "error rate above five percent")
        assert app.focus_incident_id == incident_id
        header = await on_screen(pilot, app, f"#{incident_id} error rate above five percent")
        assert "P2" in header.splitlines()[0]

        for key, label, status in (("A", "Acknowledge", "acknowledged"), ("R", "Resolve", "resolved")):
            await pilot.press(key)
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), f"the {label} dialog")
            await pilot.press("tab")  # from Cancel to the confirming button
            assert app.focused is not None and app.focused.id == "confirm"
            await pilot.press("enter")
            await until(pilot, lambda: any(i.status == status for i in app.incidents), f"status {status}")

    journal = await other_console_journal(settings.environment.journal)
    try:
        incident = await journal.incident(incident_id)
        assert incident.status == "resolved" and incident.severity == "P2"
    finally:
        await journal.close()


# ------------------------------------------------------------------ checklist in the journal


async def test_checklist_ticks_survive_a_restart(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    app = ConsoleApp(settings, observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        incident_id = await declare_via_dialog(pilot, app, "slow proofs")
        await highlight_item(pilot, app, FIRST_ITEM)
        await pilot.press("space")
        await on_screen(pilot, app, f"[x] {FIRST_ITEM_TEXT}")
        state = await app.journal.checklist_state(incident_id)
        assert state[FIRST_ITEM].checked

    again = ConsoleApp(settings, observe=False)
    async with running(again) as pilot:
        await journal_ready(pilot, again)
        await until(pilot, lambda: again.focus_incident_id == incident_id, "the open incident in focus")
        text = await on_screen(pilot, again, f"[x] {FIRST_ITEM_TEXT}")
        assert "[ ] Incident severity assessed" in text
        assert "1/20" in text


async def test_two_consoles_on_one_journal_share_ticks(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    first = ConsoleApp(settings, observe=False)
    second = ConsoleApp(settings, observe=False)
    async with running(first) as p1, running(second) as p2:
        await journal_ready(p1, first)
        await journal_ready(p2, second)
        incident_id = await declare_via_dialog(p1, first, "ddos suspected")
        # The other console learns of the incident by polling the journal.
        await until(p2, lambda: second.focus_incident_id == incident_id, "the incident in the other console")

        await highlight_item(p1, first, FIRST_ITEM)
        await p1.press("space")
        await on_screen(p2, second, f"[x] {FIRST_ITEM_TEXT}")

        await highlight_item(p2, second, FIRST_ITEM)
        await p2.press("space")  # untick from the other console
        await on_screen(p1, first, f"[ ] {FIRST_ITEM_TEXT}")
        assert not (await first.journal.checklist_state(incident_id))[FIRST_ITEM].checked


# ------------------------------------------------------------------ read-only


async def test_read_only_refuses_declare_and_tick(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    app = ConsoleApp(settings, read_only=True, observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        # The header may be drawn before it knows its width (cut to 20 columns until the next
        # tick), so wait for the full line rather than read the first frame.
        header = (await on_screen(pilot, app, " RO ")).splitlines()[0]
        assert " RO " in header
        await pilot.press("D")
        await on_screen(pilot, app, "read-only")
        assert len(app.screen_stack) == 1, "no declare dialog in read-only mode"
        assert await app.journal.incidents() == ()

        # Another console (read-write) declares; this one shows it but may not tick it.
        other = await other_console_journal(settings.environment.journal)
        try:
            incident = await other.declare_incident("verification key changed", "P0", other.actor)
            await until(pilot, lambda: app.focus_incident_id == incident.id, "the incident in the read-only console")
            await highlight_item(pilot, app, FIRST_ITEM)
            await pilot.press("space")
            await on_screen(pilot, app, "ticking the checklist refused")
            await pilot.pause(1.2)  # a journal poll later: nothing was written
            state = await other.checklist_state(incident.id)
            assert not any(item.checked for item in state.values()), state
            assert f"[ ] {FIRST_ITEM_TEXT}" in screen_text(app)
        finally:
            await other.close()


async def test_read_only_from_the_configuration(tmp_path: Path) -> None:
    path = write_settings(tmp_path)
    text = path.read_text().replace('name = "snapshot"', 'name = "snapshot"\nread_only = true')
    path.write_text(text)
    app = ConsoleApp(load_config(path), observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        assert app.read_only
        await pilot.press("D")
        await on_screen(pilot, app, "read-only")
        assert len(app.screen_stack) == 1


# ------------------------------------------------------------------ keymap, help, palette


KEYMAP_TOML = '\n[keymap]\nincident.declare = "ctrl+d"\n'


async def assert_declare_is_on_ctrl_d(pilot, app: ConsoleApp) -> None:
    await journal_ready(pilot, app)
    await pilot.press("D")
    await pilot.pause(0.3)
    assert len(app.screen_stack) == 1, "the old key still declares"
    await pilot.press("ctrl+d")
    await until(pilot, lambda: isinstance(app.screen, DeclareScreen), "the declare dialog on ctrl+d")


async def test_keymap_in_the_settings_remaps_a_binding(tmp_path: Path) -> None:
    settings = dataclasses.replace(settings_in(tmp_path), keymap={"incident.declare": "ctrl+d"})
    app = ConsoleApp(settings, observe=False)
    async with running(app) as pilot:
        await assert_declare_is_on_ctrl_d(pilot, app)


def key_bar(app: ConsoleApp) -> KeyBar:
    return app.screen.query_one(KeyBar)


async def test_the_key_bar_names_the_remapped_key(tmp_path: Path) -> None:
    settings = dataclasses.replace(settings_in(tmp_path), keymap={"incident.declare": "ctrl+d"})
    app = ConsoleApp(settings, observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        await until(pilot, lambda: "Declare" in key_bar(app).render().plain, "the key bar")
        text = key_bar(app).render().plain
        assert " ^d Declare " in text and " D Declare " not in text, text


async def test_the_key_bar_shows_the_active_keys_and_a_click_presses_one(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app) as pilot:
        await journal_ready(pilot, app)
        await until(pilot, lambda: "Declare" in key_bar(app).render().plain, "the key bar")
        bar = key_bar(app)
        text = bar.render().plain
        for shown in (" ? Help ", " q Quit ", " D Declare ", " ^p palette "):
            assert shown in text, f"{shown!r} missing from the key bar: {text!r}"
        assert text.rstrip().endswith("palette"), "the command palette key comes last"
        assert text.count(" Declare ") == 1, "one entry per action"
        assert bar.key_at(text.index(" D Declare ") + 1) == "D"
        assert bar.key_at(len(text) + 5) is None
        # The bar follows focus: the checklist's own keys appear when it has focus.
        before = text
        await pilot.press("4")
        await until(pilot, lambda: key_bar(app).render().plain != before, "the key bar to follow the focus")
        now = key_bar(app).render().plain
        assert " space " in now.lower(), f"the checklist's toggle key is not shown: {now!r}"
        await pilot.click(KeyBar, offset=(now.index(" D Declare ") + 1, 0))
        await until(pilot, lambda: isinstance(app.screen, DeclareScreen), "the declare dialog from a click")
        await pilot.press("escape")
        await until(pilot, lambda: len(app.screen_stack) == 1, "the dialog to close")


async def test_the_checklist_shows_the_journal_before_the_full_open_finishes(tmp_path: Path, monkeypatch) -> None:
    settings = settings_in(tmp_path)
    journal = await Journal.open(settings.environment.journal)
    try:
        inc = await journal.declare_incident("peeked", "P2", journal.actor)
        await journal.set_checklist(inc.id, FIRST_ITEM, True, journal.actor)
    finally:
        await journal.close()
    release = asyncio.Event()
    real_open = Journal.open.__func__

    async def slow_open(cls, *args, **kwargs):
        await release.wait()  # holds the full open back; the peek must not need it
        return await real_open(cls, *args, **kwargs)

    monkeypatch.setattr(Journal, "open", classmethod(slow_open))
    app = ConsoleApp(settings, observe=False)
    async with running(app) as pilot:
        text = await on_screen(pilot, app, f"[x] {FIRST_ITEM_TEXT}")
        assert app.journal is None and app.focus_incident_id == inc.id
        assert app.live_panes()["checklist"]
        assert "peeked" in text  # the header names the incident too
        # Nothing can be ticked until the journal is open: the tick would not be recorded.
        await highlight_item(pilot, app, FIRST_ITEM)
        await pilot.press("space")
        await pilot.pause(0.2)
        assert f"[x] {FIRST_ITEM_TEXT}" in screen_text(app)
        release.set()
        await journal_ready(pilot, app)
        assert (await app.journal.checklist_state(inc.id))[FIRST_ITEM].checked


async def test_keymap_from_the_config_file_remaps_a_binding(tmp_path: Path) -> None:
    settings = load_config(write_settings(tmp_path, KEYMAP_TOML))
    app = ConsoleApp(settings, observe=False)
    async with running(app) as pilot:
        await assert_declare_is_on_ctrl_d(pilot, app)


HELP_SIZE = (160, 100)  # tall enough that the help table needs little scrolling


async def help_text(pilot, app: ConsoleApp) -> str:
    """Everything the help screen shows, top to bottom (it scrolls)."""
    await pilot.press("question_mark")
    await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen", "the help screen")
    await pilot.pause(0.2)
    seen = [screen_text(app)]
    for _ in range(2):
        await pilot.press("pagedown")
        await pilot.pause(0.1)
        seen.append(screen_text(app))
    return "\n".join(seen)


async def test_help_lists_every_binding_with_its_id(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app, HELP_SIZE) as pilot:
        await journal_ready(pilot, app)
        text = await help_text(pilot, app)
        for binding_id in ("console.help", "console.quit", "pane.logs", "incident.declare",
                           "incident.acknowledge", "incident.resolve", "logs.filter", "logs.pause",
                           "checklist.toggle"):
            assert binding_id in text, f"help does not list {binding_id}"
        await pilot.press("escape")
        await until(pilot, lambda: len(app.screen_stack) == 1, "help to close")


async def test_help_names_the_keymap_table(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app, HELP_SIZE) as pilot:
        await journal_ready(pilot, app)
        assert "[keymap]" in await help_text(pilot, app)


async def test_help_and_palette_name_the_remapped_key(tmp_path: Path) -> None:
    settings = dataclasses.replace(settings_in(tmp_path), keymap={"incident.declare": "ctrl+d"})
    app = ConsoleApp(settings, observe=False)
    async with running(app, HELP_SIZE) as pilot:
        await journal_ready(pilot, app)
        text = await help_text(pilot, app)
        row = next(line for line in text.splitlines() if "incident.declare" in line)
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.press(*"Declare")
        palette = await on_screen(pilot, app, "Declare")
        assert "ctrl+d" in row, f"help row: {row.strip()}"
        assert "Declare (D)" not in palette


async def test_command_palette_lists_the_console_commands(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app, (120, 50)) as pilot:
        await journal_ready(pilot, app)
        await pilot.press("ctrl+p")
        text = await on_screen(pilot, app, "Search for commands")
        for entry in ("Ack (A)", "Declare (D)", "Help (", "Health (1)", "Logs (3)", "Checklist (4)"):
            assert entry in text, f"palette does not list {entry!r}:\n{text}"
        assert "Drill (S)" not in text, "drill-only commands are hidden outside a drill"
        # Choosing an entry runs it.
        await pilot.press(*"Declare")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeclareScreen), "declare from the palette")


# ------------------------------------------------------------------ layout


async def test_small_terminal_shows_one_pane_and_keys_switch(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    titles = {"health": "1 Service health", "metrics": "2 Metrics", "logs": "3 Logs", "checklist": "4 Checklist"}
    async with running(app, (100, 30)) as pilot:
        await journal_ready(pilot, app)
        for key, pane in (("2", "metrics"), ("3", "logs"), ("4", "checklist"), ("1", "health")):
            await pilot.press(key)
            await until(pilot, lambda: app.query_one(f"#{pane}").display, f"{pane} shown")
            await pilot.pause(0.2)
            text = screen_text(app)
            shown = [p for p, t in titles.items() if t in text]
            assert shown == [pane], f"after {key}: panes on screen {shown}"
        await pilot.resize_terminal(160, 45)
        await pilot.pause(0.3)
        text = screen_text(app)
        assert all(t in text for t in titles.values()), "a large terminal shows every pane"


async def test_charts_come_with_the_first_metrics_or_empty_soon_after(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app, (160, 45)) as pilot:
        await journal_ready(pilot, app)
        if not app.query("#metrics PlotextPlot"):  # not yet: no metrics have arrived
            await pilot.pause(3.0)
        assert app.query("#metrics PlotextPlot"), "charts mounted without data after a while"
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app, (160, 45)) as pilot:
        app._on_snapshot(FleetMetrics(time.time(), "scrape", proof_rate=5.0, rss_bytes={"prover-1": 3e7}))
        await pilot.pause(0.5)
        assert app.query("#metrics PlotextPlot"), "the first metrics bring the charts"


async def test_m_in_the_metrics_pane_shows_the_other_charts(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app, (160, 45)) as pilot:
        await journal_ready(pilot, app)
        app._on_snapshot(FleetMetrics(time.time(), "scrape", proof_rate=5.0, rss_bytes={"prover-1": 3e7}))
        await pilot.pause(0.3)
        charts = lambda: [w.id for w in app.query("#metrics PlotextPlot") if w.display]  # noqa: E731
        before = charts()
        assert 0 < len(before) < 6, "not every chart fits at this size"
        await pilot.press("2")
        await pilot.press("m")
        await pilot.pause(0.3)
        assert charts() != before


# ------------------------------------------------------------------ robustness


async def test_a_replica_silent_for_longer_than_the_window_does_not_crash_the_charts(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with running(app, (120, 40)) as pilot:  # compact: the metrics pane shows every chart
        await journal_ready(pilot, app)
        now = time.time()
        window = app.store.window
        # prover-2 reported its memory more than a window ago and has been gone since
        app._on_snapshot(FleetMetrics(now - window - 60, "scrape", proof_rate=5.0,
                                      rss_bytes={"prover-1": 3e7, "prover-2": 3e7}))
        app._on_snapshot(FleetMetrics(now, "scrape", proof_rate=5.0, rss_bytes={"prover-1": 3e7}))
        # What key 2 does; not pilot.press, whose waits would time out on a dead app.
        await app.run_action("focus_pane('metrics')")
        await asyncio.sleep(0.5)
        assert "resident memory" in screen_text(app)
        assert app.is_running


class SlowToLeave(Widget):
    """A widget that takes a while to unmount, like any pane with async clean-up; it holds
    Textual's shutdown in the phase where the screen's widgets are being removed."""

    async def on_unmount(self) -> None:
        await asyncio.sleep(1.6)


async def test_quitting_never_trips_over_removed_panes(tmp_path: Path) -> None:
    app = ConsoleApp(settings_in(tmp_path), observe=False)
    async with app.run_test(size=(160, 45)) as pilot:  # not `running`: this is the bug it dodges
        await journal_ready(pilot, app)
        await app.screen.mount(SlowToLeave())
        await pilot.pause(0.1)


async def test_garbage_collection_is_back_on_after_the_first_frame(tmp_path: Path) -> None:
    # The CLI turns the cyclic GC off for start-up (cli._run_console); the console must turn
    # it back on, or a long session would never collect a cycle.
    import gc

    gc.disable()
    try:
        app = ConsoleApp(settings_in(tmp_path), observe=False)
        async with running(app) as pilot:
            await until(pilot, gc.isenabled, "the console to re-enable garbage collection")
            await journal_ready(pilot, app)
    finally:
        gc.enable()
