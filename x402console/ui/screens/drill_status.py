"""What the drill environment runs: components, their state, the scenario and notes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


class DrillStatusScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    DrillStatusScreen { align: center middle; }
    DrillStatusScreen > Vertical { width: 110; max-width: 98%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 0 1; }
    DrillStatusScreen DataTable { height: auto; }
    """
    BINDINGS = [Binding("escape,q,S", "close", "Close", id="drill_status.close", tooltip="Back to the console")]

    def __init__(self, env) -> None:
        super().__init__()
        self.env = env

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="drill-banner")
            yield DataTable(id="drill-components", cursor_type="row")
            yield Static(id="drill-notes")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("component", "kind", "state", "detail")
        self.refresh_components()
        self.set_interval(1.0, self.refresh_components)

    def refresh_components(self) -> None:
        env = self.env
        sc = env.scenario
        if sc is None:
            scen = "no scenario"
        elif env.scenario_armed_at:
            scen = f"scenario {sc.name} ARMED"
        else:
            scen = f"scenario {sc.name} arms {env.opts.scenario_delay:g}s after start (ctrl+a arms it now)"
        self.query_one("#drill-banner", Static).update(f"DRILL {env.drill_id} — {scen}\nconfig {env.state.config}")
        table = self.query_one(DataTable)
        table.clear()
        for c in env.components():
            table.add_row(c.name, c.kind, c.state, c.detail)
        self.query_one("#drill-notes", Static).update("\n".join(env.notes))

    def action_close(self) -> None:
        self.dismiss(None)
