"""Metrics: the runbook's numbers now, charts over the rolling window with its thresholds, alerts."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.widgets import Static

from x402console.core.format import bytes_h, percent_h, rate_h, seconds_h
from x402console.core.observations import ObservationStore, Series

# chart id, title, series names (store.series keys or "rss"), threshold keys
CHARTS = (
    ("chart-rate", "proof rate (proofs/s)", ("proof_rate",), ("proof_rate_p1",)),
    ("chart-errors", "error ratio", ("error_ratio",), ("error_ratio_p2", "error_ratio_p1")),
    ("chart-latency", "latency p50 / p95 (s)", ("p50_seconds", "p95_seconds"), ("latency_p2", "latency_p1")),
    ("chart-rss", "resident memory (MiB)", ("rss",), ("memory",)),
    ("chart-limited", "rate-limited (req/s)", ("rate_limited_rate",), ()),
    ("chart-active", "active requests", ("active_requests",), ()),
)
# A chart needs this many rows to show a plot area at all (title + 2 axis rows + plot).
MIN_CHART_ROWS = 8
CHART_MIN_INTERVAL = 1.9  # seconds between chart redraws, at least
CHART_MAX_INTERVAL = 10.0


CHARTS_WITHOUT_DATA_AFTER_S = 2.0


class MetricsPane(Vertical, can_focus=True):
    BINDINGS = [Binding("m", "next_charts", "More charts", id="metrics.next_charts",
                        tooltip="Show the next charts when not all of them fit")]
    DEFAULT_CSS = """
    MetricsPane #numbers { height: 2; padding: 0 1; }
    MetricsPane #charts { grid-size: 2 1; grid-gutter: 0 1; height: 1fr; }
    MetricsPane #alerts { height: auto; max-height: 5; padding: 0 1; }
    MetricsPane PlotextPlot { height: 1fr; }
    """

    def __init__(self, store: ObservationStore, settings, **kw) -> None:
        super().__init__(**kw)
        self.store = store
        self.settings = settings
        self.border_title = "2 Metrics"
        self.first_chart = 0  # index of the first chart shown when not all fit
        self._texts: dict[str, str] = {}
        self._charts_at = 0.0
        self._charts_mounted = False
        self._charts_mounting = False
        sev = settings.severity
        mem_limit = float(settings.prover.memory_limit_bytes or 0)
        self.thresholds = {
            "proof_rate_p1": sev.proof_rate_p1,
            "error_ratio_p2": sev.error_ratio_p2,
            "error_ratio_p1": sev.error_ratio_p1,
            "latency_p2": sev.latency_p95_p2_seconds,
            "latency_p1": sev.latency_p95_p1_seconds,
            "memory": mem_limit * sev.memory_ratio_warn / 2**20 if mem_limit else None,
        }

    def compose(self) -> ComposeResult:
        yield Static(id="numbers")
        # The chart widgets (and plotext, ~50 ms of imports) arrive with the first metrics.
        yield Grid(id="charts")
        yield Static(id="alerts")

    def on_mount(self) -> None:
        self.render_store()
        # With no metrics yet (sources slow or failing) the charts still come, empty, soon.
        self.set_timer(CHARTS_WITHOUT_DATA_AFTER_S, self._mount_charts_anyway)

    def _mount_charts_anyway(self) -> None:
        self._mount_charts_soon(self.query_one("#charts", Grid))

    def _mount_charts_soon(self, grid: Grid) -> None:
        if not self._charts_mounted and not self._charts_mounting and grid.display:
            self._charts_mounting = True
            self.call_after_refresh(self._mount_charts)

    async def _mount_charts(self) -> None:
        from textual_plotext import PlotextPlot

        await self.query_one("#charts", Grid).mount(*[PlotextPlot(id=chart_id) for chart_id, *_ in CHARTS])
        self._charts_mounted = True
        self._charts_at = 0.0
        self.render_store()

    def on_resize(self) -> None:
        self._charts_at = 0.0
        self.render_store()

    def action_next_charts(self) -> None:
        shown = self._chart_slots()
        self.first_chart = (self.first_chart + shown) % len(CHARTS) if shown < len(CHARTS) else 0
        self._charts_at = 0.0
        self.render_store()

    def _chart_slots(self) -> int:
        """How many charts fit: two per row, as many rows as the height allows (up to 3)."""
        height = self.query_one("#charts").size.height
        rows = max(1, min(3, height // MIN_CHART_ROWS))
        return min(len(CHARTS), rows * 2)

    def _set(self, selector: str, text: Text) -> None:
        if self._texts.get(selector) != text.plain:
            # #numbers has a fixed height: repainting it needs no relayout of the screen.
            relayout = selector != "#numbers" or text.plain.count("\n") != self._texts.get(selector, "").count("\n")
            self._texts[selector] = text.plain
            self.query_one(selector, Static).update(text, layout=relayout)

    def render_store(self, charts: bool = True) -> None:
        self._set("#numbers", self._numbers())
        self._set("#alerts", self._alerts())
        if not charts:
            return
        grid = self.query_one("#charts", Grid)
        if not self._charts_mounted:
            # Mounted once there is something to draw: before that their import and layout
            # would only delay the sources' start (and so every pane's first data).
            if self._has_data():
                self._mount_charts_soon(grid)
            return
        now_mono = time.monotonic()
        # Charts span minutes and are the most expensive widgets on the screen: a braille dot
        # covers window/(2*width) seconds, so redrawing sooner than that moves nothing.
        if now_mono - self._charts_at < self._chart_interval():
            return
        self._charts_at = now_mono
        if not grid.display:
            return
        slots = self._chart_slots()
        rows = max(1, (slots + 1) // 2)
        grid.styles.grid_size_rows = rows
        visible = {(self.first_chart + i) % len(CHARTS) for i in range(slots)}
        now = time.time()
        for index, (chart_id, title, names, thresholds) in enumerate(CHARTS):
            widget = self.query_one(f"#{chart_id}")
            widget.display = index in visible
            if index in visible:
                self._draw(widget, title, names, thresholds, now)
        if slots < len(CHARTS):
            self.border_subtitle = f"charts {len(visible)}/{len(CHARTS)} · m: more"
        else:
            self.border_subtitle = ""

    def _has_data(self) -> bool:
        store = self.store
        return store.metrics is not None or any(s.points for s in store.series.values())

    def _chart_interval(self) -> float:
        width = max(10, self.query_one("#charts", Grid).size.width // 2)
        dot = self.store.window / (2 * width)
        return min(CHART_MAX_INTERVAL, max(CHART_MIN_INTERVAL, dot))

    def numbers_text(self) -> Text:
        return self._numbers()

    def _numbers(self) -> Text:
        m = self.store.metrics
        sev = self.settings.severity
        text = Text()
        if m is None:
            return Text("waiting for metrics…", style="dim")

        def part(label: str, value: str, bad: bool = False, warn: bool = False) -> None:
            text.append(f"{label} ", style="dim")
            text.append(value, style="bold red" if bad else "bold yellow" if warn else "bold")
            text.append("   ")

        rate = m.proof_rate
        part("rate", rate_h(rate), bad=rate is not None and rate < sev.proof_rate_p1)
        er = m.error_ratio
        part("errors", percent_h(er, is_ratio=True), bad=er is not None and er > sev.error_ratio_p1,
             warn=er is not None and er >= sev.error_ratio_p2)
        part("p50", seconds_h(m.p50_seconds))
        p95 = m.p95_seconds
        part("p95", seconds_h(p95, m.p95_lower_bound),
             bad=p95 is not None and p95 > sev.latency_p95_p1_seconds,
             warn=p95 is not None and (p95 >= sev.latency_p95_p2_seconds or m.p95_lower_bound))
        if m.mean_seconds is not None and m.p95_lower_bound:
            part("mean", seconds_h(m.mean_seconds), bad=m.mean_seconds > sev.latency_p95_p1_seconds)
        part("429s", rate_h(m.rate_limited_rate))
        part("active", "–" if m.active_requests is None else f"{m.active_requests:.0f}")
        for replica, rss in sorted(m.rss_bytes.items()):
            part(f"rss {replica}", bytes_h(rss))
        text.append(f"[{m.source}]", style="dim")
        return text

    def _alerts(self) -> Text:
        text = Text()
        for s in self.store.failing_sources():
            if s.name.split(":")[0] in ("prometheus", "scrape"):
                retry = f" (retry in {s.retry_in:.0f}s)" if s.retry_in else ""
                text.append(f"⚠ {s.name}: {s.error}{retry}\n", style="red")
        return text + self._alert_lines()

    def _alert_lines(self) -> Text:
        firing = self.store.firing_alerts()
        pending = [a for a in self.store.alerts if a.state == "pending"]
        if not firing and not pending:
            return Text("alerts: none firing" if self.store.alerts is not None else "", style="dim")
        text = Text()
        for a in firing:
            text.append("FIRING ", style="bold white on red")
            text.append(f"{a.name} ", style="bold")
            text.append(f"{a.severity or ''} {a.summary or ''}\n", style="red")
        for a in pending[:3]:
            text.append("pending ", style="black on yellow")
            text.append(f"{a.name}\n", style="yellow")
        return text

    def _draw(self, widget, title: str, names: tuple[str, ...], thresholds: tuple[str, ...],
              now: float) -> None:
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        window = self.store.window
        series: list[tuple[str, Series, float]] = []
        if names == ("rss",):
            for replica, s in sorted(self.store.rss.items()):
                series.append((replica, s, 1 / 2**20))
        else:
            for n in names:
                series.append((n.replace("_seconds", "").replace("_", " "), self.store.series[n], 1.0))
        drawn = False
        top = 0.0
        for label, s, scale in series:
            # A series that went quiet (a replica gone for longer than the window) keeps old
            # points the store never trims; plotext fails on a labelled series with none inside.
            points = [(t, v) for t, v in s.points if t >= now - window]
            if not points:
                continue
            xs = [t - now for t, _ in points]
            ys = [v * scale for _, v in points]
            top = max(top, max(ys))
            plt.plot(xs, ys, label=label if len(series) > 1 else None, marker="braille")
            drawn = True
        # The axis reaches the lowest threshold (so it is always drawn) but not necessarily
        # the higher ones: a P1 line at 5 s would flatten a healthy 150 ms p95 into the floor.
        limits = sorted(v for k in thresholds if (v := self.thresholds.get(k)))
        if limits:
            top = max(top * 1.2, limits[0] * 1.1)
        for value in limits:
            if value <= top:
                plt.hline(value, "red" if value == limits[-1] else "orange")
        plt.ylim(0, top if top > 0 else 1)
        plt.xlim(-window, 0)
        plt.xticks([-window, -window / 2, 0], [f"-{window / 60:.0f}m", f"-{window / 120:.0f}m", "now"])
        plt.yfrequency(3)
        if not drawn:
            plt.title(f"{title} — no data yet")
        widget.refresh()
