"""Run one remediation action: show its plan, ask, stream its progress, show its outcome.

Cancel is focused when the dialog opens; a plan with `confirm_text` (destructive actions, a
security-guard override) enables its confirm button only once that text is typed exactly.
The registry does the journaling and the safety checks; this screen only talks to it.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Log, Static

DANGER_STYLE = {"safe": "bold green", "disruptive": "bold black on yellow", "destructive": "bold white on red"}


def plan_text(plan) -> Text:
    text = Text()
    text.append(f"{plan.title}", style="bold")
    text.append(f"  on {plan.target.kind} {plan.target.name}  ")
    text.append(f" {plan.danger} ", style=DANGER_STYLE.get(plan.danger, "reverse"))
    text.append("\n\nSteps:\n", style="bold")
    for n, step in enumerate(plan.steps, 1):
        text.append(f" {n}. {step.description}\n")
        if step.command:
            text.append(f"      $ {step.command}\n", style="cyan")
    for w in plan.warnings:
        text.append(f"\n⚠ {w}", style="yellow")
    if not plan.cancellable:
        text.append("\n\nOnce started this action cannot be cancelled safely.", style="italic")
    return text


class ActionDialog(ModalScreen[object]):
    DEFAULT_CSS = """
    ActionDialog { align: center middle; }
    ActionDialog > Vertical { width: 100; max-width: 98%; height: auto; max-height: 95%;
        border: thick $warning; background: $surface; padding: 0 1; }
    ActionDialog #plan-scroll { height: auto; max-height: 20; }
    ActionDialog Log { height: 10; border: round $primary 40%; }
    ActionDialog Horizontal { height: auto; align-horizontal: right; }
    ActionDialog Button { margin-left: 2; }
    ActionDialog #outcome { height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="action.cancel",
                        tooltip="Close before running, or ask a running action to stop (when safe)")]

    def __init__(self, registry, ctx, plan) -> None:
        super().__init__()
        self.registry = registry
        self.ctx = ctx
        self.plan = plan
        self.running = False
        self.outcome = None

    def compose(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll(id="plan-scroll"):
                yield Static(plan_text(self.plan), id="plan")
            if self.plan.confirm_text:
                yield Label(f"Type {self.plan.confirm_text!r} to confirm:")
                yield Input(placeholder=self.plan.confirm_text, id="confirm-text")
            yield Log(id="progress", max_lines=500)
            yield Static(id="outcome")
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Run", id="run", variant="error" if self.plan.danger == "destructive" else "warning",
                             disabled=bool(self.plan.confirm_text))

    def on_mount(self) -> None:
        self.query_one("#progress", Log).display = False
        self.query_one("#cancel", Button).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "confirm-text":
            self.query_one("#run", Button).disabled = event.value != self.plan.confirm_text

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run" and not self.running and self.outcome is None:
            self._start()
        elif event.button.id == "cancel":
            self.action_cancel()

    def action_cancel(self) -> None:
        if self.running:
            if self.plan.cancellable:
                self.ctx.cancel.set()
                self._log("cancel requested; stopping at the next safe point…")
            else:
                self.app.notify("this action cannot be cancelled safely once started", severity="warning")
            return
        self.dismiss(self.outcome)

    def _log(self, line: str) -> None:
        self.query_one("#progress", Log).write_line(line)

    def _start(self) -> None:
        self.running = True
        self.query_one("#progress", Log).display = True
        self.query_one("#run", Button).disabled = True
        for w in self.query(Input):
            w.disabled = True
        cancel = self.query_one("#cancel", Button)
        cancel.label = "Stop" if self.plan.cancellable else "Running…"
        cancel.disabled = not self.plan.cancellable
        self.run_worker(self._execute(), exclusive=True, group="action", exit_on_error=False)

    async def _execute(self) -> None:
        from x402console.actions.base import ActionError

        def progress(p) -> None:
            pct = f" {p.fraction * 100:.0f}%" if p.fraction is not None else ""
            self._log(f"{p.message}{pct}")

        try:
            outcome = await self.registry.execute(self.plan, self.ctx, progress)
        except ActionError as exc:
            self._finish(None, f"refused: {exc}", "bold red")
            return
        except Exception as exc:  # never let an action take the console down
            self._finish(None, f"failed: {type(exc).__name__}: {exc}", "bold red")
            return
        style = {"succeeded": "bold green", "failed": "bold red", "cancelled": "bold yellow"}.get(outcome.status, "")
        text = f"{outcome.status}: {outcome.summary}"
        if outcome.artifacts:
            text += "\n" + "\n".join(f"  {a}" for a in outcome.artifacts[:10])
        self._finish(outcome, text, style)

    def _finish(self, outcome, text: str, style: str) -> None:
        self.running = False
        self.outcome = outcome
        self.query_one("#outcome", Static).update(Text(text, style=style))
        cancel = self.query_one("#cancel", Button)
        cancel.label = "Close"
        cancel.disabled = False
        cancel.focus()
