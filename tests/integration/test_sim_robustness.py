"""Hostile or odd HTTP input, process lifecycle and the CLI: nothing takes the simulator down."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.rig.components import free_port
from tests.rig.sim import module_sim_factory, sim_command, sim_factory, start_sim  # noqa: F401


def exchange(port: int, data: bytes, timeout: float = 5.0, half_close: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
    return b"".join(chunks)


@pytest.fixture(scope="module")
def sim(module_sim_factory):  # noqa: F811
    return module_sim_factory("--exempt-ip", "127.0.0.1", "--header-timeout", "1", "--idle-timeout", "2")


def healthy(sim) -> bool:
    return httpx.get(sim.url + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("data", "status_line"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(100) + b"\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GARBAGE\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /health\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"G(T /health HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /health HTTP/1.1\r\n\r\n", b"HTTP/1.1 400 Bad Request"),  # no Host
        (b"GET /health HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"POST /generate-proof HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"POST /generate-proof HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", b"HTTP/1.1 413"),
        (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", b"HTTP/1.1 505"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 << 20) + b"\r\n\r\n", b"HTTP/1.1 431"),
    ],
)
def test_malformed_requests_get_go_style_errors(sim, data: bytes, status_line: bytes) -> None:
    reply = exchange(sim.port, data)
    assert reply.startswith(status_line), reply[:200]
    assert b"Connection: close" in reply
    assert healthy(sim)


def test_random_garbage_does_not_kill_the_server(sim) -> None:
    import random

    rng = random.Random(1234)
    for _ in range(40):
        junk = rng.randbytes(rng.randrange(1, 3000))
        try:
            exchange(sim.port, junk, timeout=3, half_close=True)
        except OSError:
            pass
    assert healthy(sim)
    assert sim.proc.poll() is None


def test_slow_and_partial_requests_time_out(sim) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHo")  # never finishes the header
        assert s.recv(100) == b""  # closed by the server's header timeout
    assert time.monotonic() - started < 9
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as s:
        s.sendall(b"POST /generate-proof HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert s.recv(100) == b""  # body never completes
    assert healthy(sim)


def test_keep_alive_pipelining_http10_and_chunked(sim) -> None:
    pipelined = exchange(
        sim.port,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /cache/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert pipelined.count(b"HTTP/1.1 200 OK") == 2 and pipelined.endswith(b'"ttlSeconds":3600}')
    http10 = exchange(sim.port, b"GET /health HTTP/1.0\r\n\r\n")
    assert http10.startswith(b"HTTP/1.0 200 OK") and b"Connection: close" in http10
    chunked = exchange(
        sim.port,
        b"POST /generate-proof HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\n{\"min\r\n0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 400") and chunked.endswith(b'{"error":"Invalid request format"}')
    with httpx.Client(base_url=sim.url, timeout=5) as c:
        for _ in range(5):
            assert c.get("/health").status_code == 200
    assert healthy(sim)


def test_sigterm_and_sigint_stop_cleanly(sim_factory) -> None:  # noqa: F811
    for sig in (signal.SIGTERM, signal.SIGINT):
        s = sim_factory()
        s.proc.send_signal(sig)
        assert s.wait_exit(10) == 0
        assert "Traceback" not in s.stderr + s.stdout


def test_port_in_use_is_a_fatal_start_error(tmp_path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        sim = start_sim(tmp_path, port=port, wait_ready=False)
        try:
            assert sim.wait_exit(15) == 1
        finally:
            sim.stop()
    assert f"Failed to start server: listen tcp 127.0.0.1:{port}: bind: address already in use" in sim.stderr
    assert f"[GIN-debug] [ERROR] listen tcp 127.0.0.1:{port}" in sim.stderr
    assert "Traceback" not in sim.stderr


def test_cli_help_and_usage_errors(tmp_path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(sim_command(*args), capture_output=True, text=True, timeout=30, cwd=tmp_path)

    help_ = run("--help")
    assert help_.returncode == 0 and "--control-port" in help_.stdout and "--fault" in help_.stdout
    no_token = run("--control-port", str(free_port()), "--state-dir", str(tmp_path))
    assert no_token.returncode == 2 and "needs a token" in no_token.stderr
    bad_fault = run("--fault", "meltdown", "--state-dir", str(tmp_path))
    assert bad_fault.returncode == 2 and "unknown fault 'meltdown'" in bad_fault.stderr
    bad_ip = run("--exempt-ip", "not-an-ip", "--state-dir", str(tmp_path))
    assert bad_ip.returncode == 2 and "not an IP address" in bad_ip.stderr
    for out in (help_, no_token, bad_fault, bad_ip):
        assert "Traceback" not in out.stderr


def test_corrupt_proving_key_is_fatal(sim_factory, tmp_path) -> None:  # noqa: F811
    first = sim_factory()
    first.stop()
    (first.state_dir / "keys" / "payment_proof.pk").write_text("{not a key")
    again = start_sim(tmp_path, state_dir=first.state_dir, wait_ready=False, name="again")
    try:
        assert again.wait_exit(15) == 1
    finally:
        again.stop()
    assert "Failed to initialize circuit: failed to load proving key" in again.stderr


def test_import_does_not_pull_the_ui() -> None:
    code = "import x402console.drill.sim.main, sys; assert 'textual' not in sys.modules and 'rich' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0
