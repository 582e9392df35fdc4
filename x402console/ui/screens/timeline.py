"""The timeline screen: the shared journal's events, live, filtered, annotated and exported.

Several consoles write to one journal file during an incident; this screen tails it by id
(`Journal.events_after`, the same way the console does), so another engineer's note shows
within a poll. The filter is a `TimelineFilter`, the export's own type, so what the screen
shows and what `x` writes are the same events. A note is shown only once the journal has
committed it: the screen never draws an event the file does not hold.
"""

from __future__ import annotations

import asyncio
import json
from bisect import insort
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Checkbox, Input, Label, Static

from x402console.journal.actor import Actor
from x402console.journal.models import EVENT_KINDS, TimelineEvent
from x402console.journal.timeline_export import (
    TimelineFilter,
    event_record,
    format_for_path,
    load_events,
    write_export,
)
from x402console.sources.sanitize import sanitize_line
from x402console.ui.screens.timeline_view import KIND_STYLES, TimelineView, event_key
from x402console.ui.panes.keybar import KeyBar

if TYPE_CHECKING:
    from x402console.journal.store import Journal

__all__ = ["TimelineScreen", "KIND_KEYS", "default_export_name"]

# Keys 1..9, 0 toggle the kinds in EVENT_KINDS order; short labels keep the legend in 80 columns.
KIND_KEYS: dict[str, str] = dict(zip(EVENT_KINDS, "1234567890"))
_KIND_LABELS = {
    "observation": "obs", "action_started": "start", "action_finished": "finish", "note": "note",
    "checklist": "check", "severity_changed": "sev", "status_changed": "status", "escalation": "esc",
    "role_changed": "role", "system": "sys",
}
FILTER_DEBOUNCE = 0.15  # typing in a filter box refilters once the keys pause


