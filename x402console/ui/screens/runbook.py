"""Which incident is it, and how bad: the suggested severity, the ranked runbook incidents and
the chosen incident's runbook, step by step, each step runnable (Enter) or copyable (c).

The screen only shows and asks: running a step, or declaring an incident, is a message to the
app (`RunStep`, `DeclareFromMatch`), so the app's one path through the registry (plan dialog,
safety rules, journal) stays the only way anything runs. `update_inputs()` refreshes the
severity and the ranking as the picture changes without moving the operator's selection:
the incident list keeps every runbook incident (unmatched ones below the matches, at 0 %), so
the incident being read never disappears from under the cursor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from x402console.core.matcher import Match
from x402console.core.runbook import Incident, Runbook, Step
from x402console.core.severity import Assessment
from x402console.ui.panes.keybar import KeyBar

# Deployment mode -> the action id prefix of its remediation actions. An id with another
# mode's prefix never runs in this mode (a container restart means nothing to local processes);
# ids with neither prefix (db.*, abuse.*, ...) fit every mode.
MODE_PREFIXES: Mapping[str, str] = {"docker": "container.", "process": "process."}
LEVEL_STYLE = {"P0": "bold white on red", "P1": "bold red", "P2": "bold yellow", "P3": "bold"}
SECTION_LABELS = {"diagnosis": "Diagnosis", "immediate": "Immediate actions", "resolution": "Resolution",
                  "post_incident": "Post-incident"}
EVIDENCE_SHOWN = 4  # evidence lines per incident in the list; the rest are counted


def resolve_action(step: Step, registry: Any, mode: str) -> tuple[str | None, str | None]:
    """(the action id to run for the step in this mode, why it is manual instead).

    Both are None for a step that names no action. The step's own action is preferred, then
    its alternatives, in the runbook's order.
    """
    ids = step.action_ids
    if not ids:
        return None, None
    others = tuple(p for m, p in MODE_PREFIXES.items() if m != mode)
    fitting = [a for a in ids if not a.startswith(others)]
    for action_id in fitting:
        if _registered(registry, action_id) is not None:
            return action_id, None
    if not fitting:
        return None, f"no {mode}-mode action for this step ({', '.join(ids)})"
    return None, f"{', '.join(fitting)} not available in this console"


def _registered(registry: Any, action_id: str) -> Any:
    try:
        return registry.get(action_id)
    except Exception:  # the registry says "no such action" with its own error type
        return None


def _duration(minutes: int | None) -> str:
    if minutes is None:
        return "best effort"
    if minutes < 60 or minutes % 60:
        return f"{minutes} min"
    if minutes >= 2880 and minutes % 1440 == 0:
        return f"{minutes // 1440} days"
    return f"{minutes // 60} h"


class StepView(Vertical):
    """One runbook step: focusable so Enter and c act on it; its command is a plain Static so a
    mouse selection copies exactly the runbook's text."""

    can_focus = True
    DEFAULT_CSS = """
    StepView { height: auto; padding: 0 1; margin-bottom: 1; border-left: blank; }
    StepView:focus { background: $accent 15%; border-left: thick $accent; }
    StepView .step-command { color: $text; background: $boost; padding: 0 2; margin: 0 0 0 3; }
    StepView .step-line { padding-left: 3; }
    """
    BINDINGS = [
        Binding("down,j", "move(1)", "Next step", show=False, id="runbook.step_next",
                tooltip="Focus the next step"),
        Binding("up,k", "move(-1)", "Previous step", show=False, id="runbook.step_prev",
                tooltip="Focus the previous step"),
        Binding("left,h", "to_list", "Incidents", show=False, id="runbook.focus_list",
                tooltip="Back to the list of incidents"),
    ]

    def __init__(self, step: Step, number: int, incident: int, registry: Any, mode: str) -> None:
        super().__init__(classes="step")
        self.step = step
        self.number = number
        self.incident = incident
        self.action_id, self.manual_reason = resolve_action(step, registry, mode)
        self.action = _registered(registry, self.action_id) if self.action_id else None

    @property
    def runnable(self) -> bool:
        return self.action is not None

    def compose(self) -> ComposeResult:
        step = self.step
        yield Static(Text(f"{self.number}. {step.text}", style="bold"), classes="step-text")
        if self.action is not None:
            line = Text("▶ ", style="bold green")
            line.append(self.action.title, style="bold green")
            line.append(f"  key {self.action.key} ({self.action.pane} pane)  ", style="green")
            line.append("Enter runs it", style="reverse green")
            line.append(f"  {self.action_id}", style="dim")
            yield Static(line, classes="step-line step-action")
        elif self.manual_reason:
            yield Static(Text(f"✋ manual: {self.manual_reason}", style="bold yellow"),
                         classes="step-line step-manual")
        if step.command:
            label = ("or by hand, the runbook's command (manual: run it yourself; c copies it):"
                     if self.action is not None else "✋ manual: run it yourself (c copies the command):")
            yield Static(Text(label, style="dim" if self.action is not None else "yellow"),
                         classes="step-line step-manual")
            yield Static(Text(step.command), classes="step-command")
        elif self.action is None and not self.manual_reason:
            yield Static(Text("manual step", style="yellow"), classes="step-line step-manual")
        if step.note:
            yield Static(Text(f"note: {step.note}", style="italic"), classes="step-line step-note")

    def action_move(self, delta: int) -> None:
        parent = self.parent
        if parent is None:
            return
        steps = list(parent.query(StepView))
        index = steps.index(self) + delta
        if 0 <= index < len(steps):
            steps[index].focus()

    def action_to_list(self) -> None:
        self.screen.query_one("#runbook-incidents", OptionList).focus()


