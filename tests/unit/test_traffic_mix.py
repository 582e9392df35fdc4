"""Every kind of request in the traffic mix gets the answer the real prover rules give it.

`prover_verdict` below is written from reference/x402-system.md 1.2 (processing order, first
failing step wins), independently of the mix module, and the table of expected messages is
copied from there too.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from x402console.drill import traffic_mix as tm
from x402console.drill.payment import check_signature

NOW = 1_760_000_000.0

REQUIRED = ("minAmount", "recipientKeyX", "recipientKeyY", "actualAmount", "senderKeyX", "senderKeyY",
            "signatureR8x", "signatureR8y", "signatureS")
STRING_FIELDS = ("minAmount", "recipientKeyX", "recipientKeyY", "maxBlockAge", "actualAmount",
                 "senderKeyX", "senderKeyY", "signatureR8x", "signatureR8y", "signatureS")
INT_FIELDS = ("currentTime", "paymentTime")
DIGITS = re.compile(r"[0-9]+")


def prover_verdict(body: bytes, now: float) -> tuple[int, str | None]:
    """(status, error text) the real prover gives on a cache miss, per reference 1.2."""
    # 1. gin's JSON bind into ProofRequest (strings and int64s; unknown keys ignored)
    try:
        req = json.loads(body)
    except ValueError:
        return 400, "Invalid request format"
    if not isinstance(req, dict):
        return 400, "Invalid request format"
    for k in INT_FIELDS:
        if k in req and (not isinstance(req[k], int) or isinstance(req[k], bool)):
            return 400, "Invalid request format"
    for k in STRING_FIELDS:
        if k in req and not isinstance(req[k], str):
            return 400, "Invalid request format"
    get = lambda k: req.get(k, "")  # noqa: E731 - Go zero value for a missing string
    # 2. validateProofRequest, in check order
    for k in REQUIRED:
        if get(k) == "":
            return 400, f"{k} is required"
    for k in ("minAmount", "recipientKeyX", "recipientKeyY"):
        if len(get(k)) > 100:
            return 400, f"{k} too long (max 100 chars)"
    for k in ("minAmount", "actualAmount", "maxBlockAge"):
        if not DIGITS.fullmatch(get(k)):
            return 400, f"{k} must be numeric"
    for k in ("minAmount", "actualAmount"):
        if get(k) == "0":
            return 400, f"{k} must be positive"
    current, payment = req.get("currentTime", 0), req.get("paymentTime", 0)
    if not now - 300 <= current <= now + 60:
        return 400, "currentTime must be within last 5 minutes"
    if not now - 300 <= payment <= now + 60:
        return 400, "paymentTime must be within last 5 minutes"
    if payment > current:
        return 400, "paymentTime cannot be in the future"
    # 5. signature pre-check
    err = check_signature(req)
    if err is not None:
        return 400, f"Invalid signature: {err}"
    # 7. the circuit's actualAmount >= minAmount constraint fails inside groth16.Prove
    if int(get("actualAmount")) < int(get("minAmount")):
        return 500, "proof generation failed"
    return 200, None


# The messages each kind may produce (reference 1.2), with the status.
EXPECTED: dict[str, tuple[int, set[str | None]]] = {
    tm.VALID: (200, {None}),
    tm.ATTACK: (200, {None}),
    tm.MALFORMED_JSON: (400, {"Invalid request format"}),
    tm.STRING_CURRENT_TIME: (400, {"Invalid request format"}),
    tm.MISSING_FIELD: (400, {f"{k} is required" for k in REQUIRED} | {"maxBlockAge must be numeric"}),
    tm.TOO_LONG: (400, {f"{k} too long (max 100 chars)" for k in ("minAmount", "recipientKeyX", "recipientKeyY")}),
    tm.NON_NUMERIC: (400, {f"{k} must be numeric" for k in ("minAmount", "actualAmount", "maxBlockAge")}),
    tm.ZERO_AMOUNT: (400, {"minAmount must be positive", "actualAmount must be positive"}),
    tm.STALE_CURRENT_TIME: (400, {"currentTime must be within last 5 minutes"}),
    tm.FUTURE_PAYMENT_TIME: (400, {"paymentTime cannot be in the future"}),
    tm.BAD_SIGNATURE: (400, {"Invalid signature: invalid EdDSA signature"}
                       | {f"Invalid signature: signature verification error: {k} is not a field element"
                          for k in ("signatureR8x", "signatureR8y", "signatureS")}),
    tm.AMOUNT_BELOW_MIN: (500, {"proof generation failed"}),
    tm.OLD_SHAPE: (400, {"recipientKeyX is required"}),
}


def test_table_covers_every_kind() -> None:
    assert set(EXPECTED) == set(tm.ALL_KINDS)
    assert set(tm.INVALID_KINDS) == set(tm.ALL_KINDS) - {tm.VALID, tm.ATTACK}


@pytest.mark.parametrize("kind", tm.ALL_KINDS)
def test_kind_gets_expected_prover_answer(kind: str) -> None:
    status, messages = EXPECTED[kind]
    rng = random.Random(kind)
    seen: set[str | None] = set()
    for i in range(300):
        # The prover answers a moment later than the request was built.
        req = tm.build(kind, rng, NOW)
        verdict = prover_verdict(req.body, NOW + (i % 3))
        assert verdict[0] == status, (kind, req.body, verdict)
        assert verdict[1] in messages, (kind, req.body, verdict)
        assert (req.expect_status, req.expect_error) == verdict, (kind, req.body)
        assert req.kind == kind
        seen.add(verdict[1])
    # Every variant of the kind turns up, so each prover check gets exercised.
    assert seen == messages


def test_valid_requests_pass_the_signature_check_and_vary() -> None:
    rng = random.Random(1)
    bodies = [json.loads(tm.build(tm.VALID, rng, NOW).body) for _ in range(50)]
    assert all(check_signature(b) is None for b in bodies)
    assert len({b["senderKeyX"] for b in bodies}) == 50


def test_mix_ratio_and_spread() -> None:
    mix = tm.Mix(0.25, random.Random(7))
    kinds = [mix.next_kind() for _ in range(8000)]
    invalid = [k for k in kinds if k != tm.VALID]
    assert 1700 <= len(invalid) <= 2300
    counts = {k: invalid.count(k) for k in tm.INVALID_KINDS}
    assert min(counts.values()) > 0.5 * len(invalid) / len(tm.INVALID_KINDS)


def test_mix_extremes() -> None:
    assert {tm.Mix(0.0, random.Random(1)).next_kind() for _ in range(500)} == {tm.VALID}
    assert tm.VALID not in {tm.Mix(1.0, random.Random(1)).next_kind() for _ in range(500)}
    only = tm.Mix(1.0, random.Random(1), (tm.OLD_SHAPE,))
    assert {only.next(NOW).kind for _ in range(20)} == {tm.OLD_SHAPE}


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_mix_refuses_bad_ratio(ratio: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        tm.Mix(ratio, random.Random(1))


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown request kind 'nope'"):
        tm.build("nope", random.Random(1), NOW)


def cache_key(body: bytes) -> tuple[str, str, str, str]:
    req = json.loads(body)
    return req["minAmount"], req["recipientKeyX"], req["recipientKeyY"], req["maxBlockAge"]


@pytest.mark.parametrize("kind", [tm.BAD_SIGNATURE, tm.AMOUNT_BELOW_MIN])
def test_kinds_checked_after_the_cache_miss_it(kind: str) -> None:
    # The prover answers from its cache (keyed on public inputs) before checking the signature
    # or proving; these kinds must not share a key with valid traffic, or they would get 200s.
    rng = random.Random(3)
    valid_keys = {cache_key(tm.build(tm.VALID, rng, NOW).body) for _ in range(2000)}
    assert len(valid_keys) < 2000  # valid traffic does repeat public inputs: the cache gets hits
    keys = [cache_key(tm.build(kind, rng, NOW).body) for _ in range(500)]
    assert not set(keys) & valid_keys and len(set(keys)) == 500
