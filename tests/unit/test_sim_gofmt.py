"""Go's text formats the simulator reproduces: durations, %#v strings, gin lines, logrus JSON."""

from __future__ import annotations

import json
import re

import pytest

from x402console.drill.sim.gofmt import go_duration, go_json, go_quote, rfc3339
from x402console.drill.sim.logs import gin_access_line, logrus_json_line


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1_000, "1µs"),
        (1_500, "1.5µs"),
        (184_975, "184.975µs"),
        (1_000_000, "1ms"),
        (1_234_567, "1.234567ms"),
        (56_246_127, "56.246127ms"),
        (999_999_999, "999.999999ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (6_123_456_789, "6.123456789s"),
        (60_000_000_000, "1m0s"),
        (61_500_000_000, "1m1.5s"),
        (3_723_000_000_000, "1h2m3s"),
        (-1_500_000, "-1.5ms"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


@pytest.mark.parametrize(
    ("s", "quoted"),
    [
        ("/generate-proof", '"/generate-proof"'),
        ('/a"b\\c', '"/a\\"b\\\\c"'),
        ("/x\ny\t", '"/x\\ny\\t"'),
        ("/\x01", '"/\\x01"'),
        ("/café", '"/café"'),
        ("/\u200b", '"/\\u200b"'),
        ("/" + b"\xff".decode("utf-8", "surrogateescape"), '"/\\xff"'),
    ],
)
def test_go_quote(s: str, quoted: str) -> None:
    assert go_quote(s) == quoted


def test_gin_line_layout_matches_the_reference_example() -> None:
    line = gin_access_line("2006/01/02 - 15:04:05", 200, 1_234_567, "127.0.0.1", "POST", "/generate-proof")
    assert line == '[GIN] 2006/01/02 - 15:04:05 | 200 |    1.234567ms |       127.0.0.1 | POST     "/generate-proof"\n'
    fields = line.split("|")
    assert [len(f) for f in fields[1:4]] == [5, 15, 17]  # " %3d ", " %13v ", " %15s "


def test_gin_line_widths_and_long_values() -> None:
    line = gin_access_line("2006/01/02 - 15:04:05", 429, 850_000, "2001:db8:aaaa:bbbb::1", "OPTIONS", "/h?x=1")
    assert line == (
        '[GIN] 2006/01/02 - 15:04:05 | 429 |         850µs | 2001:db8:aaaa:bbbb::1 | OPTIONS  "/h?x=1"\n'
    )
    slow = gin_access_line("2006/01/02 - 15:04:05", 200, 61_987_654_321, "1.2.3.4", "GET", "/")
    assert "|          1m1s |" in slow  # over a minute gin truncates to seconds


def test_logrus_json_shape() -> None:
    line = logrus_json_line(
        "warning", "Rate limit exceeded", {"client_ip": "1.2.3.4", "operation": "rate_limit"}, "2025-11-15T10:30:00Z"
    )
    assert line == (
        '{"client_ip":"1.2.3.4","level":"warning","message":"Rate limit exceeded",'
        '"operation":"rate_limit","timestamp":"2025-11-15T10:30:00Z"}\n'
    )
    entry = json.loads(line)
    assert list(entry) == sorted(entry)


def test_go_json_escapes_html_and_keeps_unicode() -> None:
    assert go_json({"b": "<a&b>", "a": "é"}, sort_keys=True) == '{"a":"é","b":"\\u003ca\\u0026b\\u003e"}'
    assert go_json({"z": 1, "a": [1, "x"]}) == '{"z":1,"a":[1,"x"]}'


def test_rfc3339_shape() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", rfc3339())
