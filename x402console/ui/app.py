"""Entry points of the Textual UI.

`run_drill_screen` shows what the drill environment runs until the live console (panes for
health, metrics, logs and the checklist) replaces it; `run_console` opens a configured
environment.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

CSS_DIR = Path(__file__).resolve().parent.parent.parent / "css"


def _css_path(name: str) -> list[Path]:
    p = CSS_DIR / name
    return [p] if p.exists() else []


class DrillApp(App):
    """Lists the drill's components and their state, refreshed every second."""

    CSS_PATH = _css_path("drill.tcss")
    TITLE = "x402console"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("a", "arm", "Arm scenario now", id="arm_scenario"),
    ]

    def __init__(self, env, read_only: bool = False) -> None:
        super().__init__()
        self.env = env
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        yield Header(show_clock=True)
        yield Static(id="banner")
        yield DataTable(id="components", cursor_type="row", zebra_stripes=True)
        yield Static(id="notes")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"DRILL · {self.env.opts.mode} · {'read-only' if self.read_only else 'read-write'}"
        table = self.query_one(DataTable)
        table.add_columns("component", "kind", "state", "detail")
        self.refresh_components()
        self.set_interval(1.0, self.refresh_components)

    def refresh_components(self) -> None:
        env = self.env
        sc = env.scenario
        if sc is None:
            scen = "no scenario armed"
        elif env.scenario_armed_at:
            scen = f"scenario {sc.name} ARMED"
        else:
            scen = f"scenario {sc.name} arms in {env.opts.scenario_delay:g}s"
        self.query_one("#banner", Static).update(
            f"DRILL {env.drill_id} — {scen} — config {env.state.config}"
        )
        table = self.query_one(DataTable)
        table.clear()
        for c in env.components():
            table.add_row(c.name, c.kind, c.state, c.detail)
        self.query_one("#notes", Static).update("\n".join(env.notes))

    def action_arm(self) -> None:
        if self.env.scenario and not self.env.scenario_armed_at:
            self.run_worker(self._arm, thread=True, exclusive=True)

    def _arm(self) -> None:
        self.env.arm_scenario()


def run_drill_screen(env, read_only: bool = False) -> int:
    DrillApp(env, read_only=read_only).run()
    return 0


class ConsoleApp(App):
    """Placeholder main screen for a configured environment: what the configuration holds."""

    TITLE = "x402console"
    BINDINGS = [Binding("q", "quit", "Quit", id="quit")]

    def __init__(self, settings, read_only: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        yield Header(show_clock=True)
        yield DataTable(id="replicas")
        yield Footer()

    def on_mount(self) -> None:
        s = self.settings
        self.sub_title = f"{s.environment.name} · {'read-only' if self.read_only else 'read-write'}"
        t = self.query_one(DataTable)
        t.add_columns("replica", "health", "metrics")
        for r in s.replicas:
            t.add_row(r.name, r.health_url, r.metrics_url)


def run_console(settings, read_only: bool = False) -> int:
    ConsoleApp(settings, read_only=read_only).run()
    return 0
