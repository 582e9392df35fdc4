"""Confirmation and incident dialogs. Cancel is focused by default (k9s, ctop): Enter never confirms by accident."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

SEVERITIES = ("P0", "P1", "P2", "P3")

DIALOG_CSS = """
#dialog { width: 72; max-width: 95%; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
#dialog Horizontal { height: auto; margin-top: 1; align-horizontal: right; }
#dialog Button { margin-left: 2; }
#dialog #error { color: $error; height: auto; }
"""


def dialog_css(screen: str) -> str:
    """Textual scopes a DEFAULT_CSS to its own class: a rule naming another type (ModalScreen)
    would only match that type *inside* the screen, so the rule that centres the dialog must
    name the screen class itself."""
    return f"{screen} {{ align: center middle; }}\n{DIALOG_CSS}"


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = dialog_css("ConfirmScreen")
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

    DEFAULT_CSS = dialog_css("DeclareScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without doing anything")]

    def __init__(self, severity: str = "P2", title: str = "", suggested_title: str = "") -> None:
        super().__init__()
        self.severity = severity if severity in SEVERITIES else "P2"
        self.initial_title = title
        # Shown as the placeholder and used when the box is left empty: typing never has to
        # delete a suggestion first.
        self.suggested_title = suggested_title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Declare an incident")
            hint = f"{self.suggested_title}  (suggested; empty keeps it)" if self.suggested_title else "what is wrong, in a few words"
            yield Input(value=self.initial_title, placeholder=hint, id="title")
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
        title = self.query_one("#title", Input).value.strip() or self.suggested_title
        if not title:
            self.query_one("#error", Static).update("A title is needed.")
            self.query_one("#title", Input).focus()
            return
        self.dismiss((title, str(self.query_one("#severity", Select).value)))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PromptScreen(ModalScreen["str | None"]):
    """One line of text: a note, a reason, a parameter, or a typed confirmation.

    With `must_type`, the confirm button stays refused until exactly that text is typed (the
    target's name, or an address to block): the operator reads what they are about to hit.
    """

    DEFAULT_CSS = dialog_css("PromptScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without doing anything")]

    def __init__(self, title: str, body: str = "", *, placeholder: str = "", value: str = "",
                 confirm_label: str = "OK", must_type: str | None = None, allow_empty: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.placeholder = placeholder
        self.initial = value
        self.confirm_label = confirm_label
        self.must_type = must_type
        self.allow_empty = allow_empty

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, classes="title")
            if self.body:
                yield Static(self.body, markup=False)
            yield Input(value=self.initial, placeholder=self.placeholder, id="text")
            yield Static("", id="error")
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm", variant="warning")

    def on_mount(self) -> None:
        # Typing is the point of this dialog; Enter in the box still checks what was typed.
        self.query_one("#text", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        text = self.query_one("#text", Input).value.strip()
        if self.must_type is not None and text != self.must_type:
            self.query_one("#error", Static).update(f"Type {self.must_type!r} exactly to confirm.")
            return
        if not text and not self.allow_empty:
            self.query_one("#error", Static).update("Some text is needed.")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SeverityScreen(ModalScreen["tuple[str, str] | None"]):
    """A new severity and the reason for the change (both go on the timeline)."""

    DEFAULT_CSS = dialog_css("SeverityScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel", tooltip="Close without doing anything")]

    def __init__(self, current: str, suggested: str | None = None, reasons: str = "") -> None:
        super().__init__()
        self.current = current
        self.suggested = suggested
        self.reasons = reasons

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Change severity (now {self.current})")
            if self.suggested:
                yield Static(f"Suggested from live signals: {self.suggested}\n{self.reasons}", markup=False)
            initial = self.suggested if self.suggested in SEVERITIES and self.suggested != self.current else self.current
            yield Select([(s, s) for s in SEVERITIES], value=initial, allow_blank=False, id="severity")
            yield Input(placeholder="why (goes on the timeline)", id="reason")
            yield Static("", id="error")
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Change", id="change", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "change":
            self.dismiss(None)
            return
        severity = str(self.query_one("#severity", Select).value)
        reason = self.query_one("#reason", Input).value.strip()
        if severity == self.current:
            self.query_one("#error", Static).update(f"The incident is already {severity}.")
            return
        if not reason:
            self.query_one("#error", Static).update("A reason is needed.")
            self.query_one("#reason", Input).focus()
            return
        self.dismiss((severity, reason))

    def action_cancel(self) -> None:
        self.dismiss(None)
