"""The simulated payment proof request: its shape, its stand-in signature, and example requests.

The real prover verifies an EdDSA (BN254, MiMC) signature before proving. The simulator only has
to tell valid from invalid signatures the same way for the traffic generator and the prover, so
the signature here is a deterministic hash of the signed fields reduced into the BN254 scalar
field. It is not cryptography; it is a shared rule that both ends apply.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

# BN254 scalar field order: every field element in a real request is below it.
FIELD_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617

# Field order as ProofRequest declares it in the real prover (reference/x402-system.md 1.2).
REQUEST_FIELDS = (
    "minAmount",
    "recipientKeyX",
    "recipientKeyY",
    "maxBlockAge",
    "currentTime",
    "actualAmount",
    "senderKeyX",
    "senderKeyY",
    "paymentTime",
    "signatureR8x",
    "signatureR8y",
    "signatureS",
)


def _field_hash(text: str) -> str:
    return str(int(hashlib.sha256(text.encode()).hexdigest(), 16) % FIELD_MODULUS)


def signed_message(req: dict[str, Any]) -> str:
    return ":".join(
        str(req.get(k, ""))
        for k in (
            "actualAmount",
            "senderKeyX",
            "senderKeyY",
            "paymentTime",
            "minAmount",
            "recipientKeyX",
            "recipientKeyY",
        )
    )


def signature_for(req: dict[str, Any]) -> tuple[str, str, str]:
    """(R8x, R8y, S) that `check_signature` accepts for these fields."""
    msg = signed_message(req)
    r8x = _field_hash(msg + ":R8x")
    r8y = _field_hash(msg + ":R8y")
    s = _field_hash(f"{msg}:{r8x}:{r8y}")
    return r8x, r8y, s


def check_signature(req: dict[str, Any]) -> str | None:
    """None when the signature is valid, else the error text the prover reports."""
    for k in ("signatureR8x", "signatureR8y", "signatureS"):
        v = str(req.get(k, ""))
        if not v.isdigit() or int(v) >= FIELD_MODULUS:
            return f"signature verification error: {k} is not a field element"
    if (str(req["signatureR8x"]), str(req["signatureR8y"]), str(req["signatureS"])) != signature_for(req):
        return "invalid EdDSA signature"
    return None


def make_request(
    rng: random.Random | None = None,
    now: float | None = None,
    *,
    min_amount: int | None = None,
    actual_amount: int | None = None,
    recipient_pool: int = 8000,
) -> dict[str, Any]:
    """A request in the shape the real prover expects, correctly signed.

    The cache key is the public inputs only (reference 4.2), and minAmount follows the
    recipient here, so the pool size sets the hit rate: the cache keeps 1000 entries, and a
    pool of 8000 recipients gives about the 10-15 % hit rate the docs expect.
    """
    rng = rng or random.Random()
    now_s = int(time.time() if now is None else now)
    recipient = rng.randrange(recipient_pool)
    min_amt = min_amount if min_amount is not None else 1000 * (1 + recipient % 10)
    actual = actual_amount if actual_amount is not None else min_amt + rng.randrange(0, 5000)
    req: dict[str, Any] = {
        "minAmount": str(min_amt),
        "recipientKeyX": _field_hash(f"recipient:{recipient}:x"),
        "recipientKeyY": _field_hash(f"recipient:{recipient}:y"),
        "maxBlockAge": "150",
        "currentTime": now_s,
        "actualAmount": str(actual),
        "senderKeyX": _field_hash(f"sender:{rng.getrandbits(64)}:x"),
        "senderKeyY": _field_hash(f"sender:{rng.getrandbits(64)}:y"),
        "paymentTime": now_s - rng.randrange(0, 120),
    }
    req["signatureR8x"], req["signatureR8y"], req["signatureS"] = signature_for(req)
    return req


def make_old_shape_request(rng: random.Random | None = None, now: float | None = None) -> dict[str, Any]:
    """The shape the docs, SDK and tests send (recipientKey/senderKey/txHash/signature).

    The real prover answers 400 `recipientKeyX is required` to every one of these.
    """
    rng = rng or random.Random()
    now_s = int(time.time() if now is None else now)
    return {
        "minAmount": "1000",
        "recipientKey": f"{rng.getrandbits(128):032x}",
        "senderKey": f"{rng.getrandbits(128):032x}",
        "actualAmount": "1500",
        "txHash": f"{rng.getrandbits(256):064x}",
        "signature": f"{rng.getrandbits(256):064x}",
        "currentTime": now_s,
        "paymentTime": now_s - 5,
        "maxBlockAge": "150",
    }
