"""The memory trend fit: slope, verdict and time to the limit from (seconds, bytes) points."""

from __future__ import annotations

import math

import pytest

from x402console.actions.diagnostics import MIB, describe_trend, fit_memory_trend

GIB = 1024 * MIB
# Deterministic "noise": +-4 MiB around the line, with no trend of its own.
NOISE = [3, -4, 1, 4, -2, -3, 2, 0, -1, 4, -4, 1, 3, -2, 0, -3, 2, -1, 4, -4]


def line(n: int, start: float, slope: float, dt: float = 1.0, noise: list[int] | None = None) -> list[tuple[float, float]]:
    return [(i * dt, start + slope * i * dt + ((noise[i % len(noise)] * MIB) if noise else 0)) for i in range(n)]


@pytest.mark.parametrize(
    ("name", "points", "limit", "verdict", "eta"),
    [
        ("flat", line(10, 100 * MIB, 0.0), 4 * GIB, "not growing", None),
        # 10 MiB/s from 100 MiB: the fitted line at t=9 is 190 MiB; 512 MiB is 322 MiB away
        ("growing", line(10, 100 * MIB, 10 * MIB), 512 * MIB, "growing", 32.2),
        ("shrinking", line(10, 300 * MIB, -5 * MIB), 512 * MIB, "not growing", None),
        ("noisy flat", line(20, 200 * MIB, 0.0, noise=NOISE), 512 * MIB, "not growing", None),
        ("noisy growing", line(20, 100 * MIB, 3 * MIB, noise=NOISE), 512 * MIB, "growing", None),
        ("too few points", line(2, 100 * MIB, 10 * MIB), 512 * MIB, "too few points", None),
        ("no points", [], 512 * MIB, "too few points", None),
        ("already over limit", line(10, 600 * MIB, 1 * MIB), 512 * MIB, "over limit", 0.0),
        ("over limit with too few points", line(1, 600 * MIB, 0.0), 512 * MIB, "over limit", 0.0),
        # 200 KiB over 10 s is allocator settling, not a leak worth an alarm
        ("tiny steady growth", line(11, 100 * MIB, 20 * 1024), 512 * MIB, "not growing", None),
        ("growing without a limit", line(10, 100 * MIB, 10 * MIB), None, "growing", None),
    ],
)
def test_verdicts(name, points, limit, verdict, eta) -> None:
    trend = fit_memory_trend(points, limit)
    assert trend.verdict == verdict, (name, trend)
    assert trend.points == len(points)
    if eta is None:
        assert trend.eta_seconds is None or verdict == "growing"
    else:
        assert trend.eta_seconds == pytest.approx(eta, abs=0.2)


def test_slope_is_the_least_squares_slope() -> None:
    trend = fit_memory_trend(line(10, 100 * MIB, 10 * MIB))
    assert trend.slope_bytes_per_s == pytest.approx(10 * MIB)
    assert trend.mib_per_minute == pytest.approx(600.0)
    assert trend.slope_stderr == pytest.approx(0.0, abs=1e-6)
    assert trend.span_seconds == 9.0 and trend.first_bytes == 100 * MIB and trend.last_bytes == 190 * MIB


def test_noisy_growth_eta_comes_from_the_fitted_line_not_the_last_point() -> None:
    points = line(20, 100 * MIB, 3 * MIB, noise=NOISE)
    trend = fit_memory_trend(points, 512 * MIB)
    assert trend.slope_bytes_per_s == pytest.approx(3 * MIB, rel=0.1)
    fitted_now = 100 * MIB + 3 * MIB * 19
    assert trend.eta_seconds == pytest.approx((512 * MIB - fitted_now) / (3 * MIB), rel=0.15)


def test_unordered_and_non_finite_points_are_handled() -> None:
    pts = [(3.0, 130 * MIB), (0.0, 100 * MIB), (float("nan"), 1.0), (1.0, float("inf")), (2.0, 120 * MIB), (1.0, 110 * MIB)]
    trend = fit_memory_trend(pts, 512 * MIB)
    assert trend.points == 4
    assert trend.slope_bytes_per_s == pytest.approx(10 * MIB)
    assert trend.verdict == "growing"


def test_same_time_for_every_point_is_too_few() -> None:
    trend = fit_memory_trend([(5.0, 100 * MIB)] * 5, 512 * MIB)
    assert trend.verdict == "too few points"


def test_descriptions_say_rate_eta_and_points() -> None:
    growing = describe_trend("prover-1", fit_memory_trend(line(10, 100 * MIB, 10 * MIB), 512 * MIB))
    assert growing.startswith("prover-1: growing 600.0 MiB/min") and "512.0MiB limit in ~32s" in growing
    assert "10 points" in growing
    assert describe_trend("p", fit_memory_trend(line(10, 100 * MIB, 0), 512 * MIB)).startswith("p: not growing")
    assert describe_trend("p", fit_memory_trend([], 512 * MIB)) == "p: no samples"
    assert "too few points" in describe_trend("p", fit_memory_trend(line(2, MIB, 0), 512 * MIB))
    assert "over its 512.0MiB limit" in describe_trend("p", fit_memory_trend(line(5, 600 * MIB, 0), 512 * MIB))
    assert not math.isnan(fit_memory_trend(line(10, 1, 0)).slope_bytes_per_s or 0)
