"""parse_exposition on the documented format, real client-library output, and bad input."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from x402console.sources.exposition import histogram_buckets, parse_exposition, parse_float, total, value, wanted_names

DOC_EXAMPLE = r"""# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"""


def test_documented_example() -> None:
    exp = parse_exposition(DOC_EXAMPLE)
    assert exp.errors == []
    assert set(exp.families) == {
        "http_requests_total", "msdos_file_access_time_seconds", "metric_without_timestamp_and_labels",
        "something_weird", "http_request_duration_seconds", "rpc_duration_seconds",
    }
    reqs = exp.families["http_requests_total"]
    assert (reqs.type, reqs.help) == ("counter", "The total number of HTTP requests.")
    assert value(reqs, {"code": "400"}) == 3
    assert reqs.samples[0].timestamp_ms == 1395066363000
    msdos = exp.families["msdos_file_access_time_seconds"].samples[0]
    assert msdos.labels == {"path": "C:\\DIR\\FILE.TXT", "error": 'Cannot find file:\n"FILE.TXT"'}
    assert msdos.value == 1.458255915e9
    assert exp.families["metric_without_timestamp_and_labels"].type == "untyped"
    weird = exp.families["something_weird"].samples[0]
    assert weird.value == math.inf and weird.timestamp_ms == -3982045
    hist = exp.families["http_request_duration_seconds"]
    assert hist.type == "histogram"
    assert {s.name for s in hist.samples} == {
        "http_request_duration_seconds_bucket", "http_request_duration_seconds_sum", "http_request_duration_seconds_count",
    }
    assert histogram_buckets(hist) == [
        (0.05, 24054), (0.1, 33444), (0.2, 100392), (0.5, 129389), (1.0, 133988), (math.inf, 144320),
    ]
    assert value(hist) == 144320  # a histogram's own value is its count
    assert value(hist, sample_name="http_request_duration_seconds_sum") == 53423
    summary = exp.families["rpc_duration_seconds"]
    assert summary.type == "summary"
    assert value(summary, {"quantile": "0.99"}) == 76656
    assert exp.value("rpc_duration_seconds_count") == 2693


def _prover_registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    hist = Histogram(
        "proof_generation_duration_seconds", "Time taken to generate a proof",
        buckets=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2), registry=reg,
    )
    for seconds in (0.04, 0.12, 0.12, 0.25, 0.7, 1.5, 3.0, 9.0):
        hist.observe(seconds)
    proofs = Counter("proof_generation", "Total number of proofs generated", registry=reg)
    proofs.inc(42)
    limited = Counter("rate_limit_exceeded", "Number of rate limit violations by IP", ["ip"], registry=reg)
    limited.labels(ip="203.0.113.7").inc(5)
    limited.labels(ip='we"ird\\ip\n').inc(2)
    Gauge("active_requests", "Number of requests currently being processed", registry=reg).set(3)
    return reg


def test_real_client_library_text_output() -> None:
    exp = parse_exposition(generate_latest(_prover_registry()))
    assert exp.errors == []
    assert not exp.openmetrics
    hist = exp.family("proof_generation_duration_seconds")
    assert hist is not None and hist.type == "histogram"
    assert hist.help == "Time taken to generate a proof"
    assert histogram_buckets(hist) == [
        (0.05, 1), (0.1, 1), (0.15, 3), (0.2, 3), (0.3, 4), (0.5, 4), (1.0, 5), (2.0, 6), (math.inf, 8),
    ]
    assert exp.value("proof_generation_total") == 42
    assert exp.value("active_requests") == 3
    limited = exp.family("rate_limit_exceeded_total")
    assert value(limited, {"ip": "203.0.113.7"}) == 5
    assert value(limited, {"ip": 'we"ird\\ip\n'}) == 2
    assert total(limited) == 7
    # prometheus_client also exports *_created gauges; they must not be mixed into the counter
    assert value(limited, {"ip": "nobody"}) is None


