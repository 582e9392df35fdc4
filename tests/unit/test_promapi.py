"""Prometheus HTTP API answers (as documented) -> dataclasses; every bad shape -> PromAPIError."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from x402console.sources.promapi import (
    PromAPIError,
    parse_alerts,
    parse_envelope,
    parse_query_response,
    parse_sample_value,
    parse_targets,
)


def ok(data, **extra) -> dict:
    return {"status": "success", "data": data, **extra}


def test_vector_with_every_special_value() -> None:
    body = ok({
        "resultType": "vector",
        "result": [
            {"metric": {"instance": "prover-1"}, "value": [1700000000.123, "1"]},
            {"metric": {"instance": "prover-2"}, "value": [1700000000.123, "NaN"]},
            {"metric": {"instance": "prover-3"}, "value": [1700000000.123, "+Inf"]},
            {"metric": {"instance": "prover-4"}, "value": [1700000000.123, "-Inf"]},
            {"metric": {}, "value": [1700000000, "1e-07"]},
        ],
    })
    res = parse_query_response(body)
    assert res.result_type == "vector"
    values = [s.value for s in res.vector]
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == math.inf and values[3] == -math.inf
    assert values[4] == 1e-07
    assert res.vector[0].metric == {"instance": "prover-1"}
    assert res.vector[0].ts == 1700000000.123
    assert res.first_value() == 1.0
    assert res.notes == ()


def test_vector_native_histogram_is_skipped_with_a_note() -> None:
    body = ok({
        "resultType": "vector",
        "result": [
            {"metric": {"__name__": "h"}, "histogram": [1700000000, {"count": "3", "sum": "1.5", "buckets": [[0, "0", "1", "3"]]}]},
            {"metric": {"__name__": "x"}, "value": [1700000000, "2"]},
        ],
    })
    res = parse_query_response(body)
    assert [s.metric["__name__"] for s in res.vector] == ["x"]
    assert len(res.notes) == 1 and "histogram" in res.notes[0]


def test_matrix() -> None:
    body = ok({
        "resultType": "matrix",
        "result": [
            {"metric": {"job": "prover"}, "values": [[1700000000, "1"], [1700000015, "2.5"]]},
            {"metric": {"job": "native"}, "histograms": [[1700000000, {"count": "1", "sum": "1"}]]},
        ],
    })
    res = parse_query_response(body)
    assert res.result_type == "matrix"
    assert len(res.matrix) == 1
    assert res.matrix[0].values == ((1700000000.0, 1.0), (1700000015.0, 2.5))
    assert len(res.notes) == 1
    assert res.first_value() is None


def test_scalar_and_string() -> None:
    scalar = parse_query_response(ok({"resultType": "scalar", "result": [1700000000.5, "0.25"]}))
    assert scalar.scalar == (1700000000.5, 0.25)
    assert scalar.first_value() == 0.25
    string = parse_query_response(ok({"resultType": "string", "result": [1700000000, "hello"]}))
    assert string.string == (1700000000.0, "hello")


def test_warnings_and_infos_are_kept() -> None:
    body = ok({"resultType": "vector", "result": []}, warnings=["partial response"], infos=["PromQL info: x"])
    res = parse_query_response(body)
    assert res.warnings == ("partial response",)
    assert res.infos == ("PromQL info: x",)
    assert res.first_value() is None


@pytest.mark.parametrize(
    "status_code,error_type,message",
    [(400, "bad_data", 'invalid parameter "query": 1:5: parse error'),
     (422, "execution", "expanding series: too many samples"),
     (503, "timeout", "query timed out in expression evaluation")],
)
def test_error_envelopes(status_code: int, error_type: str, message: str) -> None:
    body = {"status": "error", "errorType": error_type, "error": message}
    with pytest.raises(PromAPIError) as info:
        parse_query_response(body, status_code)
    err = info.value
    assert (err.error_type, err.message, err.status_code) == (error_type, message, status_code)
    assert str(err) == f"Prometheus HTTP {status_code} {error_type}: {message}"


def test_error_without_details() -> None:
    with pytest.raises(PromAPIError) as info:
        parse_envelope({"status": "error"})
    assert info.value.error_type is None
    assert "without a message" in str(info.value)


MALFORMED = [
    ("not an object", ["status", "success"]),
    ("no status", {"data": {}}),
    ("odd status", {"status": "maybe", "data": {}}),
    ("no data", {"status": "success"}),
    ("data not object", ok([1, 2])),
    ("no resultType", ok({"result": []})),
    ("unknown resultType", ok({"resultType": "table", "result": []})),
    ("result not list", ok({"resultType": "vector", "result": {"a": 1}})),
    ("entry not object", ok({"resultType": "vector", "result": ["x"]})),
    ("metric not object", ok({"resultType": "vector", "result": [{"metric": [], "value": [1, "1"]}]})),
    ("label not string", ok({"resultType": "vector", "result": [{"metric": {"a": 1}, "value": [1, "1"]}]})),
    ("value not pair", ok({"resultType": "vector", "result": [{"metric": {}, "value": [1]}]})),
    ("value not number", ok({"resultType": "vector", "result": [{"metric": {}, "value": [1, "abc"]}]})),
    ("value null", ok({"resultType": "vector", "result": [{"metric": {}, "value": [1, None]}]})),
    ("timestamp bool", ok({"resultType": "vector", "result": [{"metric": {}, "value": [True, "1"]}]})),
    ("neither value nor histogram", ok({"resultType": "vector", "result": [{"metric": {}}]})),
    ("matrix values not list", ok({"resultType": "matrix", "result": [{"metric": {}, "values": "x"}]})),
    ("matrix point bad", ok({"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "1", 2]]}]})),
    ("scalar bad", ok({"resultType": "scalar", "result": "1"})),
    ("string not string", ok({"resultType": "string", "result": [1, 5]})),
    ("warnings not list", {"status": "success", "data": {"resultType": "vector", "result": []}, "warnings": "w"}),
]


@pytest.mark.parametrize("name,body", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_query_responses_raise_prom_api_error(name: str, body) -> None:
    with pytest.raises(PromAPIError) as info:
        parse_query_response(body, 200)
    assert info.value.status_code == 200
    assert str(info.value)


@pytest.mark.parametrize("text,expected", [("1", 1.0), ("1e-07", 1e-07), ("+Inf", math.inf), ("-Inf", -math.inf), (3, 3.0)])
def test_sample_values(text, expected) -> None:
    assert parse_sample_value(text) == expected


def test_sample_value_nan() -> None:
    assert math.isnan(parse_sample_value("NaN"))


# --- alerts ------------------------------------------------------------------------------------


def test_alerts() -> None:
    body = ok({"alerts": [
        {
            "labels": {"alertname": "HighErrorRate", "severity": "critical"},
            "annotations": {"summary": "error rate above 20%"},
            "state": "firing",
            "activeAt": "2025-11-15T10:30:00.60602144+02:00",
            "value": "2.5e-01",
        },
        {
            "labels": {"alertname": "ProverDown"},
            "annotations": {},
            "state": "pending",
            "activeAt": "2025-11-15T10:31:00Z",
            "value": "1e+00",
            "keepFiringSince": "2025-11-15T10:35:00Z",
        },
        {"labels": {"alertname": "Weird"}, "state": "firing", "value": "not-a-number"},
    ]})
    res = parse_alerts(body)
    first, second, third = res.alerts
    assert first.name == "HighErrorRate"
    assert first.state == "firing"
    assert first.value == 0.25 and first.value_text == "2.5e-01"
    assert first.active_at == datetime(2025, 11, 15, 8, 30, 0, 606021, tzinfo=timezone.utc)
    assert first.annotations["summary"] == "error rate above 20%"
    assert second.value == 1.0
    assert second.keep_firing_since == datetime(2025, 11, 15, 10, 35, tzinfo=timezone.utc)
    assert third.value is None and third.value_text == "not-a-number"
    assert third.active_at is None and third.annotations == {}


@pytest.mark.parametrize(
    "body",
    [ok({}), ok({"alerts": "x"}), ok([]), ok({"alerts": [1]}), ok({"alerts": [{"labels": {"a": ["x"]}}]})],
)
def test_malformed_alerts(body) -> None:
    with pytest.raises(PromAPIError):
        parse_alerts(body)


# --- targets -----------------------------------------------------------------------------------


def test_targets() -> None:
    body = ok({
        "activeTargets": [
            {
                "discoveredLabels": {"__address__": "127.0.0.1:8080", "job": "prover"},
                "labels": {"instance": "127.0.0.1:8080", "job": "prover"},
                "scrapePool": "prover",
                "scrapeUrl": "http://127.0.0.1:8080/metrics",
                "globalUrl": "http://host:8080/metrics",
                "lastError": "",
                "lastScrape": "2025-11-15T10:30:00.123456789Z",
                "lastScrapeDuration": 0.0506,
                "health": "up",
                "scrapeInterval": "15s",
                "scrapeTimeout": "10s",
            },
            {
                "labels": {"instance": "127.0.0.1:8081", "job": "prover"},
                "scrapeUrl": "http://127.0.0.1:8081/metrics",
                "lastError": 'Get "http://127.0.0.1:8081/metrics": dial tcp 127.0.0.1:8081: connect: connection refused',
                "lastScrape": "0001-01-01T00:00:00Z",
                "lastScrapeDuration": 50688943,
                "health": "down",
            },
            {"labels": {}, "scrapeUrl": "http://x/metrics", "lastScrapeDuration": "junk"},
        ],
        "droppedTargets": [{"discoveredLabels": {"__address__": "x"}}],
    })
    res = parse_targets(body)
    up, down, odd = res.active
    assert (up.health, up.scrape_url, up.last_error) == ("up", "http://127.0.0.1:8080/metrics", "")
    assert up.last_scrape == datetime(2025, 11, 15, 10, 30, 0, 123456, tzinfo=timezone.utc)
    assert up.last_scrape_duration == 0.0506
    assert up.scrape_interval == "15s" and up.discovered_labels["job"] == "prover"
    assert down.health == "down" and "connection refused" in down.last_error
    assert down.last_scrape is None  # Go's zero time: never scraped
    assert down.last_scrape_duration == 50688943.0
    assert odd.last_scrape_duration is None and odd.health == "unknown"
    assert res.dropped_count == 1


@pytest.mark.parametrize(
    "body",
    [ok([]), ok({"activeTargets": {}}), ok({"activeTargets": ["x"]}), ok({"activeTargets": [{"labels": "x"}]}),
     {"status": "error", "errorType": "internal", "error": "boom"}],
)
def test_malformed_targets(body) -> None:
    with pytest.raises(PromAPIError):
        parse_targets(body)


def test_empty_targets() -> None:
    res = parse_targets(ok({"activeTargets": [], "droppedTargets": []}))
    assert res.active == () and res.dropped_count == 0
