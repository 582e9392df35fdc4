"""Field-by-field differences between a verification key and its trusted copy."""

from __future__ import annotations

import copy

import pytest

from x402console.actions.circuits import diff_json, short_value, vk_shape_problems
from x402console.drill.sim.keys import make_verification_key

VK = make_verification_key("unit-test-seed")


def changed(**edits) -> dict:
    vk = copy.deepcopy(VK)
    for path, value in edits.items():
        vk[path] = value
    return vk


def test_identical_keys_have_no_difference() -> None:
    assert diff_json(copy.deepcopy(VK), VK) == []


def test_one_coordinate_changed_is_named_by_its_path() -> None:
    vk = copy.deepcopy(VK)
    vk["vk_delta_2"][0][0] = str(int(vk["vk_delta_2"][0][0]) + 1)
    diffs = diff_json(vk, VK)
    assert [(d.path, d.kind) for d in diffs] == [("vk_delta_2[0][0]", "changed")]
    d = diffs[0]
    assert d.current != d.trusted
    # 77-digit field elements are shortened, and the length is said
    assert "…" in d.current and "chars)" in d.current and len(d.current) < 50


@pytest.mark.parametrize(
    ("current", "paths"),
    [
        (changed(protocol="plonk"), [("protocol", "changed")]),
        (changed(nPublic="5"), [("nPublic", "type changed")]),
        (changed(nPublic=4), [("nPublic", "changed")]),
        ({k: v for k, v in VK.items() if k != "vk_alpha_1"}, [("vk_alpha_1", "only in trusted")]),
        (changed(extra={"a": 1}), [("extra", "only in current")]),
        (changed(IC=VK["IC"] + [["1", "2", "1"]]), [("IC[6]", "only in current")]),
        (changed(IC=VK["IC"][:5]), [("IC[5]", "only in trusted")]),
        (changed(**{"weird key": 1}), [('["weird key"]', "only in current")]),
        ([1, 2], [("$", "type changed")]),
    ],
)
def test_differences_table(current, paths) -> None:
    assert [(d.path, d.kind) for d in diff_json(current, VK)] == paths


def test_ic_entry_changes_show_both_indices() -> None:
    vk = copy.deepcopy(VK)
    vk["IC"][3][1] = "7"
    vk["vk_beta_2"][1][0] = "8"
    paths = [d.path for d in diff_json(vk, VK)]
    assert paths == ["vk_beta_2[1][0]", "IC[3][1]"]  # in the trusted file's order


def test_short_values() -> None:
    assert short_value(5) == "5"
    assert short_value("groth16") == '"groth16"'
    assert short_value([1, 2, 3]) == "[3 items]"
    assert short_value({"a": 1}) == "{1 key}"
    long = "1234567890" * 8
    text = short_value(long)
    assert text.startswith('"12345678') and text.endswith('(80 chars)') and "…" in text
    # terminal escapes in a hostile file never reach the screen
    assert "\x1b" not in short_value("\x1b]0;owned\x07")


def test_shape_problems() -> None:
    assert vk_shape_problems(VK) == []
    assert vk_shape_problems([]) == ["not a JSON object (a list)"]
    assert vk_shape_problems({k: v for k, v in VK.items() if k != "IC"}) == ["no IC"]
    assert vk_shape_problems(changed(IC=VK["IC"][:4])) == ["IC has 4 entries, nPublic 5 needs 6"]
