"""Service health: one row per prover replica, then the supporting components and any source errors."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from x402console.core.format import bytes_h, duration_h, percent_h
from x402console.core.observations import ObservationStore

COLUMNS = ("replica", "state", "health", "latency", "restarts", "uptime", "CPU", "MEM", "target")
COLUMN_LABELS = ("replica", "state", "health", "lat", "rst", "up", "CPU", "MEM", "tgt")

STATE_STYLE = {"running": "green", "exited": "bold red", "dead": "bold red", "missing": "bold red",
               "restarting": "yellow", "paused": "yellow", "created": "yellow"}


def _instance(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc


class HealthPane(Vertical):
    DEFAULT_CSS = """
    HealthPane DataTable { height: auto; max-height: 1fr; }
    HealthPane #components { height: auto; padding: 0 1; }
    HealthPane #health-errors { height: auto; padding: 0 1; color: $error; }
    """

    def __init__(self, store: ObservationStore, **kw) -> None:
        super().__init__(**kw)
        self.store = store
        self.border_title = "1 Service health"
        self._cells: dict[str, tuple] = {}
        self._texts: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield DataTable(id="health-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="components")
        yield Static(id="health-errors")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for c, label in zip(COLUMNS, COLUMN_LABELS):
            table.add_column(label, key=c)
        self.render_store()

    def selected_replica(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:
            return None

    def render_store(self) -> None:
        store = self.store
        table = self.query_one(DataTable)
        names = store.replica_names()
        targets = {t.instance: t for t in store.targets}
        by_name = {r.name: r for r in store.replicas}
        now = time.time()
        wanted = set(names)
        for key in [k.value for k in table.rows]:
            if key not in wanted:
                table.remove_row(key)
                self._cells.pop(key, None)
        present = {k.value for k in table.rows}
        for name in names:
            row = self._row(name, by_name.get(name), targets, now)
            if name in present:
                old = self._cells.get(name, ())
                for i, (col, cell) in enumerate(zip(COLUMNS, row)):
                    # Only changed cells: each update_cell repaints, and an idle console
                    # should not repaint a table whose values stand still.
                    if i >= len(old) or str(old[i]) != str(cell):
                        table.update_cell(name, col, cell, update_width=True)
            else:
                table.add_row(*row, key=name)
            self._cells[name] = tuple(row)
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
        uptime = duration_h(now - rt.started_at) if rt and rt.started_at and rt.state == "running" else "–"
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
            if t is not None:
                target = Text(t.health, style="green" if t.health == "up" else "bold red")
        return (Text(name, style="bold"), state, health, latency, restarts, uptime, cpu, mem, target)

    def _components(self) -> Text:
        text = Text()
        if not self.store.components:
            return Text("components: waiting…", style="dim")
        for name in sorted(self.store.components):
            c = self.store.components[name]
            text.append("● ", style="green" if c.ok else "bold red")
            text.append(f"{name} ", style="bold")
            text.append(f"{c.detail[:50]}   ", style="dim" if c.ok else "red")
        return text