def test_real_client_library_openmetrics_output() -> None:
    body = generate_openmetrics(_prover_registry())
    exp = parse_exposition(body, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert exp.openmetrics
    assert exp.errors == []
    proofs = exp.family("proof_generation")
    assert proofs is not None and proofs.type == "counter"
    assert exp.value("proof_generation_total") == 42
    assert exp.family("proof_generation_total") is proofs
    created = [s for s in proofs.samples if s.name == "proof_generation_created"]
    assert len(created) == 1 and created[0].value > 1e9
    assert histogram_buckets(exp.family("proof_generation_duration_seconds"))[-1] == (math.inf, 8)


def test_openmetrics_detected_from_eof_and_timestamps_are_seconds() -> None:
    exp = parse_exposition("# TYPE up gauge\nup 1 1700000000.5\n# EOF\n")
    assert exp.openmetrics and exp.errors == []
    assert exp.families["up"].samples[0].timestamp_ms == 1_700_000_000_500


def test_openmetrics_without_eof_is_reported() -> None:
    exp = parse_exposition("# TYPE up gauge\nup 1\n", "application/openmetrics-text")
    assert [str(e) for e in exp.errors] == ["OpenMetrics exposition does not end with # EOF"]
    assert exp.value("up") == 1


def test_openmetrics_unknown_type_and_unit_and_exemplar() -> None:
    text = (
        "# TYPE foo unknown\nfoo 1\n"
        "# TYPE req_seconds histogram\n# UNIT req_seconds seconds\n"
        'req_seconds_bucket{le="0.5"} 3 # {trace_id="abc"} 0.4 1700000000.1\n'
        'req_seconds_bucket{le="+Inf"} 4\nreq_seconds_count 4\nreq_seconds_sum 1.2\n# EOF\n'
    )
    exp = parse_exposition(text)
    assert exp.errors == []
    assert exp.families["foo"].type == "untyped"
    fam = exp.families["req_seconds"]
    assert fam.unit == "seconds"
    assert histogram_buckets(fam) == [(0.5, 3), (math.inf, 4)]


@pytest.mark.parametrize(
    "text,expected",
    [("NaN", "nan"), ("Nan", "nan"), ("nan", "nan"), ("+Inf", math.inf), ("-Inf", -math.inf), ("+inf", math.inf),
     ("-INF", -math.inf), ("Inf", math.inf), ("1e-07", 1e-07), ("-0.5", -0.5), (".5", 0.5), ("1E3", 1000.0)],
)
def test_special_values(text: str, expected) -> None:
    exp = parse_exposition(f"m {text}\n")
    assert exp.errors == []
    got = exp.value("m")
    if expected == "nan":
        assert math.isnan(got)
    else:
        assert got == expected


@pytest.mark.parametrize("bad", ["1_000", "0x10", "one", "1.2.3", "--1", "", "inf1"])
def test_parse_float_rejects_what_go_rejects(bad: str) -> None:
    assert parse_float(bad) is None


def test_trailing_comma_and_spacing_in_labels() -> None:
    exp = parse_exposition('m{a="1",b="2",} 5\nn{ a = "x" , } 6\no{} 7\n')
    assert exp.errors == []
    assert exp.families["m"].samples[0].labels == {"a": "1", "b": "2"}
    assert exp.families["n"].samples[0].labels == {"a": "x"}
    assert exp.value("o") == 7


def test_help_escapes_only_backslash_and_newline() -> None:
    exp = parse_exposition('# HELP m A \\\\ back\\nslash and \\"quote\\"\n# TYPE m gauge\nm 1\n')
    assert exp.families["m"].help == 'A \\ back\nslash and \\"quote\\"'


def test_quoted_utf8_metric_name() -> None:
    exp = parse_exposition('{"my.metric", code="200"} 4\n')
    assert exp.errors == []
    assert exp.families["my.metric"].samples[0].labels == {"code": "200"}


def test_duplicate_type_is_an_error_and_parsing_continues() -> None:
    exp = parse_exposition("# TYPE a counter\n# TYPE a gauge\na 1\nb 2\n")
    assert [(e.line, e.message) for e in exp.errors] == [(2, "duplicate TYPE for a")]
    assert exp.families["a"].type == "counter"
    assert exp.value("b") == 2


def test_duplicate_help_and_late_type_are_errors() -> None:
    exp = parse_exposition("# HELP a x\n# HELP a y\na 1\n# TYPE a gauge\n")
    assert [e.line for e in exp.errors] == [2, 4]
    assert exp.families["a"].help == "x"


def test_malformed_lines_are_collected_with_line_numbers() -> None:
    text = "\n".join([
        "good 1",                      # 1
        "bad{a=\"1\" 2",               # 2 unterminated label set
        "bad2{a=1} 2",                 # 3 unquoted value
        "bad3 notanumber",             # 4
        "bad4",                        # 5 missing value
        "bad5 1 2 3",                  # 6 too many fields
        "bad6 1 1.5",                  # 7 non-integer timestamp in 0.0.4
        "9bad 1",                      # 8 invalid name
        'bad7{a="1",a="2"} 1',         # 9 duplicate label
        'bad8{a="unterminated} 1',     # 10
        "# TYPE weird sometype",       # 11
        "good2 2",                     # 12
    ]) + "\n"
    exp = parse_exposition(text)
    assert [e.line for e in exp.errors] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert exp.value("good") == 1 and exp.value("good2") == 2
    assert all(str(e).startswith(f"line {e.line}: ") for e in exp.errors)


def test_histogram_problems_are_reported() -> None:
    no_inf = parse_exposition('# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\n')
    assert any("+Inf" in e.message for e in no_inf.errors)
    order = parse_exposition('# TYPE h histogram\nh_bucket{le="2"} 2\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n')
    assert any("increasing le order" in e.message for e in order.errors)
    mismatch = parse_exposition('# TYPE h histogram\nh_bucket{le="+Inf"} 3\nh_count 4\n')
    assert any("differs from _count" in e.message for e in mismatch.errors)
    decreasing = parse_exposition('# TYPE h histogram\nh_bucket{le="1"} 5\nh_bucket{le="+Inf"} 3\n')
    assert any("decrease" in e.message for e in decreasing.errors)
    bad_le = parse_exposition('# TYPE h histogram\nh_bucket{le="x"} 5\nh_bucket{le="+Inf"} 5\n')
    assert any("le label" in e.message for e in bad_le.errors)


def test_histograms_with_labels_are_summed_or_selected() -> None:
    text = (
        "# TYPE h histogram\n"
        'h_bucket{instance="a",le="1"} 1\nh_bucket{instance="a",le="+Inf"} 2\n'
        'h_bucket{instance="b",le="1"} 3\nh_bucket{instance="b",le="+Inf"} 5\n'
    )
    fam = parse_exposition(text).families["h"]
    assert histogram_buckets(fam) == [(1.0, 4), (math.inf, 7)]
    assert histogram_buckets(fam, {"instance": "b"}) == [(1.0, 3), (math.inf, 5)]
    assert histogram_buckets(None) == []


def test_size_cap() -> None:
    text = "".join(f"m{i} {i}\n" for i in range(1000))
    exp = parse_exposition(text, max_bytes=100)
    assert exp.truncated
    assert len(exp.families) < 1000 and "m0" in exp.families
    assert any("larger than 100 bytes" in e.message for e in exp.errors)
    exp_bytes = parse_exposition(text.encode(), max_bytes=100)
    assert exp_bytes.truncated and set(exp_bytes.families) == set(exp.families)


def test_line_cap() -> None:
    text = "".join(f"m{i} {i}\n" for i in range(100))
    exp = parse_exposition(text, max_lines=10)
    assert exp.truncated
    assert len(exp.families) == 10
    assert any("more than 10 lines" in e.message for e in exp.errors)


def test_error_list_is_bounded() -> None:
    exp = parse_exposition("x y z w\n" * 5000)
    assert len(exp.errors) <= 1001


def test_crlf_bytes_and_garbage_never_raise() -> None:
    exp = parse_exposition(b"# TYPE up gauge\r\nup 1\r\n\xff\xfe garbage\r\n")
    assert exp.value("up") == 1
    assert len(exp.errors) == 1
    for junk in ("{", "}", '{"', "m{", 'm{a="', "m{a", "m{a=", "#", "# TYPE", "# HELP", "\x00", "m{,} 1", "{} 1"):
        parse_exposition(junk + "\n")


def test_empty_input() -> None:
    exp = parse_exposition("")
    assert exp.families == {} and exp.errors == []
    assert exp.value("anything") is None


def test_non_contiguous_family_is_reported() -> None:
    exp = parse_exposition("# TYPE a gauge\na 1\nb 2\na{x=\"1\"} 3\n")
    assert [e.line for e in exp.errors] == [4]
    assert len(exp.families["a"].samples) == 2


def test_duplicate_sample_is_reported() -> None:
    exp = parse_exposition('a{x="1"} 1\na{x="1"} 2\n')
    assert [e.line for e in exp.errors] == [2]


# --- parsing only the families a reader wants ----------------------------------------------


def _busy_registry() -> CollectorRegistry:
    """The prover's families among others a reader skips (a Go page is mostly runtime)."""
    reg = _prover_registry()
    Gauge("go_goroutines", "Number of goroutines that currently exist.", registry=reg).set(12)
    Histogram("proof_verification_duration_seconds", "Time taken to verify a proof", registry=reg).observe(0.01)
    Counter("promhttp_metric_handler_requests", "Total scrapes", ["code"], registry=reg).labels(code="200").inc(9)
    return reg


@pytest.mark.parametrize("openmetrics", [False, True])
def test_only_keeps_the_wanted_families_whole(openmetrics: bool) -> None:
    if openmetrics:
        body, ctype = generate_openmetrics(_busy_registry()), "application/openmetrics-text; version=1.0.0"
    else:
        body, ctype = generate_latest(_busy_registry()), None
    wanted = ("proof_generation_total", "proof_generation_duration_seconds", "rate_limit_exceeded_total", "active_requests")
    full = parse_exposition(body, ctype)
    part = parse_exposition(body, ctype, only=wanted_names(wanted))
    assert part.errors == [] and part.openmetrics == openmetrics
    for name in wanted:
        a, b = full.family(name), part.family(name)
        assert b is not None and (b.name, b.type, b.help) == (a.name, a.type, a.help), name
        assert [(s.name, s.labels, s.value) for s in b.samples] == [(s.name, s.labels, s.value) for s in a.samples]
    for skipped in ("go_goroutines", "proof_verification_duration_seconds", "promhttp_metric_handler_requests_total"):
        assert full.family(skipped) is not None and part.family(skipped) is None, skipped
    assert part.value("proof_generation_total") == 42 and part.value("active_requests") == 3


def test_only_reports_problems_of_kept_families_and_skips_the_rest_unread() -> None:
    body = (
        "# TYPE go_goroutines gauge\n"
        "go_goroutines{broken 12\n"                     # skipped: not reported
        "# TYPE active_requests gauge\n"
        "active_requests 3\n"
        "active_requests 4\n"                           # kept: duplicate reported
        "proof_generation_total not-a-number\n"         # kept: reported
    )
    part = parse_exposition(body, only=wanted_names(["active_requests", "proof_generation_total"]))
    assert [i.line for i in part.errors] == [5, 6]
    assert parse_exposition(body).errors[0].line == 2  # the full parse does see line 2
    assert part.value("active_requests") == 3


def test_wanted_names_cover_both_counter_styles() -> None:
    keep = wanted_names(["proof_generation_total"])
    # 0.0.4: TYPE proof_generation_total counter; OpenMetrics: TYPE proof_generation counter
    assert {"proof_generation_total", "proof_generation", "proof_generation_created"} <= keep
    assert "proof_generation_errors_total" not in keep


def test_scrape_reading_is_the_same_filtered_or_not() -> None:
    from x402console.settings.model import MetricNames
    from x402console.sources.scrape import read_exposition, read_names

    names = MetricNames()
    for body, ctype in ((generate_latest(_busy_registry()), None),
                        (generate_openmetrics(_busy_registry()), "application/openmetrics-text; version=1.0.0")):
        full = read_exposition(parse_exposition(body, ctype), names)
        part = read_exposition(parse_exposition(body, ctype, only=read_names(names)), names)
        assert part == full and part.counters and part.buckets


def test_only_still_reports_lines_of_no_declared_family() -> None:
    """Skipping is for families the page declares; garbage (an HTML error page served with
    200, a broken line after a wanted family) is parsed and reported as without the filter."""
    only = wanted_names(["proof_generation_total", "active_requests"])
    body = (
        "# TYPE proof_generation_total counter\nproof_generation_total 10\n"
        "this is { not a sample\n"
        "# HELP go_threads Number of OS threads.\n# TYPE go_threads gauge\n"
        "# a comment inside the skipped family\n"
        "go_threads 7\n"
        "# TYPE active_requests gauge\nactive_requests 2\n"
    )
    part = parse_exposition(body, only=only)
    assert [i.line for i in part.errors] == [3] and part.value("proof_generation_total") == 10
    assert part.family("go_threads") is None and part.value("active_requests") == 2
    html = parse_exposition("<html><body>502 Bad Gateway</body></html>\n", only=only)
    assert html.errors and not html.families
