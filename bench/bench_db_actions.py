"""proofs.db maintenance while the prover writes: the console's actions against the runbook's.

Run: .venv/bin/python bench/bench_db_actions.py [--quick] [--rows 1000000] [--backup-mb 1024]
                                                [--methods control,console,console-rollback,runbook]
                                                [--control-seconds 60]
                                                [--rate 20] [--baseline 8] [--runs 1] [--cp-runs 3]
                                                [--workdir /tmp] [--skip-delete] [--skip-backup]

1. Deleting expired proofs (default 1,000,000) from a proofs.db a simulated prover is writing,
   with a steady load of valid /generate-proof requests (default 20 req/s, from a separate
   process, each from one of ~760 documentation addresses in X-Forwarded-For, so the 10/min
   limit never answers) and a separate writer process doing one INSERT per transaction every
   50 ms (the prover's own write pattern, at synchronous=NORMAL as its driver sets it) with a
   60 s busy timeout, timing each, and within each the wait for the write lock (it takes the
   lock with BEGIN IMMEDIATE first) apart from its own INSERT and commit.
   Compared, on identical copies of the same file in the same run:
     - control: the same load for --control-seconds with nothing else touching the file (how
       long writes take by themselves on this disk: the noise floor);
     - console: the console's db.delete_expired as shipped: its plan switches the prover's
       rollback-journal file to WAL while the load runs (what db.enable_wal does, the runbook's
       own "Enable database WAL mode"), then deletes in batches by id range, each its own short
       transaction, a commit being one append to the WAL;
     - console-rollback: the same with wal=no, the file kept in rollback-journal mode;
     - console-wal (not run by default): the file put in WAL mode before the load starts;
     - the runbook's single `DELETE FROM proofs WHERE expires_at < datetime('now')`.
   "Stall" is measured three ways: the longest wait of the writer for the write lock (what the
   delete holding the lock costs a write: the figure the goal is about), the longest INSERT in
   total (that wait plus its own commit, whose fsyncs a loaded disk slows), and the longest
   /generate-proof latency during the delete minus the median latency before it (the prover's
   prove step alone varies by 40-150 ms, so this one has that much noise). Also: total time,
   prover writes that failed ("Failed to store proof", after the prover's 5 s busy timeout),
   non-200 answers. Goal: longest write stall <= 100 ms.

2. Backing up a ~1 GB proofs.db (large proof texts) while it is being written, same load:
     - the console's db.backup as it is by default (SQLite online backup API in paced steps; in
       the prover's rollback-journal mode the prover's writes restart it, and it then finishes
       in one step only if that blocks writers at most max_lock_seconds=1, else it refuses);
     - db.backup with max_lock_seconds=60 (the consistent one-step copy, whatever it blocks);
     - the runbook's plain `cp proofs.db ...`;
     - db.backup again after db.enable_wal on the same loaded file (runbook: "Enable WAL mode"):
       steps over one pinned snapshot, writers never wait on it;
   each with the longest writer stall, the total time, and whether the copy passes PRAGMA
   integrity_check (cp is repeated --cp-runs times: a copy of a rollback-journal database
   taken during writes may or may not be consistent, depending on what was written when).

--quick scales everything down (100k rows, 128 MB) for a run of a few minutes. Prints figures
only; never passes or fails. Every file made is under a temporary directory removed at the end;
every simulator started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.rig.sim import RunningSim, start_sim, wait_healthy  # noqa: E402
from x402console.actions.base import ActionContext  # noqa: E402
from x402console.actions.database import BackupNow, DeleteExpired, EnableWal, database_target  # noqa: E402
from x402console.actions.registry import Registry  # noqa: E402
from x402console.drill.sim.store import SCHEMA  # noqa: E402
from x402console.settings.model import DatabaseSettings, Discovery, Settings  # noqa: E402

# --------------------------------------------------------------------------- statistics


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(v: float) -> str:
    return "-" if v != v else f"{v * 1000:.0f} ms"


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


# --------------------------------------------------------------------------- load


@dataclass
class Sample:
    at: float  # monotonic time the request / statement started
    seconds: float
    ok: bool
    lock_wait: float = 0.0  # writer only: time spent waiting for the write lock (BEGIN IMMEDIATE)


LOAD_SCRIPT = r"""
import asyncio, ipaddress, os, random, sqlite3, sys, threading, time
sys.path.insert(0, sys.argv[1])
kind, target, rate, max_seconds = sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
out_lock = threading.Lock()

