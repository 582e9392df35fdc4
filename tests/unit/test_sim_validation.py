"""Binding (gin BindJSON + encoding/json) and validateProofRequest: order and messages."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from x402console.drill.payment import make_old_shape_request, make_request
from x402console.drill.sim.validation import BindError, bind_request, validate_request

NOW = 1_700_000_000


def good() -> dict[str, Any]:
    return make_request(random.Random(7), NOW)


def check(req: dict[str, Any]) -> str | None:
    bound = bind_request(json.dumps(req).encode())
    failed = validate_request(bound, NOW)
    return None if failed is None else failed[1]


def test_valid_request_passes() -> None:
    assert check(good()) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"minAmount": ""}, "minAmount is required"),
        ({"recipientKeyX": None}, "recipientKeyX is required"),  # null leaves the field empty
        ({"recipientKeyY": ""}, "recipientKeyY is required"),
        ({"actualAmount": ""}, "actualAmount is required"),
        ({"senderKeyX": ""}, "senderKeyX is required"),
        ({"senderKeyY": ""}, "senderKeyY is required"),
        ({"signatureR8x": ""}, "signatureR8x is required"),
        ({"signatureR8y": ""}, "signatureR8y is required"),
        ({"signatureS": ""}, "signatureS is required"),
        # required comes before length/numeric checks, in field order
        ({"signatureS": "", "minAmount": "x" * 101}, "signatureS is required"),
        ({"minAmount": "1" * 101}, "minAmount too long (max 100 chars)"),
        ({"recipientKeyX": "1" * 101}, "recipientKeyX too long (max 100 chars)"),
        ({"recipientKeyY": "é" * 51}, "recipientKeyY too long (max 100 chars)"),  # bytes, not chars
        ({"minAmount": "12a"}, "minAmount must be numeric"),
        ({"minAmount": "-5"}, "minAmount must be numeric"),
        ({"minAmount": "١٢"}, "minAmount must be numeric"),  # Arabic-Indic digits are not 0-9
        ({"actualAmount": "1.5"}, "actualAmount must be numeric"),
        ({"maxBlockAge": ""}, "maxBlockAge must be numeric"),  # not in the required list
        ({"minAmount": "0"}, "minAmount must be positive"),
        ({"actualAmount": "0"}, "actualAmount must be positive"),
        ({"currentTime": NOW - 301}, "currentTime must be within last 5 minutes"),
        ({"currentTime": NOW + 61}, "currentTime must be within last 5 minutes"),
        ({"paymentTime": NOW - 301}, "paymentTime must be within last 5 minutes"),
        ({"paymentTime": NOW + 30, "currentTime": NOW}, "paymentTime cannot be in the future"),
    ],
)
def test_validation_messages(changes: dict[str, Any], message: str) -> None:
    assert check({**good(), **changes}) == message


def test_missing_max_block_age_gives_numeric_message() -> None:
    req = good()
    del req["maxBlockAge"]
    assert check(req) == "maxBlockAge must be numeric"


@pytest.mark.parametrize("value", ["00", "007"])
def test_positive_check_only_catches_literal_zero(value: str) -> None:
    assert check({**good(), "minAmount": value}) is None


def test_window_edges_are_inclusive() -> None:
    assert check({**good(), "currentTime": NOW - 300, "paymentTime": NOW - 300}) is None
    assert check({**good(), "currentTime": NOW + 60, "paymentTime": NOW + 60}) is None


def test_old_shape_request_fails_on_recipient_key_x() -> None:
    assert check(make_old_shape_request(random.Random(1), NOW)) == "recipientKeyX is required"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "EOF"),
        (b"  \n", "EOF"),
        (b"{", "unexpected EOF"),
        (b'{"minAmount":"1"', "unexpected EOF"),
        (b"{bad", "invalid character 'b' looking for beginning of object key string"),
        (b"nope", "invalid character 'o' in literal null (expecting 'u')"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a":1 2}', "invalid character '2' after object key:value pair"),
        (b"[]", "json: cannot unmarshal array into Go value of type main.ProofRequest"),
        (b'"x"', "json: cannot unmarshal string into Go value of type main.ProofRequest"),
        (
            b'{"currentTime":"1700000000"}',
            "json: cannot unmarshal string into Go struct field ProofRequest.currentTime of type int64",
        ),
        (
            b'{"paymentTime":1.5}',
            "json: cannot unmarshal number 1.5 into Go struct field ProofRequest.paymentTime of type int64",
        ),
        (
            b'{"currentTime":99999999999999999999}',
            "json: cannot unmarshal number 99999999999999999999 into Go struct field ProofRequest.currentTime of type int64",
        ),
        (b'{"minAmount":1000}', "json: cannot unmarshal number into Go struct field ProofRequest.minAmount of type string"),
        (b'{"minAmount":true}', "json: cannot unmarshal bool into Go struct field ProofRequest.minAmount of type string"),
        (b"NaN", "invalid character 'N' looking for beginning of value"),
    ],
)
def test_bind_errors_read_like_go(body: bytes, error: str) -> None:
    with pytest.raises(BindError) as exc:
        bind_request(body)
    if error.startswith("invalid character 'o' in literal"):
        assert str(exc.value).startswith("invalid character")  # Go words literal typos its own way
    else:
        assert str(exc.value) == error


def test_bind_is_lenient_like_encoding_json() -> None:
    req = bind_request(b'{"MINAMOUNT":"5","minamount":"6","unknown":{"x":1},"currentTime":12} trailing garbage')
    assert req["minAmount"] == "6"  # case-insensitive match, last one wins
    assert req["currentTime"] == 12
    assert bind_request(b"null")["minAmount"] == ""
    assert bind_request(b'{"minAmount":"\\ud800"}')["minAmount"] == "\ufffd"


def test_deep_nesting_is_a_bind_error_not_a_crash() -> None:
    with pytest.raises(BindError):
        bind_request(b"[" * 100_000)
