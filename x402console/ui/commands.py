"""Every console command in one registry: its binding id, default key, title and help.

The same entries feed the app's bindings (so the key bar shows them and the keymap in the
config can remap them by id), the command palette and the help screen, so the three never
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Command:
    id: str
    key: str
    title: str
    help: str
    action: str
    show: bool = True
    drill_only: bool = False
    changes_state: bool = False  # refused in read-only mode


APP_COMMANDS: tuple[Command, ...] = (
    Command("console.help", "question_mark", "Help", "Show every key binding and what it does", "help"),
    Command("console.quit", "q", "Quit", "Leave the console (a drill stops its environment)", "quit"),
    Command("pane.health", "1", "Health", "Focus the service health pane", "focus_pane('health')", show=False),
    Command("pane.metrics", "2", "Metrics", "Focus the metrics pane", "focus_pane('metrics')", show=False),
    Command("pane.logs", "3", "Logs", "Focus the logs pane", "focus_pane('logs')", show=False),
    Command("pane.checklist", "4", "Checklist", "Focus the incident checklist", "focus_pane('checklist')", show=False),
    Command("pane.zoom", "z", "Zoom", "Maximise the focused pane, or restore the layout", "zoom"),
    Command("actions.open", "full_stop", "Actions", "Remediation actions for the focused pane and its selection",
            "actions"),
    Command("incident.declare", "D", "Declare", "Declare a new incident (title and severity)", "declare",
            changes_state=True),
    Command("incident.acknowledge", "A", "Ack", "Acknowledge the incident in focus", "acknowledge",
            changes_state=True),
    Command("incident.resolve", "R", "Resolve", "Resolve the incident in focus", "resolve", changes_state=True),
    Command("incident.next", "I", "Next incident", "Put the next open incident in focus", "next_incident",
            show=False),
    Command("incident.severity", "V", "Severity", "Change the severity of the incident in focus (suggestion and"
            " reasons from live signals shown)", "change_severity", changes_state=True),
    Command("incident.mitigate", "M", "Mitigated", "Mark the incident in focus as mitigated", "mitigate",
            show=False, changes_state=True),
    Command("incident.reopen", "ctrl+o", "Reopen", "Reopen the last mitigated or resolved incident (its clocks"
            " start again)", "reopen", show=False, changes_state=True),
    Command("incident.security", "X", "Security", "Mark or unmark the incident in focus as a security incident"
            " (restart/recreate/stop then need an evidence bundle first)", "toggle_security", show=False,
            changes_state=True),
    Command("incident.note", "W", "Note", "Write a note on the timeline", "note", changes_state=True),
    Command("incident.evidence", "E", "Evidence", "Preserve an evidence bundle now (db snapshot, logs, metrics,"
            " Prometheus, inspect, pprof; SHA-256 manifest)", "evidence", show=False),
    Command("incident.timeline", "T", "Timeline", "The shared timeline: filter, notes, export", "timeline"),
    Command("incident.runbook", "B", "Runbook", "Suggested severity, which runbook incident this is, its steps"
            " (each tied to its action)", "runbook"),
    Command("incident.postmortem", "P", "Post-mortem", "Write the post-mortem draft of the incident in focus"
            " (Markdown, in the current directory)", "postmortem", show=False),
    Command("drill.status", "S", "Drill", "What the drill environment runs", "drill_status", drill_only=True),
    Command("drill.arm", "ctrl+a", "Arm scenario", "Arm the drill's scenario now instead of after its delay",
            "arm_scenario", show=False, drill_only=True),
)


def bindings(commands: tuple[Command, ...], drill: bool) -> list[Binding]:
    return [
        Binding(c.key, c.action, c.title, show=c.show, id=c.id, tooltip=c.help)
        for c in commands
        if drill or not c.drill_only
    ]
