"""The traffic generator against real HTTP servers on 127.0.0.1.

The recording server answers like the prover's limiter: 200 for an IP's first 10 requests,
then 429, the IP being the first X-Forwarded-For entry if any, else the peer (gin's ClientIP).
Assertions are on counts, never on speed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from x402console.drill.traffic import DOC_RANGES, TrafficConfig, generate
from x402console.drill.traffic_mix import INVALID_KINDS, VALID

ROOT = Path(__file__).resolve().parents[2]
DOC_NETS = [ipaddress.ip_network(r) for r in DOC_RANGES]
BOUND = 20  # seconds any single run may take before the test gives up


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: str

    @property
    def client_ip(self) -> str:
        xff = self.headers.get("x-forwarded-for")
        return xff.split(",")[0].strip() if xff else self.peer


class RecordingServer:
    def __init__(self, limit: int = 10) -> None:
        self.limit = limit
        self.requests: list[Seen] = []
        self.per_ip: dict[str, int] = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                seen = Seen("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                            self.client_address[0])
                with owner.lock:
                    owner.requests.append(seen)
                    n = owner.per_ip[seen.client_ip] = owner.per_ip.get(seen.client_ip, 0) + 1
                status, answer = (200, {"proof": "{}"}) if n <= owner.limit else (
                    429, {"error": "Rate limit exceeded",
                          "message": "Maximum 10 requests per minute. Please try again later."})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    yield srv
    srv.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    yield sock.getsockname()[1]
    sock.close()


async def run(cfg: TrafficConfig, stop: asyncio.Event | None = None):
    return await asyncio.wait_for(generate(cfg, stop), timeout=BOUND)


def in_doc_ranges(ip: str) -> bool:
    return any(ipaddress.ip_address(ip) in n for n in DOC_NETS)


async def test_rate_is_honoured_and_every_request_arrives(server: RecordingServer) -> None:
    stats = await run(TrafficConfig(targets=[server.url], rate=5, clients=50, invalid_ratio=0.0,
                                    duration=3, seed=1))
    assert 10 <= stats.sent <= 20
    assert stats.stopped_by == "duration"
    assert len(server.requests) == stats.sent == stats.completed
    assert stats.by_status == {"200": stats.sent} and stats.by_kind == {VALID: stats.sent}
    assert {r.path for r in server.requests} == {"/generate-proof"}
    assert {r.headers["content-type"] for r in server.requests} == {"application/json"}
    assert stats.latency_p50_ms() is not None and stats.dropped == stats.timeouts == 0
    assert all("recipientKeyX" in json.loads(r.body) for r in server.requests)


async def test_xff_ips_from_documentation_ranges_distinct_per_client(server: RecordingServer) -> None:
    stats = await run(TrafficConfig(targets=[server.url], rate=10, clients=5, duration=1.5, seed=2))
    assert 10 <= stats.sent <= 20
    ips = [r.headers["x-forwarded-for"] for r in server.requests]
    assert all(in_doc_ranges(ip) for ip in ips)
    assert len(set(ips)) == 5
    assert {r.peer for r in server.requests} == {"127.0.0.1"}  # the packets themselves stay on loopback
    counts = sorted(server.per_ip.values())
    assert counts[-1] - counts[0] <= 1  # clients take turns


async def test_source_mode_binds_distinct_loopback_addresses(server: RecordingServer) -> None:
    stats = await run(TrafficConfig(targets=[server.url], rate=10, clients=4, ip_mode="source",
                                    duration=1.2, seed=3))
    if stats.connection_errors == stats.sent:
        pytest.skip("this host cannot bind 127.0.0.x source addresses")
    assert stats.completed == stats.sent >= 8
    peers = {r.peer for r in server.requests}
    assert peers == {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
    assert not any("x-forwarded-for" in r.headers for r in server.requests)


async def test_attack_ips_get_429s_and_normal_clients_do_not(server: RecordingServer) -> None:
    stats = await run(TrafficConfig(targets=[server.url], rate=4, clients=20, attack_ips=2, attack_rate=10,
                                    invalid_ratio=0.0, duration=2, seed=4))
    attack_ips = {r.client_ip for r in server.requests if server.per_ip[r.client_ip] > 10}
    normal_ips = {r.client_ip for r in server.requests} - attack_ips
    assert len(attack_ips) == 2 and len(normal_ips) >= 6
    assert all(in_doc_ranges(ip) for ip in attack_ips | normal_ips)
    assert stats.by_kind_status["attack"]["429"] >= 2 * 5
    assert stats.by_kind_status["attack"]["200"] == 2 * 10
    assert stats.by_kind_status["valid"] == {"200": stats.by_kind["valid"]}
    assert stats.by_error.get("Rate limit exceeded") == stats.by_status["429"]


async def test_attack_only_run_as_the_drill_starts_it(server: RecordingServer) -> None:
    stats = await run(TrafficConfig(targets=[server.url], rate=0, clients=0, attack_ips=1, attack_rate=10,
                                    duration=1.2))
    assert stats.by_kind == {"attack": 12}
    assert stats.by_kind_status["attack"] == {"200": 10, "429": 2}
    assert len(server.per_ip) == 1 and in_doc_ranges(next(iter(server.per_ip)))


async def test_invalid_ratio_sends_invalid_kinds(server: RecordingServer) -> None:
    stats = await run(TrafficConfig(targets=[server.url], rate=40, clients=300, invalid_ratio=1.0,
                                    duration=1, seed=5))
    assert VALID not in stats.by_kind and set(stats.by_kind) <= set(INVALID_KINDS)
    assert len(stats.by_kind) >= 6
    bodies = [r.body for r in server.requests]
    assert any(b.startswith(b"{") and not b.endswith(b"}") for b in bodies)  # malformed JSON went out


async def test_targets_round_robin() -> None:
    a, b = RecordingServer(), RecordingServer()
    try:
        stats = await run(TrafficConfig(targets=[a.url, b.url + "/"], rate=10, duration=1, seed=6))
    finally:
        a.close()
        b.close()
    assert stats.sent == 10 and len(a.requests) == len(b.requests) == 5


async def test_max_requests_bound_stops_the_run(server: RecordingServer) -> None:
    stats = await run(TrafficConfig(targets=[server.url], rate=50, duration=30, max_requests=7))
    assert stats.stopped_by == "max_requests"
    assert stats.sent == 7 and len(server.requests) == 7
    assert stats.elapsed_s < 30


async def test_duration_bound_stops_the_run(server: RecordingServer) -> None:
    stats = await run(TrafficConfig(targets=[server.url], rate=2, duration=1, max_requests=1000))
    assert stats.stopped_by == "duration" and stats.sent == 2
    assert stats.elapsed_s >= 1.0


async def test_stop_event_ends_a_long_run(server: RecordingServer) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.6, stop.set)
    stats = await run(TrafficConfig(targets=[server.url], rate=5, duration=3600), stop)
    assert stats.stopped_by == "stop" and 1 <= stats.sent <= 10


async def test_hung_server_leads_to_timeouts_and_the_run_ends(silent_port: int) -> None:
    stats = await run(TrafficConfig(targets=[f"http://127.0.0.1:{silent_port}"], rate=4, duration=1,
                                    timeout=0.5))
    assert stats.sent == 4 and stats.timeouts == 4
    assert stats.completed == 0 and stats.cancelled == 0


async def test_in_flight_bound_drops_instead_of_queueing(silent_port: int) -> None:
    stats = await run(TrafficConfig(targets=[f"http://127.0.0.1:{silent_port}"], rate=20, duration=1,
                                    timeout=2.5, max_in_flight=3))
    assert stats.scheduled == 20
    assert stats.sent == 3 and stats.dropped == 17 and stats.timeouts == 3


async def test_closed_port_counts_connection_errors(port: int) -> None:
    stats = await run(TrafficConfig(targets=[f"http://127.0.0.1:{port}"], rate=10, duration=0.5, timeout=2))
    assert stats.sent == 5 and stats.connection_errors == 5 and stats.completed == 0


def _start_cli(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "x402console.drill.traffic", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_run_writes_report(server: RecordingServer, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = _start_cli(["--target", server.url, "--rate", "10", "--clients", "2", "--duration", "1",
                       "--report-json", str(report)])
    try:
        _, err = proc.communicate(timeout=BOUND)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "note: 10 req/s over 2 clients is 300 req/min per client" in err
    summary = [line for line in err.splitlines() if line.startswith("traffic: sent=")]
    assert len(summary) == 1 and "stopped_by=duration" in summary[0]
    data = json.loads(report.read_text())
    assert data["stats"]["sent"] == len(server.requests) == 10
    assert data["stats"]["by_status"] == {"200": 10}  # two clients, five requests each
    assert data["config"]["targets"] == [server.url]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_stops_cleanly_on_signal(server: RecordingServer, sig: signal.Signals) -> None:
    proc = _start_cli(["--target", server.url, "--rate", "20", "--clients", "200", "--duration", "600"])
    try:
        deadline = time.monotonic() + BOUND
        while len(server.requests) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(server.requests) >= 3, proc.stderr.read() if proc.poll() is not None else "no traffic"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=BOUND)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "stopped_by=stop" in err and "Traceback" not in err
