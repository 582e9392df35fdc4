"""evidence.bundle and logs.collect against a process-mode drill: real simulator processes writing
a real proofs.db, real log files, a real Prometheus, a real journal, sha256sum from coreutils."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sqlite3
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rig.components import free_port, require_binary
from x402console.actions.base import ActionContext, Outcome, Progress, Refused, Target
from x402console.actions.registry import Registry, default_registry
from x402console.config import load_config
from x402console.journal import Journal
from x402console.settings.model import Replica

pytestmark = pytest.mark.timeout(150)

ESC_LINE = b"\x1b]0;pwned\x07\x1b[2J evil \xff\xfe bytes\r\n"


@pytest.fixture
def registry() -> Registry:
    return default_registry()


async def run(registry: Registry, ctx: ActionContext, action_id: str, params: dict[str, Any] | None = None,
              on_progress: Callable[[Progress], Any] | None = None) -> tuple[Outcome, list[Progress]]:
    target = registry.get(action_id).targets(ctx)[0]
    plan = await registry.prepare(action_id, ctx, target, params or {})
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        if on_progress is not None:
            on_progress(p)

    outcome = await registry.execute(plan, ctx, progress)
    return outcome, seen


def context(env: Any, journal: Journal | None = None, **kw: Any) -> ActionContext:
    return ActionContext(settings=kw.pop("settings", None) or load_config(env.state.config), journal=journal,
                         drill_runtime=env.state.runtime_file, **kw)


def proofs_in(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM proofs").fetchone()[0]
    finally:
        con.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def sha256sum_check(bundle: Path) -> subprocess.CompletedProcess[str]:
    sha256sum = require_binary("sha256sum")
    return subprocess.run([sha256sum, "--strict", "-c", "MANIFEST.sha256"], cwd=bundle, capture_output=True, text=True)


def all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def assert_read_only(root: Path) -> None:
    assert stat.S_IMODE(root.stat().st_mode) == 0o555
    for p in root.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o555 if p.is_dir() else 0o444), (p, oct(mode))


@pytest.fixture
async def drill_with_traffic(drill_factory, tmp_path: Path) -> AsyncIterator[tuple[Any, Journal]]:  # type: ignore[no-untyped-def]
    env = drill_factory(replicas=2, traffic_rate=6.0, traffic_clients=60)
    wait_until(lambda: env.state.db.exists() and proofs_in(env.state.db) >= 5, 60, "the simulators to store proofs")
    journal = await Journal.open(env.state.root / "journal.db")
    try:
        yield env, journal
    finally:
        await journal.close()


async def test_bundle_of_a_live_drill_is_consistent_verifiable_and_read_only(drill_with_traffic, registry) -> None:  # type: ignore[no-untyped-def]
    env, journal = drill_with_traffic
    token = json.loads(env.state.runtime_file.read_text())["control_token"]
    incident = await journal.declare_incident("invalid proofs", "P0", journal.actor, security=True)
    ctx = context(env, journal, incident_id=incident.id, incident_security=True)
    try:
        outcome, progress = await run(registry, ctx, "evidence.bundle", {"lines": 200})
    finally:
        await ctx.aclose()
    assert outcome.status == "succeeded", outcome.summary
    d = outcome.details
    bundle = Path(d["bundle_dir"])
    assert bundle.parent == env.state.root / "evidence" and bundle.name.startswith(f"evidence-{incident.id}-")
    assert d["complete"] is True and d["missing"] == [], d["missing"]
    assert Path(d["manifest"]) == bundle / "MANIFEST.sha256"
    assert d["manifest_sha256"] == hashlib.sha256((bundle / "MANIFEST.sha256").read_bytes()).hexdigest()
    # progress came part by part, in order of volatility
    labels = [p.message.split(" ...")[0] for p in progress if p.message.endswith(" ...") and ":" not in p.message]
    assert labels[:7] == ["Runtime state", "/metrics", "pprof profiles", "Logs", "Prometheus", "Verification key",
                          "Database snapshot"]

    # The database copy is a consistent SQLite file with the simulators' rows, though they kept writing.
    copy = bundle / "database" / "proofs.db"
    con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = con.execute("SELECT COUNT(*) FROM proofs").fetchone()[0]
    finally:
        con.close()
    assert rows >= 5
    assert (bundle / "database" / "integrity_check.txt").read_text() == "ok\n"

    # MANIFEST.sha256 verifies with coreutils, and covers every file but itself.
    check = sha256sum_check(bundle)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = {line.split("  ", 1)[1] for line in (bundle / "MANIFEST.sha256").read_text().splitlines()}
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert listed == on_disk - {"MANIFEST.sha256"}
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} == on_disk - {"MANIFEST.sha256", "manifest.json"}
    assert manifest["files"] == d["files"] and manifest["incident_id"] == incident.id and manifest["complete"] is True
    for f in d["files"]:
        assert (bundle / f["path"]).stat().st_size == f["bytes"]
    assert_read_only(bundle)

    # A changed byte is caught (on a copy: the bundle itself stays as collected).
    tampered = bundle.parent / "tampered"
    shutil.copytree(bundle, tampered)
    target = tampered / "logs" / "incident_logs.txt"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes().replace(b"prover-1", b"prover-X", 1))
    assert sha256sum_check(tampered).returncode != 0

    # The parts hold what they say.
    logs = (bundle / "logs" / "incident_logs.txt").read_bytes()
    assert logs.startswith(b"prover-1 log ") and b"\nprover-2 log " in logs
    assert b"Starting Umbra Protocol prover service" in logs
    for name in ("prover-1", "prover-2"):
        assert "proof_generation_total" in (bundle / "metrics" / f"{name}.txt").read_text()
        info = json.loads((bundle / "runtime" / f"{name}.process.json").read_text())
        assert info["pid"] == int((env.state.logs / f"{name}.pid").read_text())
        # The drill passes the token as `--control-token=VALUE` (either form is masked).
        flags = [a for a in info["cmdline"] if a.startswith("--control-token")]
        assert flags, info["cmdline"]
        for flag in flags:
            value = flag.split("=", 1)[1] if "=" in flag else info["cmdline"][info["cmdline"].index(flag) + 1]
            assert value == "***", flag
        assert any(fd["target"] == str(env.state.db) for fd in info["fds"])
    assert token.encode() not in all_bytes(bundle), "the control token leaked into the bundle"
    assert any("--control-token" in r for r in manifest["redactions"])
    vk = (env.state.keys / "verification_key.json").read_bytes()
    assert (bundle / "keys" / "verification_key.json").read_bytes() == vk
    assert (bundle / "keys" / "verification_key.json.sha256").read_text() == \
        f"{hashlib.sha256(vk).hexdigest()}  verification_key.json\n"
    assert manifest["facts"]["verification_key"]["matches_trusted"] is True
    # pprof is off in this drill's configuration (as the real prover has none): a note, not a failure
    assert "pprof is false" in (bundle / "pprof" / "NOTE.txt").read_text()
    assert {s["part"] for s in d["skipped"]} == {"pprof", "prometheus"}

    # The journal holds the outcome with the keys the post-mortem reads.
    (record,) = [r for r in await journal.actions(incident.id) if r.action_id == "evidence.bundle"]
    assert record.outcome == "succeeded"
    saved = record.detail["details"]
    assert saved["manifest_sha256"] == d["manifest_sha256"] and saved["bundle_dir"] == str(bundle)
    assert {"path", "sha256", "bytes"} == set(saved["files"][0])


async def test_missing_parts_are_recorded_and_the_bundle_still_succeeds(drill_factory, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = drill_factory(replicas=2)
    settings = load_config(env.state.config)
    dead = free_port()
    settings = dataclasses.replace(
        settings,
        prover=dataclasses.replace(settings.prover, pprof=True),  # the coded simulator answers 404 like the real prover
        prometheus=dataclasses.replace(settings.prometheus, url=f"http://127.0.0.1:{dead}", timeout_seconds=1.0),
        replicas=(*settings.replicas, Replica("prover-9", f"http://127.0.0.1:{dead}/health",
                                              f"http://127.0.0.1:{dead}/metrics", log_file=tmp_path / "nope.log")),
    )
    out_dir = tmp_path / "bundles"
    ctx = context(env, settings=settings)
    try:
        first, _ = await run(registry, ctx, "evidence.bundle", {"dir": str(out_dir)})
        second, _ = await run(registry, ctx.fresh(), "evidence.bundle", {"dir": str(out_dir)})
    finally:
        await ctx.aclose()
    assert first.status == "succeeded", first.summary
    assert "partial" in first.summary
    missing = {(m["part"], m["item"]) for m in first.details["missing"]}
    assert ("prometheus", "*") in missing
    assert {("metrics", "prover-9"), ("logs", "prover-9"), ("runtime", "prover-9")} <= missing
    assert ("pprof", "prover-1 goroutine") in missing and ("pprof", "prover-1 heap") in missing
    reasons = {(m["part"], m["item"]): m["reason"] for m in first.details["missing"]}
    assert "unreachable" in reasons[("prometheus", "*")] and "connection refused" in reasons[("prometheus", "*")]
    assert "404" in reasons[("pprof", "prover-2 heap")]
    bundle = Path(first.details["bundle_dir"])
    note = (bundle / "pprof" / "NOTE.txt").read_text()
    assert "answered 404" in note and "real prover registers none" in note
    assert first.details["parts"]["prometheus"]["status"] == "failed"
    assert first.details["parts"]["metrics"]["status"] == "partial"
    assert first.details["parts"]["database"]["status"] == "ok"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["missing"] == first.details["missing"]
    assert sha256sum_check(bundle).returncode == 0
    # never the same directory twice, even within one second
    assert second.status == "succeeded"
    assert second.details["bundle_dir"] != first.details["bundle_dir"]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        Path(o.details["bundle_dir"]).name for o in (first, second))


async def test_cancel_leaves_a_marked_incomplete_bundle_that_does_not_lift_the_guard(drill_factory, registry) -> None:  # type: ignore[no-untyped-def]
    env = drill_factory(replicas=2)
    journal = await Journal.open(env.state.root / "journal.db")
    try:
        incident = await journal.declare_incident("suspected key compromise", "P0", journal.actor, security=True)
        ctx = context(env, journal, incident_id=incident.id, incident_security=True)
        replica = Target("replica", "prover-1")
        with pytest.raises(Refused, match="until evidence is preserved"):
            await registry.prepare("process.restart", ctx, replica)

        def cancel_at_logs(p: Progress) -> None:
            if p.message.startswith("Logs ..."):
                run_ctx.cancel.set()

        run_ctx = ctx.fresh()
        outcome, _ = await run(registry, run_ctx, "evidence.bundle", {}, cancel_at_logs)
        assert outcome.status == "cancelled", outcome.summary
        bundle = Path(outcome.details["bundle_dir"])
        assert "INCOMPLETE" in outcome.summary and (bundle / "INCOMPLETE").exists()
        text = (bundle / "INCOMPLETE").read_text()
        assert "Parts collected: runtime, metrics, pprof." in text and "database" in text.split("not collected:")[1]
        manifest = json.loads((bundle / "manifest.json").read_text())
        assert manifest["complete"] is False and "database" not in manifest["parts"]
        assert not (bundle / "database").exists() and (bundle / "metrics" / "prover-1.txt").exists()
        assert sha256sum_check(bundle).returncode == 0
        assert_read_only(bundle)
        # a cancelled bundle preserves nothing for sure: restarts stay refused
        with pytest.raises(Refused, match="until evidence is preserved"):
            await registry.prepare("process.restart", ctx.fresh(), replica)

        outcome, _ = await run(registry, ctx.fresh(), "evidence.bundle", {})
        assert outcome.status == "succeeded", outcome.summary
        plan = await registry.prepare("process.restart", ctx.fresh(), replica)
        assert plan.action_id == "process.restart" and not plan.params.get("security_override")
        await ctx.aclose()
    finally:
        await journal.close()


async def test_prometheus_part_holds_the_queries_alerts_and_targets(drill_factory, registry) -> None:  # type: ignore[no-untyped-def]
    env = drill_factory(replicas=2, prometheus="on")
    settings = load_config(env.state.config)
    base = settings.prometheus.url.rstrip("/")

    def scraped() -> bool:
        r = httpx.get(f"{base}/api/v1/query", params={"query": 'up{job="prover"} == 1'}, timeout=5, trust_env=False)
        return len(r.json()["data"]["result"]) == 2

    wait_until(scraped, 60, "Prometheus to scrape both replicas")
    ctx = context(env, settings=settings, read_only=True)  # an observer may preserve evidence
    try:
        outcome, _ = await run(registry, ctx, "evidence.bundle", {"window_minutes": 5})
    finally:
        await ctx.aclose()
    assert outcome.status == "succeeded", outcome.summary
    assert [m for m in outcome.details["missing"] if m["part"] == "prometheus"] == []
    bundle = Path(outcome.details["bundle_dir"])
    prom = bundle / "prometheus"
    up = json.loads((prom / "instant" / "up.json").read_text())
    assert up["status"] == "success"
    assert sorted(s["metric"]["instance"] for s in up["data"]["result"]) == sorted(
        f"127.0.0.1:{r.port}" for r in env.replicas)
    targets = json.loads((prom / "targets.json").read_text())
    assert len(targets["data"]["activeTargets"]) == 2
    alerts = json.loads((prom / "alerts.json").read_text())
    assert alerts["status"] == "success" and "alerts" in alerts["data"]
    ranged = json.loads((prom / "range" / "resident_memory_bytes.json").read_text())
    assert ranged["data"]["resultType"] == "matrix" and len(ranged["data"]["result"]) == 2
    index = json.loads((prom / "queries.json").read_text())
    assert index["queries"]["instant/proofs_total"]["expr"] == 'proof_generation_total{job="prover"}'
    assert index["queries"]["range/duration_p95_1m"]["step"] == "15"
    assert all((bundle / q["file"]).exists() for q in index["queries"].values())
    assert sha256sum_check(bundle).returncode == 0


async def test_pprof_profiles_when_the_build_serves_them(drill_factory, registry) -> None:  # type: ignore[no-untyped-def]
    env = drill_factory(replicas=1, profile="intended")  # the drill runs --pprof and says pprof = true
    ctx = context(env)
    assert ctx.settings.prover.pprof is True
    try:
        outcome, _ = await run(registry, ctx, "evidence.bundle", {})
    finally:
        await ctx.aclose()
    assert outcome.status == "succeeded", outcome.summary
    assert [m for m in outcome.details["missing"] if m["part"] == "pprof"] == []
    pprof = Path(outcome.details["bundle_dir"]) / "pprof"
    assert (pprof / "prover-1.goroutine.txt").read_text().startswith("goroutine 1 [")
    assert (pprof / "prover-1.heap.prof").read_text().startswith("heap profile: ")
    assert not (pprof / "NOTE.txt").exists()


async def test_logs_collect_keeps_raw_bytes_and_never_overwrites(drill_factory, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = drill_factory(replicas=2)
    log = env.state.logs / "prover-2.log"
    with open(log, "ab") as f:  # what an attacker could make a prover log: escapes, invalid UTF-8
        f.write(ESC_LINE)
    settings = load_config(env.state.config)
    settings = dataclasses.replace(settings, replicas=(*settings.replicas, Replica(
        "prover-\x1b[31mred", "http://127.0.0.1:1/health", "http://127.0.0.1:1/metrics", log_file=tmp_path / "gone.log")))
    ctx = context(env, settings=settings, read_only=True)
    try:
        one, progress = await run(registry, ctx, "logs.collect", {"lines": 3})
        two, _ = await run(registry, ctx.fresh(), "logs.collect", {"lines": 3})
    finally:
        await ctx.aclose()
    assert one.status == "succeeded", one.summary
    out = Path(one.details["file"])
    assert out.parent == env.state.root / "evidence" and out.name.startswith("logs-none-")
    assert one.artifacts == (str(out),)
    assert stat.S_IMODE(out.stat().st_mode) == 0o444
    data = out.read_bytes()
    lines = data.split(b"\n")[:-1]
    assert [ln.split(b" ")[0] for ln in lines] == [b"prover-1"] * 3 + [b"prover-2"] * 3
    assert lines[-1] == b"prover-2 log " + ESC_LINE.rstrip(b"\n"), "the evidence must be verbatim"
    (gone,) = one.details["missing"]
    assert gone["item"] == "prover-\x1b[31mred" and "No such file" in gone["reason"]
    for text in [one.summary, *(p.message for p in progress)]:
        assert "\x1b" not in text
    assert two.status == "succeeded" and two.details["file"] != one.details["file"]
    assert out.read_bytes() == data  # the first file is untouched