def default_export_name(incident_id: int | None, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"timeline-{'all' if incident_id is None else incident_id}-{stamp}.md"


def _parse_actors(text: str) -> frozenset[str] | None:
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    return names or None


class TimelineScreen(Screen[None]):
    """Timeline of the incident in focus (or of everything); Escape closes it."""

    DEFAULT_CSS = """
    TimelineScreen { layout: vertical; background: $background; }
    TimelineScreen #timeline-head { height: 1; padding: 0 1; background: $boost; }
    TimelineScreen #timeline-head-title { width: 1fr; }
    TimelineScreen #timeline-head Static { height: 1; width: auto; }
    TimelineScreen #timeline-follow { margin: 0 2; }
    TimelineScreen .timeline-row { height: 1; padding: 0 1; }
    TimelineScreen .timeline-row Label { width: auto; margin-right: 1; color: $text-muted; }
    TimelineScreen .timeline-row Input { border: none; height: 1; padding: 0 1; background: $boost; }
    TimelineScreen .timeline-row Input:focus { background: $accent 30%; }
    TimelineScreen #timeline-actor { width: 28; margin-right: 2; }
    TimelineScreen #timeline-text { width: 1fr; }
    TimelineScreen #timeline-kinds { height: 1; padding: 0 1; }
    TimelineScreen #timeline-events { border-top: solid $primary 40%; }
    TimelineScreen #timeline-details { height: 40%; border: round $accent; padding: 0 1; }
    TimelineScreen #timeline-note-input { width: 1fr; }
    TimelineScreen #timeline-export-path { width: 1fr; }
    TimelineScreen #timeline-export-force { border: none; height: 1; padding: 0; width: auto; }
    TimelineScreen #timeline-status { height: auto; max-height: 3; padding: 0 1; }
    TimelineScreen #timeline-status.-warning { color: $text; background: $warning 30%; text-style: bold; }
    TimelineScreen #timeline-status.-error { color: $text; background: $error 35%; text-style: bold; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", id="timeline.close",
                tooltip="Close the open panel (note, export, details), or the timeline"),
        Binding("n", "note", "Note", id="timeline.note", tooltip="Add a note to the incident's timeline"),
        Binding("x", "export", "Export", id="timeline.export",
                tooltip="Write the filtered events to a file (.md, .jsonl or .csv by extension)"),
        Binding("a", "scope", "Scope", id="timeline.scope",
                tooltip="Switch between this incident's events and everything (environment-wide too)"),
        Binding("slash", "focus_text", "Find", id="timeline.find",
                tooltip="Filter by text in the summary or the details"),
        Binding("u", "focus_actor", "Actor", id="timeline.actor",
                tooltip="Filter by actor: user, user@host or the whole actor text; comma-separated"),
        Binding("k", "all_kinds", "All kinds", id="timeline.kinds_all", tooltip="Show events of every kind"),
        Binding("c", "clear_filters", "Clear", id="timeline.clear",
                tooltip="Clear the kind, actor and text filters"),
        Binding("question_mark", "help", "Help", id="timeline.help", tooltip="Keys of the timeline"),
        *(
            Binding(key, f"toggle_kind('{kind}')", kind, show=False, id=f"timeline.kind.{kind}",
                    tooltip=f"Show or hide {kind} events")
            for kind, key in KIND_KEYS.items()
        ),
    ]

    def __init__(self, journal: Journal | None, incident_id: int | None, *, can_write: bool,
                 actor: Actor | str, poll_seconds: float = 1.0) -> None:
        super().__init__()
        self.journal = journal
        self.incident_id = incident_id
        self.can_write = can_write
        self.actor = actor  # an Actor or its text; the journal records str(actor)
        self.poll_seconds = poll_seconds
        # Scope: one incident when there is one in focus, else everything.
        self.whole_environment = incident_id is None
        self.kinds: set[str] = set(EVENT_KINDS)
        self.actors: frozenset[str] | None = None
        self.text: str | None = None
        self.events: list[TimelineEvent] = []  # every event read, in timeline order
        self.in_scope = 0
        self.loaded = False
        self._last_id = 0
        self._fetch_lock = asyncio.Lock()
        self._debounce: Timer | None = None
        self._details_id: int | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="timeline-head"):
            yield Static(id="timeline-head-title")
            yield Static(id="timeline-follow")
            yield Static("loading…", id="timeline-count")
        with Horizontal(classes="timeline-row"):
            yield Label("actor")
            yield Input(placeholder="alice, bob@ops1", id="timeline-actor")
            yield Label("text")
            yield Input(placeholder="words in the summary or details", id="timeline-text")
        yield Static(id="timeline-kinds")
        yield TimelineView(id="timeline-events")
        with VerticalScroll(id="timeline-details"):
            yield Static(id="timeline-details-body")
        with Horizontal(id="timeline-note", classes="timeline-row"):
            yield Label("note")
            yield Input(placeholder="what happened, what you decided; Enter records it", max_length=4000,
                        id="timeline-note-input")
        with Horizontal(id="timeline-export", classes="timeline-row"):
            yield Label("export to", id="timeline-export-label")
            yield Input(id="timeline-export-path")
            yield Checkbox("overwrite", id="timeline-export-force")
        yield Static(id="timeline-status")
        yield KeyBar()

    def on_mount(self) -> None:
        for panel in ("#timeline-details", "#timeline-note", "#timeline-export"):
            self.query_one(panel).display = False
        self._show_head()
        self._show_kinds()
        self.query_one(TimelineView).focus()
        self.run_worker(self._follow_journal(), group="timeline-poll", exit_on_error=False)

    # ------------------------------------------------------------------ the filter

    @property
    def filter(self) -> TimelineFilter:
        return TimelineFilter(
            kinds=None if self.kinds == set(EVENT_KINDS) else frozenset(self.kinds),
            actors=self.actors,
            text=self.text,
            incident_id=None if self.whole_environment else self.incident_id,
        )

    def _scope_filter(self) -> TimelineFilter:
        return TimelineFilter(incident_id=None if self.whole_environment else self.incident_id)

    def _refilter(self) -> None:
        flt, scope = self.filter, self._scope_filter()
        self.in_scope = sum(1 for e in self.events if scope.matches(e))
        view = self.query_one(TimelineView)
        view.set_rows([e for e in self.events if flt.matches(e)])
        self._show_head()

    def _show_head(self) -> None:
        if self.whole_environment:
            scope = "everything (incl. environment-wide)"
        else:
            scope = f"incident #{self.incident_id}"
        title = Text("Timeline ", style="bold")
        title.append(f"· {scope}")
        if self.incident_id is not None:
            title.append(f"   a: {'this incident' if self.whole_environment else 'everything'}", style="dim")
        self.query_one("#timeline-head-title", Static).update(title)
        view = self.query_one(TimelineView)
        follow = Text("● following", style="green") if view.follow else Text("paused · End follows", style="yellow")
        self.query_one("#timeline-follow", Static).update(follow)
        if self.loaded:
            self.query_one("#timeline-count", Static).update(f"{len(view.rows)} of {self.in_scope} events")

    def _show_kinds(self) -> None:
        legend = Text()
        for kind, key in KIND_KEYS.items():
            on = kind in self.kinds
            legend.append(f"{key}", style="bold" if on else "dim")
            legend.append(f" {_KIND_LABELS[kind]}", style=KIND_STYLES[kind] if on else "dim strike")
            legend.append(" ")
        legend.append(" k all", style="dim")
        self.query_one("#timeline-kinds", Static).update(legend)

    def action_toggle_kind(self, kind: str) -> None:
        if kind not in EVENT_KINDS:
            return
        if kind in self.kinds:
            self.kinds.discard(kind)
        else:
            self.kinds.add(kind)
        self._show_kinds()
        self._refilter()

    def action_all_kinds(self) -> None:
        self.kinds = set(EVENT_KINDS)
        self._show_kinds()
        self._refilter()

    def action_clear_filters(self) -> None:
        self.kinds = set(EVENT_KINDS)
        self.actors = self.text = None
        for box in ("#timeline-actor", "#timeline-text"):
            self.query_one(box, Input).value = ""
        self._show_kinds()
        self._refilter()

    def action_scope(self) -> None:
        if self.incident_id is None:
            self._say("no incident in focus: the timeline shows everything", "warning")
            return
        self.whole_environment = not self.whole_environment
        self._refilter()

    def action_focus_text(self) -> None:
        self.query_one("#timeline-text", Input).focus()

    def action_focus_actor(self) -> None:
        self.query_one("#timeline-actor", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id not in ("timeline-actor", "timeline-text"):
            return
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(FILTER_DEBOUNCE, self._apply_filter_boxes)

    def _apply_filter_boxes(self) -> None:
        self._debounce = None
        actors = _parse_actors(self.query_one("#timeline-actor", Input).value)
        text = self.query_one("#timeline-text", Input).value.strip() or None
        if (actors, text) != (self.actors, self.text):
            self.actors, self.text = actors, text
            self._refilter()

    # ------------------------------------------------------------------ following the journal

    async def _follow_journal(self) -> None:
        """Read everything once, then tail by id: a poll starts only after the last one ended."""
        if self.journal is None:
            self._say("no journal open: nothing to show", "error")
            return
        try:
            loaded = await self.journal.events()
        except Exception as exc:  # a locked or vanished journal must not take the screen down
            self._say(f"journal unreadable: {exc}", "error")
            loaded = ()
        self.events = sorted(loaded, key=event_key)
        self._last_id = max((e.id for e in self.events), default=0)
        self.loaded = True
        self._refilter()
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.fetch_new()
            except Exception as exc:  # keep following: one bad poll must not stop the tail
                self._say(f"timeline update failed: {type(exc).__name__}: {exc}", "error")

    async def fetch_new(self) -> int:
        """Add the events committed since the last read (by any console). Returns how many."""
        async with self._fetch_lock:
            if not self.loaded:
                return 0
            try:
                fresh = await self.journal.events_after(self._last_id)
            except Exception as exc:
                self._say(f"journal unreadable: {exc}", "error")
                return 0
            if not fresh:
                return 0
            self._last_id = max(self._last_id, fresh[-1].id)
            self._add(fresh)
            return len(fresh)

    def _add(self, fresh: tuple[TimelineEvent, ...]) -> None:
        in_order = True
        for e in fresh:
            if self.events and event_key(e) < event_key(self.events[-1]):
                # Another console's clock is behind ours: the event belongs further up.
                insort(self.events, e, key=event_key)
                in_order = False
            else:
                self.events.append(e)
        if not in_order:
            self._refilter()
            return
        flt, scope = self.filter, self._scope_filter()
        self.in_scope += sum(1 for e in fresh if scope.matches(e))
        self.query_one(TimelineView).append_rows([e for e in fresh if flt.matches(e)])
        self._show_head()

    def on_timeline_view_cursor_moved(self, message: TimelineView.CursorMoved) -> None:
        self._show_head()
        if self._details_id is not None and message.event is not None:
            self._show_details(message.event)

    # ------------------------------------------------------------------ details

    def on_timeline_view_selected(self, message: TimelineView.Selected) -> None:
        if self._details_id == message.event.id:
            self._hide_details()
        else:
            self._show_details(message.event)

    def _show_details(self, event: TimelineEvent) -> None:
        self._details_id = event.id
        record = event_record(event)  # every string neutralised, the export's rules
        body = Text()
        incident = "environment-wide" if record["incident_id"] is None else f"incident #{record['incident_id']}"
        body.append(f"#{record['id']}  {record['ts']}  {incident}  ", style="bold")
        body.append(record["kind"], style=KIND_STYLES.get(event.kind, ""))
        body.append(f"\nactor:   {record['actor']}\norigin:  {record['origin']} seq {record['origin_seq']}\n")
        body.append("summary: ", style="bold")
        body.append(record["summary"])
        body.append("\ndetails:\n", style="bold")
        body.append(json.dumps(record["details"], indent=2, ensure_ascii=False, sort_keys=True))
        self.query_one("#timeline-details-body", Static).update(body)
        panel = self.query_one("#timeline-details")
        panel.display = True
        panel.border_title = "details · Enter or Escape hides"

    def _hide_details(self) -> None:
        self._details_id = None
        self.query_one("#timeline-details").display = False

    # ------------------------------------------------------------------ notes

    def action_note(self) -> None:
        if not self.can_write:
            self._say("read-only: adding a note refused (observer or read-only console)", "warning")
            return
        self._close_forms()
        self.query_one("#timeline-note").display = True
        box = self.query_one("#timeline-note-input", Input)
        box.disabled = False
        box.focus()

    async def _commit_note(self, text: str) -> None:
        box = self.query_one("#timeline-note-input", Input)
        box.disabled = True
        try:
            event = await self.journal.add_event("note", text, self.actor, self.incident_id)
        except Exception as exc:
            box.disabled = False
            box.focus()
            self._say(f"note not recorded: {exc}", "error")
            return
        box.value = ""
        box.disabled = False
        self.query_one("#timeline-note").display = False
        self.query_one(TimelineView).focus()
        # Committed: fetch it now rather than at the next poll.
        await self.fetch_new()
        self._say(f"note #{event.id} recorded")

    # ------------------------------------------------------------------ export

    def action_export(self) -> None:
        self._close_forms()
        shown = len(self.query_one(TimelineView).rows)
        self.query_one("#timeline-export-label", Label).update(f"export {shown} events to")
        path = self.query_one("#timeline-export-path", Input)
        path.value = default_export_name(None if self.whole_environment else self.incident_id)
        path.disabled = False
        self.query_one("#timeline-export-force", Checkbox).value = False
        self.query_one("#timeline-export").display = True
        path.focus()

    async def _export(self, text: str, force: bool) -> None:
        box = self.query_one("#timeline-export-path", Input)
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        try:
            format_for_path(path)
        except ValueError as exc:
            self._say(sanitize_line(str(exc), 300), "error")
            return
        if path.exists() and not force:
            self._say(f"{sanitize_line(str(path), 300)} exists: tick 'overwrite' to replace it", "warning")
            return
        flt = self.filter
        title = "Timeline: every event" if flt.incident_id is None else f"Incident #{flt.incident_id} timeline"
        box.disabled = True
        try:
            events = await load_events(self.journal, flt)
            written = await asyncio.to_thread(write_export, events, path, flt=flt, title=title, force=force)
        except FileExistsError:
            self._say(f"{sanitize_line(str(path), 300)} exists: tick 'overwrite' to replace it", "warning")
            return
        except Exception as exc:
            self._say(f"export failed: {sanitize_line(str(exc), 300)}", "error")
            return
        finally:
            box.disabled = False
        self.query_one("#timeline-export").display = False
        self.query_one(TimelineView).focus()
        self._say(f"wrote {len(events)} events to {sanitize_line(str(written), 500)}")

    # ------------------------------------------------------------------ inputs, closing, help

    def on_input_submitted(self, event: Input.Submitted) -> None:
        box = event.input.id
        if box == "timeline-note-input":
            text = event.value.strip()
            if not text:
                self._close_forms()
                return
            self.run_worker(self._commit_note(text), group="timeline-note", exclusive=True, exit_on_error=False)
        elif box == "timeline-export-path":
            force = self.query_one("#timeline-export-force", Checkbox).value
            self.run_worker(self._export(event.value.strip(), force), group="timeline-export", exclusive=True,
                            exit_on_error=False)
        elif box in ("timeline-actor", "timeline-text"):
            if self._debounce is not None:
                self._debounce.stop()
            self._apply_filter_boxes()
            self.query_one(TimelineView).focus()

    def _close_forms(self) -> bool:
        closed = False
        for panel in ("#timeline-note", "#timeline-export"):
            widget = self.query_one(panel)
            if widget.display:
                widget.display = False
                closed = True
        if closed:
            self.query_one(TimelineView).focus()
        return closed

    def action_close(self) -> None:
        if self._close_forms():
            return
        if self.focused is not None and self.focused.id in ("timeline-actor", "timeline-text"):
            self.query_one(TimelineView).focus()  # leave the filter box, keep its filter
            return
        if self._details_id is not None:
            self._hide_details()
            return
        self.dismiss(None)

    def action_help(self) -> None:
        from x402console.ui.screens.help import HelpScreen

        settings = getattr(self.app, "settings", None)
        keymap = dict(getattr(settings, "keymap", None) or {})
        source = getattr(settings, "source", None)
        self.app.push_screen(HelpScreen(
            [("timeline", list(self.BINDINGS)), ("timeline list", list(TimelineView.BINDINGS))],
            str(source) if source else "the config file", keymap,
        ))

    def _say(self, message: str, severity: str = "information") -> None:
        # A line of the screen, not a toast: toasts sit over the bottom rows, where they would
        # hide this line's next message (a refusal toast covering the success that follows).
        status = self.query_one("#timeline-status", Static)
        status.set_class(severity == "warning", "-warning")
        status.set_class(severity == "error", "-error")
        status.update(Text(message))
