"""The event list of the timeline screen: a virtual ScrollView that renders only visible rows.

A journal grows to thousands of events during a long incident, and the list follows it live,
so its cost must not grow with its length: `virtual_size` says how many rows there are,
`render_line` builds the few on screen, and built rows are cached by event id (an id never
changes, unlike a row's position while a filter changes).

Every piece of text is put on screen as a Segment of plain, sanitised text (never console
markup): summaries and actors quote log lines and header values an attacker may have chosen.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import date, datetime, timezone
from typing import Sequence

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.cache import LRUCache
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from x402console.journal.models import EVENT_KINDS, TimelineEvent
from x402console.sources.sanitize import sanitize_line

__all__ = ["KIND_STYLES", "KIND_WIDTH", "TimelineView", "time_cell", "event_key"]

KIND_STYLES: dict[str, Style] = {
    "observation": Style(color="cyan"),
    "action_started": Style(color="yellow"),
    "action_finished": Style(color="green"),
    "note": Style(color="bright_white", bold=True),
    "checklist": Style(color="blue"),
    "severity_changed": Style(color="red", bold=True),
    "status_changed": Style(color="bright_magenta", bold=True),
    "escalation": Style(color="bright_red", bold=True, underline=True),
    "role_changed": Style(color="bright_blue"),
    "system": Style(dim=True),
}
# An action that did not succeed must stand out from the ones that did.
_BAD_OUTCOME_STYLE = Style(color="red", bold=True)
_BAD_OUTCOMES = (": failed", ": refused", ": cancelled", "outcome unknown", "(reported after it was marked unknown)")
KIND_WIDTH = max(len(k) for k in EVENT_KINDS)
MAX_ACTOR_WIDTH = 28
MAX_SUMMARY = 1000  # a row never shows more; the details panel shows the whole text
_TIME_STYLE = Style(dim=True)
_ACTOR_STYLE = Style(color="bright_cyan")
_DATE_WIDTH = len("2026-01-01 00:00:00")


def event_key(event: TimelineEvent) -> tuple[datetime, int]:
    """Timeline order, the same as the journal's and the export's: time, then id."""
    return (event.ts, event.id)


def time_cell(ts: datetime, today: date, with_date: bool) -> str:
    """UTC HH:MM:SS, with the date in front when the event is not from today (UTC)."""
    utc = ts.astimezone(timezone.utc)
    clock = utc.strftime("%H:%M:%S")
    if not with_date:
        return clock
    if utc.date() == today:
        return clock.rjust(_DATE_WIDTH)  # times stay in one column under dated rows
    return utc.strftime("%Y-%m-%d %H:%M:%S")


def _kind_style(event: TimelineEvent) -> Style:
    if event.kind == "action_finished" and event.summary.endswith(_BAD_OUTCOMES):
        return _BAD_OUTCOME_STYLE
    return KIND_STYLES.get(event.kind, Style())


class TimelineView(ScrollView, can_focus=True):
    """Rows of events in timeline order, with a cursor; follows the newest row like a log."""

    DEFAULT_CSS = """
    TimelineView {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: scroll;
        height: 1fr;
        &:focus { background-tint: $foreground 5%; }
    }
    TimelineView > .timeline-view--cursor {
        background: $block-cursor-blurred-background;
    }
    TimelineView:focus > .timeline-view--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    """
    COMPONENT_CLASSES = {"timeline-view--cursor"}
    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False, id="timeline.cursor_up", tooltip="Select the previous event"),
        Binding("down", "cursor_down", "Down", show=False, id="timeline.cursor_down",
                tooltip="Select the next event"),
        Binding("pageup", "page_up", "Page up", show=False, id="timeline.page_up", tooltip="One page up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="timeline.page_down", tooltip="One page down"),
        Binding("home", "first", "First", show=False, id="timeline.first", tooltip="Select the oldest event"),
        Binding("end", "last", "Follow", id="timeline.follow",
                tooltip="Select the newest event and follow new ones as they arrive"),
        Binding("enter", "select", "Details", id="timeline.details",
                tooltip="Show (or hide) the selected event's details"),
    ]

    class Selected(Message):
        """Enter on a row: the screen shows its details."""

        def __init__(self, view: TimelineView, event: TimelineEvent) -> None:
            super().__init__()
            self.view = view
            self.event = event

        @property
        def control(self) -> TimelineView:
            return self.view

    class CursorMoved(Message):
        def __init__(self, view: TimelineView, event: TimelineEvent | None, follow: bool) -> None:
            super().__init__()
            self.view = view
            self.event = event
            self.follow = follow

        @property
        def control(self) -> TimelineView:
            return self.view

    def __init__(self, *, cache_size: int = 500, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.rows: list[TimelineEvent] = []
        self.cursor: int | None = None
        self.follow = True
        self._cache: LRUCache[tuple[int, bool], Strip] = LRUCache(cache_size)
        self._cache_key: tuple[object, ...] | None = None
        self._actor_width = 8
        self._with_date = False
        self._adjusting = False
        self._frame: tuple[Style, Style, int, int] | None = None

    # --- what is shown -----------------------------------------------------------------------

    @property
    def selected(self) -> TimelineEvent | None:
        if self.cursor is None or not 0 <= self.cursor < len(self.rows):
            return None
        return self.rows[self.cursor]

    def set_rows(self, rows: Sequence[TimelineEvent]) -> None:
        """Show these rows (already in timeline order); keep the selected event if it is still there."""
        before = self.selected
        self.rows = list(rows)
        self._measure(self.rows, reset=True)
        if not self.rows:
            self.cursor = None
        elif self.follow or before is None:
            self.cursor = len(self.rows) - 1
        else:
            # The nearest event at or after the one selected before: the reader keeps their place.
            self.cursor = min(bisect_left(self.rows, event_key(before), key=event_key), len(self.rows) - 1)
        self._sync(moved=True)

    def append_rows(self, rows: Sequence[TimelineEvent]) -> None:
        """Add rows that come after every row shown (new events from the journal)."""
        if not rows:
            return
        self.rows.extend(rows)
        self._measure(rows)
        if self.follow or self.cursor is None:
            self.cursor = len(self.rows) - 1
        self._sync(moved=self.follow)

    def _measure(self, rows: Sequence[TimelineEvent], reset: bool = False) -> None:
        today = datetime.now(timezone.utc).date()
        actor_width = 8 if reset else self._actor_width
        with_date = False if reset else self._with_date
        for e in rows:
            if actor_width < MAX_ACTOR_WIDTH:
                actor_width = max(actor_width, min(MAX_ACTOR_WIDTH, len(e.actor)))
            if not with_date and e.ts.astimezone(timezone.utc).date() != today:
                with_date = True
        if (actor_width, with_date) != (self._actor_width, self._with_date):
            self._actor_width, self._with_date = actor_width, with_date
            self._cache.clear()

    # --- cursor and scrolling ----------------------------------------------------------------

    def _sync(self, moved: bool) -> None:
        size = Size(self.size.width or 80, len(self.rows))
        if self.virtual_size != size:
            self.virtual_size = size
        if self.follow:
            self._jump_to(self.max_scroll_y if self.rows else 0, exact_end=True)
        elif moved:
            self._keep_cursor_visible()
        self.refresh()
        if moved:
            self.post_message(self.CursorMoved(self, self.selected, self.follow))

    def _jump_to(self, y: int, exact_end: bool = False) -> None:
        self._adjusting = True
        try:
            # The virtual height may not be laid out yet; the end is then max(0, rows - height).
            end = max(0, len(self.rows) - max(1, self.scrollable_content_region.height))
            target = end if exact_end else max(0, min(y, end))
            if round(self.scroll_offset.y) != target:
                self.scroll_to(y=target, animate=False, force=True)
        finally:
            self._adjusting = False

    def _keep_cursor_visible(self) -> None:
        if self.cursor is None:
            return
        top = round(self.scroll_offset.y)
        height = max(1, self.scrollable_content_region.height)
        if self.cursor < top:
            self._jump_to(self.cursor)
        elif self.cursor >= top + height:
            self._jump_to(self.cursor - height + 1)

    def move_cursor(self, index: int) -> None:
        if not self.rows:
            return
        index = max(0, min(index, len(self.rows) - 1))
        changed = index != self.cursor
        self.cursor = index
        # At the newest row the list follows again, as `tail -f` readers expect.
        self.follow = index == len(self.rows) - 1
        self._keep_cursor_visible()
        self.refresh()
        if changed:
            self.post_message(self.CursorMoved(self, self.selected, self.follow))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if not self._adjusting and new_value < old_value and self.follow:
            # The reader scrolled up (wheel, scrollbar): new events must not pull them back down.
            self.follow = False
            self.post_message(self.CursorMoved(self, self.selected, self.follow))

    def on_resize(self) -> None:
        # The details panel opening shrinks the list: the selected row must stay in sight.
        self._cache.clear()
        self._sync(moved=False)
        if not self.follow:
            self._keep_cursor_visible()

    def action_cursor_up(self) -> None:
        self.move_cursor((self.cursor if self.cursor is not None else len(self.rows)) - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor((self.cursor if self.cursor is not None else -1) + 1)

    def action_page_up(self) -> None:
        self.move_cursor((self.cursor or 0) - max(1, self.scrollable_content_region.height - 1))

    def action_page_down(self) -> None:
        self.move_cursor((self.cursor or 0) + max(1, self.scrollable_content_region.height - 1))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.follow = True
        self.move_cursor(len(self.rows) - 1)
        self._jump_to(self.max_scroll_y, exact_end=True)

    def action_select(self) -> None:
        event = self.selected
        if event is not None:
            self.post_message(self.Selected(self, event))

    def on_click(self, event: Click) -> None:
        index = round(self.scroll_offset.y) + event.y
        if 0 <= index < len(self.rows):
            if index == self.cursor and event.chain >= 2:
                self.action_select()
            self.move_cursor(index)

    # --- rendering ---------------------------------------------------------------------------

    def render_lines(self, crop):  # type: ignore[no-untyped-def]
        # Styles are looked up once per frame, not once per line: rich_style walks the ancestors.
        base = self.rich_style
        cursor = self.get_component_rich_style("timeline-view--cursor")
        today = datetime.now(timezone.utc).date()
        width = self.size.width
        key = (base, cursor, today, width)
        if key != self._cache_key:
            self._cache.clear()  # cached rows carry the background, the width and "today"
            self._cache_key = key
        self._frame = (base, cursor, round(self.scroll_offset.y), width)
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        if self._frame is None:  # called directly (tests): no frame in progress
            base, cursor_style = self.rich_style, self.get_component_rich_style("timeline-view--cursor")
            top, width = round(self.scroll_offset.y), self.size.width
        else:
            base, cursor_style, top, width = self._frame
        index = top + y
        if not 0 <= index < len(self.rows):
            return Strip.blank(width, base)
        event = self.rows[index]
        current = index == self.cursor
        strip = self._cache.get((event.id, current))
        if strip is None:
            strip = self._build(event, base + cursor_style if current else base, width)
            self._cache.set((event.id, current), strip)
        return strip

    def row_text(self, index: int) -> str:
        """The plain text of a row as laid out (for tests)."""
        return "".join(text for text, _ in self._pieces(self.rows[index]))

    def _pieces(self, event: TimelineEvent) -> list[tuple[str, Style]]:
        today = datetime.now(timezone.utc).date()
        # A narrow terminal gives the summary the room; the details panel has the whole actor.
        actor_width = min(self._actor_width, max(8, self.size.width // 6))
        actor = sanitize_line(event.actor, MAX_ACTOR_WIDTH)
        if len(actor) > actor_width:
            actor = actor[: actor_width - 1] + "…"
        return [
            (time_cell(event.ts, today, self._with_date) + " ", _TIME_STYLE),
            (sanitize_line(event.kind, KIND_WIDTH).ljust(KIND_WIDTH) + " ", _kind_style(event)),
            (actor.ljust(actor_width) + " ", _ACTOR_STYLE),
            (sanitize_line(event.summary, MAX_SUMMARY), Style()),
        ]

    def _build(self, event: TimelineEvent, line_style: Style, width: int) -> Strip:
        segments = [Segment(text, line_style + style) for text, style in self._pieces(event)]
        length = sum(len(s.text) if s.text.isascii() else cell_len(s.text) for s in segments)
        return Strip(segments, length).crop_extend(0, width, line_style)
