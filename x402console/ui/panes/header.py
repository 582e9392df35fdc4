"""The header: environment (a drill marked as such), incident in focus, clock, RO/RW, freshness."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from rich.text import Text
from textual.widgets import Static

from x402console.core.format import clock_h, duration_h

SEVERITY_STYLE = {"P0": "bold white on red", "P1": "bold black on dark_orange", "P2": "black on yellow",
                  "P3": "black on grey70"}


class HeaderBar(Static):
    """Two lines, rebuilt once a second and when the incident or freshness changes."""

    DEFAULT_CSS = """
    HeaderBar { height: 2; background: $panel; padding: 0 1; }
    """

    def __init__(self, env_name: str, drill: bool, read_only: bool, stale_after: float, **kw) -> None:
        super().__init__(**kw)
        self.env_name = env_name
        self.drill = drill
        self.read_only = read_only
        self.stale_after = stale_after
        self.fresh_within = max(2.0, stale_after / 2.5)
        self.incident = None
        self.open_count = 0
        self.freshness: dict[str, float] = {}
        self.failing: list[str] = []
        self.suggestion: tuple[str, str] | None = None  # (level, top reason) from the severity engine
        self.escalation: str = ""  # the focused incident's next escalation step / target clock
        self.role = "commander"

    def show(self, *, incident=None, open_count: int = 0, freshness: dict[str, float] | None = None,
             failing: list[str] | None = None, suggestion: tuple[str, str] | None = None,
             escalation: str = "") -> None:
        self.incident = incident
        self.suggestion = suggestion
        self.escalation = escalation
        self.open_count = open_count
        if freshness is not None:
            self.freshness = freshness
        if failing is not None:
            self.failing = failing
        text = self.build()
        # Repaint only when something visible changed: an idle console must not redraw.
        if text.plain != getattr(self, "_shown", None):
            self._shown = text.plain
            self.update(text, layout=False)  # fixed two rows: no relayout of the whole screen

    def build(self) -> Text:
        line1 = Text()
        line1.append(" x402console ", style="bold reverse")
        if self.drill:
            line1.append(" DRILL ", style="bold black on magenta")
        line1.append(f" {self.env_name} ", style="bold")
        line1.append(" RO " if self.read_only else " RW ", style="bold white on blue" if self.read_only else "bold black on green")
        if self.role != "commander":
            line1.append(f" {self.role} ", style="bold")
        line1.append("  ")
        inc = self.incident
        if inc is None:
            line1.append("no open incident", style="dim")
            if self.suggestion is None:
                line1.append("  (D declares one)", style="dim")
        else:
            # Severity, clock and status first: at 80 columns the title is what gets cut.
            line1.append(f" {inc.severity} ", style=SEVERITY_STYLE.get(inc.severity, "reverse"))
            since = _age(inc.created_at)
            line1.append(f" {clock_h(since)} ", style="bold")
            line1.append(f"[{inc.status}]", style="italic")
            if inc.security:
                line1.append(" SECURITY", style="bold red")
            if self.open_count > 1:
                line1.append(f" (+{self.open_count - 1} open)", style="dim")
            line1.append(f" #{inc.id} {inc.title}", style="bold")
            if self.escalation:
                line1.append(f"  {self.escalation}", style="bold yellow" if "overdue" in self.escalation else "")
        if self.suggestion is not None:
            level, why = self.suggestion
            if inc is None or level != inc.severity:
                line1.append("  suggested ", style="dim")
                line1.append(f" {level} ", style=SEVERITY_STYLE.get(level, "reverse"))
                line1.append(f" {why}", style="italic")
        line2 = Text("data: ", style="dim")
        if not self.freshness:
            line2.append("waiting for the first samples…", style="yellow")
        for name in sorted(self.freshness):
            age = self.freshness[name]
            stale = age > self.stale_after
            # Below the stale limit the exact age changes every second and says nothing new.
            shown = duration_h(age) if stale or age >= self.fresh_within else f"<{self.fresh_within:.0f}s"
            line2.append(f"{name} {shown}", style="bold red" if stale else "green")
            line2.append(" STALE  " if stale else "  ", style="bold red" if stale else "")
        if self.failing:
            line2.append("  failing: " + ", ".join(self.failing[:4]), style="bold red")
        # Each line is cut, never wrapped: the header keeps its two rows at 80 columns.
        for line in (line1, line2):
            line.no_wrap = True
            line.overflow = "ellipsis"
            if self.size.width > 2:  # before the first layout the width is 0: let Rich crop
                line.truncate(self.size.width - 2, overflow="ellipsis")
        return Text("\n").join([line1, line2])


def _age(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return time.time() - dt.timestamp()
