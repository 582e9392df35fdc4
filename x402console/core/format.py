"""Short, fixed-width renderings of numbers for the panes (pure)."""

from __future__ import annotations


def bytes_h(n: float | None) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"  # pragma: no cover


def duration_h(seconds: float | None, coarse: bool = False) -> str:
    """3s, 4m05s, 2h03m, 3d04h; coarse drops the seconds past the first minute (4m)."""
    if seconds is None or seconds != seconds:
        return "–"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" if coarse else f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def clock_h(seconds: float) -> str:
    """Elapsed time as HH:MM:SS (hours may exceed 24)."""
    s = int(max(0, seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def percent_h(ratio_or_pct: float | None, *, is_ratio: bool = False) -> str:
    if ratio_or_pct is None or ratio_or_pct != ratio_or_pct:
        return "–"
    v = ratio_or_pct * 100 if is_ratio else ratio_or_pct
    return f"{v:.1f}%"


def seconds_h(value: float | None, lower_bound: bool = False) -> str:
    """Latency: 85ms, 1.20s; a lower bound (p95 in the +Inf bucket) reads '>2.00s'."""
    if value is None or value != value:
        return "–"
    text = f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"
    return f">{text}" if lower_bound else text


def rate_h(value: float | None) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.1f}/s" if value < 100 else f"{value:.0f}/s"
