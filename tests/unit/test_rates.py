"""Counter rates with resets, Prometheus's histogram_quantile, error ratio, rolling series."""

from __future__ import annotations

import math

import pytest

from x402console.sources.rates import (
    CounterRate,
    QuantileEstimate,
    RollingSeries,
    bucket_rate_quantile,
    error_ratio,
    histogram_quantile,
)

INF = math.inf
PROVER_BOUNDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, INF)

# --- CounterRate -------------------------------------------------------------------------------


def test_steady_counter_rate() -> None:
    c = CounterRate(window_seconds=60)
    for t in range(0, 31, 10):
        c.observe("p1", t, 5.0 * t)
    assert c.rate("p1") == pytest.approx(5.0)
    assert c.increase("p1") == pytest.approx(150.0)


def test_reset_adds_back_the_previous_value() -> None:
    c = CounterRate(window_seconds=300)
    for t, v in [(0, 100), (10, 110), (20, 5), (30, 15)]:
        c.observe("p1", t, v)
    # 100 -> 110 (+10), restart: 0 -> 5 (+5), 5 -> 15 (+10)
    assert c.increase("p1") == pytest.approx(25.0)
    assert c.rate("p1") == pytest.approx(25.0 / 30.0)


def test_two_resets_in_a_window() -> None:
    c = CounterRate(window_seconds=300)
    for t, v in [(0, 10), (15, 20), (30, 5), (45, 8), (60, 2)]:
        c.observe("p1", t, v)
    assert c.increase("p1") == pytest.approx(10 + 5 + 3 + 2)


def test_counter_that_never_moves_has_zero_rate() -> None:
    c = CounterRate(window_seconds=60)
    c.observe("p1", 0, 7)
    c.observe("p1", 15, 7)
    assert c.rate("p1") == 0.0


def test_one_sample_has_no_rate() -> None:
    c = CounterRate()
    assert c.rate("p1") is None
    c.observe("p1", 0, 1)
    assert c.rate("p1") is None
    assert c.increase("p1") is None


def test_old_samples_leave_the_window() -> None:
    c = CounterRate(window_seconds=30)
    c.observe("p1", 0, 0)
    c.observe("p1", 10, 1000)  # a burst long ago
    for t in range(40, 71, 10):
        c.observe("p1", t, 1000 + (t - 40))
    assert c.rate("p1") == pytest.approx(1.0)


def test_stale_series_has_no_rate_at_a_later_now() -> None:
    c = CounterRate(window_seconds=30)
    c.observe("p1", 0, 0)
    c.observe("p1", 10, 10)
    assert c.rate("p1", now=10) == pytest.approx(1.0)
    assert c.rate("p1", now=100) is None


def test_out_of_order_and_nan_samples_are_ignored() -> None:
    c = CounterRate(window_seconds=60)
    c.observe("p1", 0, 0)
    c.observe("p1", 10, 10)
    c.observe("p1", 5, 1_000_000)
    c.observe("p1", 10, 99)
    c.observe("p1", 20, math.nan)
    c.observe("p1", 20, 20)
    assert c.rate("p1") == pytest.approx(1.0)


def test_rate_summed_over_series_and_forget() -> None:
    c = CounterRate(window_seconds=60)
    for t in (0, 10):
        c.observe("p1", t, t * 2)
        c.observe("p2", t, t * 3)
    c.observe("p3", 0, 1)  # only one sample: no rate, not counted
    assert c.rate() == pytest.approx(5.0)
    c.forget("p2")
    assert c.rate() == pytest.approx(2.0)
    assert sorted(c.series()) == ["p1", "p3"]
    c.forget("p1")
    c.forget("p3")
    assert c.rate() is None


def test_samples_are_bounded() -> None:
    c = CounterRate(window_seconds=1e9, max_samples=5)
    for t in range(100):
        c.observe("p1", t, t)
    assert c.increase("p1") == pytest.approx(4.0)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        CounterRate(window_seconds=0)
    with pytest.raises(ValueError):
        CounterRate(max_samples=1)


