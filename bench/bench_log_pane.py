"""How many log lines per second the log pane absorbs while keys stay responsive, and its memory.

Run: .venv/bin/python bench/bench_log_pane.py [--rates 1000,5000,...] [--step 2] [--runs 3]
                                              [--batch-ms 50] [--memory-lines 1000000]

Throughput: a real app (headless, 120x40, so every frame is composed but not written to a
terminal) holds a LogPane. A producer thread posts LogBatch messages at an offered rate (one
batch every --batch-ms, open loop, like a log source would), and the app's handler calls
`add_batch`, as the console does. Records come from a pool parsed once from realistic prover
lines, so the producer costs little of the GIL. While each rate runs, a key press (the pause
toggle) is posted every 50 ms and timed until the pane has acted on it and the screen has
refreshed. Per offered rate it prints the absorbed lines/s and the key round-trip p50/p99
(medians over --runs runs; with ~40 presses per step p99 is close to the worst press), and the
highest rate at which the pane kept up (>= 95 % absorbed) with p99 under 100 ms.

Memory: a fresh app absorbs --memory-lines freshly built records (closed loop: the next batch
is posted once the previous one is in) and resident memory (VmRSS) is printed at checkpoints.

Prints figures only; never pass/fail on time (noisy machines).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import threading
import time
from datetime import datetime, timezone

from textual import events
from textual.app import App, ComposeResult
from textual.message import Message

from x402console.sources.logparse import LogRecord, parse_log_line
from x402console.sources.models import LogBatch
from x402console.ui.logs.log_pane import LogPane

SIZE = (120, 40)
KEY_EVERY = 0.05
KEY_TIMEOUT = 5.0
IPS = [f"203.0.113.{i}" for i in range(1, 60)] + [f"198.51.100.{i}" for i in range(1, 30)]


def _line(rng: random.Random) -> str:
    ip = rng.choice(IPS)
    kind = rng.random()
    if kind < 0.5:
        status = rng.choice([200, 200, 200, 400, 429, 500])
        return f'[GIN] 2025/11/15 - 10:30:01 | {status:3d} |   1.234567ms | {ip:>15} | POST     "/generate-proof"'
    if kind < 0.8:
        msg = rng.choice([
            f"Generating proof for {ip}",
            f"Proof generated in {rng.randint(50, 3000)}ms",
            f"Validation failed from {ip}: amount must be positive",
            "Proof generation failed: constraint #12 is not satisfied",
        ])
        return f"2025/11/15 10:30:01 {msg}"
    return json.dumps({"client_ip": ip, "level": rng.choice(["info", "warning", "error"]),
                       "message": "Rate limit exceeded", "operation": "rate_limit",
                       "timestamp": "2025-11-15T10:30:00Z"})


def record_pool(n: int = 50_000, seed: int = 402) -> list[LogRecord]:
    rng = random.Random(seed)
    return [parse_log_line(_line(rng), f"prover-{i % 3 + 1}") for i in range(n)]


class BatchArrived(Message):
    def __init__(self, batch: LogBatch) -> None:
        super().__init__()
        self.batch = batch


class TimedPane(LogPane):
    """Records when a pause toggle has been acted on and the screen refreshed after it."""

    def __init__(self) -> None:
        # The console's own default: its /health and /metrics polls hidden, so every line goes
        # through the view filter and the filtered index is kept.
        super().__init__(monitoring_paths=("/health", "/metrics"))
        self.acted: asyncio.Event | None = None
        self.acted_at = 0.0

    def action_toggle_pause(self) -> None:
        super().action_toggle_pause()
        self.call_after_refresh(self._mark)

    def _mark(self) -> None:
        self.acted_at = time.perf_counter()
        if self.acted is not None:
            self.acted.set()


class BenchApp(App):
    def compose(self) -> ComposeResult:
        yield TimedPane()

    def on_batch_arrived(self, message: BatchArrived) -> None:
        panes = self.query(TimedPane)
        if panes:  # batches still queued while the app shuts down
            panes.first().add_batch(message.batch)


class Producer(threading.Thread):
    """Posts batches at `rate` lines/s for `seconds`, open loop, from a record pool."""

    def __init__(self, app: App, pool: list[LogRecord], rate: int, seconds: float, batch_ms: float) -> None:
        super().__init__(daemon=True)
        self.app, self.pool, self.rate, self.seconds = app, pool, rate, seconds
        self.interval = batch_ms / 1000.0
        self.sent = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        pool, n = self.pool, len(self.pool)
        start = time.perf_counter()
        ticks = int(self.seconds / self.interval)
        cursor = 0
        for tick in range(ticks):
            if self.stop_flag.is_set():
                return
            due = start + tick * self.interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            want = int(self.rate * (tick + 1) * self.interval) - self.sent
            if want <= 0:
                continue
            if cursor + want > n:
                cursor = 0
            chunk = tuple(pool[cursor:cursor + want])
            cursor += want
            self.app.post_message(BatchArrived(LogBatch(records=chunk)))
            self.sent += want


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def measure_rate(app: BenchApp, pool: list[LogRecord], rate: int, seconds: float, batch_ms: float) -> dict:
    pane = app.query_one(TimedPane)
    pane.view.focus()
    if pane.paused:
        pane.resume()
    producer = Producer(app, pool, rate, seconds, batch_ms)
    latencies: list[float] = []
    total_before = pane.buffer.total
    cpu_before = time.process_time()
    t_start = time.perf_counter()
    producer.start()
    while time.perf_counter() - t_start < seconds:
        pane.acted = asyncio.Event()
        sent_at = time.perf_counter()
        app.post_message(events.Key("p", "p"))
        try:
            await asyncio.wait_for(pane.acted.wait(), KEY_TIMEOUT)
            latencies.append(pane.acted_at - sent_at)
        except asyncio.TimeoutError:
            latencies.append(KEY_TIMEOUT)
        await asyncio.sleep(max(0.0, KEY_EVERY - (time.perf_counter() - sent_at)))
    elapsed = time.perf_counter() - t_start
    absorbed = pane.buffer.total - total_before
    cpu = time.process_time() - cpu_before
    producer.stop_flag.set()
    producer.join()
    # Drain what is still queued so the next step starts clean (bounded wait).
    deadline = time.perf_counter() + 30
    while pane.buffer.total - total_before < producer.sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    return {
        "rate": rate,
        "absorbed": absorbed / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "presses": len(latencies),
        "cpu": cpu / elapsed * 100,
    }


async def throughput_run(
    rates: list[int], seconds: float, batch_ms: float, pool: list[LogRecord], filter_text: str = ""
) -> list[dict]:
    app = BenchApp()
    results = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        if filter_text:
            app.query_one(TimedPane).set_filter_text(filter_text)
        for rate in rates:
            results.append(await measure_rate(app, pool, rate, seconds, batch_ms))
    return results


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def memory_run(lines: int, batch_size: int = 10_000) -> list[tuple[int, float]]:
    app = BenchApp()
    checkpoints: list[tuple[int, float]] = []
    stamp = datetime(2025, 11, 15, 10, 30, tzinfo=timezone.utc)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TimedPane)
        pane.view.focus()
        sent = 0
        marks = {lines // 4 * k for k in range(1, 5)}
        warm = 2 * pane.buffer.capacity
        while sent < lines:
            # Fresh objects every time: the evicted ones must really be freed for RSS to stay flat.
            records = tuple(
                LogRecord(replica=f"prover-{i % 3 + 1}", ts=stamp, level="info",
                          message=f"Generating proof for 203.0.113.{i % 250} #{i}",
                          client_ip=f"203.0.113.{i % 250}", raw=f"2025/11/15 10:30:01 Generating proof #{i}")
                for i in range(sent, sent + batch_size)
            )
            app.post_message(BatchArrived(LogBatch(records=records)))
            sent += batch_size
            while pane.buffer.total < sent:
                await asyncio.sleep(0.001)
            if sent == warm:
                await pilot.pause(0.05)
                gc.collect()
                checkpoints.append((sent, rss_mb()))
            if sent in marks:
                await pilot.pause(0.05)
                gc.collect()
                checkpoints.append((sent, rss_mb()))
    return checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,2000,5000,10000,20000,50000,100000,200000,400000")
    parser.add_argument("--step", type=float, default=2.0, help="seconds per offered rate")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-ms", type=float, default=50.0)
    parser.add_argument("--memory-lines", type=int, default=1_000_000)
    parser.add_argument("--filter", default="", help="filter text typed into the pane before measuring")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]

    print(f"log pane benchmark: {SIZE[0]}x{SIZE[1]} headless, capacity 10,000, "
          f"batch every {args.batch_ms:g} ms, {args.step:g} s per rate, {args.runs} runs (medians)"
          + (f", filter {args.filter!r}" if args.filter else ", no filter"))
    print("cpu % = process CPU time (UI thread + producer thread) / wall time, 100 = one core")
    pool = record_pool()
    # The pool is bench scaffolding (5x the pane's capacity); keep the collector from scanning it
    # so pauses reflect what the pane itself holds.
    gc.freeze()
    runs = [asyncio.run(throughput_run(rates, args.step, args.batch_ms, pool, args.filter)) for _ in range(args.runs)]
    print(f"{'offered/s':>10} {'absorbed/s':>11} {'key p50 ms':>11} {'key p99 ms':>11} {'presses':>8} {'cpu %':>6}")
    sustained = 0
    for index, rate in enumerate(rates):
        rows = [run[index] for run in runs]
        absorbed = statistics.median(r["absorbed"] for r in rows)
        p50 = statistics.median(r["p50_ms"] for r in rows)
        p99 = statistics.median(r["p99_ms"] for r in rows)
        presses = statistics.median(r["presses"] for r in rows)
        cpu = statistics.median(r["cpu"] for r in rows)
        print(f"{rate:>10,} {absorbed:>11,.0f} {p50:>11.1f} {p99:>11.1f} {presses:>8.0f} {cpu:>6.0f}")
        if absorbed >= 0.95 * rate and p99 < 100:
            sustained = max(sustained, int(absorbed))
    print(f"sustained: {sustained:,} lines/s absorbed with key round-trip p99 < 100 ms")

    if args.memory_lines > 0:
        checkpoints = asyncio.run(memory_run(args.memory_lines))
        base_lines, base = checkpoints[0]
        print(f"memory: RSS {base:.1f} MB after {base_lines:,} lines (buffer full)")
        for count, mb in checkpoints[1:]:
            print(f"memory: RSS {mb:.1f} MB after {count:,} lines (growth {mb - base:+.1f} MB)")


if __name__ == "__main__":
    main()