class IncidentView(VerticalScroll):
    """One incident's runbook, built the first time it is chosen and kept (with its scroll)."""

    can_focus = False
    DEFAULT_CSS = """
    IncidentView { height: 1fr; padding: 0 1; }
    IncidentView .heading { text-style: bold; color: $accent; margin-top: 1; }
    IncidentView .security { color: $error; text-style: bold; }
    """

    def __init__(self, incident: Incident, registry: Any, mode: str) -> None:
        super().__init__(id=f"runbook-incident-{incident.number}")
        self.incident = incident
        self.registry = registry
        self.mode = mode

    def compose(self) -> ComposeResult:
        inc = self.incident
        head = Text(f"Incident {inc.number}: {inc.title}", style="bold")
        head.append(f"   runbook severity {inc.severity}", style=LEVEL_STYLE.get(inc.severity, ""))
        head.append(f"\n{inc.severity_basis}", style="dim")
        yield Static(head, classes="incident-head")
        if inc.security:
            yield Static("SECURITY INCIDENT: preserve evidence before restarting anything (the console "
                         "refuses restarts until an evidence bundle is recorded).", classes="security")
        yield Static("Symptoms", classes="heading")
        symptoms = Text()
        for i, s in enumerate(inc.symptoms):
            symptoms.append("\n" if i else "")
            symptoms.append(f"• {s.text}")
            if not s.from_runbook:
                symptoms.append("  (added by the console)", style="dim")
        yield Static(symptoms, classes="symptoms")
        for section in inc.sections:
            label = SECTION_LABELS.get(section.kind, section.kind)
            title = section.title if section.title.lower() == label.lower() else f"{label}: {section.title}"
            yield Static(title, classes=f"heading section-{section.kind}")
            for n, step in enumerate(section.steps, 1):
                yield StepView(step, n, inc.number, self.registry, self.mode)
        if inc.prevention:
            yield Static("Prevention", classes="heading")
            for n, step in enumerate(inc.prevention, 1):
                yield StepView(step, n, inc.number, self.registry, self.mode)


