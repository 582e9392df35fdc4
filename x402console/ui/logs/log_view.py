"""The scrolling part of the log pane: a virtual ScrollView that renders only visible lines.

Following toolong's LogLines: `virtual_size` says how many lines there are, `render_line` builds
the few on screen, and rendered strips are cached by the record's sequence number (which never
changes while the record is retained, unlike its position).

Text is put on screen as Segments made from plain strings: never through console markup, so a
log line containing "[red]" shows those characters. Records are sanitised upstream
(sources.sanitize), replica names are sanitised here because they come from discovery.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from typing import Iterable

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar
from textual.strip import Strip

from x402console.sources.logparse import LogRecord
from x402console.sources.sanitize import sanitize_line
from x402console.ui.logs.buffer import LineSource

__all__ = ["LineFormatter", "LogView"]

_LEVEL_TAGS = {"error": "ERR ", "warning": "WRN ", "info": "INF ", "debug": "DBG ", "unknown": "    "}
_LEVEL_STYLES = {
    "error": Style(color="red"),
    "warning": Style(color="yellow"),
    "info": Style(),
    "debug": Style(dim=True),
    "unknown": Style(),
}
_TAG_STYLES = {level: style + Style(bold=level in ("error", "warning")) for level, style in _LEVEL_STYLES.items()}
_REPLICA_PALETTE = ("cyan", "magenta", "green", "blue", "bright_cyan", "bright_magenta", "bright_green")
_TIME_STYLE = Style(dim=True)
_IP_STYLE = Style(color="bright_blue")
_MATCH_STYLE = Style(color="black", bgcolor="yellow")
_CURRENT_LINE_STYLE = Style(bgcolor="grey30")
_CURRENT_MATCH_STYLE = Style(color="black", bgcolor="dark_orange", bold=True)
IP_WIDTH = 15  # an IPv4 address; longer (IPv6) addresses push the message right
MAX_REPLICA_WIDTH = 24


class LineFormatter:
    """Lays out one record as columns: replica, HH:MM:SS, level tag, client IP, message."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        self.tz = tz
        self.replica_width = 0
        self.show_ip = False
        self._replica_cells: dict[str, tuple[str, Style]] = {}
        self._time_cache: dict[datetime, str] = {}

    @property
    def prefix_width(self) -> int:
        width = 9 + len("ERR ")  # "HH:MM:SS " + level tag
        if self.replica_width:
            width += self.replica_width + 1
        if self.show_ip:
            width += IP_WIDTH + 1
        return width

    def set_replicas(self, names: Iterable[str]) -> bool:
        """Size the replica column for these names; True when the layout changed."""
        names = list(names)
        width = min(MAX_REPLICA_WIDTH, max((len(sanitize_line(n, 200)) for n in names), default=0))
        for number, name in enumerate(names):
            if name not in self._replica_cells:
                colour = _REPLICA_PALETTE[number % len(_REPLICA_PALETTE)]
                self._replica_cells[name] = (sanitize_line(name, 200), Style(color=colour))
        if width != self.replica_width:
            self.replica_width = width
            return True
        return False

    def _time(self, ts: datetime | None) -> str:
        if ts is None:
            return "--:--:-- "
        # Neighbouring lines share their second; converting zones costs more than the rest.
        text = self._time_cache.get(ts)
        if text is None:
            try:
                text = ts.astimezone(self.tz).strftime("%H:%M:%S ")
            except (ValueError, OverflowError, OSError):
                text = "??:??:?? "
            if len(self._time_cache) >= 512:
                self._time_cache.clear()
            self._time_cache[ts] = text
        return text

    def columns(self, record: LogRecord) -> list[tuple[str, Style]]:
        """The line as (text, style) pieces, styles relative to the widget's own."""
        level = record.level if record.level in _LEVEL_TAGS else "unknown"
        level_style = _LEVEL_STYLES[level]
        pieces: list[tuple[str, Style]] = []
        if self.replica_width:
            cell = self._replica_cells.get(record.replica)
            if cell is None:
                cell = (sanitize_line(str(record.replica), 200), Style(bold=True))
                self._replica_cells[record.replica] = cell
            name, style = cell
            pieces.append((name[: self.replica_width].ljust(self.replica_width) + " ", style))
        pieces.append((self._time(record.ts), _TIME_STYLE))
        pieces.append((_LEVEL_TAGS[level], _TAG_STYLES[level]))
        if self.show_ip:
            pieces.append(((record.client_ip or "").ljust(IP_WIDTH) + " ", _IP_STYLE))
        pieces.append((record.message or record.raw, level_style))
        return pieces

    def plain(self, record: LogRecord) -> str:
        """The line exactly as shown, without styles (what search looks at)."""
        return "".join(text for text, _ in self.columns(record))

    def segments(
        self, record: LogRecord, base: Style, search: re.Pattern[str] | None = None, current: bool = False
    ) -> list[Segment]:
        pieces = self.columns(record)
        line_style = base + _CURRENT_LINE_STYLE if current else base
        if search is None:
            return [Segment(text, line_style + style) for text, style in pieces]
        plain = "".join(text for text, _ in pieces)
        spans = [(m.start(), m.end()) for m in search.finditer(plain) if m.end() > m.start()]
        if not spans:
            return [Segment(text, line_style + style) for text, style in pieces]
        mark = _CURRENT_MATCH_STYLE if current else _MATCH_STYLE
        return list(_highlight(pieces, spans, line_style, mark))


