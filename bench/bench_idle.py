"""Idle cost of the console: CPU used while attached to a two-replica drill at a 1 s refresh.

Run: .venv/bin/python bench/bench_idle.py [--seconds 60] [--warmup 5] [--runs 3] [--rate 1]

A two-replica drill runs headless in its own process (`x402console drill --headless`, process
mode, no Prometheus, no nginx). The console is opened on it in a tmux window (private -L
socket, 160x45, TERM=xterm-256color) with `x402console --config <drill>/config.toml`; the
drill's config leaves [ui] refresh_seconds at its default, 1 s. After --warmup seconds (start-up
excluded) the console process's CPU time (utime+stime from /proc/<pid>/stat, all threads, plus
any child) is read, again --seconds later, and the difference is printed as % of one core.

"Idle" means the console has nothing to do but refresh, so it is measured twice: with the
drill's traffic on at a low rate (--rate, default 1 request/s: log lines and moving metrics
arrive) and with traffic off (--rate 0: only health, metrics and process polls). The minimal
Textual app (a Static "READY"), run the same way, gives the floor of any Textual app. The runs
alternate between the minimal app and the console; medians of --runs runs (min..max).

Prints figures only; never pass/fail. Goal from issue 3: at most 3 % of one core.
"""

from __future__ import annotations

import argparse
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
    CpuMeter,
    HeadlessDrill,
    Tmux,
    median,
    pid_alive,
    print_table,
    spread,
)


def measure(tmux: Tmux, argv: list[str], marker: str, warmup: float, seconds: float) -> float | None:
    """% of one core used by the app over `seconds`, after `warmup` seconds of start-up."""
    pane, pid = tmux.spawn(argv)
    try:
        if tmux.wait_for(pane, lambda s: marker in s, 30) is None:
            print(f"  {argv[-1]}: marker {marker!r} not on screen in 30 s", file=sys.stderr)
            return None
        time.sleep(warmup)
        meter = CpuMeter(pid)
        t0 = time.perf_counter()
        time.sleep(seconds)
        used, elapsed = meter.used(), time.perf_counter() - t0
        if not pid_alive(pid):
            print(f"  {argv[-1]}: the app exited during the measurement", file=sys.stderr)
            return None
        return 100.0 * used / elapsed
    finally:
        tmux.stop_pane(pid)


def pct(values: list[float]) -> str:
    return f"{median(values):.2f} ({spread(values, 1, '{:.2f}')})" if values else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="start-up seconds not measured (default 5)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1.0, help="drill traffic for the 'traffic on' case, req/s")
    args = parser.parse_args(argv)

    minimal = [PYTHON, "-c", MINIMAL_APP_SCRIPT]
    results: dict[str, list[float]] = {}
    print(f"idle CPU, % of one core; terminal {SIZE[0]}x{SIZE[1]}; {args.seconds:g} s measured after "
          f"{args.warmup:g} s of start-up; {args.runs} runs; load average at start "
          f"{Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="x402-bench-idle-") as tmpdir:
        cases = [(f"traffic {args.rate:g} req/s", args.rate), ("traffic off", 0.0)]
        for label, rate in cases:
            drill = tmux = None
            try:
                drill = HeadlessDrill(Path(tmpdir) / f"drill-{rate:g}", rate)
                tmux = Tmux()
                console = [*CONSOLE, "--config", str(drill.config)]
                for _ in range(args.runs):
                    for name, app, marker in (("minimal Textual app", minimal, "READY"),
                                              (f"x402console, drill {label}", console, "x402console")):
                        value = measure(tmux, app, marker, args.warmup, args.seconds)
                        if value is not None:
                            results.setdefault(name, []).append(value)
                        print(f"  {name}: {value if value is None else round(value, 2)} %", flush=True)
            finally:
                if tmux:
                    tmux.close()
                if drill:
                    drill.stop()
    print()
    print_table(["app", "% of one core, median (min..max)"], [[n, pct(v)] for n, v in results.items()])
    print("goal: x402console at most 3 % of one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
