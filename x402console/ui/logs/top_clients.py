"""Side panel of the log pane: the busiest client IPs over the window and their 429s.

The runbook's `grep | awk '{print $1}' | sort | uniq -c | sort -rn | head`, live. Counting
happens in sources.logparse.TopClients as batches arrive (the pane feeds it whether or not the
panel is shown, so opening it shows the whole window); this widget only draws, once a second
while it is displayed.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from x402console.sources.logparse import ClientCount, TopClients

__all__ = ["TopClientsPanel"]

_IP_CELL = 22
_HEADER = Style(bold=True)
_LIMITED = Style(color="yellow")
_MOSTLY_LIMITED = Style(color="red", bold=True)


def _window_text(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def render_top_clients(rows: list[ClientCount], window_seconds: float, total: int) -> Text:
    """Plain strings only: an address is data, never markup."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"Top clients · last {_window_text(window_seconds)}\n", _HEADER)
    text.append(f"{'client IP':<{_IP_CELL}} {'reqs':>7} {'429':>6}\n", _HEADER)
    if not rows:
        text.append("no requests with a client address yet\n", Style(dim=True))
    for row in rows:
        ip = row.ip if len(row.ip) <= _IP_CELL else row.ip[: _IP_CELL - 1] + "…"
        style = Style()
        if row.rate_limited:
            style = _MOSTLY_LIMITED if row.rate_limited * 2 >= row.count else _LIMITED
        text.append(f"{ip:<{_IP_CELL}} {row.count:>7,} {row.rate_limited:>6,}\n", style)
    text.append(f"{total:,} requests in window", Style(dim=True))
    return text


class TopClientsPanel(Widget):
    """Draws a TopClients counter; hidden until toggled."""

    DEFAULT_CSS = """
    TopClientsPanel {
        width: 42;
        height: 1fr;
        display: none;
        border-left: vkey $primary;
        padding: 0 1;
        background: $surface;
    }
    """

    def __init__(
        self,
        counter: TopClients,
        limit: int = 20,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.counter = counter
        self.limit = limit

    def on_mount(self) -> None:
        self._timer = None
        if self.display:
            self._start_ticking()

    def _start_ticking(self) -> None:
        # Only a shown panel ticks: hidden (the default) it costs no timer at all.
        if self._timer is None:
            self._timer = self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        if self.display:
            self.refresh()

    def toggle(self) -> bool:
        """Show or hide; returns whether it is now shown."""
        self.display = not self.display
        if self.display:
            self._start_ticking()
            self.refresh()
        elif self._timer is not None:
            self._timer.stop()
            self._timer = None
        return bool(self.display)

    def rows(self) -> list[ClientCount]:
        return self.counter.top(self.limit)

    def render(self) -> Text:
        return render_top_clients(self.rows(), self.counter.window, self.counter.total())
