"""Fault names and parameter checking (the control API's 400s and --fault parsing)."""

from __future__ import annotations

import pytest

from x402console.drill.sim.faults import FAULT_NAMES, FaultError, normalize, parse_fault_arg


def test_the_agreed_fault_names() -> None:
    assert set(FAULT_NAMES) == {
        "crash", "hang", "error_ratio", "latency", "invalid_proofs", "db_corruption", "memory_leak", "vk_change",
    }


def test_defaults_are_filled_in() -> None:
    assert normalize("crash", {}) == {"exit_code": 2, "after_seconds": 0.0}
    assert normalize("latency", None) == {"seconds": 6.0, "jitter": 0.5}
    assert normalize("memory_leak", {"max_mb": 50}) == {"mb_per_second": 5.0, "max_mb": 50}
    assert normalize("db_corruption", {"pages": 2.0}) == {"pages": 2}


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("nope", {}, "unknown fault"),
        ("error_ratio", {"ratio": 1.5}, "between 0 and 1"),
        ("error_ratio", {"ratio": "0.3"}, "must be a number"),
        ("error_ratio", {"ratio": True}, "must be a number"),
        ("error_ratio", {"rate": 0.3}, "unknown parameter"),
        ("crash", {"exit_code": 2.5}, "must be an integer"),
        ("crash", {"exit_code": 300}, "between 0 and 255"),
        ("hang", {"x": 1}, "unknown parameter"),
        ("latency", [1, 2], "must be a JSON object"),
    ],
)
def test_bad_params_are_rejected(name: str, params: object, fragment: str) -> None:
    with pytest.raises(FaultError, match=fragment):
        normalize(name, params)


def test_parse_fault_arg() -> None:
    assert parse_fault_arg("hang") == ("hang", {})
    assert parse_fault_arg('error_ratio={"ratio": 0.5}') == ("error_ratio", {"ratio": 0.5})
    with pytest.raises(FaultError, match="not valid JSON"):
        parse_fault_arg("latency={seconds: 1}")
