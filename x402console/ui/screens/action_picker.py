"""Choose an action of a pane (and its target when the pane has no selection to offer)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from x402console.ui.screens.action_dialog import DANGER_STYLE


class ActionPicker(ModalScreen["tuple[str, dict] | None"]):
    """Lists the pane's actions with their keys; Enter picks one, then asks for its parameters."""

    DEFAULT_CSS = """
    ActionPicker { align: center middle; }
    ActionPicker > Vertical { width: 90; max-width: 98%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 0 1; }
    ActionPicker OptionList { height: auto; max-height: 24; }
    """
    BINDINGS = [Binding("escape", "close", "Close", id="picker.close", tooltip="Close without choosing")]

    def __init__(self, title: str, actions: list, target_label: str) -> None:
        super().__init__()
        self.title_text = title
        self.actions = actions
        self.target_label = target_label
        self.chosen = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"{self.title_text} — target: {self.target_label}")
            options = []
            for a in self.actions:
                label = Text()
                label.append(f"{a.key:>3}  ", style="bold")
                label.append(f"{a.title}  ")
                label.append(f" {a.danger} ", style=DANGER_STYLE.get(a.danger, ""))
                label.append(f"  {a.help}", style="dim")
                options.append(Option(label, id=a.id))
            yield OptionList(*options, id="actions")
            yield Label("", id="param-label")
            yield Input(id="param", placeholder="")

    def on_mount(self) -> None:
        self.query_one("#param", Input).display = False
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        action = next(a for a in self.actions if a.id == event.option.id)
        params = dict(getattr(action, "param_help", {}) or {})
        if not params:
            self.dismiss((action.id, {}))
            return
        # One parameter is asked for at a time; today's actions take at most one.
        self.chosen = (action, next(iter(params)))
        name, help_text = self.chosen[1], params[self.chosen[1]]
        self.query_one("#param-label", Label).update(f"{name}: {help_text}")
        box = self.query_one("#param", Input)
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.chosen is None:
            return
        action, name = self.chosen
        self.dismiss((action.id, {name: event.value.strip()}))

    def action_close(self) -> None:
        self.dismiss(None)


class TargetPicker(ModalScreen[object]):
    """Choose one of an action's targets (e.g. which backup to restore)."""

    DEFAULT_CSS = ActionPicker.DEFAULT_CSS.replace("ActionPicker", "TargetPicker")
    BINDINGS = [Binding("escape", "close", "Close", id="target_picker.close", tooltip="Close without choosing")]

    def __init__(self, title: str, targets: list) -> None:
        super().__init__()
        self.title_text = title
        self.targets = targets

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield OptionList(*[Option(Text(f"{t.kind} {t.name}"), id=str(i)) for i, t in enumerate(self.targets)])

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.targets[int(event.option.id)])

    def action_close(self) -> None:
        self.dismiss(None)
