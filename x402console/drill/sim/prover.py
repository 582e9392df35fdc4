"""The simulated Groth16 prove and verify steps.

Nothing here is cryptography. It keeps the observable behaviour of gnark's prover:
- the witness is built from the request with big.Int parsing (non-numbers fail);
- proving fails when a circuit constraint does not hold (actualAmount < minAmount, or the payment
  is older than maxBlockAge);
- a proof is a randomized set of curve-point coordinates, JSON-encoded like gnark's bn254 Proof;
- self-verification recomputes a binding of the proof to the verification key file on disk and
  the public inputs, so a changed vk or a tampered proof fails with gnark's pairing error.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from typing import Any

from x402console.drill.payment import FIELD_MODULUS, REQUEST_FIELDS
from x402console.drill.sim.keys import BASE_FIELD, KeyPair, VkFile

# The witness takes the fields in ProofRequest order.
WITNESS_ORDER = REQUEST_FIELDS
PAIRING_ERROR = "pairing doesn't match"
PROVE_SECONDS = (0.040, 0.150)
VERIFY_SECONDS = (0.001, 0.004)  # plus scheduling: the observed 1-5 ms of a gnark verify
# work done by the msm stand-in: enough to show up in a CPU profile, small next to the sleep
_HASH_ROUNDS = 1500


class WitnessError(Exception):
    pass


def _big_int(text: str) -> int:
    """big.Int.SetString(s, 0), as gnark assigns string values to circuit variables."""
    if re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|[1-9][0-9_]*|0)", text):
        return int(text.replace("_", ""), 0)
    if re.fullmatch(r"[+-]?0[0-7]+", text):
        return int(text, 8)
    raise WitnessError(f"unable to set big.Int from string {text}")


def build_witness(req: dict[str, Any]) -> dict[str, int]:
    return {name: _big_int(str(req[name])) % FIELD_MODULUS for name in WITNESS_ORDER}


def unsatisfied_constraint(w: dict[str, int]) -> str | None:
    """gnark's solver error for the first failing assertion of PaymentCircuit.Define."""
    if w["minAmount"] > w["actualAmount"]:
        return (
            "constraint #1204 is not satisfied: [assertIsLessOrEqual] "
            f"{w['minAmount']} <= {w['actualAmount']} does not hold"
        )
    age = (w["currentTime"] - w["paymentTime"]) % FIELD_MODULUS
    if age > w["maxBlockAge"]:
        return f"constraint #1531 is not satisfied: [assertIsLessOrEqual] {age} <= {w['maxBlockAge']} does not hold"
    return None


def _fe(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha256(b"|".join(parts)).digest(), "big") % BASE_FIELD


def _elt(v: int) -> int | str:
    # gnark-crypto's fp.Element.MarshalJSON: bare number up to 15 digits, else a quoted string
    s = str(v)
    return v if len(s) <= 15 else s


def public_inputs(req: dict[str, Any]) -> list[str]:
    return [req["minAmount"], req["recipientKeyX"], req["recipientKeyY"], req["maxBlockAge"], str(req["currentTime"])]


class ProvingSystem:
    def __init__(self, keys: KeyPair, rng: random.Random | None = None) -> None:
        self.keys = keys
        self.vk = VkFile(keys.vk_path, keys.vk_sha256)
        self.rng = rng or random.Random()

    def prove_seconds(self) -> float:
        return self.rng.uniform(*PROVE_SECONDS)

    def verify_seconds(self) -> float:
        return self.rng.uniform(*VERIFY_SECONDS)

    @staticmethod
    def _binding(vk_sha: str, public: list[str], ar: tuple[int, int], bs: tuple[int, ...]) -> int:
        return _fe(b"Krs", vk_sha.encode(), ":".join(public).encode(), *(str(v).encode() for v in (*ar, *bs)))

    def prove(self, public: list[str], w: dict[str, int]) -> dict[str, Any]:
        """Proof coordinates; Ar/Bs are randomized like a real Groth16 proof (r, s blinding)."""
        nonce = os.urandom(32)
        digest = nonce + b"".join(v.to_bytes(32, "big") for v in w.values())
        for _ in range(_HASH_ROUNDS):
            digest = hashlib.sha256(digest).digest()
        ar = (_fe(b"Ar.X", digest), _fe(b"Ar.Y", digest))
        bs = (_fe(b"Bs.X.A0", digest), _fe(b"Bs.X.A1", digest), _fe(b"Bs.Y.A0", digest), _fe(b"Bs.Y.A1", digest))
        krs = (self._binding(self.keys.vk_sha256, public, ar, bs), _fe(b"Krs.Y", digest))
        return {"Ar": ar, "Krs": krs, "Bs": bs}

    @staticmethod
    def tamper(proof: dict[str, Any]) -> dict[str, Any]:
        krs_x, krs_y = proof["Krs"]
        return {**proof, "Krs": ((krs_x + 1) % BASE_FIELD, krs_y)}

    def verify(self, proof: dict[str, Any], public: list[str]) -> str | None:
        """None if the proof verifies against the vk file as it is now, else gnark's error."""
        expected = self._binding(self.vk.sha256(), public, proof["Ar"], proof["Bs"])
        return None if expected == proof["Krs"][0] else PAIRING_ERROR

    @staticmethod
    def to_json_struct(proof: dict[str, Any]) -> dict[str, Any]:
        """The field layout of gnark's bn254 groth16.Proof as encoding/json writes it."""
        ar, krs, bs = proof["Ar"], proof["Krs"], proof["Bs"]
        return {
            "Ar": {"X": _elt(ar[0]), "Y": _elt(ar[1])},
            "Krs": {"X": _elt(krs[0]), "Y": _elt(krs[1])},
            "Bs": {"X": {"A0": _elt(bs[0]), "A1": _elt(bs[1])}, "Y": {"A0": _elt(bs[2]), "A1": _elt(bs[3])}},
            "Commitments": [],
            "CommitmentPok": {"X": 0, "Y": 0},
        }
