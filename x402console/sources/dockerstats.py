"""Docker stats JSON (one decoded sample) -> the figures `docker stats` shows.

The formulas are the docker CLI's (docker/cli cli/command/container/stats_helpers.go, see
reference/ops-apis.md D3) so the console's numbers match what an engineer sees when they run
`docker stats` next to it. Linux only: Windows daemons report different fields.

Every reader tolerates missing keys, nulls and junk values (a stopped container reports
``memory_stats: {}``; cgroup v2 has no ``percpu_usage``), reading them as 0 like Go's zero
values would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

__all__ = [
    "cpu_percent",
    "memory_usage",
    "net_io",
    "block_io",
    "pids",
    "StatsSummary",
    "summarize",
]


def _map(obj: Any, key: str) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        value = obj.get(key)
        if isinstance(value, Mapping):
            return value
    return {}


def _num(obj: Any, key: str) -> float:
    if isinstance(obj, Mapping):
        value = obj.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


def _int(obj: Any, key: str) -> int:
    if isinstance(obj, Mapping):
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value == value:
            return int(value)
    return 0


def _precpu_empty(pre: Mapping[str, Any]) -> bool:
    # One-shot reads and the first streamed sample carry a zeroed precpu_stats (system usage
    # omitted, total usage 0): there is nothing to take a difference from.
    return _num(pre, "system_cpu_usage") == 0 and _num(_map(pre, "cpu_usage"), "total_usage") == 0


def cpu_percent(stats: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> float | None:
    """CPU % as docker stats shows it; may exceed 100 (up to 100 x CPUs).

    Uses ``precpu_stats`` from the same sample; when that is empty and ``previous`` (the sample
    before, kept by the caller) is given, its ``cpu_stats`` stand in. None means "not yet": no
    earlier reading to compare with. 0.0 unless both the container and the system deltas are > 0.
    """
    cur = _map(stats, "cpu_stats")
    if not cur:
        return None
    pre = _map(stats, "precpu_stats")
    if _precpu_empty(pre):
        pre = _map(previous, "cpu_stats") if previous is not None else {}
        if _precpu_empty(pre):
            return None
    cur_usage = _map(cur, "cpu_usage")
    cpu_delta = _num(cur_usage, "total_usage") - _num(_map(pre, "cpu_usage"), "total_usage")
    system_delta = _num(cur, "system_cpu_usage") - _num(pre, "system_cpu_usage")
    online = _num(cur, "online_cpus")
    if online == 0:
        percpu = cur_usage.get("percpu_usage")
        online = float(len(percpu)) if isinstance(percpu, list) else 0.0
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def memory_usage(stats: Mapping[str, Any]) -> tuple[int, int, float]:
    """(used bytes, limit bytes, used % of limit), page cache excluded as the CLI does.

    cgroup v1: usage - stats.total_inactive_file, when that is smaller than usage; otherwise
    (and on cgroup v2) usage - stats.inactive_file, when smaller than usage; else raw usage.
    The % is 0 when the limit is 0 (container not running). No memory data reads as (0, 0, 0.0).
    """
    mem = _map(stats, "memory_stats")
    usage = _int(mem, "usage")
    inner = _map(mem, "stats")
    used = usage
    if "total_inactive_file" in inner and _int(inner, "total_inactive_file") < usage:
        used = usage - _int(inner, "total_inactive_file")
    elif _int(inner, "inactive_file") < usage:
        used = usage - _int(inner, "inactive_file")
    limit = _int(mem, "limit")
    percent = used / limit * 100.0 if limit != 0 else 0.0
    return used, limit, percent


def net_io(stats: Mapping[str, Any]) -> tuple[int, int]:
    """(received bytes, transmitted bytes) summed over every interface. Host networking gives
    no ``networks`` key, hence (0, 0)."""
    rx = tx = 0
    networks = _map(stats, "networks")
    for iface in networks.values():
        rx += _int(iface, "rx_bytes")
        tx += _int(iface, "tx_bytes")
    return rx, tx


def block_io(stats: Mapping[str, Any]) -> tuple[int, int]:
    """(read bytes, written bytes) from blkio_stats.io_service_bytes_recursive, by the first
    letter of ``op`` (r/R read, w/W write) as the CLI does; other ops (Sync, Total...) ignored."""
    read = write = 0
    entries = _map(stats, "blkio_stats").get("io_service_bytes_recursive")
    if not isinstance(entries, list):
        return 0, 0
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        op = entry.get("op")
        if not isinstance(op, str) or not op:
            continue
        if op[0] in "rR":
            read += _int(entry, "value")
        elif op[0] in "wW":
            write += _int(entry, "value")
    return read, write


def pids(stats: Mapping[str, Any]) -> int | None:
    pid_stats = _map(stats, "pids_stats")
    if "current" not in pid_stats:
        return None
    return _int(pid_stats, "current")


@dataclass(frozen=True, slots=True)
class StatsSummary:
    cpu_percent: float | None
    memory_used: int
    memory_limit: int
    memory_percent: float
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int
    pids: int | None
    read: str  # the daemon's timestamp of this sample, as given


def summarize(stats: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> StatsSummary:
    used, limit, percent = memory_usage(stats)
    rx, tx = net_io(stats)
    blk_r, blk_w = block_io(stats)
    read = stats.get("read") if isinstance(stats, Mapping) else None
    return StatsSummary(
        cpu_percent=cpu_percent(stats, previous),
        memory_used=used,
        memory_limit=limit,
        memory_percent=percent,
        net_rx=rx,
        net_tx=tx,
        block_read=blk_r,
        block_write=blk_w,
        pids=pids(stats),
        read=read if isinstance(read, str) else "",
    )