def _highlight(
    pieces: list[tuple[str, Style]], spans: list[tuple[int, int]], line_style: Style, mark: Style
) -> Iterable[Segment]:
    """Split pieces at match boundaries and lay the mark style over the matched characters."""
    offset = 0
    span_index = 0
    for text, style in pieces:
        end = offset + len(text)
        cursor = offset
        while cursor < end:
            while span_index < len(spans) and spans[span_index][1] <= cursor:
                span_index += 1
            if span_index < len(spans) and spans[span_index][0] <= cursor:
                stop = min(end, spans[span_index][1])
                yield Segment(text[cursor - offset : stop - offset], line_style + style + mark)
            else:
                stop = end if span_index >= len(spans) else min(end, spans[span_index][0])
                yield Segment(text[cursor - offset : stop - offset], line_style + style)
            cursor = stop
        offset = end


class LogView(ScrollView, can_focus=True):
    """Shows a LineSource; follows the newest line until the user scrolls up."""

    DEFAULT_CSS = """
    LogView {
        background: $surface;
        color: $foreground;
        overflow-x: auto;
        overflow-y: scroll;
        width: 1fr;
        height: 1fr;
        &:focus {
            background-tint: $foreground 5%;
        }
        /* Following, the bar would sit at the bottom and be redrawn with every new line (about
           as costly as the lines themselves): it comes back as soon as the view is scrolled. */
        &.-follow {
            scrollbar-size-vertical: 0;
        }
    }
    """

    class FollowChanged(Message):
        """Following turned on or off because the user scrolled."""

        def __init__(self, view: LogView, follow: bool) -> None:
            super().__init__()
            self.view = view
            self.follow = follow

        @property
        def control(self) -> LogView:
            return self.view

    def __init__(
        self,
        source: LineSource,
        *,
        cache_size: int = 1000,
        formatter: LineFormatter | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._source = source
        self.formatter = formatter or LineFormatter()
        self.follow = True
        self._top_seq: int | None = None
        self._adjusting = False
        self._cache: LRUCache[int, Strip] = LRUCache(cache_size)
        # The same lines as they go to the screen (Textual's styles and line filters applied,
        # cropped): scrolling by one line then costs one new line, not a screenful (see
        # render_lines). Valid for one _screen_key; cleared with _cache.
        self._screen: LRUCache[int, Strip] = LRUCache(cache_size)
        self._screen_key: tuple | None = None
        self._forgotten = 0  # counts _forget(): lines rendered across one are not kept
        self.add_class("-follow")  # after the cache: a class change clears it
        self._search: re.Pattern[str] | None = None
        self._current_seq: int | None = None
        self._widest = 0
        self._longest_message = 0
        self._layout_pending = False
        self._cache_base: Style | None = None
        self._frame: tuple[Style, int, int, int] | None = None

    # --- what is shown -----------------------------------------------------------------------

    @property
    def source(self) -> LineSource:
        return self._source

    def set_source(self, source: LineSource) -> None:
        """Show another source (live buffer <-> frozen snapshot), keeping the top line if it is there."""
        self._source = source
        self.sync(force=True)

    @property
    def search(self) -> re.Pattern[str] | None:
        return self._search

    def set_search(self, pattern: re.Pattern[str] | None) -> None:
        self._search = pattern
        self._forget()
        self.refresh()

    @property
    def current_seq(self) -> int | None:
        """Sequence number of the current search hit (drawn with a cursor), if any."""
        return self._current_seq

    def set_current(self, seq: int | None) -> None:
        self._current_seq = seq
        self.refresh()

    def invalidate(self) -> None:
        """Forget rendered lines (layout or styles changed)."""
        self._forget()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._forget()

    def _forget(self) -> None:
        self._cache.clear()
        self._screen.clear()
        self._forgotten += 1

    @property
    def top_position(self) -> int:
        return round(self.scroll_offset.y)

    @property
    def visible_height(self) -> int:
        return self.scrollable_content_region.height

    def show_position(self, position: int) -> None:
        """Scroll so that `position` is on screen (a third from the top); stops following."""
        self._set_follow(False)
        top = self.top_position
        height = max(1, self.visible_height)
        if not top <= position < top + height:
            self._scroll_y(max(0, position - height // 3))

    def jump_to_end(self) -> None:
        self._set_follow(True)
        self.sync()

    # --- keeping up with the source ----------------------------------------------------------

    def sync(self, longest_message: int | None = None, *, force: bool = False) -> None:
        """Catch up with the source: size, then stick to the bottom or to the line on top.

        Repaints only when something on screen can have changed: while following, when the
        view moved, or when the old last line was on screen (new lines appear under it).
        """
        if longest_message is not None:
            self._longest_message = longest_message
        source = self._source
        height = len(source)
        width = max(self.formatter.prefix_width + self._longest_message, self._widest)
        size = Size(width, height)
        old = self.virtual_size
        top_before = self.top_position
        if old != size:
            if old.width == width and self.show_vertical_scrollbar and self.is_mounted:
                # Only the line count changed. The vertical scrollbar is always shown
                # (overflow-y: scroll), so no scrollbar appears or goes and nothing else on the
                # screen moves: skip the layout pass a plain assignment would cause on every
                # frame while lines arrive (it re-renders the whole screen).
                self.set_reactive(LogView.virtual_size, size)
                if self._bar_drawn:
                    self._size_bar().refresh()
            else:
                self.virtual_size = size
        if self.follow:
            self._scroll_y(self.max_scroll_y)
        elif self._top_seq is not None:
            self._scroll_y(source.position_of(self._top_seq))
        if (
            force
            or self.follow
            or self.top_position != top_before
            or top_before + self.visible_height > old.height
        ):
            self.refresh()

    def on_resize(self) -> None:
        # A new height moves the bottom; a follower must stay on it.
        self.sync(force=True)

    def _scroll_y(self, y: int) -> None:
        self._adjusting = True
        try:
            y = max(0, min(y, self.max_scroll_y))
            if y != self.top_position:
                self.scroll_to(y=y, animate=False)
        finally:
            self._adjusting = False
        self._remember_top()

    def _remember_top(self) -> None:
        source = self._source
        top = self.top_position
        self._top_seq = source.seq_at(top) if 0 <= top < len(source) else None

    def _set_follow(self, follow: bool) -> None:
        if follow != self.follow:
            self.follow = follow
            self.set_class(follow, "-follow")
            if not follow and self.show_vertical_scrollbar:
                # The bar comes back: it was left alone while hidden (watch_scroll_y, sync),
                # and Textual's layout sets only its sizes, so bring its position up to date.
                self._size_bar().position = self.scroll_y
            self.post_message(self.FollowChanged(self, follow))

    def _size_bar(self) -> ScrollBar:
        """The vertical bar, told how many lines there are and how many fit."""
        bar = self.vertical_scrollbar
        bar.window_virtual_size = self.virtual_size.height
        bar.window_size = self.container_size.height - self.scrollbar_size_horizontal
        return bar

    @property
    def _bar_drawn(self) -> bool:
        """Whether the vertical scrollbar is on screen (following hides it: size 0). The follow
        flag counts first: the styles catch up with the class change only on the next CSS pass."""
        return self.show_vertical_scrollbar and (not self.follow or self.scrollbar_size_vertical > 0)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        # ScrollView's watcher, except that a hidden bar is not touched: refreshing a widget
        # that is not on screen makes Textual re-arrange the whole screen on the next frame
        # (about a third of an idle frame's cost). _set_follow brings the bar up to date
        # when it is shown again.
        if self._bar_drawn:
            self.vertical_scrollbar.position = new_value
        if round(old_value) != round(new_value):
            self.refresh(self.size.region)
        if self._adjusting:
            return
        # A scroll we did not make is the user's: away from the bottom stops following,
        # back to the bottom resumes it (as `tail -f` users expect).
        if round(new_value) >= self.max_scroll_y:
            self._set_follow(True)
        elif new_value < old_value:
            self._set_follow(False)
        self._remember_top()

    # Logs never animate: a slow link shows every intermediate frame, and an animation would
    # fight the anchoring done in sync().
    def action_scroll_up(self) -> None:
        self.scroll_up(animate=False)

    def action_scroll_down(self) -> None:
        self.scroll_down(animate=False)

    def action_page_up(self) -> None:
        self.scroll_page_up(animate=False)

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)

    def action_scroll_home(self) -> None:
        self._set_follow(False)
        self._scroll_y(0)

    def action_scroll_end(self) -> None:
        self.jump_to_end()

    # --- rendering ---------------------------------------------------------------------------

    def render_lines(self, crop):  # type: ignore[no-untyped-def]
        # Looked up once per frame rather than once per line: rich_style walks the ancestors.
        base = self.rich_style
        if base != self._cache_base:
            self._forget()  # cached strips carry the background (focus tint, theme)
            self._cache_base = base
        scroll_x, scroll_y = self.scroll_offset
        size = self.size
        self._frame = (base, scroll_x, scroll_y, size.width)
        try:
            return self._screen_lines(crop, base, scroll_x, scroll_y, size)
        finally:
            self._frame = None

    def _screen_lines(self, crop: Region, base: Style, scroll_x: int, scroll_y: int, size: Size) -> list[Strip]:
        """The lines of `crop`, screen-ready lines reused by sequence number.

        Following a live tail scrolls the view by a line or two a frame, and Textual then
        repaints the whole view through its styles cache (keyed by row, so every row is new):
        at idle that was the costliest part of a frame. A line's final strip depends only on
        its record and on what _screen_key holds (everything else clears the cache), so the
        rows whose record was on screen before are taken from _screen and only the new ones
        go through Textual (super().render_lines, in runs of consecutive rows).
        """
        key = (scroll_x, size, crop.column_span, self.background_colors,
               tuple(map(id, self.get_line_filters())), id(self.app.ansi_theme))
        if key != self._screen_key:
            self._screen.clear()
            self._screen_key = key
        source = self._source
        count = len(source)
        cached = self._screen
        current = self._current_seq
        strips: list[Strip | None] = []
        seqs: list[int | None] = []
        for y in crop.line_range:
            position = scroll_y + y
            seq = source.seq_at(position) if 0 <= position < count else None
            seqs.append(seq)
            strips.append(None if seq is None or seq == current else cached.get(seq))
        top = crop.y
        index = 0
        total = len(strips)
        while index < total:
            if strips[index] is not None:
                index += 1
                continue
            end = index
            while end < total and strips[end] is None:
                end += 1
            forgotten = self._forgotten
            rendered = super().render_lines(Region(crop.x, top + index, crop.width, end - index))
            # A line that revealed the address column cleared the caches half-way through:
            # the lines drawn before it are stale and are drawn again after the relayout.
            keep = forgotten == self._forgotten
            for offset, strip in enumerate(rendered):
                strips[index + offset] = strip
                seq = seqs[index + offset]
                if keep and seq is not None and seq != current:
                    cached.set(seq, strip)
            index = end
        return strips  # type: ignore[return-value]

    def render_line(self, y: int) -> Strip:
        frame = self._frame
        if frame is None:  # called directly (tests, copy): no frame in progress
            base = self.rich_style
            if base != self._cache_base:
                self._forget()
                self._cache_base = base
            scroll_x, scroll_y = self.scroll_offset
            width = self.size.width
        else:
            base, scroll_x, scroll_y, width = frame
        position = scroll_y + y
        source = self._source
        try:
            seq = source.seq_at(position)
            record = source.record_at(position)
        except IndexError:
            # Past the last line, or the source shrank since the frame was laid out.
            return Strip.blank(width, base)
        if record.client_ip and not self.formatter.show_ip:
            # Column appears the first time an address is on screen; lines already cached
            # were laid out without it.
            self.formatter.show_ip = True
            self._forget()
            self._schedule_layout()
        if seq == self._current_seq:
            strip = self._build(record, base, current=True)
        else:
            strip = self._cache.get(seq)
            if strip is None:
                strip = self._build(record, base)
                self._cache.set(seq, strip)
        if scroll_x == 0 and strip.cell_length <= width:
            return strip.extend_cell_length(width, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _build(self, record: LogRecord, base: Style, current: bool = False) -> Strip:
        segments = self.formatter.segments(record, base, self._search, current)
        # Strip would measure every segment; ASCII text (nearly every log line) is one cell
        # per character, so only the rest needs rich's measuring.
        length = 0
        for segment in segments:
            text = segment.text
            length += len(text) if text.isascii() else cell_len(text)
        strip = Strip(segments, length)
        if length > self._widest:
            # Wide characters make a line longer on screen than its length says.
            self._widest = strip.cell_length
            self._schedule_layout()
        return strip

    def _schedule_layout(self) -> None:
        if not self._layout_pending:
            self._layout_pending = True
            self.call_later(self._relayout)

    def _relayout(self) -> None:
        self._layout_pending = False
        self.sync(force=True)

    def render_text(self, position: int) -> str:
        """The plain text of the line at `position` as it is laid out (for tests and copy)."""
        return self.formatter.plain(self._source.record_at(position))
