import math

import pytest

from x402console.core.format import bytes_h, clock_h, duration_h, percent_h, rate_h, seconds_h


@pytest.mark.parametrize("n, text", [(None, "–"), (0, "0B"), (1023, "1023B"), (1024, "1.0KiB"),
                                     (512 * 2**20, "512.0MiB"), (3 * 2**30, "3.0GiB")])
def test_bytes(n, text):
    assert bytes_h(n) == text


@pytest.mark.parametrize("s, text", [(None, "–"), (math.nan, "–"), (-3, "0s"), (59, "59s"), (61, "1m01s"),
                                     (7380, "2h03m"), (3 * 86400 + 4 * 3600, "3d04h")])
def test_duration(s, text):
    assert duration_h(s) == text


def test_clock_goes_past_a_day():
    assert clock_h(0) == "00:00:00"
    assert clock_h(90061) == "25:01:01"


def test_latency_marks_a_lower_bound():
    assert seconds_h(0.085) == "85ms"
    assert seconds_h(1.2) == "1.20s"
    assert seconds_h(2.0, lower_bound=True) == ">2.00s"
    assert seconds_h(None) == "–"


def test_percent_and_rate():
    assert percent_h(0.253, is_ratio=True) == "25.3%"
    assert percent_h(7.0) == "7.0%"
    assert percent_h(None) == "–"
    assert rate_h(12.345) == "12.3/s"
    assert rate_h(250.2) == "250/s"


def test_coarse_duration_drops_seconds_after_a_minute():
    assert duration_h(45, coarse=True) == "45s"
    assert duration_h(125, coarse=True) == "2m"
    assert duration_h(7380, coarse=True) == "2h03m"
