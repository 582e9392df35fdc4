"""evidence.bundle in Docker mode: `docker inspect` with secrets masked and Docker logs with their
streams and timestamps, from real drill containers.

Run under the shared lock (the drill's containers have fixed names):
    flock /tmp/x402-docker.lock .venv/bin/pytest tests/integration/test_evidence_docker.py
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.rig.components import docker_client, require_binary
from x402console.actions.base import ActionContext
from x402console.actions.registry import default_registry
from x402console.config import load_config

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]

DOCKER_LINE = re.compile(rb"^prover-[12] (stdout|stderr) \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ")


async def test_docker_mode_bundle_has_masked_inspect_and_stream_tagged_logs(drill_factory) -> None:  # type: ignore[no-untyped-def]
    docker_client().close()  # skip (or fail under CI) without an engine
    env = drill_factory(mode="docker", replicas=2)
    token = env.control_token
    settings = load_config(env.state.config)
    registry = default_registry()
    ctx = ActionContext(settings=settings, drill_runtime=env.state.runtime_file)
    try:
        target = registry.get("evidence.bundle").targets(ctx)[0]
        plan = await registry.prepare("evidence.bundle", ctx, target, {"lines": 50})
        outcome = await registry.execute(plan, ctx)
    finally:
        await ctx.aclose()
    assert outcome.status == "succeeded", outcome.summary
    assert outcome.details["missing"] == [], outcome.details["missing"]
    bundle = Path(outcome.details["bundle_dir"])

    for n in (1, 2):
        (inspect,) = json.loads((bundle / "runtime" / f"prover-{n}.inspect.json").read_text())
        assert inspect["Name"] == f"/x402-prover-{n}"
        assert inspect["Config"]["Labels"]["com.docker.compose.service"] == "prover"
        assert "X402_SIM_CONTROL_TOKEN=***" in inspect["Config"]["Env"]
        assert any(e.startswith("PATH=/") for e in inspect["Config"]["Env"]), "only secret-named values are masked"
        assert inspect["HostConfig"]["NetworkMode"] == "host"
    for p in bundle.rglob("*"):
        if p.is_file():
            assert token.encode() not in p.read_bytes(), f"control token leaked into {p}"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "runtime/prover-1.inspect.json: Config.Env X402_SIM_CONTROL_TOKEN" in manifest["redactions"]

    lines = (bundle / "logs" / "incident_logs.txt").read_bytes().splitlines()
    assert lines and all(DOCKER_LINE.match(line) for line in lines), lines[:3]
    # the stdlib log of the coded prover is on stderr, gin's route table on stdout
    assert any(line.startswith(b"prover-1 stderr ") and b"Starting Umbra Protocol prover service" in line for line in lines)
    assert any(line.startswith(b"prover-2 stdout ") and b"[GIN-debug]" in line for line in lines)
    assert len([line for line in lines if line.startswith(b"prover-1 ")]) <= 50

    sha256sum = require_binary("sha256sum")
    check = subprocess.run([sha256sum, "-c", "MANIFEST.sha256"], cwd=bundle, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
