"""Help: every binding of the app and of each pane, with its id (for the keymap) and what it does."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen VerticalScroll { width: 100; max-width: 98%; height: 90%; border: thick $accent; background: $surface; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help.close", tooltip="Close the help")]

    def __init__(self, sections: list[tuple[str, list[Binding]]], keymap_path: str,
                 keymap: dict[str, str] | None = None) -> None:
        super().__init__()
        self.sections = sections
        self.keymap_path = keymap_path
        self.keymap = dict(keymap or {})  # remapped keys are shown, not the defaults

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self._table())

    def _table(self) -> Table:
        table = Table(title="x402console keys", expand=True, show_lines=False)
        table.add_column("where", style="dim", no_wrap=True)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column(Text("id (remap in [keymap])"), no_wrap=True)  # Text: no markup parsing
        table.add_column("does")
        for section, bindings in self.sections:
            for b in bindings:
                key = self.keymap.get(b.id or "", b.key)
                table.add_row(Text(section), Text(key), Text(b.id or ""), Text(b.tooltip or b.description))
        table.caption = Text(f'Remap keys in {self.keymap_path} under [keymap], e.g. incident.declare = "ctrl+d"')
        return table

    def action_close(self) -> None:
        self.dismiss(None)
