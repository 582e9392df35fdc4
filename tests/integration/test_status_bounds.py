"""A status must come back even when everything it asks hangs: a real listener that accepts
connections and never answers stands in for a hung prover and a hung Prometheus."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from x402console.config import load_config, write_config
from x402console.core.severity import assess
from x402console.status.collect import collect_signals

# The bound under test is the status' own budget; this only stops a broken build from hanging CI.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def hung_port() -> Iterator[int]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()


def test_everything_hanging_still_gives_a_picture_within_the_budget(tmp_path: Path, hung_port: int):
    url = f"http://127.0.0.1:{hung_port}"
    config = tmp_path / "config.toml"
    write_config({
        "environment": {"name": "hung", "journal": str(tmp_path / "journal.db")},
        "discovery": {"mode": "static"},
        "prometheus": {"url": url},
        "database": {"path": str(tmp_path / "proofs.db")},
        "replicas": [{"name": "prover-1", "health_url": f"{url}/health", "metrics_url": f"{url}/metrics"}],
    }, config)
    settings = load_config(config)

    signals = collect_signals(settings, window_seconds=5, timeout=3)

    assert [r.up for r in signals.replicas] == [False]
    assert signals.components["prometheus"] == "down"
    assert signals.proof_rate is None
    text = "\n".join(signals.unobserved)
    assert "prometheus" in text and "timed out" in text
    assert "metrics of prover-1" in text
    assert assess(signals, settings.severity).level == "P0"  # the only replica does not answer
