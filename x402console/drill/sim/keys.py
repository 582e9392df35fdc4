"""The simulated trusted-setup keys: verification_key.json and payment_proof.pk.

verification_key.json has the circom/snarkjs shape (the file the runbook diffs in Incident 4).
payment_proof.pk stands in for gnark's proving key; it records the sha256 of the vk it was made
with. Proofs are bound to that hash and verified against the vk file as it is on disk now, so
editing the vk (the vk_change fault, or a trainee's mistake) makes every new proof fail
self-verification, and restoring the file makes them verify again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# BN254 base field: the coordinates of curve points in a vk or proof are below it.
BASE_FIELD = 21888242871839275222246405745257275088696311157297823662689037894645226208583

VK_NAME = "verification_key.json"
PK_NAME = "payment_proof.pk"
PK_FORMAT = "x402-sim-groth16-pk/1"


class KeyLoadError(Exception):
    """The keys exist but cannot be read; main.go makes this fatal."""


@dataclass
class KeyPair:
    keys_dir: Path
    vk_path: Path
    pk_path: Path
    vk_sha256: str  # the vk this proving key pairs with
    seed: str
    loaded: bool  # True: read from the keys dir; False: freshly generated
    save_error: str | None = None


def _fe(rng: random.Random) -> str:
    return str(rng.randrange(1, BASE_FIELD))


def _g1(rng: random.Random) -> list[str]:
    return [_fe(rng), _fe(rng), "1"]


def _g2(rng: random.Random) -> list[list[str]]:
    return [[_fe(rng), _fe(rng)], [_fe(rng), _fe(rng)], ["1", "0"]]


def make_verification_key(seed: str) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "protocol": "groth16",
        "curve": "bn128",
        "nPublic": 5,
        "vk_alpha_1": _g1(rng),
        "vk_beta_2": _g2(rng),
        "vk_gamma_2": _g2(rng),
        "vk_delta_2": _g2(rng),
        "vk_alphabeta_12": [[[_fe(rng), _fe(rng)] for _ in range(3)] for _ in range(2)],
        "IC": [_g1(rng) for _ in range(6)],
    }


def vk_bytes(vk: dict[str, Any]) -> bytes:
    # snarkjs writes JSON.stringify(vk, null, 1)
    return json.dumps(vk, indent=1).encode() + b"\n"


def check_vk_shape(vk: Any) -> None:
    if not isinstance(vk, dict):
        raise KeyLoadError("verification key is not a JSON object")
    for key in ("protocol", "curve", "nPublic", "vk_alpha_1", "vk_beta_2", "vk_gamma_2", "vk_delta_2", "IC"):
        if key not in vk:
            raise KeyLoadError(f"verification key has no {key}")
    if not isinstance(vk["IC"], list) or len(vk["IC"]) != 6:
        raise KeyLoadError("verification key IC must have 6 entries (nPublic 5)")


def _write_atomic(path: Path, data: bytes, sync: bool = True) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_or_create(keys_dir: Path) -> KeyPair:
    """Load the pair, or make and save a new one; replicas sharing keys_dir take turns.

    Without the lock two replicas starting together would each write their own pair and one
    of them would then prove against a vk that is no longer on disk.
    """
    try:
        keys_dir.mkdir(parents=True, exist_ok=True)
        lock = open(keys_dir / ".lock", "a+b")
    except OSError:
        return _load_or_create(keys_dir)  # read-only or missing dir: reported as a save error
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            return _load_or_create(keys_dir)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _load_or_create(keys_dir: Path) -> KeyPair:
    vk_path, pk_path = keys_dir / VK_NAME, keys_dir / PK_NAME
    if vk_path.is_file() and pk_path.is_file():
        try:
            pk = json.loads(pk_path.read_text())
            if not isinstance(pk, dict) or pk.get("format") != PK_FORMAT or not isinstance(pk.get("vk_sha256"), str):
                raise ValueError("unexpected proving key format")
        except (OSError, ValueError) as exc:
            raise KeyLoadError(f"failed to load proving key: {exc}") from None
        try:
            check_vk_shape(json.loads(vk_path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise KeyLoadError(f"failed to load verification key: {exc}") from None
        return KeyPair(keys_dir, vk_path, pk_path, pk["vk_sha256"], str(pk.get("seed", "")), loaded=True)

    seed = os.urandom(16).hex()
    data = vk_bytes(make_verification_key(seed))
    pair = KeyPair(keys_dir, vk_path, pk_path, hashlib.sha256(data).hexdigest(), seed, loaded=False)
    try:
        keys_dir.mkdir(parents=True, exist_ok=True)
        pk = {"format": PK_FORMAT, "curve": "bn254", "vk_sha256": pair.vk_sha256, "seed": seed}
        # no fsync: fresh development keys are cheap to regenerate, and start-up stays fast
        _write_atomic(pk_path, json.dumps(pk, indent=1).encode() + b"\n", sync=False)
        _write_atomic(vk_path, data, sync=False)
        # the runbook's Incident 4 diffs against backup/verification_key.json
        (keys_dir / "backup").mkdir(exist_ok=True)
        _write_atomic(keys_dir / "backup" / VK_NAME, data, sync=False)
    except OSError as exc:
        pair.save_error = str(exc)
    return pair


class VkFile:
    """sha256 of the vk file as it is now, re-hashed only when its stat changes."""

    def __init__(self, path: Path, fallback_sha256: str) -> None:
        self.path = path
        self._stat: tuple[int, int, int] | None = None
        self._sha = fallback_sha256
        self._fallback = fallback_sha256

    def sha256(self) -> str:
        try:
            st = os.stat(self.path)
        except OSError:
            return self._fallback  # no file: the key held in memory since start-up is used
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key != self._stat:
            try:
                self._sha = hashlib.sha256(self.path.read_bytes()).hexdigest()
            except OSError:
                return "unreadable"
            self._stat = key
        return self._sha

    def write(self, data: bytes) -> None:
        _write_atomic(self.path, data)
