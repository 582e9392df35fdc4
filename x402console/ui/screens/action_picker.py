"""Choose an action of a pane (and its target when the pane has no selection to offer)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from x402console.actions.param_text import parse_param_text
from x402console.ui.screens.action_dialog import DANGER_STYLE


class ActionPicker(ModalScreen["tuple[str, dict] | None"]):
    """Lists a group's actions with their keys: the key alone runs the action (`.` then `r`
    restarts the selected replica), Enter runs the highlighted one; left/right switch to the
    other groups (database, abuse, circuits, incident have no pane of their own)."""

    DEFAULT_CSS = """
    ActionPicker { align: center middle; }
    ActionPicker > Vertical { width: 90; max-width: 98%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 0 1; }
    ActionPicker OptionList { height: auto; max-height: 24; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", id="picker.close", tooltip="Close without choosing"),
        Binding("left", "group(-1)", "Previous group", id="picker.prev_group", tooltip="Actions of the previous group"),
        Binding("right", "group(1)", "Next group", id="picker.next_group", tooltip="Actions of the next group"),
    ]

    def __init__(self, title: str, actions: list, target_label: str,
                 groups: list[tuple[str, list]] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.groups = groups or [(title, actions)]
        self.group = next((i for i, (_, acts) in enumerate(self.groups) if acts is actions), 0)
        self.actions = actions
        self.target_label = target_label
        self.chosen = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("", id="picker-title")
            yield OptionList(id="actions")
            yield Label("", id="param-label")
            yield Input(id="param", placeholder="")

    def on_mount(self) -> None:
        self.query_one("#param", Input).display = False
        self._show_group()
        self.query_one(OptionList).focus()

    def _show_group(self) -> None:
        name, self.actions = self.groups[self.group]
        names = "  ".join(f"[{n}]" if i == self.group else n for i, (n, _) in enumerate(self.groups))
        self.query_one("#picker-title", Label).update(
            Text(f"{name} actions — target: {self.target_label}   ←/→ {names}"))
        options = []
        for a in self.actions:
            label = Text()
            label.append(f"{a.key:>3}  ", style="bold")
            label.append(f"{a.title}  ")
            label.append(f" {a.danger} ", style=DANGER_STYLE.get(a.danger, ""))
            label.append(f"  {a.help}", style="dim")
            options.append(Option(label, id=a.id))
        box = self.query_one(OptionList)
        box.clear_options()
        box.add_options(options)
        if options:
            box.highlighted = 0

    def action_group(self, step: int) -> None:
        if self.chosen is None and len(self.groups) > 1:
            self.group = (self.group + step) % len(self.groups)
            self._show_group()

    def on_key(self, event) -> None:
        # An action's own key picks it, as long as the list (not the parameter box) has focus.
        if self.chosen is not None or not event.character or not isinstance(self.focused, OptionList):
            return
        action = next((a for a in self.actions if a.key == event.character), None)
        if action is not None:
            event.stop()
            self._pick(action)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._pick(next(a for a in self.actions if a.id == event.option.id))

    def _pick(self, action) -> None:
        params = dict(getattr(action, "param_help", {}) or {})
        if not params:
            self.dismiss((action.id, {}))
            return
        # The main parameter is asked for here (empty keeps the action's default); typed
        # confirmations come later, from the plan.
        self.chosen = (action, next(iter(params)))
        name, help_text = self.chosen[1], params[self.chosen[1]]
        others = [n for n in params if n != name]
        more = f"; or name=value for {', '.join(others)}" if others else ""
        self.query_one("#param-label", Label).update(
            f"{action.title}: {name}: {help_text} (Enter; empty = default{more})")
        box = self.query_one("#param", Input)
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.chosen is None:
            return
        action, _ = self.chosen
        names = list(getattr(action, "param_help", {}) or {})
        try:
            params = parse_param_text(event.value, names)
        except ValueError as exc:
            # Said in the box's label; nothing runs until the text is one the action takes.
            self.query_one("#param-label", Label).update(f"{action.title}: {exc}")
            return
        self.dismiss((action.id, params))

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
