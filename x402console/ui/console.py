"""The live console: header, health, metrics, logs and checklist panes over one observation store.

Data flows one way: the Observatory's sources hand immutable snapshots to `_on_snapshot` on the
event loop; the store keeps the latest of each kind and says which topics changed; a frame
timer redraws only the panes whose topics changed, and nothing while a dialog is open. The
journal is the single source of incident and checklist state: the UI shows a tick only after
the journal committed it, and polls the journal so other consoles' changes appear too.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import signal
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Static

from x402console.core.observations import (
    T_ALERTS,
    T_COMPONENTS,
    T_HEALTH,
    T_METRICS,
    T_REPLICAS,
    T_RUNTIME,
    T_SOURCES,
    T_TARGETS,
    ObservationStore,
)
from x402console.sources.models import LogBatch
from x402console.ui.commands import APP_COMMANDS, bindings
from x402console.ui.incident_ops import IncidentOps
from x402console.ui.logs.log_pane import LogPane
from x402console.ui.panes.checklist import ChecklistPane
from x402console.ui.panes.header import HeaderBar
from x402console.ui.panes.keybar import KeyBar
from x402console.ui.panes.health import HealthPane
from x402console.ui.panes.metrics import MetricsPane

CSS_FILE = Path(__file__).resolve().parents[2] / "css" / "console.tcss"
HEALTH_TOPICS = {T_REPLICAS, T_HEALTH, T_RUNTIME, T_TARGETS, T_COMPONENTS, T_SOURCES}
METRIC_TOPICS = {T_METRICS, T_ALERTS, T_SOURCES}
# Samples that move every second without changing what the operator must do (latency, CPU %,
# rates, nginx answer time): their panes are redrawn every other refresh. Everything else (a replica set change,
# a health or component up/down flip, an alert, a source failing or recovering) is drawn on the next
# refresh.
ROUTINE_TOPICS = {T_HEALTH, T_RUNTIME, T_METRICS, T_COMPONENTS}
PANES = ("health", "metrics", "logs", "checklist")
DRILL_ACTIONS = {c.action for c in APP_COMMANDS if c.drill_only}
APP_ACTIONS = {c.action.split("(")[0] for c in APP_COMMANDS}
# Below this size the panes are shown one at a time (keys 1-4 switch between them).
COMPACT_WIDTH = 140
HANGUP_GRACE_SECONDS = 6.0  # time for a normal exit before the watchdog ends the process
COMPACT_HEIGHT = 40
JOURNAL_HEARTBEAT_S = 10.0  # operators.last_seen: how another console tells a live one from a dead one
JOURNAL_FULL_POLL_S = 5.0  # the journal query runs at least this often even when its files look unchanged


class ConsoleApp(IncidentOps, App):
    CSS_PATH = [CSS_FILE] if CSS_FILE.exists() else []
    TITLE = "x402console"
    ENABLE_COMMAND_PALETTE = True
    # Class-level so Textual collects them; drill-only ones are hidden by check_action.
    BINDINGS = bindings(APP_COMMANDS, drill=True)

    def __init__(self, settings: Any, *, read_only: bool = False, drill_env: Any = None,
                 extra_sources: Iterable[Any] | None = None, observe: bool = True, role: str | None = None,
                 early: Any = None) -> None:
        self.drill_env = drill_env
        self._early = early  # sources.early.EarlyFetch, started by the CLI before textual was imported
        self.settings = settings
        self.read_only = read_only or settings.environment.read_only
        self._init_incident_ops(role)
        self.is_drill = bool(drill_env) or settings.environment.drill
        super().__init__()
        self.store = ObservationStore(window_seconds=settings.metrics.window_minutes * 60)
        self._extra_sources = extra_sources
        self._observe = observe
        self.observatory = None
        self.journal = None
        self.journal_error: str | None = None
        self.incidents: tuple = ()
        self.focus_incident_id: int | None = None
        self._last_event_id = 0
        self._journal_signature: tuple = ()
        self._last_journal_query = self._last_heartbeat = -1e9
        self._dirty: set[str] = set(HEALTH_TOPICS | METRIC_TOPICS)
        self.compact = False
        self._urgent = True
        self._panes_at = 0.0
        self._drawn_flips: tuple = ()
        self.compact_pane = "health"
        self.first_data_at: dict[str, float] = {}
        self.checklist_read = False  # the checklist shows what the journal holds (peeked or opened)
        self.started_at = time.monotonic()
        self._main: Screen | None = None
        self._exiting = False  # a normal exit is under way: the output watch stands down

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        ui = self.settings.ui
        header = HeaderBar(self.settings.environment.name, self.is_drill, self.read_only,
                           stale_after=max(5.0, 5 * ui.refresh_seconds), id="header")
        header.role = self.role
        yield header
        yield Static(id="summary")
        with Horizontal(id="panes"):
            with Vertical(id="main-col", classes="col"):
                yield HealthPane(self.store, id="health", classes="pane")
                yield MetricsPane(self.store, self.settings, id="metrics", classes="pane")
                prover = self.settings.prover
                yield LogPane(capacity=ui.log_buffer_lines, id="logs", classes="pane",
                              monitoring_paths=(prover.health_path, prover.metrics_path))
            yield ChecklistPane(id="checklist", classes="pane")
        yield KeyBar(id="keybar")

    def _q(self, selector: str, expect_type: type | None = None):
        """Query the main screen: App.query_one would search whatever screen is on top (a dialog)."""
        if self._main is None:
            raise RuntimeError("the console's main screen is not mounted")
        return self._main.query_one(selector, expect_type) if expect_type else self._main.query_one(selector)

    def on_mount(self) -> None:
        self._main = self.screen
        self._q("#logs", LogPane).border_title = "3 Logs"
        # SIGHUP (the SSH session or tmux pane went away) and SIGTERM end the app through its
        # normal exit, so the journal closes and Textual's threads stop; raising SystemExit
        # from a plain signal handler instead leaves the process hanging on those threads.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._terminal_gone)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        if self.settings.keymap:
            self.set_keymap(dict(self.settings.keymap))
        self._seed_static_replicas()
        self._apply_size()
        # One tick redraws everything that changed, in one screen update: at idle the console
        # repaints once per refresh interval, not once per source.
        self._q("#logs", LogPane).shared_tick = True
        self.set_interval(max(0.25, self.settings.ui.refresh_seconds), self._frame)
        self.set_interval(5.0, self._check_terminal)
        self._start_output_watch()
        self._header_tick()
        # Sources and the journal start after the first frame is on screen: their imports and
        # connections would otherwise delay it.
        self.call_after_refresh(self._start_background)
        self._q("#health-table").focus()
        # Everything built so far lives as long as the app: keep the cyclic GC from rescanning
        # it on every collection (measurably smoother frames under a fast log stream).
        gc.freeze()

    def _start_background(self) -> None:
        gc.enable()  # the CLI turns collection off for start-up (cli._run_console)
        self.run_worker(self._peek_journal(), group="journal", exit_on_error=False)
        self.run_worker(self._open_journal(), group="journal", exit_on_error=False)
        self._start_incident_ops()
        if self._observe:
            self.run_worker(self._start_observing(), group="observe", exit_on_error=False)

    def on_resize(self, event: events.Resize) -> None:
        self._apply_size(event.size.width, event.size.height)

    def _apply_size(self, width: int | None = None, height: int | None = None) -> None:
        if self._main is None:
            return  # a resize can arrive before the panes are mounted; on_mount applies it
        w, h = (width, height) if width and height else self.size
        compact = w < COMPACT_WIDTH or h < COMPACT_HEIGHT
        self.compact = compact
        grid = self._q("#panes")
        grid.set_class(compact, "compact")
        # Charts need room; in a small terminal the metrics pane shows its numbers only.
        self._q("#metrics #charts").display = h >= 24 and (not compact or h >= 30)
        # In compact mode the hidden panes' key numbers stay in sight on one line.
        self._q("#summary").display = compact
        for pane in PANES:
            widget = self._q(f"#{pane}")
            widget.display = (not compact) or pane == self.compact_pane
        # The main column must not keep its width when only the checklist is shown.
        self._q("#main-col").display = (not compact) or self.compact_pane != "checklist"

    # ------------------------------------------------------------------ observation
    def _seed_static_replicas(self) -> None:
        """Configured replicas are known before any source reports (Docker ones are discovered)."""
        from x402console.sources.discovery import discover_static
        from x402console.sources.models import ReplicaSet

        replicas = tuple(discover_static(self.settings))
        if replicas:
            self._dirty |= self.store.apply(ReplicaSet(replicas, time.time()))

    def _sources(self) -> list[Any]:
        if self._extra_sources is not None:
            return list(self._extra_sources)
        from x402console.ui.wiring import observation_sources

        return observation_sources(self.settings)

    async def _start_observing(self) -> None:
        from x402console.sources.hub import Observatory

        self.observatory = Observatory(self.settings, self._on_snapshot, extra_sources=self._sources(),
                                       early=self._early)
        await self.observatory.start()

    def _on_snapshot(self, snap: Any) -> None:
        """Sink of every source; always called on the event loop thread."""
        if self._main is None or not self._main.is_attached:
            return  # sources may still deliver while the app shuts down
        now = time.monotonic()
        if isinstance(snap, LogBatch):
            if snap.records:
                self.first_data_at.setdefault("logs", now)
                self.store.fresh["logs"] = time.time()
            if self.log_counter is not None:
                self.log_counter.feed_many(snap.records)
            try:
                self._q("#logs", LogPane).add_batch(snap)
            except NoMatches:
                pass  # closing
            return
        topics = self.store.apply(snap)
        first = False
        for t in topics:
            if t not in self.first_data_at:
                self.first_data_at[t] = now
                first = True
        self._dirty |= topics
        if first:
            self._urgent = True
            self.call_later(self._frame)  # the first sample of a kind shows at once

    def _frame(self) -> None:
        """Redraw what changed; nothing while a dialog covers the screen (dolphie)."""
        if self._main is None or not self._main.is_attached or len(self.screen_stack) > 1:
            return
        try:
            self._frame_body()
        except NoMatches:
            pass  # the app is closing and its panes are being removed

    def _frame_body(self) -> None:
        with self.batch_update():
            logs = self._q("#logs", LogPane)
            logs.flush_pending()
            logs.frame_tick()
            self._header_tick()
            if self._dirty and self._panes_due():
                self._redraw_panes()

    def _panes_due(self) -> bool:
        now = time.monotonic()
        flips = (tuple(sorted((n, h.ok) for n, h in self.store.health.items())),
                 tuple(sorted((n, c.ok) for n, c in self.store.components.items())))
        urgent = self._urgent or bool(self._dirty - ROUTINE_TOPICS) or flips != self._drawn_flips
        if not urgent and now - self._panes_at < 1.9 * self.settings.ui.refresh_seconds:
            return False
        self._urgent = False
        self._drawn_flips = flips
        self._panes_at = now
        return True

    def _redraw_panes(self) -> None:
        dirty, self._dirty = self._dirty, set()
        if dirty & HEALTH_TOPICS:
            pane = self._q("#health", HealthPane)
            if pane.display:
                pane.render_store()
            else:
                self._dirty |= dirty & HEALTH_TOPICS
        if self.compact and dirty & (METRIC_TOPICS | HEALTH_TOPICS):
            self._q("#summary", Static).update(self._summary())
        if dirty & METRIC_TOPICS:
            pane = self._q("#metrics", MetricsPane)
            if pane.display:
                # Charts move only with new metrics; alerts and source errors need text only.
                pane.render_store(charts=bool(dirty & {T_METRICS}))
            else:
                self._dirty |= dirty & METRIC_TOPICS

    def _summary(self) -> Text:
        text = self._q("#metrics", MetricsPane).numbers_text()
        down = [n for n, h in self.store.health.items() if not h.ok]
        firing = self.store.firing_alerts()
        if down:
            text.append(f" DOWN: {', '.join(down)}", style="bold red")
        if firing:
            text.append(f" {len(firing)} alert(s) firing", style="bold red")
        return text

    def _header_tick(self) -> None:
        if self._main is None or not self._main.is_attached:
            return  # a timer firing while the app closes
        try:
            self._header_body()
        except NoMatches:
            pass

    def _header_body(self) -> None:
        focus = self.focused_incident()
        open_count = sum(1 for i in self.incidents if i.is_open)
        failing = [s.name for s in self.store.failing_sources()]
        if self.journal_error:
            failing.insert(0, "journal")
        self._q("#header", HeaderBar).show(incident=focus, open_count=open_count,
                                           freshness=self.store.freshness(), failing=failing,
                                           suggestion=self.suggestion(), escalation=self._escalation_text)

    def _start_output_watch(self) -> None:
        """A thread that does not need the event loop: when the terminal vanishes without a
        SIGHUP, Textual's writer thread dies on EIO and the loop then blocks on the writer's
        full queue, so no timer of ours would ever run again. Seeing the writer dead is enough."""
        writer = getattr(getattr(self, "_driver", None), "_writer_thread", None)
        if writer is None or self.is_headless:
            return

        def watch() -> None:
            while not self._exiting:
                if not writer.is_alive():
                    self._force_exit()
                    return
                time.sleep(1.0)

        threading.Thread(target=watch, name="x402-output-watch", daemon=True).start()

    def _force_exit(self) -> None:
        """Last resort when the UI can no longer run: stop the drill, leave. Journal events were
        committed when shown, so nothing is lost."""
        if self.drill_env is not None:
            try:
                self.drill_env.stop()
            except Exception:
                pass
        os._exit(0)

    def _terminal_gone(self) -> None:
        """Exit cleanly; if Textual's driver hangs on the dead terminal (its writer thread died
        on EIO and close() waits for it), a watchdog ends the process after the drill is stopped.
        Nothing is lost: every journal event was committed when it was shown."""
        self.exit()

        timer = threading.Timer(HANGUP_GRACE_SECONDS, self._force_exit)
        timer.daemon = True
        timer.start()

    def _check_terminal(self) -> None:
        # Over SSH the terminal can vanish without a signal reaching us (dolphie #101).
        # Textual draws on stderr and reads keys from stdin: both must still be a terminal. A
        # hung-up terminal is still "a tty" to isatty(); asking it for its attributes fails
        # with EIO once the other side is gone (an SSH drop with no SIGHUP reaching us).
        try:
            alive = True
            for f in (sys.__stdin__, sys.__stderr__):
                if f is None or not os.isatty(f.fileno()):
                    alive = False
                    break
                termios.tcgetattr(f.fileno())
        except (ValueError, OSError, termios.error):
            alive = False
        if not alive and not self.is_headless:
            self._terminal_gone()

    async def on_unmount(self) -> None:
        self._exiting = True
        self._main = None
        if self.observatory is not None:
            await self.observatory.stop()
        if self.journal is not None:
            await self.journal.close()

    # ------------------------------------------------------------------ journal
    async def _peek_journal(self) -> None:
        """The checklist's first state from one read-only query on a thread (journal/peek.py);
        the full open below replaces it, and until then nothing can be ticked."""
        found = await asyncio.to_thread(_peek_journal, self.settings.environment.journal)
        if found is None or self.journal is not None or self.journal_error:
            return
        self._set_incidents(found.incidents)
        if self.focus_incident_id == found.focus_id:
            try:
                self._q("#checklist", ChecklistPane).show_state(found.focus_id, found.checked)
            except (NoMatches, RuntimeError):
                return  # closing
            self.checklist_read = True
            self._header_tick()

    async def _open_journal(self) -> None:
        # Imported on a thread: aiosqlite and the journal's models take ~40 ms to import, time
        # the event loop needs for the first data's frames.
        await asyncio.to_thread(importlib.import_module, "x402console.journal")
        from x402console.journal import Journal, JournalError

        try:
            from x402console.journal import current_actor

            # The role is part of every recorded actor: a post-mortem must tell the commander's
            # decisions from a scribe's notes.
            self.journal = await Journal.open(self.settings.environment.journal, actor=current_actor(self.role))
            await self.journal.register_operator(self.role)
        except (JournalError, OSError) as exc:
            self.journal_error = str(exc)
            self.notify(f"journal unavailable: {exc}", severity="error", timeout=10)
            self._set_incidents(())  # forget what a peek may have shown
            await self._reload_checklist()  # the phases, with nothing to tick
            self._header_tick()
            return
        await self._reload_incidents()
        self.set_interval(1.0, self._poll_journal)

    async def _reload_incidents(self) -> None:
        if self.journal is None:
            return
        self._set_incidents(await self.journal.incidents())
        await self._reload_checklist()
        self._header_tick()

    def _set_incidents(self, incidents: tuple) -> None:
        self.incidents = incidents
        open_ids = [i.id for i in incidents if i.is_open]
        if self.focus_incident_id not in open_ids:
            self.focus_incident_id = open_ids[-1] if open_ids else None

    async def _reload_checklist(self) -> None:
        try:
            pane = self._q("#checklist", ChecklistPane)
        except (NoMatches, RuntimeError):
            return  # closing
        if self.journal is None or self.focus_incident_id is None:
            pane.show_state(None, {})
            self.checklist_read = self.journal is not None  # "no incident" is what the journal says
            return
        state = await self.journal.checklist_state(self.focus_incident_id)
        pane.show_state(self.focus_incident_id, {k: v.checked for k, v in state.items()})
        self.checklist_read = True

    async def _poll_journal(self) -> None:
        """Pick up what other consoles on the same journal did (and our own commits).

        Every commit changes the journal's file or its WAL, so while their size and mtime stay
        the same the query is skipped: an idle console then costs two stat() calls a second.
        The query still runs every JOURNAL_FULL_POLL_S in case a change kept both (a WAL reset
        to the same size within one clock tick)."""
        if self.journal is None:
            return
        now = time.monotonic()
        try:
            if now - self._last_heartbeat >= JOURNAL_HEARTBEAT_S:
                # A write: every 10 s is enough to tell a live console from a dead one.
                self._last_heartbeat = now
                await self.journal.heartbeat()
            signature = self.journal.files_signature()
            if signature == self._journal_signature and now - self._last_journal_query < JOURNAL_FULL_POLL_S:
                return
            self._last_journal_query = now
            events = await self.journal.events_after(self._last_event_id)
            self._journal_signature = signature
        except Exception as exc:  # a locked or vanished journal must not take the UI down
            self.journal_error = str(exc)
            return
        self.journal_error = None
        if events:
            self._last_event_id = events[-1].id
            await self._reload_incidents()

    def focused_incident(self):
        for i in self.incidents:
            if i.id == self.focus_incident_id:
                return i
        return None

    # ------------------------------------------------------------------ actions

    def action_help(self) -> None:
        from x402console.config import default_config_path
        from x402console.ui.screens.help import HelpScreen

        sections = [("console", list(self.BINDINGS))]
        sections.append(("logs pane", list(LogPane.BINDINGS)))
        sections.append(("checklist pane", list(ChecklistPane.BINDINGS)))
        sections.append(("metrics pane", list(MetricsPane.BINDINGS)))
        from x402console.ui.screens.runbook import RunbookScreen, StepView

        sections.append(("runbook screen", list(RunbookScreen.BINDINGS) + list(StepView.BINDINGS)))
        path = str(self.settings.source or default_config_path())
        self.push_screen(HelpScreen(sections, path, dict(self.settings.keymap)))

    def action_focus_pane(self, pane: str) -> None:
        if pane not in PANES:
            return
        if self.compact:
            self.compact_pane = pane
            self._apply_size()
            self._dirty |= HEALTH_TOPICS | METRIC_TOPICS
        widget = self._q(f"#{pane}")
        if pane == "logs":
            logs = self._q("#logs", LogPane)
            logs.view.focus()
            if self.compact:
                # It was hidden: draw its lines and counters as soon as it is laid out, not on
                # the next refresh tick (which left "lines 0" on screen for up to a second).
                logs.mark_stale()
                self.call_after_refresh(logs.frame_tick)
        elif pane == "health":
            self._q("#health-table").focus()
        else:
            widget.focus()

    def action_zoom(self) -> None:
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
            return
        for pane in PANES:
            widget = self._q(f"#{pane}")
            if self.focused is not None and (self.focused is widget or widget in self.focused.ancestors):
                screen.maximize(widget, container=False)
                return

    def action_declare(self) -> None:
        if self._refuse("declaring an incident"):
            return

        async def declared(result: tuple[str, str] | None) -> None:
            if result is None or self.journal is None:
                return
            title, severity = result
            match = next((m for m in self.matches if m.title == title), None)
            runbook_no = match.incident if match is not None else None
            security = bool(runbook_no and getattr(self._load_runbook().incident(runbook_no), "security", False))
            incident = await self.journal.declare_incident(title, severity, self.journal.actor, drill=self.is_drill,
                                                           runbook_incident=runbook_no, security=security)
            self.focus_incident_id = incident.id
            await self._reload_incidents()
            self.notify(f"incident #{incident.id} declared ({severity})")

        # Pre-filled from the live signals: the severity engine's level and the best runbook
        # match's title; the operator can change both.
        level = self.assessment.level if self.assessment is not None and self.assessment.level else "P2"
        title = self.matches[0].title if self.matches else ""
        from x402console.ui.screens.dialogs import DeclareScreen

        self.push_screen(DeclareScreen(level, suggested_title=title), declared)

    def _transition(self, verb: str, method: str) -> None:
        if self._refuse(f"{verb} the incident"):
            return
        inc = self.focused_incident()
        if inc is None:
            self.notify("no incident in focus", severity="warning")
            return

        async def confirmed(ok: bool | None) -> None:
            if not ok or self.journal is None:
                return
            try:
                await getattr(self.journal, method)(inc.id, self.journal.actor)
            except Exception as exc:
                self.notify(f"{verb} #{inc.id} failed: {exc}", severity="error")
                return
            await self._reload_incidents()
            self.notify(f"incident #{inc.id}: {verb}d" if verb.endswith("e") else f"incident #{inc.id}: {verb}ed")
            if method == "resolve":
                self.notify("P writes the post-mortem draft from the journal", timeout=8)

        from x402console.ui.screens.dialogs import ConfirmScreen

        self.push_screen(ConfirmScreen(f"{verb.capitalize()} incident #{inc.id}?",
                                       f"{inc.severity} {inc.title}\nstatus now: {inc.status}",
                                       verb.capitalize()), confirmed)

    def action_acknowledge(self) -> None:
        self._transition("acknowledge", "acknowledge")

    def action_resolve(self) -> None:
        self._transition("resolve", "resolve")

    async def action_next_incident(self) -> None:
        open_ids = [i.id for i in self.incidents if i.is_open]
        if not open_ids:
            return
        idx = open_ids.index(self.focus_incident_id) + 1 if self.focus_incident_id in open_ids else 0
        self.focus_incident_id = open_ids[idx % len(open_ids)]
        await self._reload_checklist()
        self._header_tick()

    async def on_checklist_pane_toggled(self, event: ChecklistPane.Toggled) -> None:
        if self._refuse("ticking the checklist", command=False) or self.focus_incident_id is None:
            return
        try:
            await self.journal.set_checklist(self.focus_incident_id, event.item_id, event.checked,
                                             self.journal.actor)
        except Exception as exc:
            self.notify(f"checklist not saved: {exc}", severity="error")
            return
        # Shown only now that the journal has committed it.
        await self._reload_checklist()

    # ------------------------------------------------------------------ remediation actions
    @property
    def remediation_registry(self):
        if getattr(self, "_remediation_registry", None) is None:
            from x402console.actions.registry import default_registry

            self._remediation_registry = default_registry()
        return self._remediation_registry

    def _action_context(self):
        from x402console.actions.base import ActionContext

        inc = self.focused_incident()
        runtime = self.drill_env.state.runtime_file if self.drill_env is not None else None
        return ActionContext(settings=self.settings, journal=self.journal,
                             incident_id=inc.id if inc else None,
                             incident_security=bool(inc and inc.security),
                             read_only=not self.may_command, drill_runtime=runtime)

    def _focused_pane(self) -> str:
        for pane in PANES:
            widget = self._q(f"#{pane}")
            if self.focused is not None and (self.focused is widget or widget in self.focused.ancestors):
                return pane
        return "health"

    def _process_mode(self) -> bool:
        return any(r.pid_file for r in self.settings.replicas)

    def _actions_for(self, pane: str) -> list:
        """The group's actions that fit this environment: process.* in a process-mode drill,
        container.* otherwise (the other set could only fail)."""
        skip = "container." if self._process_mode() else "process."
        return sorted((a for a in self.remediation_registry.for_pane(pane) if not a.id.startswith(skip)),
                      key=lambda a: (a.key.lower(), a.key))

    def action_actions(self, pane: str | None = None) -> None:
        pane = pane or self._focused_pane()
        order = [pane] + [p for p in ("health", "metrics", "logs", "database", "abuse", "circuits", "incident")
                          if p != pane]
        groups = [(p, self._actions_for(p)) for p in order]
        groups = [(p, acts) for p, acts in groups if acts]
        if not groups:
            self.notify("no remediation actions are available", severity="warning")
            return
        selected = self._q("#health", HealthPane).selected_replica() if pane == "health" else None
        from x402console.ui.screens.action_picker import ActionPicker

        def picked(choice) -> None:
            if choice:
                action_id, params = choice
                self.run_worker(self._start_action(action_id, params, selected), group="actions",
                                exit_on_error=False)

        first = groups[0][1]
        self.push_screen(ActionPicker(f"{groups[0][0]} actions", first, selected or "chosen next", groups), picked)

    def action_evidence(self) -> None:
        self.run_worker(self._start_action("evidence.bundle", {}, None), group="actions", exit_on_error=False)

    async def _start_action(self, action_id: str, params: dict, selected: str | None) -> None:
        from x402console.actions.base import ActionError, NeedsConfirmation
        from x402console.ui.screens.action_dialog import ActionDialog

        try:
            action = self.remediation_registry.get(action_id)
        except ActionError as exc:
            self.notify(str(exc), severity="error")
            return
        ctx = self._action_context()
        try:
            targets = await asyncio.to_thread(action.targets, ctx)
        except Exception as exc:
            self.notify(f"{action.title}: cannot list targets: {exc}", severity="error")
            return
        target = next((t for t in targets if t.name == selected), None)
        if target is None and len(targets) == 1:
            target = targets[0]
        if target is None and targets:
            from x402console.ui.screens.action_picker import TargetPicker

            target = await self.push_screen_wait(TargetPicker(f"{action.title}: choose the target", targets))
        if target is None and not targets and action.target_kind == "ip":
            target = await self._typed_ip_target(action, params)
        if target is None:
            if not targets and action.target_kind != "ip":
                self.notify(f"{action.title}: nothing to act on here", severity="warning")
            return
        params = dict(params)
        for _ in range(3):  # at most: a risky-target confirmation, then the security override
            try:
                plan = await self.remediation_registry.prepare(action_id, ctx, target, params)
                break
            except NeedsConfirmation as exc:
                typed = await self._ask_confirmation(action, exc)
                if typed is None:
                    return
                params[exc.param] = typed
            except ActionError as exc:
                self.notify(str(exc), severity="error", timeout=8)
                return
        else:
            return
        outcome = await self.push_screen_wait(ActionDialog(self.remediation_registry, ctx, plan))
        self._note_check_outcome(action_id, outcome)

    async def _ask_confirmation(self, action, exc) -> str | None:
        from x402console.ui.screens.dialogs import PromptScreen

        what = "Override the security guard" if exc.param == "override" else f"{action.title}: confirm"
        if exc.param == "override" and not self.may_command:
            self.notify(str(exc), severity="error", timeout=8)
            return None
        return await self.push_screen_wait(PromptScreen(
            what, f"{exc}\n\nType {exc.confirm_text} to go on; the override is recorded on the timeline."
            if exc.param == "override" else str(exc), placeholder=exc.confirm_text, confirm_label="Go on",
            must_type=exc.confirm_text))

    async def _typed_ip_target(self, action, params: dict):
        from x402console.actions.base import Target
        from x402console.ui.screens.dialogs import PromptScreen

        value = params.get("cidr") or await self.push_screen_wait(PromptScreen(
            f"{action.title}: address", "An IP address or CIDR (e.g. 203.0.113.7 or 198.51.100.0/24).",
            placeholder="203.0.113.7", confirm_label="Next"))
        if not value:
            return None
        params["cidr"] = value
        return Target("ip", value)

    def action_drill_status(self) -> None:
        if self.drill_env is None:
            self.notify("not a drill", severity="warning")
            return
        from x402console.ui.screens.drill_status import DrillStatusScreen

        self.push_screen(DrillStatusScreen(self.drill_env))

    def action_arm_scenario(self) -> None:
        env = self.drill_env
        if env is None or env.scenario is None or env.scenario_armed_at:
            self.notify("no scenario waiting to be armed", severity="warning")
            return
        self.run_worker(env.arm_scenario, thread=True, group="drill")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in DRILL_ACTIONS and self.drill_env is None:
            return False  # hidden from the key bar and the palette outside a drill
        if self._main is not None and self.screen is not self._main and action in APP_ACTIONS:
            # A dialog, the timeline or the runbook is on top: its keys are the ones that
            # count, and a stray capital must not acknowledge or resolve underneath it.
            return False
        return True

    # ------------------------------------------------------------------ palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            action = b.action
            if action in DRILL_ACTIONS and self.drill_env is None:
                continue
            yield SystemCommand(f"{b.description} ({self._key_of(b)})", b.tooltip or b.description,
                                lambda action=action: self.run_action(action))
        for pane in sorted({a.pane for a in self.remediation_registry.all()}):
            yield SystemCommand(f"Actions: {pane}", f"Remediation actions of the {pane} pane",
                                lambda pane=pane: self.action_actions(pane))
        # The panes' own commands too, run on their pane wherever the focus is.
        for pane_id, cls in (("logs", LogPane), ("metrics", MetricsPane), ("checklist", ChecklistPane)):
            for b in cls.BINDINGS:
                if not isinstance(b, Binding) or b.action.startswith("leave"):
                    continue
                yield SystemCommand(f"{pane_id}: {b.description} ({self._key_of(b)})", b.tooltip or b.description,
                                    lambda p=pane_id, a=b.action: self._run_pane_action(p, a))

    def _key_of(self, binding: Binding) -> str:
        """The key as the operator's keymap has it, not the default."""
        return self.settings.keymap.get(binding.id or "", binding.key)

    def _run_pane_action(self, pane_id: str, action: str) -> None:
        widget = self._q(f"#{pane_id}")
        self.action_focus_pane(pane_id)
        self.run_worker(widget.run_action(action), group="palette")

    # ------------------------------------------------------------------ measurements
    def live_panes(self) -> dict[str, bool]:
        """Which panes show live data now (used by tests and the start-up benchmark)."""
        return {
            "health": bool(self.store.health),
            "metrics": self.store.metrics is not None,
            "logs": "logs" in self.first_data_at,
            "checklist": self.checklist_read,
        }


def _peek_journal(path: Any) -> Any:
    """Runs on a worker thread, import included (journal/peek.py)."""
    from x402console.journal.peek import peek_journal

    return peek_journal(path)


def run_console(settings: Any, *, read_only: bool = False, drill_env: Any = None, role: str | None = None,
                early: Any = None) -> int:
    app = ConsoleApp(settings, read_only=read_only, drill_env=drill_env, role=role, early=early)
    app.run()
    return app.return_code or 0