# --- histogram_quantile ------------------------------------------------------------------------
# Expected values are Prometheus's own (promql/testdata/histograms.test, evaluated at 50m).

POSITIVE = [(0.1, 50), (0.2, 70), (1.0, 110), (INF, 120)]
NEGATIVE = [(-0.2, 10), (-0.1, 20), (0.3, 20), (INF, 30)]


@pytest.mark.parametrize(
    "q,buckets,expected,lower_bound",
    [
        (-0.1, POSITIVE, -INF, False),
        (1.01, POSITIVE, INF, False),
        (0.0, POSITIVE, 0.0, False),
        (0.0, NEGATIVE, -0.2, False),
        (1.0, POSITIVE, 1.0, True),
        (1.0, NEGATIVE, 0.3, True),
        (0.2, POSITIVE, 0.048, False),
        (0.2, NEGATIVE, -0.2, False),
        (0.5, POSITIVE, 0.15, False),
        (0.5, NEGATIVE, -0.15, False),
        (0.8, POSITIVE, 0.72, False),
        (0.8, NEGATIVE, 0.3, True),
        # sum by (le) over the four request_duration_seconds series
        (0.3, [(0.1, 10), (0.2, 19), (INF, 25)], 0.075, False),
        (0.5, [(0.1, 10), (0.2, 19), (INF, 25)], 0.1277777777777778, False),
        (0.5, [(0.1, 2), (0.2, 5), (INF, 6)], 0.1333333333333333, False),
    ],
)
def test_prometheus_reference_values(q: float, buckets, expected: float, lower_bound: bool) -> None:
    got = histogram_quantile(q, buckets)
    assert got.value == pytest.approx(expected)
    assert got.lower_bound is lower_bound


def test_bucket_order_does_not_matter() -> None:
    assert histogram_quantile(0.5, list(reversed(POSITIVE))).value == pytest.approx(0.15)


@pytest.mark.parametrize(
    "buckets",
    [[], [(INF, 10)], [(0.1, 5), (1.0, 10)], [(0.1, 0), (INF, 0)]],
    ids=["empty", "only +Inf", "no +Inf", "zero count"],
)
def test_nan_cases(buckets) -> None:
    got = histogram_quantile(0.5, buckets)
    assert math.isnan(got.value) and not got.lower_bound


def test_nan_quantile() -> None:
    assert math.isnan(histogram_quantile(math.nan, POSITIVE).value)


def test_same_bound_buckets_are_coalesced() -> None:
    got = histogram_quantile(0.5, [(0.1, 25), (0.1, 25), (0.2, 70), (1.0, 110), (INF, 120)])
    assert got.value == pytest.approx(0.15)


def test_non_monotonic_counts_are_enveloped() -> None:
    # the 0.2 bucket is lower than the 0.1 bucket: Prometheus raises it to 30 (without that
    # the answer would be 0.2 + 0.3 * 25 / 40 = 0.3875)
    got = histogram_quantile(0.75, [(0.1, 30), (0.2, 20), (0.5, 60), (INF, 60)])
    assert got.value == pytest.approx(0.2 + 0.3 * 15 / 30)


def test_prover_p95_above_two_seconds_is_a_lower_bound() -> None:
    # The prover's histogram ends at 2 s: a 6 s latency fault puts everything in +Inf.
    counts = [0, 0, 0, 0, 0, 0, 0, 0, 40]
    got = histogram_quantile(0.95, list(zip(PROVER_BOUNDS, counts)))
    assert got == QuantileEstimate(2.0, True)


def test_prover_p95_inside_the_buckets() -> None:
    cumulative = [10, 30, 60, 80, 90, 95, 99, 100, 100]
    got = histogram_quantile(0.95, list(zip(PROVER_BOUNDS, cumulative)))
    assert got == QuantileEstimate(0.5, False)  # rank 95 is exactly the 0.5 bucket's count
    got = histogram_quantile(0.5, list(zip(PROVER_BOUNDS, cumulative)))
    assert got.value == pytest.approx(0.1 + 0.05 * (50 - 30) / (60 - 30))


