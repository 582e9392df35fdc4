"""The console's log pane against toolong, tailing the same burst appended to the same log file.

Run: .venv/bin/python bench/bench_vs_toolong.py [--lines 100000] [--runs 5] [--initial 2000]
                                                [--timeout 120]

Set-up: toolong (PyPI) is installed into its own venv, /tmp/x402-bench-venv (created if
missing, so the project's dependencies are unchanged). A log file is written with the drill's
gin-profile prover lines (the simulator's own formatters: stdlib `log` lines and gin access
lines for /generate-proof, /health and /metrics). The console gets a minimal static config:
one replica whose log_file is that file, health and metrics URLs on a closed loopback port and
no Prometheus, so nothing but the file is observed.

Each run, for each app in turn (the order alternates between runs): a fresh copy of the file
with --initial lines; the app is spawned in a tmux window (private -L socket, 160x45) looking at
the end of the file (toolong: `tl FILE`, which tails once its scan is done; the console's log
pane follows by default); when the last initial line is on screen and the app has been quiet
(<= 15 % of a core in two 1 s windows in a row), --lines lines ending with a unique marker line are appended in
one write. Measured per app: seconds until the marker is on screen (capture-pane every 20 ms),
CPU seconds used by the app's process tree from the append until then, and CPU seconds until it
is quiet again (the whole cost of the burst, up to the start of the first quiet 1 s window).
Only one app runs at a time.

Prints medians (min..max) and ratios console/toolong; never pass/fail on time. Goal from
issue 3: better than toolong on both CPU seconds and time to the last line.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONSOLE,
    SIZE,
    CpuMeter,
    Tmux,
    median,
    print_table,
    spread,
    tree_cpu,
)

TOOLONG_VENV = Path("/tmp/x402-bench-venv")
TL = TOOLONG_VENV / "bin" / "tl"
POLL = 0.02
IPS = [f"203.0.113.{i}" for i in range(1, 100)] + [f"198.51.100.{i}" for i in range(1, 60)]


# --------------------------------------------------------------------------- set-up
def ensure_toolong() -> str:
    if not TL.exists():
        print(f"installing toolong into {TOOLONG_VENV} ...", flush=True)
        # The project's interpreter, so both apps run on the same Python; a separate venv keeps
        # toolong's pinned Textual away from the project's.
        base = subprocess.run([sys.executable, "-c", "import sys; print(sys._base_executable)"],
                              capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run([base, "-m", "venv", str(TOOLONG_VENV)], check=True)
        subprocess.run([str(TOOLONG_VENV / "bin" / "pip"), "install", "--quiet", "toolong"], check=True)
    out = subprocess.run([str(TOOLONG_VENV / "bin" / "python"), "-c",
                          "from importlib.metadata import version as v; print(v('toolong'), v('textual'))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return f"toolong {out[0]} (textual {out[1]})"


def prover_lines(n: int, seed: int) -> list[str]:
    """Lines as the coded prover writes them: per proof request a stdlib 'Generating proof',
    a 'Proof generated' and gin's access line, with health and metrics polls in between."""
    from x402console.drill.sim.gofmt import gin_timestamp, stdlib_timestamp
    from x402console.drill.sim.logs import gin_access_line

    rng = random.Random(seed)
    now = time.time()
    out: list[str] = []
    while len(out) < n:
        now += rng.random() * 0.2
        ip = rng.choice(IPS)
        kind = rng.random()
        if kind < 0.15:
            path = rng.choice(("/health", "/metrics"))
            out.append(gin_access_line(gin_timestamp(now), 200, rng.randint(80_000, 2_000_000), "127.0.0.1",
                                       "GET", path).rstrip("\n"))
            continue
        status = rng.choice((200, 200, 200, 200, 200, 400, 429, 500))
        if status in (200, 500):
            out.append(f"{stdlib_timestamp(now)} Generating proof for {ip}")
            if status == 200:
                out.append(f"{stdlib_timestamp(now)} Proof generated in {rng.randint(40, 900)}ms")
            else:
                out.append(f"{stdlib_timestamp(now)} Proof generation failed: constraint #12 is not satisfied")
        elif status == 400:
            out.append(f"{stdlib_timestamp(now)} Validation failed from {ip}: amount must be positive")
        out.append(gin_access_line(gin_timestamp(now), status, rng.randint(50_000, 900_000_000), ip,
                                   "POST", "/generate-proof").rstrip("\n"))
    return out[:n]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: nothing listens there


def write_console_config(path: Path, log_file: Path, journal: Path) -> None:
    port = closed_port()
    path.write_text(f"""[environment]
name = "bench vs toolong"
journal = "{journal}"

[discovery]
mode = "static"

[prometheus]
url = ""

[prover]
log_format = "gin"

[[replicas]]
name = "prover-1"
health_url = "http://127.0.0.1:{port}/health"
metrics_url = "http://127.0.0.1:{port}/metrics"
log_file = "{log_file}"
""")