def emit(at, seconds, ok, lock_wait=0.0):
    with out_lock:
        sys.stdout.write(f"{at:.6f} {seconds:.6f} {int(ok)} {lock_wait:.6f}\n")
        sys.stdout.flush()

stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

if kind == "writer":
    con = sqlite3.connect(target, timeout=60.0, isolation_level=None)
    con.execute("PRAGMA synchronous = NORMAL")  # as the prover's driver (mattn/go-sqlite3) sets it
    n, start = 0, time.monotonic()
    while not stop.is_set() and time.monotonic() - start < max_seconds:
        n += 1
        t0 = time.monotonic()
        locked = t0
        try:
            # The prover's write is one INSERT in its own transaction; taking the write lock
            # first (BEGIN IMMEDIATE) changes nothing for it and splits its time in two: the wait
            # for the lock (what another writer, such as the delete, costs it) and its own
            # INSERT and commit (its fsyncs, which a loaded disk slows down).
            con.execute("BEGIN IMMEDIATE")
            locked = time.monotonic()
            con.execute(
                "INSERT OR REPLACE INTO proofs (request_hash, proof, public_inputs, client_ip, generation_time_ms,"
                " expires_at) VALUES (?, ?, '[]', '192.0.2.250', 60, datetime('now', '+1 hour'))",
                (f"writer-{os.getpid()}-{n}", "x" * 600))
            con.execute("COMMIT")
            ok = True
        except sqlite3.Error:
            ok = False
            if con.in_transaction:
                con.execute("ROLLBACK")
        emit(t0, time.monotonic() - t0, ok, locked - t0)
        stop.wait(max(0.0, t0 + 1.0 / rate - time.monotonic()))
else:
    import httpx
    from x402console.drill.payment import make_request
    ips = [str(ip) for net in ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")
           for ip in ipaddress.ip_network(net).hosts() if str(ip) != "198.51.100.254"]

    async def main():
        rng = random.Random()
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=target, trust_env=False, timeout=120.0, limits=limits) as client:
            async def one(i):
                t0 = time.monotonic()
                try:
                    r = await client.post("/generate-proof", json=make_request(rng, recipient_pool=10**12),
                                          headers={"X-Forwarded-For": ips[i % len(ips)]})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                emit(t0, time.monotonic() - t0, ok)
            start, i, tasks = time.monotonic(), 0, set()
            while not stop.is_set() and time.monotonic() - start < max_seconds:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                t = asyncio.create_task(one(i))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.wait(tasks, timeout=130)
    asyncio.run(main())
