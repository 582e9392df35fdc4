"""The log pane in a real (headless) Textual app, driven by key presses through Pilot."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Callable

import pytest
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import Input

from x402console.sources.logparse import LogRecord, parse_log_line
from x402console.sources.models import LogBatch
from x402console.sources.sanitize import sanitize_line
from x402console.ui.logs.log_pane import LogPane
from x402console.ui.logs.log_view import LogView

SIZE = (120, 40)


class PaneApp(App):
    def __init__(self, capacity: int = 10_000, monitoring_paths: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.capacity = capacity
        self.monitoring_paths = monitoring_paths

    def compose(self) -> ComposeResult:
        yield LogPane(capacity=self.capacity, fps=60, monitoring_paths=self.monitoring_paths)

    @property
    def pane(self) -> LogPane:
        return self.query_one(LogPane)


def rec(
    i: int,
    text: str | None = None,
    *,
    level: str = "info",
    replica: str = "prover-1",
    ip: str | None = None,
    status: int | None = None,
) -> LogRecord:
    message = text if text is not None else f"line {i:06d}"
    return LogRecord(
        replica=replica,
        ts=datetime(2024, 5, 1, 3, 0, i % 60, tzinfo=timezone.utc),
        level=level,  # type: ignore[arg-type]
        message=message,
        client_ip=ip,
        http_status=status,
        raw=message,
    )


def batch(records) -> LogBatch:
    return LogBatch(records=tuple(records))


def screen_lines(view: LogView) -> list[str]:
    """What the view draws right now, one string per visible row."""
    return [view.render_line(y).text.rstrip() for y in range(view.size.height)]


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the app run until `condition` holds (refreshes are coalesced to frames)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)
    await pilot.pause()


async def test_batches_appear_with_columns():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane
        pane.add_batch(batch([rec(0, "hello world", ip="203.0.113.7"), rec(1, "second", level="error")]))
        pane.add_batch(LogBatch(records=(rec(2, "third"),), dropped=7))
        await wait_for(pilot, lambda: "third" in "\n".join(screen_lines(pane.view)))
        lines = [line for line in screen_lines(pane.view) if line]
        assert len(lines) == 3
        assert lines[0].startswith("prover-1 ")
        assert "203.0.113.7" in lines[0] and lines[0].endswith("hello world")
        assert " ERR " in lines[1]
        await wait_for(pilot, lambda: "lines 3 " in pane.status.text)  # the status is throttled
        assert "dropped 7" in pane.status.text


async def test_lines_are_coloured_by_level():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        levels = ["error", "warning", "info", "debug"]
        pane.add_batch(batch(rec(i, f"message {level}", level=level) for i, level in enumerate(levels)))
        await wait_for(pilot, lambda: len(view.source) == 4)
        styles = {}
        for y, level in enumerate(levels):
            (segment,) = [seg for seg in view.render_line(y) if seg.text == f"message {level}"]
            styles[level] = segment.style
        assert styles["error"].color.name == "red"
        assert styles["warning"].color.name == "yellow"
        assert styles["info"].color.name not in ("red", "yellow") and not styles["info"].dim
        assert styles["debug"].dim


async def test_a_dialog_on_top_defers_drawing_until_it_closes():
    from textual.screen import ModalScreen
    from textual.widgets import Static

    class Dialog(ModalScreen):
        def compose(self) -> ComposeResult:
            yield Static("dialog")

    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i) for i in range(10)))
        await wait_for(pilot, lambda: view.virtual_size.height == 10)
        await app.push_screen(Dialog())
        pane.add_batch(batch(rec(i) for i in range(10, 50)))
        await pilot.pause(0.2)
        assert pane.buffer.total == 50  # still collected
        assert view.virtual_size.height == 10  # but not drawn under the dialog
        app.pop_screen()
        await wait_for(pilot, lambda: view.virtual_size.height == 50)
        assert any(line.endswith("line 000049") for line in screen_lines(view))


async def test_following_sticks_to_the_bottom_and_scrolling_up_stops_it():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i) for i in range(200)))
        await wait_for(pilot, lambda: len(view.source) == 200)
        assert view.follow
        assert view.scroll_offset.y == view.max_scroll_y > 0
        assert screen_lines(view)[-1].endswith("line 000199")
        pane.add_batch(batch(rec(i) for i in range(200, 300)))
        await wait_for(pilot, lambda: any(line.endswith("line 000299") for line in screen_lines(view)))
        assert view.scroll_offset.y == view.max_scroll_y
        assert "FOLLOW" in pane.status.text

        view.focus()
        await pilot.press("pageup")
        assert not view.follow
        top_before = screen_lines(view)[0]
        pane.add_batch(batch(rec(i) for i in range(300, 400)))
        await wait_for(pilot, lambda: len(view.source) == 400)
        assert screen_lines(view)[0] == top_before  # the line under the user's eyes did not move
        assert "SCROLLED" in pane.status.text

        await pilot.press("end")
        await wait_for(pilot, lambda: view.follow)
        assert any(line.endswith("line 000399") for line in screen_lines(view))


async def test_pause_freezes_view_counts_new_lines_and_resume_catches_up():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i) for i in range(100)))
        await wait_for(pilot, lambda: len(view.source) == 100)
        await pilot.press("p")
        assert pane.paused
        frozen = screen_lines(view)
        pane.add_batch(batch(rec(i) for i in range(100, 150)))
        pane.add_batch(batch(rec(i) for i in range(150, 175)))
        await wait_for(pilot, lambda: "+75 new lines" in pane.status.text)
        assert "PAUSED" in pane.status.text
        assert screen_lines(view) == frozen
        assert pane.buffer.total == 175  # the buffer kept filling

        await pilot.press("p")
        assert not pane.paused
        await wait_for(pilot, lambda: any(line.endswith("line 000174") for line in screen_lines(view)))
        assert view.follow and view.scroll_offset.y == view.max_scroll_y
        assert "PAUSED" not in pane.status.text


async def test_an_invalid_filter_while_paused_keeps_the_view_and_the_count():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i) for i in range(100)))
        await wait_for(pilot, lambda: len(view.source) == 100)
        await pilot.press("p")
        frozen = screen_lines(view)
        pane.add_batch(batch(rec(i) for i in range(100, 130)))
        await wait_for(pilot, lambda: "+30 new lines" in pane.status.text)
        await pilot.press("ctrl+r", "slash", "(")
        await pilot.pause()
        assert "invalid regular expression" in pane.status.text
        assert "+30 new lines" in pane.status.text
        assert screen_lines(view) == frozen


async def test_pause_holds_even_when_the_ring_turns_over():
    app = PaneApp(capacity=100)
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i) for i in range(100)))
        await wait_for(pilot, lambda: len(view.source) == 100)
        await pilot.press("p")
        frozen = screen_lines(view)
        pane.add_batch(batch(rec(i) for i in range(100, 1100)))
        await wait_for(pilot, lambda: "+1,000 new lines" in pane.status.text)
        assert screen_lines(view) == frozen


async def test_typing_a_filter_hides_non_matching_lines():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i, f"{'alpha' if i % 4 == 0 else 'beta'} {i}") for i in range(40)))
        await wait_for(pilot, lambda: len(view.source) == 40)
        await wait_for(pilot, lambda: "shown 40 of 40" in pane.status.text)
        await pilot.press("slash")
        assert app.focused is pane.filter_input
        await pilot.press(*"ALPHA")  # case-insensitive by default
        await wait_for(pilot, lambda: len(view.source) == 10)
        assert "shown 10 of 40" in pane.status.text
        shown = [line for line in screen_lines(view) if line]
        assert len(shown) == 10 and all("alpha" in line for line in shown)
        # new lines are filtered as they arrive
        pane.add_batch(batch([rec(40, "alpha late"), rec(41, "beta late")]))
        await wait_for(pilot, lambda: len(view.source) == 11)
        await pilot.press("enter")
        assert app.focused is view
        await pilot.press("slash", *["backspace"] * 5)
        await wait_for(pilot, lambda: len(view.source) == 42)


async def test_invert_toggle():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i, "GET /health 200" if i % 2 else f"POST /generate-proof {i}") for i in range(20)))
        await wait_for(pilot, lambda: len(view.source) == 20)
        await pilot.press("slash", *"/health", "ctrl+n")
        await wait_for(pilot, lambda: len(view.source) == 10)
        assert all("generate-proof" in line for line in screen_lines(view) if line)
        assert "NOT text '/health'" in pane.status.text
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: len(view.source) == 10 and "NOT" not in pane.status.text)
        assert all("/health" in line for line in screen_lines(view) if line)


async def test_errors_preset_and_other_presets_toggle():
    app = PaneApp()
    lines = [
        '[GIN] 2024/01/01 - 12:00:01 | 429 |  12.5µs |  203.0.113.7 | POST "/generate-proof"',
        "2024/01/01 12:00:02 Validation failed from 198.51.100.4: amount must be positive",
        "2024/01/01 12:00:03 Proof generation failed: witness error",
        "2024/01/01 12:00:04 Proof generated in 812ms",
    ]
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(parse_log_line(line, "prover-1") for line in lines * 5))
        await wait_for(pilot, lambda: len(view.source) == 20)
        view.focus()
        await pilot.press("e")
        await wait_for(pilot, lambda: len(view.source) == 5)
        assert all("Proof generation failed" in line for line in screen_lines(view) if line)
        assert "preset errors" in pane.status.text
        await pilot.press("v")
        await wait_for(pilot, lambda: len(view.source) == 5 and "preset validation" in pane.status.text)
        assert all("Validation failed" in line for line in screen_lines(view) if line)
        await pilot.press("r")
        await wait_for(pilot, lambda: "preset rate_limit" in pane.status.text)
        assert all(" 429 " in line for line in screen_lines(view) if line)
        await pilot.press("r")  # same key again: preset off
        await wait_for(pilot, lambda: len(view.source) == 20)


async def test_invalid_regex_shows_an_error_and_keeps_working():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i, f"id={i}") for i in range(30)))
        await wait_for(pilot, lambda: len(view.source) == 30)
        await pilot.press("ctrl+r", "slash", *"id=1")
        await wait_for(pilot, lambda: len(view.source) == 11)  # 1, 10..19
        await pilot.press(*"(")
        await pilot.pause()
        assert "invalid regular expression" in pane.status.text
        assert pane.filter_input.has_class("-error")
        assert len(view.source) == 11  # the last valid filter still applies
        pane.add_batch(batch([rec(30, "id=1 again")]))  # still absorbing lines
        await wait_for(pilot, lambda: len(view.source) == 12)
        await pilot.press(*")")  # "id=1()" is valid again
        await wait_for(pilot, lambda: "invalid" not in pane.status.text)
        assert not pane.filter_input.has_class("-error")
        await pilot.press("ctrl+f", *"[")  # search reports its own error too
        await pilot.pause()
        assert "search: invalid regular expression" in pane.status.text
        assert app.is_running


async def test_markup_and_escape_text_render_literally():
    app = PaneApp()
    hostile = sanitize_line("\x1b]0;title")  # unterminated OSC: introducer becomes a visible ␛
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(
            batch(
                [
                    rec(0, "[bold red]x[/]"),
                    rec(1, "␛]0;title"),
                    rec(2, hostile),
                    rec(3, "[link=http://evil]click[/link] :warning:"),
                ]
            )
        )
        await wait_for(pilot, lambda: len(view.source) == 4)
        lines = screen_lines(view)
        assert lines[0].endswith("[bold red]x[/]")
        assert lines[1].endswith("␛]0;title")
        assert lines[2].endswith(hostile) and "\x1b" not in lines[2]
        assert lines[3].endswith("[link=http://evil]click[/link] :warning:")
        for y in range(4):
            strip = view.render_line(y)
            assert all(seg.style is None or seg.style.link is None for seg in strip)
            assert "\x1b" not in strip.text
        # the whole screen, as the terminal would get it
        screenshot = app.export_screenshot()
        assert "[bold red]x[/]" in screenshot.replace("&#160;", " ")


async def test_long_lines_are_not_wrapped_and_scroll_horizontally():
    app = PaneApp()
    long_message = "start " + "x" * 400 + " end"
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch([rec(0, long_message), rec(1, "short")]))
        await wait_for(pilot, lambda: len(view.source) == 2)
        lines = screen_lines(view)
        assert "start xxx" in lines[0] and "end" not in lines[0]
        assert lines[1].endswith("short")  # one record, one row
        assert view.virtual_size.width >= len(long_message)
        view.scroll_to(x=view.max_scroll_x, animate=False)
        await pilot.pause()
        assert screen_lines(view)[0].endswith("x end")


async def test_search_highlights_without_hiding_and_moves_between_matches():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i, f"needle {i}" if i in (5, 50, 95) else f"hay {i}") for i in range(100)))
        await wait_for(pilot, lambda: len(view.source) == 100)
        view.focus()
        await pilot.press("home")
        await pilot.press("ctrl+f", *"needle", "enter")
        assert len(view.source) == 100  # nothing hidden
        assert view.current_seq == 5
        assert app.focused is view
        await pilot.press("n")
        assert view.current_seq == 50
        top = view.scroll_offset.y
        assert top <= 50 < top + view.size.height  # scrolled to it
        await pilot.press("n")
        assert view.current_seq == 95
        await pilot.press("n")
        assert view.current_seq == 5  # wraps
        await pilot.press("N")
        assert view.current_seq == 95
        # the match is drawn with a highlight style
        row = 95 - view.scroll_offset.y
        strip = view.render_line(row)
        highlighted = [seg.text for seg in strip if seg.style is not None and seg.style.bgcolor is not None
                       and seg.style.bgcolor.name == "dark_orange"]
        assert highlighted == ["needle"]
        assert "match at line 96 of 100" in pane.status.text
        await pilot.press("ctrl+f", *"zzz")
        await pilot.pause()
        assert "no match for 'needlezzz'" in pane.status.text


async def test_replica_toggle_cycles_through_replicas():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i, replica=f"prover-{i % 3 + 1}") for i in range(30)))
        await wait_for(pilot, lambda: len(view.source) == 30)
        view.focus()
        seen = []
        for _ in range(4):
            await pilot.press("c")
            await pilot.pause()
            seen.append((pane.replica, len(view.source)))
        assert seen == [("prover-1", 10), ("prover-2", 10), ("prover-3", 10), (None, 30)]


async def test_top_clients_panel_shows_busiest_ips_with_429s():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane
        records = [rec(i, f"req {i}", ip="203.0.113.9", status=429 if i % 2 else 200) for i in range(10)]
        records += [rec(10 + i, f"req {i}", ip="198.51.100.1", status=200) for i in range(3)]
        records += [rec(20, "no address")]
        pane.add_batch(batch(records))
        await pilot.pause()
        assert not pane.top_panel.display
        pane.view.focus()
        await pilot.press("t")
        assert pane.top_panel.display
        text = pane.top_panel.render().plain
        rows = [line.split() for line in text.splitlines()]
        assert ["203.0.113.9", "10", "5"] in rows
        assert ["198.51.100.1", "3", "0"] in rows
        assert text.index("203.0.113.9") < text.index("198.51.100.1")
        await pilot.press("t")
        assert not pane.top_panel.display


async def test_200k_records_leave_the_buffer_at_its_bound():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        template = [rec(i, level=("error", "warning", "info", "debug")[i % 4]) for i in range(5000)]
        for start in range(0, 200_000, 5000):
            pane.add_batch(batch(template))
            if start % 50_000 == 0:
                await pilot.pause()
        last = LogRecord(replica="prover-1", ts=None, level="info", message="the very last", raw="the very last")
        pane.add_batch(batch([last]))
        await wait_for(pilot, lambda: any(line.endswith("the very last") for line in screen_lines(view)))
        assert len(pane.buffer) == 10_000
        assert pane.buffer.total == 200_001
        assert view.virtual_size.height == 10_000
        await wait_for(pilot, lambda: "lines 200,001" in pane.status.text)


async def test_bad_records_in_a_batch_are_counted_not_fatal():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(LogBatch(records=(rec(0), "not a record", None, rec(1)), dropped=-3))
        await wait_for(pilot, lambda: len(view.source) == 2)
        assert pane.rejected == 2
        await wait_for(pilot, lambda: "dropped 2" in pane.status.text)


def test_every_binding_has_an_id_and_a_description():
    ids = [binding.id for binding in LogPane.BINDINGS]
    assert all(isinstance(i, str) and i.startswith("logs.") for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(binding.description for binding in LogPane.BINDINGS)
    for required in ("logs.filter", "logs.regex", "logs.invert", "logs.errors", "logs.validation",
                     "logs.ratelimit", "logs.pause", "logs.search_next", "logs.top_clients"):
        assert required in ids


async def test_keys_can_be_remapped_through_the_app_keymap():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane
        pane.view.focus()
        app.set_keymap({"logs.pause": "z", "logs.errors": "ctrl+e"})
        await pilot.press("p")
        assert not pane.paused
        await pilot.press("z")
        assert pane.paused
        await pilot.press("ctrl+e")
        assert pane.preset is not None and pane.preset.name == "errors"


async def test_escape_leaves_the_filter_box():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane
        await pilot.press("slash", *"abc")
        assert isinstance(app.focused, Input)
        await pilot.press("escape")
        assert app.focused is pane.view
        assert pane.filter_input.value == "abc"  # leaving keeps the filter


@pytest.mark.parametrize("fps", [None, 5])
async def test_add_batch_before_mount_and_any_fps(fps):
    pane = LogPane(capacity=50, fps=fps)
    pane.add_batch(batch(rec(i) for i in range(60)))  # not mounted yet: stored, drawn on mount

    class Host(App):
        def compose(self) -> ComposeResult:
            yield pane

    app = Host()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any(line.endswith("line 000059") for line in screen_lines(pane.view)))
        assert len(pane.buffer) == 50


async def test_filter_can_be_set_by_the_app():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane, view = app.pane, app.pane.view
        pane.add_batch(batch(rec(i, "timeout talking to prover" if i % 5 == 0 else "ok") for i in range(50)))
        await wait_for(pilot, lambda: len(view.source) == 50)
        pane.set_filter_text("TIMEOUT")
        await pilot.pause()
        assert pane.filter_input.value == "TIMEOUT"
        assert len(view.source) == 10


async def test_the_consoles_own_probes_are_hidden_until_m_shows_them():
    app = PaneApp(monitoring_paths=("/health", "/metrics"))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane
        probe = LogRecord(replica="prover-1", ts=None, level="info", message="GET /health", raw="GET /health",
                          http_status=200, method="GET", path="/health")
        failed = LogRecord(replica="prover-1", ts=None, level="error", message="GET /metrics 503",
                           raw="GET /metrics 503", http_status=503, method="GET", path="/metrics")
        pane.add_batch(batch([probe, rec(1, "a real request"), failed]))
        await wait_for(pilot, lambda: "a real request" in "\n".join(screen_lines(pane.view)))
        shown = "\n".join(screen_lines(pane.view))
        assert "GET /health" not in shown and "GET /metrics 503" in shown
        await wait_for(pilot, lambda: "probes hidden (m)" in pane.status.text)
        pane.view.focus()
        await pilot.press("m")
        await wait_for(pilot, lambda: "GET /health" in "\n".join(screen_lines(pane.view)))
        assert "probes hidden" not in pane.status.text
        await pilot.press("m")
        await wait_for(pilot, lambda: "GET /health" not in "\n".join(screen_lines(pane.view)))


async def test_a_fast_stream_of_hidden_probe_lines_waits_for_the_apps_tick():
    # Two replicas probed twice a second each, plus Prometheus: most of an idle console's log
    # lines are hidden probes. They must not make the pane redraw on its own timer (a screen
    # update each time) when what it shows changes once a second.
    app = PaneApp(monitoring_paths=("/health", "/metrics"))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane
        pane.shared_tick = True
        probe = LogRecord(replica="prover-1", ts=None, level="info", message="GET /health", raw="GET /health",
                          http_status=200, method="GET", path="/health")
        flushes = 0
        real_flush = pane._flush

        def counting_flush() -> None:
            nonlocal flushes
            flushes += 1
            real_flush()

        pane._flush = counting_flush  # type: ignore[method-assign]
        for _ in range(20):
            pane.add_batch(batch([probe] * 10))  # 200 lines in ~0.4 s: "fast" by arrival
            await pilot.pause(0.02)
        assert pane.meter.rate() >= 20 and pane.shown_meter.rate() == 0
        assert flushes == 0, "hidden lines drew the pane on its own timer"
        pane.flush_pending()  # the app's tick
        assert flushes == 1
        # Lines that are shown, as fast, are drawn every frame without waiting for the tick.
        for i in range(20):
            pane.add_batch(batch([rec(i * 10 + j, "real request") for j in range(10)]))
            await pilot.pause(0.02)
        assert pane.shown_meter.rate() >= 20
        pane.flush_pending()  # one more tick; from here on the pane draws by itself
        ticked = flushes
        for i in range(20, 30):
            pane.add_batch(batch([rec(i * 10 + j, "real request") for j in range(10)]))
            await pilot.pause(0.05)
        await wait_for(pilot, lambda: flushes >= ticked + 3)


def _count_calls(obj, name: str) -> list[int]:
    """Counts calls to obj.<name> from now on (an instance attribute: Textual looks methods such
    as `render_line` and `refresh` up on the widget each time)."""
    calls = [0]
    original = getattr(obj, name)

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(obj, name, counting)
    return calls


def _whole(view: LogView) -> list:
    """Every visible row as the view hands it to the compositor."""
    return list(view.render_lines(Region(0, 0, view.size.width, view.size.height)))


def _fresh(view: LogView) -> list:
    """Every visible row drawn from nothing, as Textual would after a style change."""
    view._forget()
    view._styles_cache.clear()
    return _whole(view)


async def test_following_a_tail_draws_only_the_new_line_and_the_screen_matches_a_full_repaint():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane
        view = pane.view
        pane.add_batch(batch([rec(i, ip="203.0.113.7") for i in range(200)]))
        await wait_for(pilot, lambda: "line 000199" in "\n".join(screen_lines(view)))
        await pilot.pause(0.1)
        calls = _count_calls(view, "render_line")  # the rows the styles cache asks for
        pane.add_batch(batch([rec(200, ip="203.0.113.7")]))
        # (not screen_lines: it would ask the view for every row itself)
        await wait_for(pilot, lambda: len(view.source) == 201 and view.scroll_offset.y == view.max_scroll_y)
        await pilot.pause(0.2)
        # The view scrolled by one line: the rows already on screen are reused, the new one drawn.
        assert 1 <= calls[0] <= 2, calls[0]
        shown = _whole(view)
        assert [s.text for s in shown][-1].rstrip().endswith("line 000200")
        assert shown == _fresh(view)


async def test_a_line_revealing_the_address_column_redraws_the_lines_before_it():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane
        view = pane.view
        pane.add_batch(batch([rec(i) for i in range(50)]))
        await wait_for(pilot, lambda: "line 000049" in "\n".join(screen_lines(view)))
        await pilot.pause(0.1)
        assert not view.formatter.show_ip
        # Drawn in one run with the lines before it, which are laid out before the column exists.
        pane.add_batch(batch([*(rec(i) for i in range(50, 54)), rec(54, "from a client", ip="198.51.100.23")]))
        await wait_for(pilot, lambda: view.formatter.show_ip and "198.51.100.23" in "\n".join(screen_lines(view)))
        await pilot.pause(0.2)
        shown = _whole(view)
        # Lines drawn before the column appeared must not come back from a cache without it.
        assert shown == _fresh(view)
        old = [s.text for s in shown if "line 0000" in s.text]
        assert old and len({s.index("line 0000") for s in old}) == 1
        assert shown[-1].text.index("from a client") == old[0].index("line 0000")


async def test_a_hidden_scrollbar_is_left_alone_while_following_and_right_when_shown():
    app = PaneApp()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane
        view = pane.view
        pane.add_batch(batch([rec(i) for i in range(100)]))
        await wait_for(pilot, lambda: len(view.source) == 100)
        await pilot.pause(0.1)
        bar = view.vertical_scrollbar
        assert view.follow and view.scrollbar_size_vertical == 0
        refreshed = _count_calls(bar, "refresh")
        for i in range(100, 110):
            pane.add_batch(batch([rec(i)]))
            await pilot.pause(0.05)
        await wait_for(pilot, lambda: len(view.source) == 110)
        # A refresh of a widget outside the compositor's map re-arranges the whole screen.
        assert refreshed[0] == 0
        view.focus()
        await pilot.press("home")
        await wait_for(pilot, lambda: not view.follow and view.scrollbar_size_vertical > 0)
        pane.add_batch(batch([rec(i) for i in range(110, 120)]))
        await wait_for(pilot, lambda: len(view.source) == 120)
        await pilot.pause(0.1)
        assert bar.window_virtual_size == 120 and bar.position == 0
        await pilot.press("end")
        await wait_for(pilot, lambda: view.follow)
        await pilot.press("up")
        await wait_for(pilot, lambda: not view.follow)
        await pilot.pause(0.1)
        assert bar.position == view.scroll_offset.y == view.max_scroll_y - 1
        # Jumping to a line from the bottom (a search hit) stops following and moves the bar too.
        await pilot.press("end")
        await wait_for(pilot, lambda: view.follow)
        view.show_position(5)
        await pilot.pause(0.1)
        assert not view.follow and bar.position == view.scroll_offset.y < 10