# --- bucket_rate_quantile ----------------------------------------------------------------------


def test_window_quantile_uses_only_new_observations() -> None:
    earlier = list(zip(PROVER_BOUNDS, [100, 100, 100, 100, 100, 100, 100, 100, 100]))  # all fast, long ago
    later = list(zip(PROVER_BOUNDS, [100, 100, 100, 100, 100, 100, 100, 100, 150]))   # 50 new, all > 2 s
    assert bucket_rate_quantile(0.95, earlier, later) == QuantileEstimate(2.0, True)
    # over all time the same histogram looks healthy
    assert histogram_quantile(0.5, later).value == pytest.approx(0.05 * 75 / 100)


def test_window_quantile_after_a_restart_uses_the_later_snapshot() -> None:
    earlier = list(zip(PROVER_BOUNDS, [500, 600, 700, 800, 900, 950, 990, 1000, 1000]))
    later = list(zip(PROVER_BOUNDS, [0, 0, 10, 10, 10, 10, 10, 10, 10]))
    got = bucket_rate_quantile(0.5, earlier, later)
    assert got.value == pytest.approx(0.1 + 0.05 * 0.5)
    assert not got.lower_bound


def test_window_quantile_without_new_observations_is_nan() -> None:
    snap = list(zip(PROVER_BOUNDS, [1, 2, 3, 4, 5, 6, 7, 8, 9]))
    assert math.isnan(bucket_rate_quantile(0.95, snap, snap).value)


def test_window_quantile_with_a_bucket_new_in_later() -> None:
    earlier = [(0.1, 5), (INF, 5)]
    later = [(0.1, 5), (0.2, 15), (INF, 15)]
    assert bucket_rate_quantile(0.5, earlier, later).value == pytest.approx(0.1 + 0.1 * 0.5)


# --- error_ratio -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "errors,proofs,expected",
    [
        (1.0, 4.0, 0.2),
        (0.0, 10.0, 0.0),
        (3.0, 0.0, 1.0),
        (0.0, 0.0, None),
        (None, 1.0, None),
        (1.0, None, None),
        (math.nan, 1.0, None),
        (-1.0, 1.0, None),
        (INF, 1.0, 1.0),
        (1.0, INF, 0.0),
        (INF, INF, None),
    ],
)
def test_error_ratio(errors, proofs, expected) -> None:
    got = error_ratio(errors, proofs)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_error_ratio_crosses_the_runbook_threshold() -> None:
    assert error_ratio(2.6, 10.0) > 0.2  # 2.6 / 12.6
    assert error_ratio(2.4, 10.0) < 0.2


# --- RollingSeries -----------------------------------------------------------------------------


def test_rolling_series_keeps_the_window() -> None:
    s = RollingSeries(window_seconds=10)
    for t in range(0, 30, 2):
        assert s.append(t, t * 1.5)
    assert s.timestamps() == [18, 20, 22, 24, 26, 28]
    assert s.latest == (28, 42.0)
    assert s.span() == (27.0, 42.0)


def test_rolling_series_refuses_backwards_points() -> None:
    s = RollingSeries(window_seconds=60)
    s.append(10, 1)
    assert not s.append(10, 2)
    assert not s.append(5, 3)
    assert not s.append(math.nan, 3)
    assert s.points() == [(10, 1)]


def test_rolling_series_is_bounded_and_handles_nan() -> None:
    s = RollingSeries(window_seconds=1e9, max_points=3)
    for t, v in [(1, 1.0), (2, math.nan), (3, 3.0), (4, INF), (5, 5.0)]:
        s.append(t, v)
    assert len(s) == 3
    assert s.timestamps() == [3, 4, 5]
    assert s.values(finite_only=True) == [3.0, 5.0]
    assert s.span() == (3.0, 5.0)
    s.clear()
    assert s.latest is None and s.span() is None


def test_rolling_series_bad_configuration() -> None:
    with pytest.raises(ValueError):
        RollingSeries(0)
    with pytest.raises(ValueError):
        RollingSeries(10, max_points=0)
