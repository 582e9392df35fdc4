"""Start-up of the console: time to the first frame (against a minimal Textual app measured in the
same run) and time until every pane shows live data on a running two-replica drill.

Run: .venv/bin/python bench/bench_startup.py [--runs 7] [--live-runs 5] [--rate 5]
                                             [--prometheus auto|on|off] [--skip-terminal]
                                             [--skip-inprocess]

Real terminal (tmux, private -L socket, 160x45, TERM=xterm-256color): each app is spawned in
a new window of an already running tmux server, and capture-pane is polled every 10 ms through
one control-mode client (a tmux process per poll cost half a core and slowed the app measured,
and the minimal app relatively less, by ~100 ms; see _common.Tmux): "first
paint" is the first capture with anything on it (the same test for both apps), "marker" the
first with the app's marker ("READY" for the minimal app, the header's "x402console" for the
console, which opens on a headless drill's config.toml). Runs alternate between the apps,
after one discarded warm-up run of each. The apps run with a bytecode cache (under /tmp), as an
installed package would; the console is also timed with PYTHONDONTWRITEBYTECODE=1, where
every one of its own modules is compiled from source at each start.

Live data: the console is spawned the same way on the drill and the capture is polled until
the health pane shows both replicas "running 200", the metrics pane a "rate N/s" number, the
log pane a prover line and the checklist the items of the open incident (one incident is
declared in the drill's journal first: without one the checklist looks the same before and
after the journal is read).

In process (`App.run_test(size=(160, 45))`): from constructing the app to its on_mount, to the
first refresh after it, and to run_test handing over (app ready, screen settled); and, with
ConsoleApp(load_config(env.state.config), drill_env=env, early=start_early_fetch(settings)) (the
start-up fetch the CLI begins before importing the UI) on an in-process DrillEnvironment
(process mode, traffic on, Prometheus off and, when installed, on), from constructing the app
until app.live_panes() is all true, polled every 10 ms.

Prints medians (min..max); never pass/fail on time. Goals from issue 3: first frame at most
1.5 x the minimal app; every pane live within 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONSOLE,
    MINIMAL_APP_SCRIPT,
    PYTHON,
    SIZE,
    NO_PYCACHE_ENV,
    HeadlessDrill,
    Tmux,
    declare_bench_incident,
    journal_path_of,
    live_on_screen,
    median,
    minimal_app_class,
    print_table,
    spread,
)

PANES = ("health", "metrics", "logs", "checklist")
NO_CACHE = "x402console, no bytecode cache"


def med_ms(values: list[float]) -> str:
    return f"{median(values) * 1000:.0f} ({spread(values, 1000)})" if values else "n/a"


# --------------------------------------------------------------------------- real terminal
def terminal_first_frame(tmux: Tmux, config: Path, runs: int, timeout: float) -> dict[str, dict[str, list[float]]]:
    """Per app: "first paint" (anything on screen, the same test for every app) and "marker"
    (READY / the header's "x402console"), seconds from spawn."""
    console = [*CONSOLE, "--config", str(config)]
    apps = {
        "minimal Textual app": ([PYTHON, "-c", MINIMAL_APP_SCRIPT], "READY", None),
        "x402console": (console, "x402console", None),
        NO_CACHE: (console, "x402console", NO_PYCACHE_ENV),
    }
    results: dict[str, dict[str, list[float]]] = {name: {"first paint": [], "marker": []} for name in apps}
    for i in range(runs + 1):  # run 0 warms the page cache and the bytecode cache and is dropped
        for name, (argv, marker, env) in apps.items():
            start = time.perf_counter()
            pane, pid = tmux.spawn(argv, env=env)
            seen: dict[str, float] = {}
            while time.perf_counter() - start < timeout and len(seen) < 2:
                text = tmux.capture(pane)
                now = time.perf_counter() - start
                if text.strip():
                    seen.setdefault("first paint", now)
                if marker in text:
                    seen.setdefault("marker", now)
                time.sleep(0.01)
            tmux.stop_pane(pid)
            if len(seen) < 2:
                print(f"  {name}: {marker!r} not seen within {timeout:g}s", file=sys.stderr)
            if i > 0:
                for k, v in seen.items():
                    results[name][k].append(v)
    return results


def terminal_live(tmux: Tmux, config: Path, runs: int, timeout: float) -> tuple[list[float], dict[str, list[float]]]:
    totals: list[float] = []
    per_pane: dict[str, list[float]] = {p: [] for p in PANES}
    for i in range(runs + 1):
        start = time.perf_counter()
        pane, pid = tmux.spawn([*CONSOLE, "--config", str(config)])
        first: dict[str, float] = {}
        deadline = start + timeout
        text = ""
        while time.perf_counter() < deadline:
            text = tmux.capture(pane)
            now = time.perf_counter() - start
            for p, ok in live_on_screen(text).items():
                if ok:
                    first.setdefault(p, now)
            if len(first) == len(PANES):
                break
            time.sleep(0.01)
        tmux.stop_pane(pid)
        if len(first) < len(PANES):
            missing = [p for p in PANES if p not in first]
            print(f"  terminal live: {missing} not live within {timeout:g}s; last screen:\n{text}", file=sys.stderr)
            continue
        if i > 0:
            totals.append(max(first.values()))
            for p in PANES:
                per_pane[p].append(first[p])
    return totals, per_pane


# --------------------------------------------------------------------------- in process
def _timed(cls: type) -> type:
    class Timed(cls):  # type: ignore[misc, valid-type]
        t0 = 0.0
        marks: dict[str, float] = {}

        def on_mount(self) -> None:  # runs before the base class's on_mount (Textual walks the MRO)
            self.marks["mount"] = time.perf_counter() - self.t0
            self.call_after_refresh(self._first_refresh)

        def _first_refresh(self) -> None:
            self.marks.setdefault("first refresh", time.perf_counter() - self.t0)

    return Timed


async def _inprocess_once(make) -> dict[str, float]:
    t0 = time.perf_counter()
    app = make()
    app.t0 = t0
    app.marks = {}
    try:
        async with app.run_test(size=SIZE) as pilot:
            app.marks["run_test ready"] = time.perf_counter() - t0
            deadline = time.perf_counter() + 10
            while "first refresh" not in app.marks and time.perf_counter() < deadline:
                await pilot.pause(0.005)
    except Exception as exc:
        # What run_test re-raises on leaving comes after the marks were taken; show it, keep them.
        print(f"  {type(app).__mro__[1].__name__} raised while closing: {type(exc).__name__}: {exc}", file=sys.stderr)
    return app.marks


def inprocess_first_frame(config: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    from x402console.config import load_config
    from x402console.ui.console import ConsoleApp

    settings = load_config(config)
    minimal, console = _timed(minimal_app_class()), _timed(ConsoleApp)
    makers = {"minimal Textual app": minimal, "x402console": lambda: console(settings)}
    out: dict[str, dict[str, list[float]]] = {n: {} for n in makers}
    for i in range(runs + 1):
        for name, make in makers.items():
            marks = asyncio.run(_inprocess_once(make))
            if i == 0:
                continue
            for k, v in marks.items():
                out[name].setdefault(k, []).append(v)
    return out


async def _live_once(env, settings) -> tuple[float | None, dict[str, float]]:
    from x402console.sources.early import start_early_fetch
    from x402console.ui.console import ConsoleApp

    t0 = time.perf_counter()
    # As the CLI does: the replicas' first answers are fetched while the app is built.
    app = ConsoleApp(settings, drill_env=env, early=start_early_fetch(settings))
    first: dict[str, float] = {}
    try:
        async with app.run_test(size=SIZE) as pilot:
            deadline = t0 + 30
            while time.perf_counter() < deadline:
                now = time.perf_counter() - t0
                for p, ok in app.live_panes().items():
                    if ok:
                        first.setdefault(p, now)
                if len(first) == len(PANES):
                    break
                await pilot.pause(0.01)
    except Exception as exc:
        print(f"  ConsoleApp raised while closing: {type(exc).__name__}: {exc}", file=sys.stderr)
    return (max(first.values()) if len(first) == len(PANES) else None), first


def inprocess_live(tmp: Path, prometheus: str, rate: float, runs: int) -> tuple[list[float], dict[str, list[float]]]:
    from x402console.config import load_config
    from x402console.drill.environment import DrillEnvironment, DrillOptions

    env = DrillEnvironment(DrillOptions(
        state_dir=tmp / f"inproc-prom-{prometheus}", prover_port=0, prometheus_port=0, nginx_port=0,
        prometheus=prometheus, nginx="off", traffic_rate=rate, backup_interval=0, scenario_delay=3600,
    ))
    totals: list[float] = []
    per_pane: dict[str, list[float]] = {p: [] for p in PANES}
    env.start()
    try:
        settings = load_config(env.state.config)
        asyncio.run(declare_bench_incident(settings.environment.journal))
        # A console is opened on a system that has been running: Prometheus has scraped by then.
        time.sleep(2 * env.opts.scrape_interval + 1 if prometheus == "on" else 2)
        for i in range(runs + 1):
            total, first = asyncio.run(_live_once(env, settings))
            if total is None:
                print(f"  in-process live (prometheus {prometheus}): not all live in 30 s: {first}", file=sys.stderr)
                continue
            if i > 0:
                totals.append(total)
                for p in PANES:
                    per_pane[p].append(first[p])
    finally:
        env.stop()
    return totals, per_pane


# --------------------------------------------------------------------------- report
def report_live(title: str, totals: list[float], per_pane: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    rows = [[p, med_ms(per_pane[p])] for p in PANES]
    rows.append(["all panes live", med_ms(totals)])
    print_table(["pane", "ms median (min..max)"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="first-frame runs per app (default 7)")
    parser.add_argument("--live-runs", type=int, default=5, help="live-data runs (default 5)")
    parser.add_argument("--rate", type=float, default=5.0, help="drill traffic, requests/s (default 5)")
    parser.add_argument("--prometheus", choices=("auto", "on", "off"), default="auto",
                        help="auto: measure live data without Prometheus, and with it when installed")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--skip-terminal", action="store_true")
    parser.add_argument("--skip-inprocess", action="store_true")
    args = parser.parse_args(argv)

    from x402console.drill.prometheus_env import find_prometheus

    proms = {"auto": ["off"] + (["on"] if find_prometheus() else []), "on": ["on"], "off": ["off"]}[args.prometheus]
    print(f"console start-up; terminal {SIZE[0]}x{SIZE[1]}; {args.runs} first-frame runs per app, "
          f"{args.live_runs} live-data runs; two-replica drill, traffic {args.rate:g} req/s")
    with tempfile.TemporaryDirectory(prefix="x402-bench-startup-") as tmpdir:
        tmp = Path(tmpdir)
        if not args.skip_terminal:
            for prom in proms:
                drill = tmux = None
                try:
                    drill = HeadlessDrill(tmp / f"drill-prom-{prom}", args.rate, prometheus=prom)
                    asyncio.run(declare_bench_incident(journal_path_of(drill.config)))
                    time.sleep(11 if prom == "on" else 2)  # let Prometheus scrape (5 s interval) first
                    tmux = Tmux()
                    if prom == proms[0]:
                        ff = terminal_first_frame(tmux, drill.config, args.runs, args.timeout)
                        print("\nTime to first frame, real terminal (tmux), from spawn; first paint = anything "
                              "on screen; marker = READY / the header's 'x402console'")
                        print_table(["app", "first paint ms", "marker ms"],
                                    [[n, med_ms(v["first paint"]), med_ms(v["marker"])] for n, v in ff.items()])
                        mini = ff["minimal Textual app"]
                        for what in ("first paint", "marker"):
                            ratios = ", ".join(f"{n}: {median(ff[n][what]) / median(mini[what]):.2f}"
                                               for n in ("x402console", NO_CACHE))
                            print(f"ratio to the minimal app, {what}: {ratios} (goal <= 1.5)")
                    totals, per_pane = terminal_live(tmux, drill.config, args.live_runs, args.timeout)
                    report_live(f"Time until every pane shows live data, real terminal (tmux), "
                                f"Prometheus {prom} (goal <= 1000 ms)", totals, per_pane)
                finally:
                    if tmux:
                        tmux.close()
                    if drill:
                        drill.stop()
        if not args.skip_inprocess:
            drill = None
            try:
                drill = HeadlessDrill(tmp / "drill-ff", args.rate)
                ff2 = inprocess_first_frame(drill.config, args.runs)
            finally:
                if drill:
                    drill.stop()
            print("\nTime to first frame, in process (run_test, 160x45), from constructing the app")
            marks = ("mount", "first refresh", "run_test ready")
            print_table(["app", *(f"{m} ms" for m in marks)],
                        [[n, *(med_ms(v.get(m, [])) for m in marks)] for n, v in ff2.items()])
            ratio = median(ff2["x402console"]["first refresh"]) / median(ff2["minimal Textual app"]["first refresh"])
            print(f"ratio x402console / minimal (first refresh): {ratio:.2f} (goal <= 1.5)")
            for prom in proms:
                totals, per_pane = inprocess_live(tmp, prom, args.rate, args.live_runs)
                report_live(f"Time until every pane shows live data, in process (live_panes()), "
                            f"Prometheus {prom} (goal <= 1000 ms)", totals, per_pane)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