"""


class Sampler:
    """A load process (open-loop /generate-proof requests, or a writer doing one INSERT per
    transaction) that reports each request's start (CLOCK_MONOTONIC, shared by processes) and
    duration. Separate processes, so nothing in this one (the action's threads, the GIL)
    colours the figures."""

    def __init__(self, kind: str, target: str, rate: float, max_seconds: float) -> None:
        self.samples: list[Sample] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOAD_SCRIPT, str(ROOT), kind, target, str(rate), str(max_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            at, seconds, ok, lock_wait = line.split()
            self.samples.append(Sample(float(at), float(seconds), ok == "1", float(lock_wait)))

    def stop(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # end of input asks it to stop
            self.proc.wait(timeout=140)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._thread.join(timeout=10)


def during(samples: list[Sample], start: float, end: float) -> list[Sample]:
    """Samples whose lifetime overlaps [start, end]."""
    return [s for s in samples if s.at <= end and s.at + s.seconds >= start]


def before(samples: list[Sample], start: float, window: float) -> list[Sample]:
    """Samples that ended in the `window` seconds before `start`: the baseline."""
    return [s for s in samples if start - window <= s.at + s.seconds < start]


def store_failures(sim: RunningSim) -> int:
    return sum(1 for line in sim.stderr.splitlines() if "Failed to store proof" in line)


@dataclass
class Measured:
    label: str
    seconds: float
    writer_max: float
    writer_wait_max: float
    writer_wait_p99: float
    writer_wait_over_100ms: int
    writer_own_max: float
    writer_base_max: float
    writer_failed: int
    writer_p99: float
    writer_over_100ms: int
    writer_count: int
    client_max: float
    client_base_median: float
    client_base_max: float
    client_p99: float
    store_failures: int
    non_200: int
    extra: dict = field(default_factory=dict)

    @property
    def client_stall(self) -> float:
        return self.client_max - self.client_base_median


class Loaded:
    """A simulator on `db` with the load and the direct writer running."""

    def __init__(self, base: Path, state: Path, rate: float, max_seconds: float, baseline: float) -> None:
        self.base, self.state, self.rate, self.max_seconds = base, state, rate, max_seconds
        self.baseline = baseline

    def __enter__(self) -> Loaded:
        self.sim = start_sim(self.base, state_dir=self.state, wait_ready=False, name=f"sim-{self.state.name}")
        try:
            wait_healthy(self.sim, timeout=600)  # it runs quick_check on the file first
        except BaseException:
            self.sim.stop()
            raise
        self.load = Sampler("load", self.sim.url, self.rate, self.max_seconds)
        self.writer = Sampler("writer", str(self.state / "proofs.db"), 20.0, self.max_seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        self.load.stop()
        self.writer.stop()
        self.sim.stop()

    def measure(self, label: str, start: float, end: float, failures_before: int, **extra: object) -> Measured:
        w_during = during(self.writer.samples, start, end)
        w_before = before(self.writer.samples, start, self.baseline)
        c_during = during(self.load.samples, start, end)
        c_before = before(self.load.samples, start, self.baseline)
        return Measured(
            label=label,
            seconds=end - start,
            writer_max=max((s.seconds for s in w_during), default=float("nan")),
            writer_wait_max=max((s.lock_wait for s in w_during), default=float("nan")),
            writer_wait_p99=pct([s.lock_wait for s in w_during], 0.99),
            writer_wait_over_100ms=sum(1 for s in w_during if s.lock_wait > 0.1),
            writer_own_max=max((s.seconds - s.lock_wait for s in w_during), default=float("nan")),
            writer_base_max=max((s.seconds for s in w_before), default=float("nan")),
            writer_failed=sum(1 for s in w_during if not s.ok),
            writer_p99=pct([s.seconds for s in w_during], 0.99),
            writer_over_100ms=sum(1 for s in w_during if s.seconds > 0.1),
            writer_count=len(w_during),
            client_max=max((s.seconds for s in c_during), default=float("nan")),
            client_base_median=med([s.seconds for s in c_before]),
            client_base_max=max((s.seconds for s in c_before), default=float("nan")),
            client_p99=pct([s.seconds for s in c_during], 0.99),
            store_failures=store_failures(self.sim) - failures_before,
            non_200=sum(1 for s in c_during if not s.ok),
            extra=dict(extra),
        )


# --------------------------------------------------------------------------- building files


def build_expired(path: Path, rows: int) -> None:
    """proofs.db with `rows` expired proofs of realistic size (ids in time order)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000;")
    con.executescript(SCHEMA)
    con.execute("BEGIN")
    step = 100_000
    for first in range(1, rows + 1, step):
        last = min(rows, first + step - 1)
        con.execute(
            "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO proofs (request_hash, proof, public_inputs, client_ip, generation_time_ms, created_at, expires_at)"
            " SELECT lower(hex(randomblob(32))),"
            "  printf('{\"Ar\":{\"X\":\"%s\",\"Y\":\"%s\"},\"Krs\":{\"X\":\"%s\",\"Y\":\"%s\"},\"Bs\":{\"X\":{\"A0\":\"%s\",\"A1\":\"%s\"},"
            "\"Y\":{\"A0\":\"%s\",\"A1\":\"%s\"}}}', hex(randomblob(32)), hex(randomblob(32)), hex(randomblob(32)),"
            "  hex(randomblob(32)), hex(randomblob(32)), hex(randomblob(32)), hex(randomblob(32)), hex(randomblob(32))),"
            "  printf('[\"%s\",\"%s\",\"%s\",\"150\",\"%d\"]', abs(random() % 100000), hex(randomblob(32)), hex(randomblob(32)), 1700000000 + i),"
            "  printf('203.0.113.%d', 1 + i % 254), 40 + abs(random() % 110),"
            "  datetime('now', '-3 days', printf('+%d seconds', i / 10)),"
            "  datetime('now', '-3 days', printf('+%d seconds', i / 10 + 3600))"
            " FROM n",
            (first, last),
        )
    con.execute("COMMIT")
    con.close()


def build_large(path: Path, megabytes: int) -> None:
    """proofs.db of about `megabytes` MB: ~16 KB proof texts, valid for another hour."""
    rows = max(1, megabytes * 1024 * 1024 // 16_500)
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
    con.executescript(SCHEMA)
    con.execute("BEGIN")
    con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO proofs (request_hash, proof, public_inputs, client_ip, generation_time_ms, expires_at)"
        " SELECT lower(hex(randomblob(32))), hex(randomblob(8000)), '[]', '203.0.113.5', 60, datetime('now', '+1 hour')"
        " FROM n",
        (rows,),
    )
    con.execute("COMMIT")
    con.close()


def check(path: Path) -> str:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = [r[0] for r in con.execute("PRAGMA integrity_check(5)")]
    except sqlite3.DatabaseError as exc:
        return f"error: {exc}"
    finally:
        con.close()
    return "ok" if rows == ["ok"] else " | ".join(" ".join(r.split()) for r in rows)[:160]


def settings_for(db: Path, batch: int) -> Settings:
    return Settings(
        database=DatabaseSettings(path=db, backups_dir=db.parent / "backups", delete_batch_size=batch),
        discovery=Discovery(mode="static"),
    )


# --------------------------------------------------------------------------- 1. delete


async def console_delete(db: Path, batch: int, target_ms: float | None, pause_factor: float | None,
                         params: dict | None = None) -> dict:
    reg = Registry()
    kw: dict = {}
    if target_ms is not None:
        kw["batch_target_s"] = target_ms / 1000
    if pause_factor is not None:
        kw["pause_factor"] = pause_factor
    reg.register(DeleteExpired(**kw))
    settings = settings_for(db, batch)
    ctx = ActionContext(settings=settings)
    plan = await reg.prepare("db.delete_expired", ctx, database_target(settings), params or {})
    outcome = await reg.execute(plan, ctx)
    await ctx.aclose()
    if outcome.status != "succeeded":
        raise RuntimeError(outcome.summary)
    return dict(outcome.details)


def single_delete(db: Path) -> dict:
    # The sqlite3 shell would give up at once ("database is locked") if the prover held the
    # lock at that instant; a busy timeout lets the statement start, as an operator retrying would.
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        n = con.execute("DELETE FROM proofs WHERE expires_at < datetime('now')").rowcount
    finally:
        con.close()
    return {"deleted": n}


def bench_delete(args: argparse.Namespace, work: Path) -> None:
    print(f"\n=== 1. Delete {args.rows:,} expired proofs while the prover writes "
          f"({args.rate:g} req/s + a writer process at 20 INSERT/s) ===")
    template = work / "template-expired.db"
    t0 = time.monotonic()
    build_expired(template, args.rows)
    os.sync()
    print(f"built {template.name}: {template.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - t0:.1f}s")
    every = ("control", "console", "console-rollback", "console-wal", "runbook")
    results: dict[str, list[Measured]] = {m: [] for m in every}
    methods = [m for m in every if m in args.methods.split(",")]
    for run in range(args.runs):
        for method in methods if run % 2 == 0 else methods[::-1]:
            state = work / f"delete-{method}-{run}"
            state.mkdir()
            db = state / "proofs.db"
            shutil.copyfile(template, db)
            if method == "console-wal":
                # What db.enable_wal does (the runbook's own prevention step), before the load starts.
                wal = sqlite3.connect(db)
                wal.execute("PRAGMA journal_mode=WAL")
                wal.close()
            os.sync()  # write the copy out now, not while the delete is measured
            with Loaded(work, state, args.rate, max_seconds=3600, baseline=args.baseline) as env:
                time.sleep(args.baseline)
                failures = store_failures(env.sim)
                start = time.monotonic()
                if method == "control":
                    # The same load for a while with nothing else on the file: how long the
                    # writer's INSERTs and lock waits get by themselves on this disk.
                    time.sleep(args.control_seconds)
                    details = {"deleted": 0}
                elif method.startswith("console"):
                    params = {"wal": "no"} if method == "console-rollback" else {}
                    details = asyncio.run(console_delete(db, args.batch, args.batch_target_ms, args.pause_factor, params))
                else:
                    details = single_delete(db)
                end = time.monotonic()
                time.sleep(2.0)
                m = env.measure(method, start, end, failures, **details)
            left = sqlite3.connect(db).execute("SELECT COUNT(*) FROM proofs WHERE expires_at < datetime('now')").fetchone()[0]
            m.extra["expired_left"] = left
            results[method].append(m)
            extra = {method if method.startswith("console") else "console": f"batches {details.get('batches')}, longest batch {details.get('longest_batch_ms')} ms "
                                f"(statement {details.get('longest_statement_ms')} ms, commit "
                                f"{details.get('longest_commit_ms')} ms; warming read {details.get('longest_warm_ms')} ms, "
                                f"checkpoint {details.get('longest_checkpoint_ms')} ms), "
                                f"{details.get('interrupted')} statements "
                                f"over budget, gave way {details.get('yielded')} times",
                     "runbook": "one statement", "control": "no delete, load only"}.get(method, "")
            print(f"  run {run + 1} {method:8s}: {details['deleted']:,} rows in {m.seconds:.1f}s ({extra}); "
                  f"writer max {ms(m.writer_max)} (before: {ms(m.writer_base_max)}), "
                  f"client max {ms(m.client_max)} (median before {ms(m.client_base_median)}), "
                  f"store failures {m.store_failures}, non-200 {m.non_200}, expired left {left}")
            shutil.rmtree(state, ignore_errors=True)
    template.unlink()
    report(results, {"control": "control: load only, no delete",
                     "console": "console: db.delete_expired (switches to WAL, then batches)",
                     "console-rollback": "console, wal=no (rollback journal kept)",
                     "console-wal": "console, database in WAL mode before the load",
                     "runbook": "runbook: one DELETE statement"})


def report(results: dict[str, list[Measured]], labels: dict[str, str]) -> None:
    results = {k: v for k, v in results.items() if v}
    def col(ms_list: list[Measured], f) -> str:
        values = [f(m) for m in ms_list]
        return f"{med(values) * 1000:.0f} ms" + (f" ({min(values) * 1000:.0f}..{max(values) * 1000:.0f})" if len(values) > 1 else "")

    def num(ms_list: list[Measured], f) -> str:
        values = [f(m) for m in ms_list]
        return f"{med(values):g}" + (f" ({min(values):g}..{max(values):g})" if len(values) > 1 else "")

    rows = [
        ["total time", *(f"{med([m.seconds for m in results[k]]):.1f} s" for k in results)],
        ["longest writer INSERT during", *(col(results[k], lambda m: m.writer_max) for k in results)],
        ["  (longest before, baseline)", *(col(results[k], lambda m: m.writer_base_max) for k in results)],
        ["longest wait for the write lock", *(col(results[k], lambda m: m.writer_wait_max) for k in results)],
        ["  wait for the lock p99", *(col(results[k], lambda m: m.writer_wait_p99) for k in results)],
        ["  waits over 100 ms", *(num(results[k], lambda m: m.writer_wait_over_100ms) for k in results)],
        ["longest own INSERT + commit", *(col(results[k], lambda m: m.writer_own_max) for k in results)],
        ["  writer INSERT p99 during", *(col(results[k], lambda m: m.writer_p99) for k in results)],
        ["  writer INSERTs over 100 ms / all", *(f"{med([m.writer_over_100ms for m in results[k]]):g} / "
                                                 f"{med([m.writer_count for m in results[k]]):g}" for k in results)],
        ["client stall (max - median before)", *(col(results[k], lambda m: m.client_stall) for k in results)],
        ["  client max latency during", *(col(results[k], lambda m: m.client_max) for k in results)],
        ["  client p99 latency during", *(col(results[k], lambda m: m.client_p99) for k in results)],
        ["  client max latency before", *(col(results[k], lambda m: m.client_base_max) for k in results)],
        ["prover writes failed (5 s busy timeout)", *(num(results[k], lambda m: m.store_failures) for k in results)],
        ["writer INSERTs failed", *(num(results[k], lambda m: m.writer_failed) for k in results)],
        ["non-200 answers during", *(num(results[k], lambda m: m.non_200) for k in results)],
    ]
    print()
    table(["median over runs (min..max)", *(labels[k] for k in results)], rows)


# --------------------------------------------------------------------------- 2. backup


async def console_backup(db: Path, params: dict | None = None) -> dict:
    reg = Registry()
    reg.register(BackupNow())
    settings = settings_for(db, 5000)
    ctx = ActionContext(settings=settings)
    plan = await reg.prepare("db.backup", ctx, database_target(settings), params or {})
    outcome = await reg.execute(plan, ctx)
    await ctx.aclose()
    return {"status": outcome.status, **dict(outcome.details), "summary": outcome.summary}


BACKUP_LABELS = {
    "console": "db.backup (default)",
    "forced": "db.backup max_lock_seconds=60",
    "runbook": "runbook: cp proofs.db",
    "wal": "db.backup after db.enable_wal",
}


def bench_backup(args: argparse.Namespace, work: Path) -> None:
    print(f"\n=== 2. Back up a ~{args.backup_mb} MB proofs.db while the prover writes "
          f"({args.rate:g} req/s + a writer process at 20 INSERT/s) ===")
    state = work / "backup"
    state.mkdir()
    db = state / "proofs.db"
    t0 = time.monotonic()
    build_large(db, args.backup_mb)
    os.sync()
    print(f"built {db.name}: {db.stat().st_size / 2**20:.0f} MiB in {time.monotonic() - t0:.1f}s")
    results: dict[str, list[Measured]] = {k: [] for k in BACKUP_LABELS}
    checks: dict[str, list[str]] = {k: [] for k in BACKUP_LABELS}
    (state / "backups").mkdir()

    def one(env: Loaded, method: str, run: int) -> None:
        failures = store_failures(env.sim)
        copy: Path | None = None
        start = time.monotonic()
        if method == "runbook":
            copy = state / "backups" / f"cp-{run}.db"
            subprocess.run(["cp", str(db), str(copy)], check=True)
            end = time.monotonic()
            verdict, label = check(copy), "cp"
        else:
            details = asyncio.run(console_backup(db, {"max_lock_seconds": 60} if method == "forced" else None))
            end = time.monotonic()
            if details["status"] == "succeeded":
                copy = Path(details["backup"])
                verdict = "ok"
                label = (f"{details.get('mode')}, {details.get('restarts')} restarts, copy {details.get('seconds')}s "
                         "+ integrity_check")
            else:
                verdict = "no copy"
                label = details["summary"]
        m = env.measure(method, start, end, failures)
        results[method].append(m)
        checks[method].append(verdict)
        print(f"  run {run + 1} {BACKUP_LABELS[method]}: {m.seconds:.2f}s ({label}); writer max {ms(m.writer_max)}, "
              f"client max {ms(m.client_max)}, store failures {m.store_failures}; integrity_check: {verdict}")
        if copy is not None:
            copy.unlink(missing_ok=True)
        for leftover in (state / "backups").glob("*"):
            leftover.unlink()
        os.sync()  # the copy's dirty pages must not disturb the next measurement
        time.sleep(args.baseline)

    with Loaded(work, state, args.rate, max_seconds=3600, baseline=args.baseline) as env:
        time.sleep(args.baseline)
        for run in range(max(args.runs, args.cp_runs)):
            methods = ["console", "forced", "runbook"] if run % 2 == 0 else ["runbook", "forced", "console"]
            for method in methods:
                if method != "runbook" and run >= args.runs:
                    continue
                one(env, method, run)
        # WAL is what the runbook's Incident 5 prevention asks for: the same backup then.
        print(f"  db.enable_wal on the loaded database: {asyncio.run(console_enable_wal(db))}")
        time.sleep(args.baseline)
        for run in range(args.runs):
            one(env, "wal", run)
    shutil.rmtree(state, ignore_errors=True)
    report(results, BACKUP_LABELS)
    for k, label in BACKUP_LABELS.items():
        ok = sum(1 for v in checks[k] if v == "ok")
        print(f"{label}: {ok} of {len(checks[k])} runs made a copy that passes PRAGMA integrity_check")


async def console_enable_wal(db: Path) -> str:
    reg = Registry()
    reg.register(EnableWal())
    settings = settings_for(db, 5000)
    ctx = ActionContext(settings=settings)
    outcome = await reg.execute(await reg.prepare("db.enable_wal", ctx, database_target(settings)), ctx)
    await ctx.aclose()
    return f"{outcome.status}: {outcome.summary}"


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100k rows and a 128 MB backup file")
    p.add_argument("--rows", type=int, default=None, help="expired proofs to delete (default 1,000,000)")
    p.add_argument("--backup-mb", type=int, default=None, help="size of the database to back up (default 1024)")
    p.add_argument("--rate", type=float, default=20.0, help="/generate-proof requests per second")
    p.add_argument("--batch", type=int, default=5000, help="delete batch size (the [database] default)")
    p.add_argument("--batch-target-ms", type=float, default=None,
                   help="lock time per delete batch (default: the action's own)")
    p.add_argument("--pause-factor", type=float, default=None,
                   help="pause after a delete batch, in multiples of its lock time (default: the action's own)")
    p.add_argument("--methods", default="control,console,console-rollback,runbook",
                   help="delete methods to run (control = the same load without a delete, console = the shipped "
                        "db.delete_expired, which switches the prover's rollback-journal file to WAL first, "
                        "console-rollback = the same with wal=no, console-wal = the file put in WAL mode before "
                        "the load starts, runbook = one DELETE)")
    p.add_argument("--control-seconds", type=float, default=60.0, help="length of the control span (default 60)")
    p.add_argument("--baseline", type=float, default=None, help="seconds of load before each measurement")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--cp-runs", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--skip-delete", action="store_true")
    p.add_argument("--skip-backup", action="store_true")
    args = p.parse_args(argv)
    args.rows = args.rows or (100_000 if args.quick else 1_000_000)
    args.backup_mb = args.backup_mb or (128 if args.quick else 1024)
    args.baseline = args.baseline if args.baseline is not None else (4.0 if args.quick else 8.0)
    work = Path(tempfile.mkdtemp(prefix="x402-bench-db-", dir=args.workdir))
    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, work dir {work}")
    try:
        if not args.skip_delete:
            bench_delete(args, work)
        if not args.skip_backup:
            bench_backup(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
