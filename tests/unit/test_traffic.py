"""Pacing schedule, target validation, configuration bounds and statistics of the traffic generator."""

from __future__ import annotations

import asyncio
import ipaddress
import math

import pytest

from x402console.drill.traffic import (
    DOC_RANGES,
    Pacer,
    TrafficConfig,
    TrafficConfigError,
    TrafficStats,
    generate,
    loopback_url,
    run_traffic,
    schedule,
    source_ips,
    xff_ips,
)


class FakeClock:
    """A clock that only moves when the pacer sleeps (optionally oversleeping, like a busy host)."""

    def __init__(self, oversleep: float = 0.0) -> None:
        self.t = 100.0
        self.oversleep = oversleep
        self.sleeps = 0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        self.sleeps += 1
        self.t += delay + self.oversleep


async def paced(slots, clock: FakeClock) -> list[tuple[float, object]]:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    return [(clock() - pacer.start, s) async for s in pacer.release(slots)]


# ---------------------------------------------------------------- schedule


@pytest.mark.parametrize("rate,duration", [(5, 3), (3, 1), (0.5, 3), (7.3, 2.2), (100, 0.05), (20, 10)])
def test_n_requests_over_t_seconds_at_rate_r(rate: float, duration: float) -> None:
    slots = list(schedule(rate, 4, duration, 10**6))
    assert len(slots) == math.ceil(rate * duration - 1e-9)
    assert all(s.at < duration for s in slots)
    gaps = [b.at - a.at for a, b in zip(slots, slots[1:])]
    assert all(abs(g - 1 / rate) < 1e-9 for g in gaps)


def test_clients_take_turns() -> None:
    slots = list(schedule(10, 3, 1.0, 100))
    assert [s.client for s in slots] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert {s.stream for s in slots} == {"normal"}


def test_attack_ips_each_get_their_rate_on_top() -> None:
    slots = list(schedule(2, 5, 2.0, 10**6, attack_ips=3, attack_rate=4))
    normal = [s for s in slots if s.stream == "normal"]
    attack = [s for s in slots if s.stream == "attack"]
    assert len(normal) == 4
    assert [sum(1 for s in attack if s.client == c) for c in range(3)] == [8, 8, 8]
    assert [s.at for s in slots] == sorted(s.at for s in slots)


def test_attack_only() -> None:
    slots = list(schedule(0, 0, 1.0, 100, attack_ips=2, attack_rate=3))
    assert len(slots) == 6 and {s.stream for s in slots} == {"attack"}


def test_max_requests_caps_the_schedule() -> None:
    assert len(list(schedule(1000, 10, 60, 37))) == 37


def test_long_schedule_does_not_drift() -> None:
    slots = list(schedule(3, 1, 3600, 10**6))
    assert len(slots) == 10800
    assert slots[-1].at == pytest.approx(3600 - 1 / 3, abs=1e-9)


# ---------------------------------------------------------------- pacer with an injected clock


async def test_pacer_releases_each_slot_at_its_time() -> None:
    clock = FakeClock()
    released = await paced(schedule(5, 2, 3.0, 10**6), clock)
    assert len(released) == 15
    for t, slot in released:
        assert t == pytest.approx(slot.at, abs=1e-9)
    assert clock.t - 100.0 == pytest.approx(2.8)


async def test_late_pacer_catches_up_without_skipping() -> None:
    clock = FakeClock(oversleep=0.35)  # every sleep overshoots by more than a slot gap
    released = await paced(schedule(5, 2, 3.0, 10**6), clock)
    assert len(released) == 15
    assert all(t >= slot.at for t, slot in released)
    assert clock.sleeps < 15  # late slots went out at once, without sleeping


async def test_pacer_stops_on_event() -> None:
    stop = asyncio.Event()
    stop.set()
    pacer = Pacer(stop=stop)
    assert [s async for s in pacer.release(schedule(5, 1, 3.0, 100))] == []
    assert await pacer.wait_until(10.0) is False


async def test_pacer_stop_interrupts_a_long_wait() -> None:
    stop = asyncio.Event()
    pacer = Pacer(stop=stop)
    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await asyncio.wait_for(pacer.wait_until(3600.0), timeout=5) is False


# ---------------------------------------------------------------- targets and config


@pytest.mark.parametrize(
    "url,expected",
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/generate-proof"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/generate-proof"),
        ("http://127.1.2.3:80/custom", "http://127.1.2.3:80/custom"),
        ("https://localhost:8443", "https://localhost:8443/generate-proof"),
        ("http://LOCALHOST:1", "http://LOCALHOST:1/generate-proof"),
        ("http://[::1]:8080", "http://[::1]:8080/generate-proof"),
    ],
)
def test_loopback_targets_accepted(url: str, expected: str) -> None:
    assert loopback_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080",
        "http://192.0.2.1",
        "http://example.com",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "http://0.0.0.0:8080",
        "http://[::2]:80",
        "http://[::ffff:10.0.0.1]/",
        "https://8.8.8.8",
    ],
)
def test_non_loopback_targets_refused(url: str) -> None:
    with pytest.raises(TrafficConfigError, match="only loopback targets"):
        loopback_url(url)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "127.0.0.1:8080", "http://", "http://127.0.0.1:99999",
                                 "http://user:pw@127.0.0.1"])
def test_malformed_targets_refused(url: str) -> None:
    with pytest.raises(TrafficConfigError):
        loopback_url(url)


async def test_generate_refuses_non_loopback_before_sending() -> None:
    with pytest.raises(TrafficConfigError, match="only loopback"):
        await generate(TrafficConfig(targets=["http://127.0.0.1:1", "http://203.0.113.5:8080"], duration=1))


def test_cli_refuses_non_loopback_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_traffic(["--target", "http://10.1.2.3:8080", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "refusing target 'http://10.1.2.3:8080'" in err and "loopback" in err


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--rate", "abc"], "not a number"),
        (["--duration", "0"], "duration must be more than 0"),
        (["--duration", "90000"], "at most 86400"),
        (["--invalid-ratio", "1.5"], "invalid ratio"),
        (["--clients", "0"], "clients must be at least 1"),
        (["--clients", "800"], "762 distinct addresses"),
        (["--ip-mode", "source", "--clients", "250", "--attack-ips", "5"], "253 distinct addresses"),
        (["--ip-mode", "source", "--target", "http://[::1]:8080"], "must be IPv4"),
        (["--max-requests", "0"], "max requests must be at least 1"),
        (["--timeout", "-1"], "timeout"),
        (["--rate", "0"], "nothing to send"),
        (["--rate", "nan"], "not a finite number"),
        (["--ip-mode", "udp"], "invalid choice"),
        (["--report-json", "/nonexistent-dir/r.json"], "does not exist"),
    ],
)
def test_cli_bad_arguments_exit_2(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_traffic(["--target", "http://127.0.0.1:1", *argv]) == 2
    assert fragment in capsys.readouterr().err


def test_help_documents_the_client_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_traffic(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "more than 60 clients" in out and "10 requests per minute" in out
    assert all(r in out for r in DOC_RANGES)


def test_client_ips_distinct_and_in_ranges() -> None:
    nets = [ipaddress.ip_network(r) for r in DOC_RANGES]
    ips = xff_ips(762)
    assert len(set(ips)) == 762
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        assert any(addr in n and addr not in (n.network_address, n.broadcast_address) for n in nets)
    src = source_ips(253)
    assert src[0] == "127.0.0.2" and src[-1] == "127.0.0.254" and len(set(src)) == 253
    normal, attack = TrafficConfig(clients=40, attack_ips=5).client_ips()
    assert len(normal) == 40 and len(attack) == 5 and not set(normal) & set(attack)
    assert all(in_doc(ip) for ip in normal + attack)


def in_doc(ip: str) -> bool:
    return any(ipaddress.ip_address(ip) in ipaddress.ip_network(r) for r in DOC_RANGES)


@pytest.mark.parametrize("mode", ["xff", "source"])
def test_attack_only_run_does_not_reuse_normal_client_ips(mode: str) -> None:
    # The drill runs normal traffic and the attack as two generator processes.
    normal, _ = TrafficConfig(clients=150, ip_mode=mode).client_ips()
    _, attack = TrafficConfig(rate=0, clients=0, attack_ips=5, attack_rate=3, ip_mode=mode).client_ips()
    assert len(attack) == 5 and not set(normal) & set(attack)
    full_normal, full_attack = TrafficConfig(clients=250, attack_ips=3, ip_mode="source").client_ips()
    assert len(set(full_normal) | set(full_attack)) == 253


def test_library_config_defaults_validate() -> None:
    cfg = TrafficConfig(targets=["http://127.0.0.1:8080"], rate=20, clients=120, ip_mode="source",
                        invalid_ratio=0.2, attack_ips=3, attack_rate=5, duration=10, max_requests=50, timeout=2)
    assert cfg.validate() == ["http://127.0.0.1:8080/generate-proof"]
    assert cfg.per_client_per_minute() == 10


# ---------------------------------------------------------------- statistics


def test_stats_percentiles_and_dict() -> None:
    stats = TrafficStats()
    for i in range(1, 101):
        stats.record_sent("valid")
        stats.record_answer("valid", 200 if i <= 90 else 429, float(i), None if i <= 90 else "Rate limit exceeded")
    assert stats.latency_p50_ms() == 50.0 and stats.latency_p95_ms() == 95.0
    d = stats.to_dict()
    assert d["by_status"] == {"200": 90, "429": 10}
    assert d["by_kind_status"] == {"valid": {"200": 90, "429": 10}}
    assert d["by_error"] == {"Rate limit exceeded": 10}
    assert "latencies_ms" not in d and d["latency_p95_ms"] == 95.0
    assert "status[200:90 429:10]" in stats.summary_line()
    assert TrafficStats().to_dict()["latency_p50_ms"] is None
    assert "p50=-" in TrafficStats().summary_line()


def test_stats_error_texts_are_bounded() -> None:
    stats = TrafficStats()
    for i in range(200):
        stats.record_answer("valid", 400, 1.0, f"err {i}")
    assert len(stats.by_error) == 51 and stats.by_error["(other)"] == 150


def test_latency_sample_is_bounded_and_representative() -> None:
    stats = TrafficStats()
    for i in range(100_000):
        stats.record_answer("valid", 200, float(i % 1000), None)
    assert len(stats.latencies_ms) == 20_000 and stats.completed == 100_000
    assert 450 <= stats.latency_p50_ms() <= 550 and 920 <= stats.latency_p95_ms() <= 980
