"""The runbook's incident checklist for the incident in focus, ticked with a key, kept in the journal."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option


class ChecklistPane(OptionList):
    """Phases as headings, items as options; the journal is the only source of the ticks."""

    BINDINGS = [
        Binding("space", "toggle", "Tick", id="checklist.toggle", tooltip="Tick or untick the selected item"),
        Binding("x", "toggle", "Tick", show=False, id="checklist.toggle_alt",
                tooltip="Tick or untick the selected item"),
    ]

    class Toggled(Message):
        def __init__(self, item_id: str, checked: bool) -> None:
            super().__init__()
            self.item_id = item_id
            self.checked = checked

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "4 Checklist"
        self.incident_id: int | None = None
        self.state: dict[str, bool] = {}
        self._drawn = False  # the phases and items are on (not the placeholder)

    def on_mount(self) -> None:
        # The items come with the journal's state, just after the first frame (26 options cost
        # ~15 ms to lay out, twice over in the first frame).
        self.add_option(Option(Text("reading the journal…", style="dim"), disabled=True))

    def show_state(self, incident_id: int | None, state: dict[str, bool]) -> None:
        if incident_id == self.incident_id and state == self.state and self._drawn:
            return
        self._drawn = True
        self.incident_id = incident_id
        self.state = dict(state)
        highlighted = self.highlighted
        self.clear_options()
        # One add_options call: added one at a time, each option re-measured the whole list.
        options: list[Option] = []
        if incident_id is None:
            options.append(Option(Text("No incident in focus: D declares one.", style="dim"), disabled=True))
        # The runbook's checklist is read (TOML) with the journal's first answer, after the
        # first frame, not at import.
        from x402console.core.checklist import PHASES, progress

        done = {p.phase: p for p in progress(self.state)}
        for phase in PHASES:
            pp = done.get(phase.id)
            head = Text(f"{phase.title}  {pp.done if pp else 0}/{len(phase.items)}",
                        style="bold green" if pp and pp.complete else "bold")
            options.append(Option(head, disabled=True))
            for item in phase.items:
                checked = self.state.get(item.id, False)
                label = Text("  [x] " if checked else "  [ ] ", style="green" if checked else "")
                label.append(item.text, style="dim" if checked else "")
                options.append(Option(label, id=item.id, disabled=incident_id is None))
        self.add_options(options)
        total = sum(len(p.items) for p in PHASES)
        self.border_subtitle = f"{sum(self.state.values())}/{total}"
        if highlighted is not None and highlighted < self.option_count:
            self.highlighted = highlighted

    def on_focus(self) -> None:
        # Textual's OptionList highlights nothing on focus: `4` then space must tick the first
        # item, not silently do nothing.
        if self.highlighted is None and self.incident_id is not None:
            self.action_cursor_down()

    def action_toggle(self) -> None:
        if self.highlighted is None or self.incident_id is None:
            return
        option = self.get_option_at_index(self.highlighted)
        if option.id is None or option.disabled:
            return
        self.post_message(self.Toggled(option.id, not self.state.get(option.id, False)))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_toggle()