class RunbookScreen(Screen[None]):
    DEFAULT_CSS = """
    RunbookScreen { layout: vertical; }
    RunbookScreen #runbook-top { height: auto; max-height: 40%; border: round $primary 40%; padding: 0 1; }
    RunbookScreen #runbook-body { height: 1fr; }
    RunbookScreen #runbook-incidents { width: 2fr; max-width: 60; height: 1fr; border: round $primary 40%; }
    RunbookScreen #runbook-incidents:focus { border: round $accent; }
    RunbookScreen #runbook-detail { width: 3fr; height: 1fr; border: round $primary 40%; }
    RunbookScreen #runbook-detail:focus-within { border: round $accent; }
    """
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="runbook.close", tooltip="Back to the console"),
        Binding("enter", "run_step", "Run step", id="runbook.run_step",
                tooltip="Run the focused step's console action (its plan is shown first)"),
        Binding("c", "copy_command", "Copy command", id="runbook.copy_command",
                tooltip="Copy the focused step's runbook command to the clipboard (OSC 52)"),
        Binding("d", "declare", "Declare", id="runbook.declare",
                tooltip="Declare an incident titled after the selected one, at the suggested severity"),
        Binding("right,l", "focus_steps", "Steps", show=False, id="runbook.focus_steps",
                tooltip="Go to the selected incident's steps"),
    ]

    class RunStep(Message):
        """Run `action_id` with the step's params (the app shows the action's plan first)."""

        def __init__(self, action_id: str, params: dict[str, Any], *, incident: int | None = None,
                     step: str = "") -> None:
            super().__init__()
            self.action_id = action_id
            self.params = params
            self.incident = incident  # runbook incident number, for the timeline
            self.step = step  # the step's text

    class DeclareFromMatch(Message):
        """Declare an incident: title and severity pre-filled, the runbook incident it is."""

        def __init__(self, title: str, severity: str, runbook_incident: int) -> None:
            super().__init__()
            self.title = title
            self.severity = severity
            self.runbook_incident = runbook_incident

    def __init__(self, assessment: Assessment | None, matches: Sequence[Match], runbook: Runbook, registry: Any,
                 *, mode: str = "docker", focus_incident: int | None = None) -> None:
        if mode not in MODE_PREFIXES:
            raise ValueError(f"mode must be one of {', '.join(MODE_PREFIXES)}, got {mode!r}")
        super().__init__()
        self.assessment = assessment
        self.matches = list(matches)
        self.runbook = runbook
        self.registry = registry
        self.mode = mode
        self.selected: int | None = focus_incident if self._known(focus_incident) else None
        self._listed: tuple = ()

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        top = VerticalScroll(id="runbook-top")
        top.can_focus = False  # Tab goes between the incidents and the steps only
        with top:
            yield Static(self._assessment_text(), id="runbook-assessment")
        with Horizontal(id="runbook-body"):
            yield OptionList(id="runbook-incidents")
            yield Vertical(id="runbook-detail")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#runbook-incidents", OptionList).border_title = "Which incident is it"
        self._fill_list()
        if self.selected is None:
            ranked = self._ranking()
            self.selected = ranked[0][0].number if ranked else None
        self._highlight(self.selected)
        self._show(self.selected)
        self.query_one("#runbook-incidents", OptionList).focus()

    # ------------------------------------------------------------------ live inputs
    def update_inputs(self, assessment: Assessment | None, matches: Sequence[Match]) -> None:
        """A new picture: the severity and the ranking change; the chosen incident, its scroll
        and the focused step stay."""
        self.assessment = assessment
        self.matches = list(matches)
        if not self.is_mounted:
            return
        try:
            self.query_one("#runbook-assessment", Static).update(self._assessment_text())
            lst = self.query_one("#runbook-incidents", OptionList)
        except NoMatches:
            return  # closing
        scroll_y = lst.scroll_y
        if self._fill_list():
            self._highlight(self.selected)
            lst.scroll_to(y=scroll_y, animate=False, immediate=True)

    # ------------------------------------------------------------------ the ranking
    def _known(self, number: int | None) -> bool:
        return number is not None and any(i.number == number for i in self.runbook.incidents)

    def _ranking(self) -> list[tuple[Incident, Match | None]]:
        """Matched incidents best first, then the others in runbook order (score 0)."""
        by_number = {i.number: i for i in self.runbook.incidents}
        ranked: list[tuple[Incident, Match | None]] = []
        for m in self.matches:
            inc = by_number.pop(m.incident, None)
            if inc is not None and m.score > 0:  # a match for another runbook is skipped
                ranked.append((inc, m))
        return ranked + [(inc, None) for inc in by_number.values()]

    def _fill_list(self) -> bool:
        """Rebuild the list when the ranking changed; True when it did."""
        ranking = self._ranking()
        key = tuple((inc.number, m.score if m else 0.0, m.evidence if m else ()) for inc, m in ranking)
        if key == self._listed:
            return False
        self._listed = key
        options: list[Option] = []
        matched = [r for r in ranking if r[1] is not None]
        if not matched:
            options.append(Option(Text("Nothing the console sees matches a runbook incident.\n"
                                       "All seven are listed: open the one you suspect.", style="italic"),
                                  disabled=True))
        for n, (inc, m) in enumerate(ranking):
            if matched and n == len(matched):
                options.append(Option(Text("Other runbook incidents (no sign of them)", style="dim italic"),
                                      disabled=True))
            options.append(Option(self._option_text(inc, m), id=f"incident-{inc.number}"))
        lst = self.query_one("#runbook-incidents", OptionList)
        lst.clear_options()
        lst.add_options(options)
        return True

    def _option_text(self, inc: Incident, m: Match | None) -> Text:
        score = m.score if m else 0.0
        text = Text()
        text.append(f"{score:>4.0%} ", style="bold" if m else "dim")
        text.append(f"{inc.number} {inc.title}", style="bold" if m else "dim")
        text.append(f"  {inc.severity}", style=LEVEL_STYLE.get(inc.severity, "") if m else "dim")
        if m:
            for line in m.evidence[:EVIDENCE_SHOWN]:
                text.append(f"\n      {line}", style="")
            if len(m.evidence) > EVIDENCE_SHOWN:
                text.append(f"\n      +{len(m.evidence) - EVIDENCE_SHOWN} more", style="dim")
        return text

    def _highlight(self, number: int | None) -> None:
        if number is None:
            return
        lst = self.query_one("#runbook-incidents", OptionList)
        try:
            index = lst.get_option_index(f"incident-{number}")
        except Exception:  # not listed (cannot happen: every incident is listed)
            return
        if lst.highlighted != index:
            lst.highlighted = index

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        number = _incident_of(event.option.id)
        if number is not None:
            self._show(number)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        number = _incident_of(event.option.id)
        if number is not None:
            self._show(number)
            self.action_focus_steps()

    # ------------------------------------------------------------------ the incident's runbook
    def _show(self, number: int | None) -> None:
        if number is None or not self._known(number):
            return
        self.selected = number
        detail = self.query_one("#runbook-detail", Vertical)
        inc = self.runbook.incident(number)
        detail.border_title = f"Runbook: incident {inc.number} {inc.title}"
        view_id = f"runbook-incident-{number}"
        for view in detail.query(IncidentView):
            view.display = view.id == view_id
        if not detail.query(f"#{view_id}"):
            detail.mount(IncidentView(inc, self.registry, self.mode))

    def current_view(self) -> IncidentView | None:
        if self.selected is None:
            return None
        try:
            return self.query_one(f"#runbook-incident-{self.selected}", IncidentView)
        except NoMatches:
            return None

    def focused_step(self) -> StepView | None:
        focused = self.focused
        return focused if isinstance(focused, StepView) else None

    def action_focus_steps(self) -> None:
        view = self.current_view()
        if view is None:
            return
        steps = list(view.query(StepView))
        if steps:
            steps[0].focus()
        else:
            # Just mounted: its steps exist after the next refresh.
            self.call_after_refresh(self._focus_first_step)

    def _focus_first_step(self) -> None:
        view = self.current_view()
        steps = list(view.query(StepView)) if view else []
        if steps:
            steps[0].focus()

    # ------------------------------------------------------------------ keys
    def action_run_step(self) -> None:
        sv = self.focused_step()
        if sv is None:
            self.notify("Choose a step first (→ or Enter on an incident, then ↑/↓)", severity="warning")
            return
        if not sv.runnable or sv.action_id is None:
            why = sv.manual_reason or "the console has no action for it"
            self.notify(f"Manual step: {why}" + ("; c copies its command" if sv.step.command else ""),
                        severity="warning")
            return
        self.post_message(self.RunStep(sv.action_id, dict(sv.step.params), incident=sv.incident, step=sv.step.text))

    def action_copy_command(self) -> None:
        sv = self.focused_step()
        if sv is None or not sv.step.command:
            self.notify("No command to copy: focus a step that shows one", severity="warning")
            return
        self.app.copy_to_clipboard(sv.step.command)
        first = sv.step.command.splitlines()[0]
        more = " …" if "\n" in sv.step.command else ""
        self.notify(f"Copied to the clipboard (OSC 52): {first}{more}")

    def action_declare(self) -> None:
        if self.selected is None:
            self.notify("No incident selected", severity="warning")
            return
        inc = self.runbook.incident(self.selected)
        level = self.assessment.level if self.assessment and self.assessment.level else inc.severity
        self.post_message(self.DeclareFromMatch(inc.title, level, inc.number))

    def action_close(self) -> None:
        self.dismiss(None)

    # ------------------------------------------------------------------ the severity
    def _assessment_text(self) -> Text:
        a = self.assessment
        text = Text()
        if a is None:
            text.append("Suggested severity: none yet", style="bold")
            text.append("  (no picture of the system has been taken)", style="dim")
            return text
        if a.level is None:
            text.append("Suggested severity: none", style="bold")
            text.append(" — no known problem in what the console sees")
        else:
            text.append("Suggested severity: ", style="bold")
            text.append(f" {a.level} ", style=LEVEL_STYLE.get(a.level, "bold"))
            try:
                level = self.runbook.level(a.level)
            except KeyError:
                level = None
            if level is not None:
                text.append(f" {level.name}", style="bold")
            text.append(f"   respond within {_duration(a.response_minutes)}")
            if level is not None:
                text.append(f" (runbook: {level.response})", style="dim")
            text.append(f" · resolve within {_duration(a.resolution_minutes)}")
            if level is not None:
                text.append(f" (runbook: {level.resolution})", style="dim")
        if a.reasons:
            text.append("\nWhy, worst first:", style="bold")
            for r in a.reasons:
                text.append("\n  • ")
                text.append(r.text, style=LEVEL_STYLE.get(r.level, "") if r is a.reasons[0] else "")
        if a.uncertain:
            text.append("\nUncertain (could be worse):", style="bold yellow")
            for u in a.uncertain:
                text.append(f"\n  ? {u}", style="yellow")
        if a.missing:
            text.append("\nNot observed (rules needing these could not fire): ", style="bold")
            text.append(", ".join(a.missing), style="dim")
        return text


def _incident_of(option_id: str | None) -> int | None:
    if not option_id or not option_id.startswith("incident-"):
        return None
    try:
        return int(option_id.removeprefix("incident-"))
    except ValueError:
        return None
