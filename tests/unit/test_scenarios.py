import random

import pytest

from x402console.drill.scenarios import (
    KNOWN_FAULTS,
    SCENARIO_NAMES,
    ScenarioError,
    load_scenarios,
    pick_scenario,
)

RUNBOOK = {  # scenario -> (runbook incident number, severity the runbook gives it)
    "service_down": (1, "P0"),
    "high_error_rate": (2, "P1"),
    "slow_performance": (3, "P1"),
    "invalid_proofs": (4, "P0"),
    "db_corruption": (5, "P1"),
    "ddos": (6, "P1"),
    "memory_leak": (7, "P2"),
}


def test_every_runbook_incident_has_a_scenario():
    scenarios = load_scenarios()
    assert sorted(scenarios) == sorted(SCENARIO_NAMES) == sorted(RUNBOOK)
    for name, (incident, severity) in RUNBOOK.items():
        assert scenarios[name].incident == incident
        assert scenarios[name].severity == severity


def test_each_scenario_does_something():
    for sc in load_scenarios().values():
        assert sc.faults or sc.attack, sc.name
        for f in sc.faults:
            assert f.fault in KNOWN_FAULTS


def test_service_down_takes_every_replica_down():
    plan = pick_scenario("service_down").fault_plan(["prover-1", "prover-2"], 512 << 20)
    assert {r for r, _, _ in plan} == {"prover-1", "prover-2"}
    assert {f for _, f, _ in plan} <= {"crash", "hang"}


def test_all_expands_to_every_replica_and_unknown_replicas_are_skipped():
    sc = pick_scenario("high_error_rate")
    plan = sc.fault_plan(["prover-1", "prover-2", "prover-3"], 512 << 20)
    assert [r for r, _, _ in plan] == ["prover-1", "prover-2", "prover-3"]
    assert pick_scenario("memory_leak").fault_plan(["prover-9"], 512 << 20) == []


def test_memory_leak_grows_to_just_under_the_limit():
    (_, fault, params), = pick_scenario("memory_leak").fault_plan(["prover-1"], 512 << 20)
    assert fault == "memory_leak"
    assert params["max_mb"] == int(512 * 0.95)


def test_random_is_reproducible_with_a_seed_and_covers_all():
    seen = {pick_scenario("random", random.Random(s)).name for s in range(60)}
    assert seen == set(SCENARIO_NAMES)
    assert pick_scenario("random", random.Random(7)).name == pick_scenario("random", random.Random(7)).name


def test_unknown_scenario_names_the_choices():
    with pytest.raises(ScenarioError, match="service_down"):
        pick_scenario("meteor_strike")


@pytest.mark.parametrize(
    "text, message",
    [
        ('[x]\ntitle="t"\nincident=1\nseverity="P9"\n', "severity"),
        ('[x]\ntitle="t"\nincident=1\nseverity="P1"\nfaults=[{replica="all", fault="explode"}]\n', "unknown fault"),
        ('[x]\nincident=1\nseverity="P1"\n', "missing"),
    ],
)
def test_malformed_scenarios_are_refused(text, message):
    with pytest.raises(ScenarioError, match=message):
        load_scenarios(text)
