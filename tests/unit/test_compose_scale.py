"""Compose's scale semantics (docker/compose pkg/compose/convergence.go), as the console applies them."""

from __future__ import annotations

import pytest

from x402console.drill.containers import ReplicaInfo, next_numbers, plan_scale, scale_down_order

CURRENT = "c" * 64
OLD = "0" * 64


def replica(number: int, config_hash: str = CURRENT) -> ReplicaInfo:
    return ReplicaInfo(
        name=f"x402-prover-{number}", id=f"id{number}", number=number, config_hash=config_hash,
        status="running", health="healthy", exit_code=None, restart_count=0,
        port=8080 + number, control_port=None, state_dir="/tmp/s",
    )


def numbers(items) -> list[int]:
    return [c.number for c in items]


def test_scale_up_from_nothing_starts_at_one():
    assert next_numbers([], 3) == [1, 2, 3]


def test_scale_up_continues_after_the_highest_number():
    assert next_numbers([1, 2], 4) == [3, 4]


def test_scale_up_does_not_refill_gaps():
    # x402-prover-2 was removed: the next replica is 4, not 2.
    assert next_numbers([1, 3], 3) == [4]
    assert next_numbers([3, 1], 4) == [4, 5]


def test_scale_up_counts_containers_not_distinct_numbers():
    assert next_numbers([1, 1], 3) == [2]


def test_no_new_numbers_when_already_at_or_above_target():
    assert next_numbers([1, 2, 3], 3) == []
    assert next_numbers([1, 2, 3], 1) == []
    assert next_numbers([], 0) == []


@pytest.mark.parametrize("target", [-1, 1.5, "3", True, None])
def test_bad_target_count_is_a_clear_error(target):
    with pytest.raises(ValueError, match="target count"):
        next_numbers([1], target)


@pytest.mark.parametrize("existing", [[0], [-2], ["1"], [1.0]])
def test_bad_existing_numbers_are_a_clear_error(existing):
    with pytest.raises(ValueError, match="container numbers"):
        next_numbers(existing, 5)


def test_scale_down_removes_highest_numbers_first():
    order = scale_down_order([replica(2), replica(5), replica(1), replica(3)], CURRENT)
    assert numbers(order) == [5, 3, 2, 1]


def test_scale_down_removes_obsolete_config_first_even_with_low_numbers():
    order = scale_down_order([replica(1), replica(2, OLD), replica(3), replica(4, OLD)], CURRENT)
    assert numbers(order) == [4, 2, 3, 1]


def test_scale_down_without_current_hash_only_orders_by_number():
    order = scale_down_order([replica(1, OLD), replica(3), replica(2, OLD)])
    assert numbers(order) == [3, 2, 1]


def test_scale_down_order_does_not_mutate_its_input():
    given = [replica(1), replica(2)]
    scale_down_order(given, CURRENT)
    assert numbers(given) == [1, 2]


def test_plan_scale_down_keeps_low_up_to_date_replicas():
    plan = plan_scale([replica(1), replica(2, OLD), replica(3), replica(4)], 2, CURRENT)
    assert plan.create == ()
    assert numbers(plan.remove) == [2, 4]


def test_plan_scale_up_after_a_gap():
    plan = plan_scale([replica(1), replica(3)], 4, CURRENT)
    assert plan.create == (4, 5)
    assert plan.remove == ()


def test_plan_scale_to_same_count_does_nothing():
    plan = plan_scale([replica(1), replica(2, OLD)], 2, CURRENT)
    assert plan.create == () and plan.remove == ()


def test_plan_scale_to_zero_removes_everything():
    plan = plan_scale([replica(1), replica(2)], 0, CURRENT)
    assert sorted(numbers(plan.remove)) == [1, 2]
