"""The log pane: live log lines from every replica, with grep-like filters, search and pause.

The app calls `add_batch` from a message handler on the UI thread. That call only appends to
the ring buffer and counts; drawing is coalesced to at most one sync per frame by a one-shot
timer, so a flood of batches costs one render of the visible lines per frame, not one per batch.

Filtering hides non-matching lines (substring by default, optional regex/invert/case); search
highlights matches without hiding anything; presets are the runbook's greps. Pause freezes what
is on screen (a snapshot of the shown lines) while the buffer keeps filling, and says how many
new lines are waiting; resuming jumps to the newest line and follows again.
"""

from __future__ import annotations

import re
import time
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.constants import MAX_FPS
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Input

from x402console.sources.logparse import (
    PRESET_FILTERS,
    FilterError,
    LogFilter,
    LogRecord,
    PresetFilter,
    TopClients,
)
from x402console.sources.models import LogBatch
from x402console.ui.logs.buffer import DEFAULT_CAPACITY, LogBuffer, ViewFilter, find_line
from x402console.ui.logs.log_view import LogView
from x402console.ui.logs.meter import RateMeter
from x402console.ui.logs.top_clients import TopClientsPanel

__all__ = ["LogPane", "LogStatus", "FilterFlags"]

_ONLY_RECORDS = {LogRecord}
STATUS_INTERVAL = 0.25  # seconds between status line redraws caused by arriving lines
_ERROR_STYLE = Style(color="red", bold=True)
_PAUSED_STYLE = Style(color="black", bgcolor="yellow", bold=True)
_FOLLOW_STYLE = Style(color="green", bold=True)
_DIM = Style(dim=True)
_ON = Style(bold=True, reverse=True)


# Above this rate of lines that pass the filter, lines are drawn every frame; below it, on the
# app's refresh tick when shared. Lines the filter hides (the console's own probes, two a second
# per replica) change nothing on screen but the counters: they never make the stream "fast".
FAST_LINES_PER_SECOND = 20.0

