"""The fault control API: auth, validation, the flows the drill uses, and where it listens."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from tests.rig.sim import module_sim_factory  # noqa: F401
from x402console.drill.sim.control_client import SimControl, SimControlError


@pytest.fixture(scope="module")
def sim(module_sim_factory):  # noqa: F811
    return module_sim_factory("--name", "prover-2", "--profile", "intended")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "bearer TOKEN"}, {"Authorization": "TOKEN"}],
)
def test_missing_or_wrong_token_is_401(sim, headers: dict) -> None:
    headers = {k: v.replace("TOKEN", sim.token) for k, v in headers.items()}
    for method, path in (("GET", "/faults"), ("PUT", "/faults/hang"), ("GET", "/status"), ("POST", "/backup")):
        r = httpx.request(method, sim.control_url + path, headers=headers, timeout=5)
        assert r.status_code == 401, (method, path)
    assert sim.control.faults() == {}  # nothing was switched on


def test_unknown_fault_and_bad_params_are_400(sim) -> None:
    with pytest.raises(SimControlError) as exc:
        sim.control.set_fault("meltdown")
    assert exc.value.status == 400 and "unknown fault" in exc.value.message
    with pytest.raises(SimControlError) as exc:
        sim.control.set_fault("error_ratio", ratio=2)
    assert exc.value.status == 400
    with pytest.raises(SimControlError) as exc:
        sim.control.clear_fault("meltdown")
    assert exc.value.status == 400
    r = httpx.put(
        sim.control_url + "/faults/latency",
        content=b"{nope",
        headers={"Authorization": f"Bearer {sim.token}"},
        timeout=5,
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = httpx.get(sim.control_url + "/nothing", headers={"Authorization": f"Bearer {sim.token}"}, timeout=5)
    assert r.status_code == 404


def test_fault_lifecycle_and_status(sim) -> None:
    ctl = sim.control
    assert ctl.set_fault("latency", seconds=0.2) == {"latency": {"seconds": 0.2, "jitter": 0.5}}
    assert ctl.set_fault("error_ratio") == {"latency": {"seconds": 0.2, "jitter": 0.5}, "error_ratio": {"ratio": 0.3}}
    assert ctl.clear_fault("latency") == {"error_ratio": {"ratio": 0.3}}
    assert ctl.clear_fault("latency") == {"error_ratio": {"ratio": 0.3}}  # idempotent
    assert ctl.clear_all() == {}
    status = ctl.status()
    assert status["name"] == "prover-2" and status["pid"] == sim.proc.pid and status["port"] == sim.port
    assert (status["profile"], status["log_format"]) == ("intended", "json")
    assert status["db"].endswith("proofs.db") and status["faults"] == {}
    backup = ctl.backup()
    assert os.path.isfile(backup) and backup.startswith(str(sim.state_dir / "backups"))


def test_token_from_the_environment_and_loopback_only(sim) -> None:
    # the rig passes the token through X402_SIM_CONTROL_TOKEN, not the command line
    assert sim.token not in " ".join(sim.args)
    with SimControl(sim.control_url, sim.token) as ctl:
        assert ctl.faults() == {}
    other = _non_loopback_address()
    if other is None:
        pytest.skip("no non-loopback address on this host to probe")
    with pytest.raises(OSError):
        socket.create_connection((other, sim.control_port), timeout=2).close()


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr
