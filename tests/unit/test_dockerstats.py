"""docker stats figures computed as the docker CLI computes them, from hand-built samples.

The samples follow the Engine API's field names for cgroup v1 and v2 hosts; expected numbers are
worked out by hand in the comments.
"""

from __future__ import annotations

import copy

import pytest

from x402console.sources.dockerstats import block_io, cpu_percent, memory_usage, net_io, pids, summarize

THROTTLING = {"periods": 0, "throttled_periods": 0, "throttled_time": 0}

CGROUP_V1 = {
    "read": "2025-11-15T10:30:02.000000000Z",
    "preread": "2025-11-15T10:30:01.000000000Z",
    "pids_stats": {"current": 12},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 1_048_576},
            {"major": 8, "minor": 0, "op": "Write", "value": 4096},
            {"major": 8, "minor": 0, "op": "Sync", "value": 1_052_672},
            {"major": 8, "minor": 0, "op": "Async", "value": 0},
            {"major": 8, "minor": 0, "op": "Discard", "value": 0},
            {"major": 8, "minor": 0, "op": "Total", "value": 1_052_672},
            {"major": 8, "minor": 16, "op": "Read", "value": 2048},
        ],
        "io_serviced_recursive": [],
    },
    "cpu_stats": {
        "cpu_usage": {
            "total_usage": 2_600_000_000,
            "percpu_usage": [700_000_000, 600_000_000, 650_000_000, 650_000_000],
            "usage_in_kernelmode": 300_000_000,
            "usage_in_usermode": 2_200_000_000,
        },
        "system_cpu_usage": 400_000_000_000,
        "online_cpus": 4,
        "throttling_data": THROTTLING,
    },
    "precpu_stats": {
        "cpu_usage": {
            "total_usage": 2_100_000_000,
            "percpu_usage": [550_000_000, 500_000_000, 525_000_000, 525_000_000],
            "usage_in_kernelmode": 250_000_000,
            "usage_in_usermode": 1_800_000_000,
        },
        "system_cpu_usage": 396_000_000_000,
        "online_cpus": 4,
        "throttling_data": THROTTLING,
    },
    "memory_stats": {
        "usage": 536_870_912,  # 512 MiB
        "max_usage": 600_000_000,
        "stats": {
            "total_inactive_file": 134_217_728,  # 128 MiB
            "inactive_file": 100_000_000,
            "cache": 200_000_000,
            "rss": 300_000_000,
            "total_cache": 200_000_000,
        },
        "limit": 4_294_967_296,  # 4 GiB, compose's deploy.resources.limits.memory
    },
    "name": "/x402-prover-1",
    "id": "0123456789ab",
    "networks": {
        "eth0": {"rx_bytes": 1_000, "rx_packets": 10, "tx_bytes": 2_000, "tx_packets": 20},
        "eth1": {"rx_bytes": 10, "rx_packets": 1, "tx_bytes": 20, "tx_packets": 2},
    },
}

CGROUP_V2 = {
    "read": "2025-11-15T10:30:02.000000000Z",
    "preread": "2025-11-15T10:30:01.000000000Z",
    "pids_stats": {"current": 7, "limit": 4096},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 259, "minor": 0, "op": "read", "value": 8192},
            {"major": 259, "minor": 0, "op": "write", "value": 16384},
        ],
        "io_serviced_recursive": None,
    },
    "cpu_stats": {
        "cpu_usage": {"total_usage": 10_250_000_000, "usage_in_kernelmode": 1_000_000, "usage_in_usermode": 9_000_000},
        "system_cpu_usage": 1_002_000_000_000,
        "online_cpus": 2,
        "throttling_data": THROTTLING,
    },
    "precpu_stats": {
        "cpu_usage": {"total_usage": 10_000_000_000, "usage_in_kernelmode": 900_000, "usage_in_usermode": 8_000_000},
        "system_cpu_usage": 1_000_000_000_000,
        "online_cpus": 2,
        "throttling_data": THROTTLING,
    },
    "memory_stats": {
        "usage": 300_000_000,
        "stats": {"anon": 200_000_000, "file": 90_000_000, "inactive_file": 50_000_000, "active_file": 40_000_000},
        "limit": 1_000_000_000,
    },
    "name": "/x402-prover-2",
    "id": "ba9876543210",
}


def test_cpu_percent_cgroup_v1() -> None:
    # delta cpu 0.5e9, delta system 4e9, 4 CPUs: 0.125 * 4 * 100
    assert cpu_percent(CGROUP_V1) == pytest.approx(50.0)


def test_cpu_percent_cgroup_v2() -> None:
    # delta cpu 0.25e9, delta system 2e9, 2 CPUs: 0.125 * 2 * 100
    assert cpu_percent(CGROUP_V2) == pytest.approx(25.0)


def test_cpu_percent_can_exceed_100() -> None:
    stats = copy.deepcopy(CGROUP_V1)
    stats["cpu_stats"]["cpu_usage"]["total_usage"] = 2_100_000_000 + 3_000_000_000
    # 3e9 / 4e9 * 4 * 100
    assert cpu_percent(stats) == pytest.approx(300.0)


def test_online_cpus_missing_falls_back_to_percpu_length() -> None:
    stats = copy.deepcopy(CGROUP_V1)
    del stats["cpu_stats"]["online_cpus"]
    assert cpu_percent(stats) == pytest.approx(50.0)
    stats["cpu_stats"]["online_cpus"] = 0
    stats["cpu_stats"]["cpu_usage"]["percpu_usage"] = [1, 2]
    assert cpu_percent(stats) == pytest.approx(25.0)


def test_online_cpus_missing_on_cgroup_v2_gives_zero_like_the_cli() -> None:
    stats = copy.deepcopy(CGROUP_V2)
    del stats["cpu_stats"]["online_cpus"]
    assert cpu_percent(stats) == 0.0


@pytest.mark.parametrize(
    "cpu_total,system",
    [(2_100_000_000, 400_000_000_000), (2_600_000_000, 396_000_000_000), (2_000_000_000, 400_000_000_000)],
    ids=["no cpu delta", "no system delta", "negative cpu delta"],
)
def test_zero_unless_both_deltas_positive(cpu_total: int, system: int) -> None:
    stats = copy.deepcopy(CGROUP_V1)
    stats["cpu_stats"]["cpu_usage"]["total_usage"] = cpu_total
    stats["cpu_stats"]["system_cpu_usage"] = system
    assert cpu_percent(stats) == 0.0


def first_sample(stats: dict) -> dict:
    """What one-shot reads and the first streamed sample look like: precpu zeroed."""
    first = copy.deepcopy(stats)
    first["precpu_stats"] = {
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": THROTTLING,
    }
    return first


def test_empty_precpu_means_not_yet() -> None:
    assert cpu_percent(first_sample(CGROUP_V1)) is None
    assert cpu_percent(first_sample(CGROUP_V2)) is None
    no_pre = copy.deepcopy(CGROUP_V2)
    del no_pre["precpu_stats"]
    assert cpu_percent(no_pre) is None


def test_empty_precpu_uses_the_callers_previous_sample() -> None:
    previous = {"cpu_stats": CGROUP_V2["precpu_stats"]}
    assert cpu_percent(first_sample(CGROUP_V2), previous) == pytest.approx(25.0)
    assert cpu_percent(first_sample(CGROUP_V2), first_sample(CGROUP_V2)) == 0.0  # same reading: no deltas


def test_memory_cgroup_v1_subtracts_total_inactive_file() -> None:
    used, limit, percent = memory_usage(CGROUP_V1)
    assert used == 536_870_912 - 134_217_728 == 402_653_184
    assert limit == 4_294_967_296
    assert percent == pytest.approx(9.375)  # 384 MiB of 4 GiB


def test_memory_cgroup_v2_subtracts_inactive_file() -> None:
    assert memory_usage(CGROUP_V2) == (250_000_000, 1_000_000_000, pytest.approx(25.0))


def test_memory_inactive_file_larger_than_usage_is_not_subtracted() -> None:
    stats = copy.deepcopy(CGROUP_V2)
    stats["memory_stats"]["stats"]["inactive_file"] = 400_000_000
    assert memory_usage(stats)[0] == 300_000_000


def test_memory_v1_falls_through_to_inactive_file_like_the_cli() -> None:
    # total_inactive_file not smaller than usage: the CLI then tries inactive_file
    stats = copy.deepcopy(CGROUP_V1)
    stats["memory_stats"]["stats"]["total_inactive_file"] = 600_000_000
    assert memory_usage(stats)[0] == 536_870_912 - 100_000_000
    del stats["memory_stats"]["stats"]["inactive_file"]
    assert memory_usage(stats)[0] == 536_870_912


def test_memory_limit_zero_gives_zero_percent() -> None:
    stats = copy.deepcopy(CGROUP_V2)
    stats["memory_stats"]["limit"] = 0
    assert memory_usage(stats) == (250_000_000, 0, 0.0)


def test_memory_of_a_stopped_container() -> None:
    assert memory_usage({"memory_stats": {}}) == (0, 0, 0.0)


def test_network_sums_interfaces() -> None:
    assert net_io(CGROUP_V1) == (1_010, 2_020)
    assert net_io(CGROUP_V2) == (0, 0)  # host networking: no networks key


def test_block_io_by_first_letter_of_op() -> None:
    # Read 1 MiB + 2 KiB on two devices; Sync/Async/Discard/Total ignored
    assert block_io(CGROUP_V1) == (1_048_576 + 2048, 4096)
    assert block_io(CGROUP_V2) == (8192, 16384)


def test_pids() -> None:
    assert pids(CGROUP_V1) == 12
    assert pids(CGROUP_V2) == 7
    assert pids({}) is None


@pytest.mark.parametrize(
    "stats",
    [
        {},
        {"cpu_stats": None, "precpu_stats": None, "memory_stats": None, "networks": None, "blkio_stats": None},
        {"cpu_stats": {"cpu_usage": {"percpu_usage": None, "total_usage": "x"}}, "memory_stats": {"stats": None}},
        {"blkio_stats": {"io_service_bytes_recursive": [None, {"op": ""}, {"op": 5}, {"op": "Read", "value": None}]}},
        {"networks": {"eth0": None, "eth1": {"rx_bytes": "1"}}},
        {"memory_stats": {"usage": True, "limit": -1}},
        {"cpu_stats": {"cpu_usage": {"total_usage": 5}, "system_cpu_usage": 10, "online_cpus": 1},
         "precpu_stats": {"cpu_usage": {}, "system_cpu_usage": 5}},
        [],
    ],
)
def test_robust_to_missing_and_junk_fields(stats) -> None:
    summary = summarize(stats)
    assert summary.cpu_percent is None or summary.cpu_percent >= 0.0
    assert summary.net_rx >= 0 and summary.block_read >= 0


def test_summarize_matches_the_parts() -> None:
    s = summarize(CGROUP_V1)
    assert s.cpu_percent == pytest.approx(50.0)
    assert (s.memory_used, s.memory_limit) == (402_653_184, 4_294_967_296)
    assert s.memory_percent == pytest.approx(9.375)
    assert (s.net_rx, s.net_tx, s.block_read, s.block_write, s.pids) == (1_010, 2_020, 1_050_624, 4096, 12)
    assert s.read == "2025-11-15T10:30:02.000000000Z"