class LogStatus(Widget):
    """One line of counters; holds a prepared Text so rendering is free."""

    DEFAULT_CSS = """
    LogStatus {
        height: 1;
        background: $panel;
        color: $foreground;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text()

    def show(self, text: Text) -> None:
        if text != self._text:
            self._text = text
            self.refresh()

    @property
    def text(self) -> str:
        return self._text.plain

    def render(self) -> Text:
        return self._text


class FilterFlags(Widget):
    """Which filter toggles are on: .* regex, ! invert, Aa case-sensitive."""

    DEFAULT_CSS = """
    FilterFlags {
        width: auto;
        height: 1;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.flags = (False, False, False)

    def set_flags(self, regex: bool, invert: bool, case_sensitive: bool) -> None:
        self.flags = (regex, invert, case_sensitive)
        self.refresh()

    def get_content_width(self, container, viewport) -> int:  # type: ignore[no-untyped-def]
        return len(".* ! Aa")

    def render(self) -> Text:
        text = Text(no_wrap=True)
        for label, on_ in zip((".*", "!", "Aa"), self.flags):
            if text:
                text.append(" ")
            text.append(label, _ON if on_ else _DIM)
        return text


class LogPane(Vertical):
    """Log lines of all replicas plus the controls an on-call engineer greps with."""

    DEFAULT_CSS = """
    LogPane {
        height: 1fr;
    }
    LogPane > #logs-bar {
        height: 1;
    }
    LogPane > #logs-bar > Input {
        border: none;
        height: 1;
        padding: 0 1;
        width: 1fr;
    }
    LogPane > #logs-bar > Input.-error {
        color: $error;
    }
    LogPane > #logs-body {
        height: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter", id="logs.filter",
                tooltip="Type to hide lines that do not match (substring; see regex/invert toggles)"),
        Binding("ctrl+r", "toggle_regex", "Regex", id="logs.regex",
                tooltip="Filter and search patterns are regular expressions"),
        Binding("ctrl+n", "toggle_invert", "Invert", id="logs.invert",
                tooltip="Show lines that do NOT match the filter (grep -v)"),
        Binding("ctrl+t", "toggle_case", "Case", id="logs.case", show=False,
                tooltip="Case-sensitive filter and search (insensitive by default)"),
        Binding("e", "preset('errors')", "Errors", id="logs.errors",
                tooltip="Only errors: level error or 'error' in the line"),
        Binding("v", "preset('validation')", "Validation", id="logs.validation",
                tooltip="Only validation failures"),
        Binding("r", "preset('rate_limit')", "Rate limits", id="logs.ratelimit",
                tooltip="Only rate limiting: HTTP 429 or 'rate limit' in the line"),
        Binding("c", "cycle_replica", "Replica", id="logs.replica",
                tooltip="Show one replica at a time, then all again"),
        Binding("x", "clear_filters", "Clear", id="logs.clear", show=False,
                tooltip="Drop the filter, preset and replica choice"),
        Binding("p", "toggle_pause", "Pause", id="logs.pause",
                tooltip="Freeze the view (lines keep being collected) / resume and follow"),
        Binding("f", "follow", "Follow", id="logs.follow", show=False,
                tooltip="Jump to the newest line and keep following"),
        Binding("ctrl+f", "focus_search", "Search", id="logs.search",
                tooltip="Highlight matches without hiding other lines"),
        Binding("n", "search_next", "Next", id="logs.search_next", show=False,
                tooltip="Next search match"),
        Binding("N", "search_previous", "Previous", id="logs.search_prev", show=False,
                tooltip="Previous search match"),
        Binding("m", "toggle_monitoring", "Probes", id="logs.monitoring", show=False,
                tooltip="Show or hide successful /health and /metrics requests (the console's own polls and "
                        "Prometheus's scrapes); failed ones always show"),
        Binding("t", "toggle_top_clients", "Top clients", id="logs.top_clients",
                tooltip="Busiest client IPs over the window, with their 429s"),
        Binding("escape", "leave_input", "Back to log", id="logs.back", show=False,
                tooltip="Leave the filter/search box"),
    ]

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        *,
        top_window_seconds: float = 300.0,
        fps: float | None = None,
        monitoring_paths: tuple[str, ...] = (),
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.buffer = LogBuffer(capacity)
        self.top_clients = TopClients(window_seconds=top_window_seconds)
        self.meter = RateMeter()  # every line that arrives (the status line's lines/s)
        self.shown_meter = RateMeter()  # the lines that pass the filter: what must be drawn
        self._frame = 1.0 / (fps if fps and fps > 0 else MAX_FPS)
        self.dropped = 0
        self.rejected = 0
        # Set by an app that calls flush_pending() on its own tick (see _schedule_flush).
        self.shared_tick = False
        self.paused = False
        self._paused_baseline = 0
        self.regex = False
        self.invert = False
        self.case_sensitive = False
        self.preset: PresetFilter | None = None
        self.replica: str | None = None
        self.monitoring_paths = frozenset(p for p in monitoring_paths if p)
        # The console polls every replica's /health and /metrics each second: their access
        # lines would scroll the real ones away and keep an idle pane redrawing. Hidden by default.
        self.hide_monitoring = bool(self.monitoring_paths)
        self.filter_error: str | None = None
        self.search_error: str | None = None
        self.search_note: str | None = None
        self._search_filter: re.Pattern[str] | None = None
        self._flush_pending = False
        self._replica_count = 0
        self._status_at = 0.0
        self._stale = False
        self._status_pending = False
        if self.hide_monitoring:
            self.buffer.set_filter(ViewFilter(hide_paths=self.monitoring_paths))
        self.view = LogView(self.buffer.live, id="logs-view")
        self.status = LogStatus(id="logs-status")
        self.flags = FilterFlags(id="logs-flags")
        self.top_panel = TopClientsPanel(self.top_clients, id="logs-top")
        self.filter_input = Input(placeholder="filter  (/)", id="logs-filter", select_on_focus=False)
        self.search_input = Input(placeholder="search  (ctrl+f, n/N)", id="logs-search", select_on_focus=False)

    def compose(self) -> ComposeResult:
        # The view comes first in the DOM so it, not a text box, gets focus first; the
        # prompt sits under the lines, where `less` and vim users look for it.
        with Horizontal(id="logs-body"):
            yield self.view
            yield self.top_panel
        with Horizontal(id="logs-bar"):
            yield self.filter_input
            yield self.flags
            yield self.search_input
        yield self.status

    def on_mount(self) -> None:
        self._own_tick = self.set_interval(1.0, self._tick)
        self._flush()

    def _tick(self) -> None:
        if self.shared_tick:
            # The app's refresh tick calls frame_tick() inside its one screen update: this
            # pane's own timer is not needed any more.
            self._own_tick.stop()
            return
        self.frame_tick()

    def mark_stale(self) -> None:
        self._stale = True

    def frame_tick(self) -> None:
        # lines/s decays to 0 when the source goes quiet, and a pane that was hidden or under
        # a dialog while lines arrived catches up: nothing else would redraw either.
        if self._stale:
            self._flush()
        elif self._drawable():
            self._update_status()

    def _drawable(self) -> bool:
        try:
            return bool(self.display) and self.app.screen is self.screen
        except Exception:  # not attached to a screen (yet, or any more)
            return False

    # --- the hot path ------------------------------------------------------------------------

    def add_batch(self, batch: LogBatch) -> None:
        """Take a batch of parsed, sanitised records. Cheap: no drawing happens here."""
        records = getattr(batch, "records", ())
        dropped = getattr(batch, "dropped", 0)
        if isinstance(dropped, int) and dropped > 0:
            self.dropped += dropped
        if not isinstance(records, tuple):
            try:
                records = tuple(records)
            except TypeError:  # not even a sequence: nothing to show, nothing to break
                records = ()
        if records:
            if set(map(type, records)) != _ONLY_RECORDS:  # C speed; the slow path is rare
                good = tuple(r for r in records if isinstance(r, LogRecord))
                self.rejected += len(records) - len(good)
                records = good
            matched = self.buffer.matched_total
            added = self.buffer.extend(records)
            self.shown_meter.add(self.buffer.matched_total - matched)
            top = self.top_clients
            count = top.add
            if top.count_app_lines:
                for record in records:
                    if record.client_ip is not None:
                        count(record)
            else:
                # TopClients only counts access lines (one per request); skip the call for the
                # rest, which is most of the stream.
                for record in records:
                    if record.http_status is not None and record.client_ip is not None:
                        count(record)
            self.meter.add(added)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_pending or not self.is_mounted:
            return
        self._flush_pending = True
        if self.shared_tick and self.shown_meter.rate() < FAST_LINES_PER_SECOND:
            # A slow stream is drawn on the app's own refresh tick, together with the other
            # panes: one screen update a second instead of one per trickling line.
            return
        self.set_timer(self._frame, self._flush)

    def flush_pending(self) -> None:
        """Draw what arrived since the last draw (the app calls this on its refresh tick)."""
        if self._flush_pending:
            self._flush()

    def _flush(self) -> None:
        self._flush_pending = False
        if not self._drawable():
            # Hidden, or a dialog is on top: keep counting, draw when seen again (_tick).
            self._stale = True
            return
        self._stale = False
        replicas = self.buffer.replicas
        if len(replicas) != self._replica_count:
            self._replica_count = len(replicas)
            if self.view.formatter.set_replicas(replicas):
                self.view.invalidate()
        if not self.paused:
            self.view.sync(self.buffer.longest_message)
        self._update_status_soon()

    # --- status ------------------------------------------------------------------------------

    @property
    def new_while_paused(self) -> int:
        return self.buffer.matched_total - self._paused_baseline if self.paused else 0

    def status_text(self) -> Text:
        buffer = self.buffer
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.paused:
            text.append(f" PAUSED +{self.new_while_paused:,} new lines ", _PAUSED_STYLE)
        elif self.view.follow:
            text.append(" FOLLOW ", _FOLLOW_STYLE)
        else:
            text.append(" SCROLLED ", _DIM)
        # Errors first: on a narrow terminal the end of the line is cut off.
        if self.filter_error:
            text.append(" filter: " + self.filter_error + " ", _ERROR_STYLE)
        if self.search_error:
            text.append(" search: " + self.search_error + " ", _ERROR_STYLE)
        text.append(f" lines {buffer.total:,} · shown {len(self.view.source):,} of {len(buffer):,} kept")
        text.append(f" · dropped {self.dropped + self.rejected:,}")
        text.append(f" · {self.meter.rate():,.0f} lines/s")
        shown = self._filter_summary()
        if shown:
            text.append(" · " + shown, Style(bold=True))
        if self.search_note and not self.search_error:
            text.append(" · " + self.search_note, _DIM)
        return text

    def _filter_summary(self) -> str:
        parts = []
        current = self.buffer.filter
        if current.text is not None:
            mode = "regex" if current.text.regex else "text"
            parts.append(f"{'NOT ' if current.text.invert else ''}{mode} {current.text.pattern!r}")
        if self.preset is not None:
            parts.append(f"preset {self.preset.name}")
        if self.replica is not None:
            parts.append(f"replica {self.replica}")
        if current.hide_paths:
            parts.append("probes hidden (m)")
        return " & ".join(parts)

    def _update_status(self) -> None:
        self._status_at = time.monotonic()
        self.status.show(self.status_text())

    def _update_status_soon(self) -> None:
        """Counters change every frame under load but are read a few times a second; drawing
        the status line costs about as much as the changed log lines, so it is throttled
        (with a trailing update, so the last numbers are always shown)."""
        if self.shared_tick and self.shown_meter.rate() < FAST_LINES_PER_SECOND:
            # A slow stream is drawn on the app's tick, at most once a second already: a
            # trailing timer here would add a second screen update every second.
            self._update_status()
            return
        wait = self._status_at + STATUS_INTERVAL - time.monotonic()
        if wait <= 0:
            self._update_status()
        elif not self._status_pending:
            self._status_pending = True
            self.set_timer(wait, self._trailing_status)

    def _trailing_status(self) -> None:
        self._status_pending = False
        self._update_status()

    # --- filters -----------------------------------------------------------------------------

    def _compile(self, pattern: str, invert: bool = False) -> LogFilter:
        return LogFilter(pattern, regex=self.regex, invert=invert, case_sensitive=self.case_sensitive)

    def apply_filter(self) -> None:
        """Rebuild the shown lines from the filter box, toggles, preset and replica choice."""
        pattern = self.filter_input.value
        text = self.buffer.filter.text
        self.filter_error = None
        if not pattern:
            text = None
        else:
            try:
                text = self._compile(pattern, self.invert)
            except FilterError as exc:
                # Keep showing what the last valid filter showed while the user is mid-typing.
                self.filter_error = str(exc)
        self.filter_input.set_class(self.filter_error is not None, "-error")
        hide = self.monitoring_paths if self.hide_monitoring else frozenset()
        self._set_view_filter(ViewFilter(text=text, preset=self.preset, replica=self.replica, hide_paths=hide))

    def _set_view_filter(self, view_filter: ViewFilter) -> None:
        current = self.buffer.filter
        if (view_filter.text, view_filter.preset, view_filter.replica, view_filter.hide_paths) == (
            current.text, current.preset, current.replica, current.hide_paths
        ):
            # Nothing changed (e.g. an invalid pattern keeps the last valid one): a paused
            # view must not be re-frozen, which would swallow the "+N new lines".
            self.flags.set_flags(self.regex, self.invert, self.case_sensitive)
            self._update_status()
            return
        self.buffer.set_filter(view_filter)
        if self.paused:
            # A new filter over a frozen view: freeze again with the filter applied.
            self._paused_baseline = self.buffer.matched_total
            self.view.set_source(self.buffer.snapshot())
        else:
            self.view.set_source(self.buffer.live)
        self.flags.set_flags(self.regex, self.invert, self.case_sensitive)
        self._update_status()

    def set_filter_text(self, pattern: str) -> None:
        """Set the filter box programmatically (e.g. from the incident view)."""
        with self.filter_input.prevent(Input.Changed):
            self.filter_input.value = pattern
        self.apply_filter()

    @on(Input.Changed, "#logs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.apply_filter()

    @on(Input.Submitted, "#logs-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.view.focus()

    def action_focus_filter(self) -> None:
        self.filter_input.focus()

    def action_toggle_regex(self) -> None:
        self.regex = not self.regex
        self.apply_filter()
        self.apply_search(jump=False)

    def action_toggle_invert(self) -> None:
        self.invert = not self.invert
        self.apply_filter()

    def action_toggle_case(self) -> None:
        self.case_sensitive = not self.case_sensitive
        self.apply_filter()
        self.apply_search(jump=False)

    def action_preset(self, name: str) -> None:
        preset = PRESET_FILTERS.get(name)
        if preset is None:
            return
        self.preset = None if self.preset is preset else preset
        self.apply_filter()

    def action_cycle_replica(self) -> None:
        names = self.buffer.replicas
        if not names:
            self.replica = None
        elif self.replica not in names:
            self.replica = names[0]
        else:
            following = names.index(self.replica) + 1
            self.replica = names[following] if following < len(names) else None
        self.apply_filter()

    def action_toggle_monitoring(self) -> None:
        if not self.monitoring_paths:
            return
        self.hide_monitoring = not self.hide_monitoring
        self.apply_filter()

    def action_clear_filters(self) -> None:
        self.preset = None
        self.replica = None
        with self.filter_input.prevent(Input.Changed):
            self.filter_input.value = ""
        self.apply_filter()

    # --- pause / follow ----------------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        if self.paused:
            self.resume()
        else:
            self.pause()

    def pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        self._paused_baseline = self.buffer.matched_total
        self.view.set_source(self.buffer.snapshot())
        self._update_status()

    def resume(self) -> None:
        """Unfreeze, catch up with everything collected meanwhile, and follow."""
        self.paused = False
        self.view.set_source(self.buffer.live)
        self.view.jump_to_end()
        self._update_status()

    def action_follow(self) -> None:
        if self.paused:
            self.resume()
        else:
            self.view.jump_to_end()
            self._update_status()

    @on(LogView.FollowChanged)
    def _follow_changed(self, event: LogView.FollowChanged) -> None:
        event.stop()
        self._update_status()

    # --- search ------------------------------------------------------------------------------

    def apply_search(self, jump: bool = True) -> None:
        pattern = self.search_input.value
        self.search_error = None
        self.search_note = None
        compiled: re.Pattern[str] | None = None
        if pattern:
            try:
                self._compile(pattern)  # same validation and wording as the filter
                flags = 0 if self.case_sensitive else re.IGNORECASE
                compiled = re.compile(pattern if self.regex else re.escape(pattern), flags)
            except (FilterError, re.error) as exc:
                self.search_error = str(exc)
        self.search_input.set_class(self.search_error is not None, "-error")
        if self.search_error is None:
            self._search_filter = compiled
            self.view.set_search(compiled)
            if compiled is None:
                self.view.set_current(None)
            elif jump:
                self._find(backwards=False, from_top=True)
        self._update_status()

    @on(Input.Changed, "#logs-search")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.apply_search()

    @on(Input.Submitted, "#logs-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.view.focus()

    def action_focus_search(self) -> None:
        self.search_input.focus()

    def action_search_next(self) -> None:
        self._find(backwards=False)

    def action_search_previous(self) -> None:
        self._find(backwards=True)

    def _find(self, backwards: bool, from_top: bool = False) -> None:
        pattern = self._search_filter
        if pattern is None:
            self.search_note = "no search: ctrl+f to type one"
            self._update_status()
            return
        view = self.view
        source = view.source
        plain = view.formatter.plain
        current = view.current_seq
        if from_top or current is None:
            # From what is on screen: the first match at/after its top line.
            start = view.top_position - 1 if not backwards else view.top_position + view.visible_height
        else:
            start = source.position_of(current)
            if start >= len(source) or source.seq_at(start) != current:
                start -= 0 if backwards else 1  # the hit was evicted: continue from where it was
        found = find_line(source, lambda r: pattern.search(plain(r)) is not None, start, backwards)
        if found is None:
            self.search_note = f"no match for {self.search_input.value!r}"
            view.set_current(None)
        else:
            self.search_note = f"match at line {found + 1:,} of {len(source):,}"
            view.set_current(source.seq_at(found))
            view.show_position(found)
        self._update_status()

    # --- panels and focus --------------------------------------------------------------------

    def action_toggle_top_clients(self) -> None:
        self.top_panel.toggle()

    def action_leave_input(self) -> None:
        focused = self.screen.focused
        if focused is self.filter_input or focused is self.search_input:
            self.view.focus()
        else:
            raise SkipAction()
