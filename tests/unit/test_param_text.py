"""The action picker's parameter box: the main parameter as typed, or name=value pairs."""

from __future__ import annotations

import pytest

from x402console.actions.param_text import parse_param_text

NAMES = ("days", "batch_size", "wal")


@pytest.mark.parametrize("text, expected", [
    ("", {}),
    ("   ", {}),
    ("30", {"days": "30"}),
    ("wal=no", {"wal": "no"}),
    ("days=30  wal=no", {"days": "30", "wal": "no"}),
    (" batch_size=2000 ", {"batch_size": "2000"}),
])
def test_main_value_or_pairs(text: str, expected: dict) -> None:
    assert parse_param_text(text, NAMES) == expected


def test_text_that_only_looks_like_a_pair_stays_the_main_value() -> None:
    # a notify message: the first word is not a parameter name, so the whole text is the message
    names = ("message", "hook")
    assert parse_param_text("disk usage=95% on prover-1", names) == {"message": "disk usage=95% on prover-1"}
    assert parse_param_text("hook=ops", names) == {"hook": "ops"}


@pytest.mark.parametrize("text, error", [
    ("wal=no 30", "expected name=value, got '30'"),
    ("wal=no limit=5", "unknown parameter 'limit' (this action has: days, batch_size, wal)"),
    ("wal=no wal=yes", "wal is given twice"),
])
def test_malformed_pairs_are_refused_with_the_reason(text: str, error: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_param_text(text, NAMES)
    assert str(info.value) == error


def test_an_action_without_parameters_takes_nothing() -> None:
    assert parse_param_text("anything", ()) == {}
