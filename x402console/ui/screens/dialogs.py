"""Confirmation and incident dialogs. Cancel is focused by default (k9s, ctop): Enter never confirms by accident."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

SEVERITIES = ("P0", "P1", "P2", "P3")

DIALOG_CSS = """
ModalScreen { align: center middle; }
#dialog { width: 72; max-width: 95%; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
#dialog Horizontal { height: auto; margin-top: 1; align-horizontal: right; }
#dialog Button { margin-left: 2; }
#dialog #error { color: $error; height: auto; }
"""


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without doing anything")]

    def __init__(self, title: str, body: str, confirm_label: str = "Confirm") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, classes="title")
            yield Static(self.body)
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)


class DeclareScreen(ModalScreen["tuple[str, str] | None"]):
    """Title and severity of a new incident; the severity is pre-filled by the caller."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without doing anything")]

    def __init__(self, severity: str = "P2", title: str = "") -> None:
        super().__init__()
        self.severity = severity if severity in SEVERITIES else "P2"
        self.initial_title = title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Declare an incident")
            yield Input(value=self.initial_title, placeholder="what is wrong, in a few words", id="title")
            yield Select([(s, s) for s in SEVERITIES], value=self.severity, allow_blank=False, id="severity")
            yield Static("", id="error")
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Declare", id="declare", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "declare":
            self.dismiss(None)
            return
        title = self.query_one("#title", Input).value.strip()
        if not title:
            self.query_one("#error", Static).update("A title is needed.")
            self.query_one("#title", Input).focus()
            return
        self.dismiss((title, str(self.query_one("#severity", Select).value)))

    def action_cancel(self) -> None:
        self.dismiss(None)
