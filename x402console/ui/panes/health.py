"""Service health: one row per prover replica, then the supporting components and any source errors."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from x402console.core.format import bytes_h, duration_h, percent_h
from x402console.core.observations import ObservationStore

COLUMNS = ("replica", "state", "health", "latency", "restarts", "uptime", "CPU", "MEM", "target")
COLUMN_LABELS = ("replica", "state", "health", "lat", "rst", "up", "CPU", "MEM", "tgt")

STATE_STYLE = {"running": "green", "exited": "bold red", "dead": "bold red", "missing": "bold red",
               "restarting": "yellow", "paused": "yellow", "created": "yellow"}


def _instance(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc


class ReplicaTable(Widget, can_focus=True):
    """Rows of replica cells drawn as plain text with fixed columns.

    A DataTable re-renders every cell through Rich on each change and was the costliest widget
    of an idle console; this draws a handful of short lines, and only when a value changed.
    """

    DEFAULT_CSS = """
    ReplicaTable { height: auto; }
    """
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False, id="health.up", tooltip="Select the replica above"),
        Binding("down,j", "move(1)", "Down", show=False, id="health.down", tooltip="Select the replica below"),
    ]
    cursor = reactive(0)

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.rows: list[tuple[str, tuple]] = []  # (replica name, cells)

    def set_rows(self, rows: list[tuple[str, tuple]]) -> None:
        if [(n, tuple(str(c) for c in cells)) for n, cells in rows] == \
                [(n, tuple(str(c) for c in cells)) for n, cells in self.rows]:
            return
        grew = len(rows) != len(self.rows)
        self.rows = rows
        self.cursor = min(self.cursor, max(0, len(rows) - 1))
        self.refresh(layout=grew)

    def selected(self) -> str | None:
        return self.rows[self.cursor][0] if self.rows else None

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.cursor = (self.cursor + delta) % len(self.rows)

    def watch_cursor(self) -> None:
        self.refresh()

    def render(self) -> Text:
        widths = [len(c) for c in COLUMN_LABELS]
        for _, cells in self.rows:
            widths = [max(w, len(str(c))) for w, c in zip(widths, cells)]
        out = Text(no_wrap=True, overflow="ellipsis")
        for label, w in zip(COLUMN_LABELS, widths):
            out.append(label.ljust(w + 2), style="bold")
        for i, (_, cells) in enumerate(self.rows):
            out.append("\n")
            line = Text(no_wrap=True)
            for cell, w in zip(cells, widths):
                piece = cell if isinstance(cell, Text) else Text(str(cell))
                line.append_text(piece)
                line.append(" " * (w + 2 - len(piece.plain)))
            if i == self.cursor and self.has_focus:
                line.stylize("reverse")
            elif i == self.cursor:
                line.stylize("underline")
            out.append_text(line)
        return out

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


class HealthPane(Vertical):
    DEFAULT_CSS = """
    HealthPane ReplicaTable { height: auto; max-height: 1fr; padding: 0 1; }
    HealthPane #components { height: auto; padding: 0 1; }
    HealthPane #health-errors { height: auto; padding: 0 1; color: $error; }
    """

    def __init__(self, store: ObservationStore, **kw) -> None:
        super().__init__(**kw)
        self.store = store
        self.border_title = "1 Service health"
        self._texts: dict[str, str] = {}
        self._targets_stale = False

    def compose(self) -> ComposeResult:
        yield ReplicaTable(id="health-table")
        yield Static(id="components")
        yield Static(id="health-errors")

    def on_mount(self) -> None:
        self.render_store()

    def selected_replica(self) -> str | None:
        return self.query_one(ReplicaTable).selected()

    def render_store(self) -> None:
        store = self.store
        names = store.replica_names()
        targets = {t.instance: t for t in store.targets}
        prom = store.sources.get("prometheus")
        # Prometheus unreachable: its last answer about the targets is no longer news.
        self._targets_stale = prom is not None and not prom.ok
        by_name = {r.name: r for r in store.replicas}
        now = time.time()
        self.query_one(ReplicaTable).set_rows(
            [(name, self._row(name, by_name.get(name), targets, now)) for name in names])
        self._set("#components", self._components())
        errors = [s for s in store.failing_sources()
                  if s.name.split(":")[0] in ("health", "docker", "process", "logs", "scrape", "prometheus", "nginx")]
        text = Text()
        for s in errors[:6]:
            retry = f" (retry in {s.retry_in:.0f}s)" if s.retry_in else ""
            text.append(f"⚠ {s.name}: {s.error}{retry}\n", style="red")
        self._set("#health-errors", text)

    def _set(self, selector: str, text: Text) -> None:
        if self._texts.get(selector) != text.plain:
            self._texts[selector] = text.plain
            self.query_one(selector, Static).update(text)

    def _row(self, name: str, ident, targets, now: float) -> tuple:
        h = self.store.health.get(name)
        rt = self.store.runtime.get(name)
        state = Text(rt.state if rt else "–", style=STATE_STYLE.get(rt.state, "") if rt else "dim")
        if rt and rt.health:
            state.append(f" ({rt.health})", style="dim")
        if h is None:
            health = Text("…", style="dim")
            latency = "–"
        elif h.ok:
            health = Text(f"{h.status_code} {h.status_text or 'ok'}"[:12], style="green")
            latency = f"{h.latency_ms:.0f}ms" if h.latency_ms is not None else "–"
        else:
            label = str(h.status_code) if h.status_code else (h.error or "down")
            health = Text(label[:28], style="bold red")
            latency = f"{h.latency_ms:.0f}ms" if h.latency_ms is not None else "–"
        restarts = str(rt.restart_count) if rt and rt.restart_count is not None else "–"
        # Minutes once past the first minute: a per-second uptime repaints the table every second.
        uptime = duration_h(now - rt.started_at, coarse=True) if rt and rt.started_at and rt.state == "running" else "–"
        cpu = percent_h(rt.cpu_percent) if rt else "–"
        if rt and rt.mem_used is not None:
            mem = Text(f"{percent_h(rt.mem_percent)} {bytes_h(rt.mem_used)}")
            if rt.mem_percent is not None and rt.mem_percent >= 80:
                mem.stylize("bold red")
        else:
            mem = Text("–")
        target = "–"
        if ident is not None:
            t = targets.get(_instance(ident.metrics_url))
            if t is not None and self._targets_stale:
                target = Text(f"{t.health}? (prometheus down)", style="dim")
            elif t is not None:
                target = Text(t.health, style="green" if t.health == "up" else "bold red")
        return (Text(name, style="bold"), state, health, latency, restarts, uptime, cpu, mem, target)

    def _components(self) -> Text:
        text = Text()
        if not self.store.components:
            return Text("")  # no Prometheus, nginx or Docker in this set-up: nothing to show
        for name in sorted(self.store.components):
            c = self.store.components[name]
            text.append("● ", style="green" if c.ok else "bold red")
            text.append(f"{name} ", style="bold")
            text.append(f"{c.detail[:50]}   ", style="dim" if c.ok else "red")
        return text
