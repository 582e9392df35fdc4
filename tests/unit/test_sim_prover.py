"""The simulated prove/verify steps and the key files they depend on (real files in tmp_path)."""

from __future__ import annotations

import json
import random

import pytest

from x402console.drill.payment import make_request
from x402console.drill.sim.keys import KeyLoadError, load_or_create
from x402console.drill.sim.prover import (
    PAIRING_ERROR,
    ProvingSystem,
    WitnessError,
    build_witness,
    public_inputs,
    unsatisfied_constraint,
)


def test_keys_are_created_then_loaded(tmp_path) -> None:
    first = load_or_create(tmp_path / "keys")
    assert not first.loaded and first.save_error is None
    vk = json.loads(first.vk_path.read_text())
    assert vk["protocol"] == "groth16" and vk["curve"] == "bn128" and vk["nPublic"] == 5
    assert len(vk["IC"]) == 6 and len(vk["vk_alphabeta_12"]) == 2
    assert (tmp_path / "keys" / "backup" / "verification_key.json").read_bytes() == first.vk_path.read_bytes()
    second = load_or_create(tmp_path / "keys")
    assert second.loaded and second.vk_sha256 == first.vk_sha256


def test_unreadable_proving_key_is_a_load_error(tmp_path) -> None:
    keys = load_or_create(tmp_path)
    keys.pk_path.write_text("garbage")
    with pytest.raises(KeyLoadError, match="failed to load proving key"):
        load_or_create(tmp_path)


def test_proofs_verify_until_the_vk_file_changes(tmp_path) -> None:
    keys = load_or_create(tmp_path)
    system = ProvingSystem(keys)
    req = make_request(random.Random(3))
    inputs = public_inputs(req)
    proof = system.prove(inputs, build_witness(req))
    assert system.verify(proof, inputs) is None
    assert system.verify(system.tamper(proof), inputs) == PAIRING_ERROR
    assert system.verify(proof, [*inputs[:4], "1"]) == PAIRING_ERROR  # other public inputs

    original = keys.vk_path.read_bytes()
    vk = json.loads(original)
    vk["vk_delta_2"][0][0] = "12345"
    keys.vk_path.write_text(json.dumps(vk, indent=1))
    assert system.verify(system.prove(inputs, build_witness(req)), inputs) == PAIRING_ERROR
    keys.vk_path.write_bytes(original)
    assert system.verify(system.prove(inputs, build_witness(req)), inputs) is None


def test_proof_json_has_gnark_bn254_layout(tmp_path) -> None:
    system = ProvingSystem(load_or_create(tmp_path))
    req = make_request(random.Random(4))
    struct = system.to_json_struct(system.prove(public_inputs(req), build_witness(req)))
    assert list(struct) == ["Ar", "Krs", "Bs", "Commitments", "CommitmentPok"]
    assert set(struct["Bs"]["X"]) == {"A0", "A1"}
    assert struct["CommitmentPok"] == {"X": 0, "Y": 0}


def test_constraints() -> None:
    ok = make_request(random.Random(5), min_amount=1000, actual_amount=1000)
    assert unsatisfied_constraint(build_witness(ok)) is None
    short = make_request(random.Random(5), min_amount=1000, actual_amount=999)
    assert "is not satisfied" in (unsatisfied_constraint(build_witness(short)) or "")
    stale = {**ok, "maxBlockAge": "10", "paymentTime": ok["currentTime"] - 11}
    assert "is not satisfied" in (unsatisfied_constraint(build_witness(stale)) or "")


def test_witness_needs_numbers() -> None:
    req = {**make_request(random.Random(6)), "senderKeyX": "not-a-number"}
    with pytest.raises(WitnessError, match="unable to set big.Int from string not-a-number"):
        build_witness(req)
    assert build_witness({**req, "senderKeyX": "0x1f"})["senderKeyX"] == 31


def test_concurrent_creation_yields_one_pair(tmp_path) -> None:
    """Replicas sharing a keys dir and starting together must end up with the same pair."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from x402console.drill.sim.keys import load_or_create;"
        "print(load_or_create(Path(sys.argv[1])).vk_sha256)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "keys")], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    hashes = {p.communicate(timeout=30)[0].strip() for p in procs}
    assert len(hashes) == 1
    import hashlib

    on_disk = hashlib.sha256((tmp_path / "keys" / "verification_key.json").read_bytes()).hexdigest()
    assert hashes == {on_disk, load_or_create(tmp_path / "keys").vk_sha256}