# --------------------------------------------------------------------------- one run
def run_once(tmux: Tmux, argv: list[str], log_file: Path, initial: bytes, start_marker: str,
             burst: bytes, end_marker: str, timeout: float) -> dict[str, float] | None:
    log_file.write_bytes(initial)
    pane, pid = tmux.spawn(argv)
    try:
        if tmux.wait_for(pane, lambda s: start_marker in s, 60, POLL) is None:
            print(f"  {Path(argv[0]).name}: the initial last line never showed:\n{tmux.capture(pane)}", file=sys.stderr)
            return None
        quiet_before, _ = _quiet(pid, timeout=30)
        meter = CpuMeter(pid)
        start = time.perf_counter()
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, burst)
        finally:
            os.close(fd)
        seen = tmux.wait_for(pane, lambda s: end_marker in s, timeout, POLL, start)
        cpu_seen = meter.used()
        if seen is None:
            print(f"  {Path(argv[0]).name}: marker not on screen after {timeout:g}s:\n{tmux.capture(pane)}",
                  file=sys.stderr)
            return None
        _, calm_from = _quiet(pid, timeout=timeout, windows=1)
        return {"seconds": seen, "cpu": cpu_seen, "cpu_total": calm_from - meter.start, "idle_pct": quiet_before}
    finally:
        tmux.stop_pane(pid)


def _quiet(pid: int, window: float = 1.0, max_share: float = 0.15, timeout: float = 30.0,
           windows: int = 2) -> tuple[float, float]:
    """Wait until the app used at most max_share of a core in `windows` windows in a row (so
    the tail end of a start-up does not pass for quiet). Returns the last window's share in %
    and the tree's CPU seconds when the quiet stretch began. Toolong settles near 0 %; the
    console never goes below its own idle cost (~10 %)."""
    deadline = time.monotonic() + timeout
    share, calm, calm_from = 1.0, 0, tree_cpu(pid)
    while time.monotonic() < deadline and calm < windows:
        before = tree_cpu(pid)
        time.sleep(window)
        share = (tree_cpu(pid) - before) / window
        if share <= max_share:
            calm_from = before if calm == 0 else calm_from
            calm += 1
        else:
            calm = 0
    return 100.0 * share, calm_from


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="lines in the burst (default 100000)")
    parser.add_argument("--initial", type=int, default=2_000, help="lines in the file before the burst")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    toolong = ensure_toolong()
    results: dict[str, list[dict[str, float]]] = {"x402console": [], "toolong": []}
    with tempfile.TemporaryDirectory(prefix="x402-bench-toolong-") as tmpdir:
        tmp = Path(tmpdir)
        log_file = tmp / "prover-1.log"
        config = tmp / "config.toml"
        write_console_config(config, log_file, tmp / "journal.db")
        from x402console.drill.sim.gofmt import stdlib_timestamp

        body = prover_lines(args.initial + args.lines, seed=402)
        apps = {
            "x402console": [*CONSOLE, "--config", str(config)],
            "toolong": [str(TL), str(log_file)],
        }
        print(f"{args.lines:,} lines appended in one write to a file of {args.initial:,} lines; "
              f"terminal {SIZE[0]}x{SIZE[1]}; {args.runs} runs per app; {toolong}", flush=True)
        tmux = Tmux()
        try:
            for run in range(args.runs + 1):  # run 0 warms caches and is dropped
                order = list(apps) if run % 2 == 0 else list(reversed(apps))
                for name in order:
                    token = uuid.uuid4().hex[:12]
                    start_marker, end_marker = f"bench start {token}", f"bench end {token}"
                    initial = "\n".join([*body[: args.initial - 1], f"{stdlib_timestamp()} {start_marker}", ""])
                    burst = "\n".join([*body[args.initial : args.initial + args.lines - 1],
                                       f"{stdlib_timestamp()} {end_marker}", ""])
                    r = run_once(tmux, apps[name], log_file, initial.encode(), start_marker, burst.encode(),
                                 end_marker, args.timeout)
                    if r is not None and run > 0:
                        results[name].append(r)
                    if r is not None:
                        print(f"  run {run}{' (warm-up)' if run == 0 else ''} {name}: "
                              f"on screen {r['seconds']:.2f} s, CPU {r['cpu']:.2f} s "
                              f"(until quiet {r['cpu_total']:.2f} s), idle before {r['idle_pct']:.1f} %", flush=True)
        finally:
            tmux.close()

    def col(name: str, key: str, fmt: str = "{:.2f}") -> str:
        vals = [r[key] for r in results[name]]
        return f"{fmt.format(median(vals))} ({spread(vals, 1, fmt)})" if vals else "n/a"

    print()
    rows = [[n, col(n, "seconds"), col(n, "cpu"), col(n, "cpu_total"), col(n, "idle_pct", "{:.1f}")] for n in results]
    print_table(["app", "marker on screen s", "CPU s until then", "CPU s until quiet", "idle before %"], rows)
    if results["x402console"] and results["toolong"]:
        for key, label in (("seconds", "time to last line"), ("cpu", "CPU until last line"),
                           ("cpu_total", "CPU until quiet")):
            c = median([r[key] for r in results["x402console"]])
            t = median([r[key] for r in results["toolong"]])
            print(f"ratio x402console / toolong, {label}: {c / t:.2f} (goal < 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
