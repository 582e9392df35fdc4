"""The request mix the traffic generator sends: valid payments and each kind of bad request.

Every request carries what the real prover answers to it (reference 1.2, the first failing step
wins), so a drill can tell "the prover rejected bad input" from "the prover is broken".
- The prover's cache is consulted before the signature check and keys on minAmount, recipient
  key and maxBlockAge only. Valid requests draw recipients from payment.py's pool so the cache
  sees hits; bad-signature and below-minimum requests use a recipient of their own, because with a
  pool recipient they would soon be answered 200 from the cache and never reach the check they
  exist to exercise.
- actualAmount < minAmount passes validation and the signature check; the circuit's range
  constraint then fails inside groth16.Prove, which the prover reports as 500
  "proof generation failed".
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Callable

from x402console.drill.payment import FIELD_MODULUS, make_old_shape_request, make_request, signature_for

VALID = "valid"
ATTACK = "attack"

MALFORMED_JSON = "malformed_json"
STRING_CURRENT_TIME = "string_current_time"
MISSING_FIELD = "missing_field"
TOO_LONG = "too_long"
NON_NUMERIC = "non_numeric"
ZERO_AMOUNT = "zero_amount"
STALE_CURRENT_TIME = "stale_current_time"
FUTURE_PAYMENT_TIME = "future_payment_time"
BAD_SIGNATURE = "bad_signature"
AMOUNT_BELOW_MIN = "amount_below_min"
OLD_SHAPE = "old_shape"

INVALID_KINDS: tuple[str, ...] = (
    MALFORMED_JSON,
    STRING_CURRENT_TIME,
    MISSING_FIELD,
    TOO_LONG,
    NON_NUMERIC,
    ZERO_AMOUNT,
    STALE_CURRENT_TIME,
    FUTURE_PAYMENT_TIME,
    BAD_SIGNATURE,
    AMOUNT_BELOW_MIN,
    OLD_SHAPE,
)
ALL_KINDS: tuple[str, ...] = (VALID, ATTACK, *INVALID_KINDS)

# The fields each validation step of the prover looks at, in its check order (reference 1.2).
REQUIRED_FIELDS = (
    "minAmount",
    "recipientKeyX",
    "recipientKeyY",
    "actualAmount",
    "senderKeyX",
    "senderKeyY",
    "signatureR8x",
    "signatureR8y",
    "signatureS",
)
LENGTH_CHECKED_FIELDS = ("minAmount", "recipientKeyX", "recipientKeyY")
NUMERIC_FIELDS = ("minAmount", "actualAmount", "maxBlockAge")
POSITIVE_FIELDS = ("minAmount", "actualAmount")

BAD_FORMAT = "Invalid request format"
UNCACHED_POOL = 2**62  # recipients drawn from here practically never repeat


@dataclass(frozen=True)
class MixRequest:
    kind: str
    body: bytes
    expect_status: int
    expect_error: str | None  # the prover's {"error": ...} text; None for a 200


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _resign(req: dict[str, Any]) -> dict[str, Any]:
    req["signatureR8x"], req["signatureR8y"], req["signatureS"] = signature_for(req)
    return req


def _valid(rng: random.Random, now: float) -> MixRequest:
    return MixRequest(VALID, _encode(make_request(rng, now)), 200, None)


def _attack(rng: random.Random, now: float) -> MixRequest:
    # A flood of well-formed payments: only the rate limiter stands in its way.
    return MixRequest(ATTACK, _encode(make_request(rng, now)), 200, None)


def _malformed_json(rng: random.Random, now: float) -> MixRequest:
    text = json.dumps(make_request(rng, now), separators=(",", ":"))
    # Any proper prefix of a JSON object lacks its closing brace, so it never parses.
    cut = rng.randrange(1, len(text))
    return MixRequest(MALFORMED_JSON, text[:cut].encode(), 400, BAD_FORMAT)


def _string_current_time(rng: random.Random, now: float) -> MixRequest:
    req = make_request(rng, now)
    # Both times are int64 in ProofRequest; a JSON string there fails gin's bind.
    key = rng.choice(("currentTime", "paymentTime"))
    req[key] = str(req[key])
    return MixRequest(STRING_CURRENT_TIME, _encode(req), 400, BAD_FORMAT)


def _missing_field(rng: random.Random, now: float) -> MixRequest:
    req = make_request(rng, now)
    key = rng.choice((*REQUIRED_FIELDS, "maxBlockAge"))
    del req[key]
    # maxBlockAge is not in the required check; its numeric check rejects the empty value.
    err = "maxBlockAge must be numeric" if key == "maxBlockAge" else f"{key} is required"
    return MixRequest(MISSING_FIELD, _encode(req), 400, err)


def _too_long(rng: random.Random, now: float) -> MixRequest:
    req = make_request(rng, now)
    key = rng.choice(LENGTH_CHECKED_FIELDS)
    req[key] = "1" + "0" * rng.randrange(100, 140)  # digits, so no later check is the cause
    return MixRequest(TOO_LONG, _encode(req), 400, f"{key} too long (max 100 chars)")


def _non_numeric(rng: random.Random, now: float) -> MixRequest:
    req = make_request(rng, now)
    key = rng.choice(NUMERIC_FIELDS)
    req[key] = rng.choice(("12a5", "-5", "1.5", "1e3", " 100", "0x10", "abc", "٣"))
    return MixRequest(NON_NUMERIC, _encode(req), 400, f"{key} must be numeric")


def _zero_amount(rng: random.Random, now: float) -> MixRequest:
    req = make_request(rng, now)
    key = rng.choice(POSITIVE_FIELDS)
    req[key] = "0"  # only the literal "0" is caught by the prover
    return MixRequest(ZERO_AMOUNT, _encode(_resign(req)), 400, f"{key} must be positive")


def _stale_current_time(rng: random.Random, now: float) -> MixRequest:
    # Well past the 300 s window, so network delay cannot bring it back in.
    req = make_request(rng, now - rng.randrange(400, 3600))
    return MixRequest(STALE_CURRENT_TIME, _encode(req), 400, "currentTime must be within last 5 minutes")


def _future_payment_time(rng: random.Random, now: float) -> MixRequest:
    req = make_request(rng, now)
    # Within the +60 s window the time check allows, yet after currentTime.
    req["paymentTime"] = int(req["currentTime"]) + rng.randrange(5, 40)
    return MixRequest(
        FUTURE_PAYMENT_TIME, _encode(_resign(req)), 400, "paymentTime cannot be in the future"
    )


def _bad_signature(rng: random.Random, now: float) -> MixRequest:
    req = make_request(rng, now, recipient_pool=UNCACHED_POOL)
    variant = rng.randrange(3)
    if variant == 0:
        req["signatureS"] = str((int(req["signatureS"]) + 1 + rng.randrange(1000)) % FIELD_MODULUS)
        err = "invalid EdDSA signature"
    elif variant == 1:
        # Signed for one amount, sent with another: what a tampered payment looks like.
        req["actualAmount"] = str(int(req["actualAmount"]) + 1 + rng.randrange(1000))
        err = "invalid EdDSA signature"
    else:
        key = rng.choice(("signatureR8x", "signatureR8y", "signatureS"))
        req[key] = str(FIELD_MODULUS + rng.randrange(1000))
        err = f"signature verification error: {key} is not a field element"
    return MixRequest(BAD_SIGNATURE, _encode(req), 400, f"Invalid signature: {err}")


def _amount_below_min(rng: random.Random, now: float) -> MixRequest:
    min_amount = 1000 * (1 + rng.randrange(10))
    req = make_request(
        rng, now, min_amount=min_amount, actual_amount=rng.randrange(1, min_amount), recipient_pool=UNCACHED_POOL
    )
    return MixRequest(AMOUNT_BELOW_MIN, _encode(req), 500, "proof generation failed")


def _old_shape(rng: random.Random, now: float) -> MixRequest:
    return MixRequest(OLD_SHAPE, _encode(make_old_shape_request(rng, now)), 400, "recipientKeyX is required")


BUILDERS: dict[str, Callable[[random.Random, float], MixRequest]] = {
    VALID: _valid,
    ATTACK: _attack,
    MALFORMED_JSON: _malformed_json,
    STRING_CURRENT_TIME: _string_current_time,
    MISSING_FIELD: _missing_field,
    TOO_LONG: _too_long,
    NON_NUMERIC: _non_numeric,
    ZERO_AMOUNT: _zero_amount,
    STALE_CURRENT_TIME: _stale_current_time,
    FUTURE_PAYMENT_TIME: _future_payment_time,
    BAD_SIGNATURE: _bad_signature,
    AMOUNT_BELOW_MIN: _amount_below_min,
    OLD_SHAPE: _old_shape,
}


def build(kind: str, rng: random.Random, now: float) -> MixRequest:
    """One request of `kind`, built for the wall-clock time `now` (unix seconds)."""
    try:
        builder = BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown request kind {kind!r}; known: {', '.join(ALL_KINDS)}") from None
    return builder(rng, now)


class Mix:
    """Chooses each normal client's request: invalid with probability `invalid_ratio`,
    the invalid kind uniformly among INVALID_KINDS."""

    def __init__(self, invalid_ratio: float, rng: random.Random, kinds: tuple[str, ...] = INVALID_KINDS):
        if not 0.0 <= invalid_ratio <= 1.0:
            raise ValueError(f"invalid ratio must be between 0 and 1, got {invalid_ratio}")
        unknown = [k for k in kinds if k not in BUILDERS or k in (VALID, ATTACK)]
        if unknown or not kinds:
            raise ValueError(f"bad invalid kinds {unknown or kinds!r}")
        self.invalid_ratio = invalid_ratio
        self.rng = rng
        self.kinds = kinds

    def next_kind(self) -> str:
        if self.invalid_ratio > 0 and self.rng.random() < self.invalid_ratio:
            return self.rng.choice(self.kinds)
        return VALID

    def next(self, now: float) -> MixRequest:
        return build(self.next_kind(), self.rng, now)
