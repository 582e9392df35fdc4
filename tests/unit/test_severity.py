"""The severity engine as tables: every rule, both sides of each threshold, the runbook's
boundaries, unknown signals, disagreeing signals, config overrides, and the rules file's checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from x402console.core.severity import (
    Assessment,
    SeverityRulesError,
    assess,
    level_rank,
    load_rules,
    parse_rules,
    worst_level,
)
from x402console.core.signals import ReplicaSignal, Signals
from x402console.settings.model import DEFAULT_TARGETS, SeverityThresholds, Target

GIB = 2**30
MIB = 2**20


def replica(name: str, up: bool | None = True, *, mem: float = 0.5 * GIB, growth: float | None = 0.0,
            state: str | None = "running") -> ReplicaSignal:
    return ReplicaSignal(name, up=up, state=state, memory_bytes=mem, memory_limit_bytes=4 * GIB,
                         memory_growth_bytes_per_s=growth)


# Every signal known and well inside its limits: a row changes only what it tests.
HEALTHY = Signals(
    taken_at=1_700_000_000.0,
    replicas=(replica("prover-1"), replica("prover-2")),
    proof_rate=12.0,
    proof_rate_baseline=12.0,
    error_ratio=0.01,
    latency_p50=0.2,
    latency_p95=0.4,
    rate_limited_rate=0.0,
    active_requests=2,
    log_lines=1000,
    log_counts={"validation": 3},
    top_client="203.0.113.9",
    top_client_share=0.04,
    top_client_requests=40,
    db_integrity="ok",
    vk_status="match",
    components={"prometheus": "up", "nginx": "up"},
)


def sig(**changes) -> Signals:
    return replace(HEALTHY, **changes)


def test_the_healthy_picture_is_no_incident_and_misses_nothing():
    a = assess(HEALTHY)
    assert a == Assessment(None, (), (), None, None, ())


# (row id, changes, level, rule ids of the reasons in order)
ROWS: list[tuple[str, dict, str | None, tuple[str, ...]]] = [
    # error ratio: "5-20%" is P2 (both ends), "above 20 %" is P1
    ("error 0%", dict(error_ratio=0.0), None, ()),
    ("error 4.99%", dict(error_ratio=0.0499), None, ()),
    ("error exactly 5%", dict(error_ratio=0.05), "P2", ("error_ratio.p2",)),
    ("error 12%", dict(error_ratio=0.12), "P2", ("error_ratio.p2",)),
    ("error exactly 20%", dict(error_ratio=0.20), "P2", ("error_ratio.p2",)),
    ("error 20.01%", dict(error_ratio=0.2001), "P1", ("error_ratio.p1",)),
    ("error 100%", dict(error_ratio=1.0), "P1", ("error_ratio.p1",)),
    # p95 latency: "1-5s" is P2 (both ends), "above 5 s" is P1
    ("p95 0.99 s", dict(latency_p95=0.99), None, ()),
    ("p95 exactly 1 s", dict(latency_p95=1.0), "P2", ("latency.p2",)),
    ("p95 3 s", dict(latency_p95=3.0), "P2", ("latency.p2",)),
    ("p95 exactly 5 s", dict(latency_p95=5.0), "P2", ("latency.p2",)),
    ("p95 5.01 s", dict(latency_p95=5.01), "P1", ("latency.p1",)),
    ("p95 at least 6 s", dict(latency_p95=6.0, latency_p95_at_least=True), "P1", ("latency.p1",)),
    ("p95 at least 2 s", dict(latency_p95=2.0, latency_p95_at_least=True), "P2", ("latency.p2",)),
    ("p95 at least 0.5 s", dict(latency_p95=0.5, latency_p95_at_least=True), None, ()),
    # proof rate: a drop below 10 req/s from a rate at or above it
    ("rate 3 from 12", dict(proof_rate=3.0, proof_rate_baseline=12.0), "P1", ("proof_rate.p1",)),
    ("rate 9.99 from exactly 10", dict(proof_rate=9.99, proof_rate_baseline=10.0), "P1", ("proof_rate.p1",)),
    ("rate exactly 10 from 12", dict(proof_rate=10.0, proof_rate_baseline=12.0), None, ()),
    ("rate 3 from 9.99 (never carried 10)", dict(proof_rate=3.0, proof_rate_baseline=9.99), None, ()),
    ("idle: rate 0 from 0", dict(proof_rate=0.0, proof_rate_baseline=0.0), None, ()),
    ("rate 0 from 50", dict(proof_rate=0.0, proof_rate_baseline=50.0), "P1", ("proof_rate.p1",)),
    # invalid proofs and keys
    ("1 invalid proof", dict(verification_failures=1), "P0", ("proofs.invalid",)),
    ("verification failures logged", dict(log_counts={"verification_failed": 4}), "P0", ("proofs.invalid_logged",)),
    ("vk changed", dict(vk_status="changed"), "P0", ("keys.vk_changed",)),
    ("vk missing", dict(vk_status="missing"), "P3", ("keys.vk_missing",)),
    # replicas
    ("every replica down", dict(replicas=(replica("prover-1", False), replica("prover-2", False))), "P0",
     ("replicas.all_down",)),
    ("exited containers, unprobed", dict(replicas=(replica("prover-1", None, state="exited"),
                                                   replica("prover-2", None, state="dead"))), "P0", ("replicas.all_down",)),
    ("1 of 2 down (50%)", dict(replicas=(replica("prover-1", False), replica("prover-2"))), "P1",
     ("replicas.partial_major",)),
    ("1 of 4 down (25%)", dict(replicas=(replica("p1", False), *(replica(f"p{i}") for i in range(2, 5)))), "P1",
     ("replicas.partial_major",)),
    ("1 of 5 down (exactly 20%)", dict(replicas=(replica("p1", False), *(replica(f"p{i}") for i in range(2, 6)))), "P2",
     ("replicas.partial",)),
    ("1 of 10 down", dict(replicas=(replica("p1", False), *(replica(f"p{i}") for i in range(2, 11)))), "P2",
     ("replicas.partial",)),
    ("1 down, 1 unprobed: a floor of 50%", dict(replicas=(replica("prover-1", False), replica("prover-2", None))), "P1",
     ("replicas.partial_major",)),
    # proofs.db
    ("integrity failed", dict(db_integrity="failed"), "P1", ("db.integrity_failed",)),
    ("malformed", dict(db_integrity=None, db_error="database disk image is malformed"), "P1", ("db.corrupt_error",)),
    ("not a database", dict(db_integrity=None, db_error="file is not a database"), "P1", ("db.corrupt_error",)),
    ("unreadable, not corrupt", dict(db_integrity=None, db_error="unable to open database file"), "P2", ("db.unreadable",)),
    ("db errors in logs", dict(log_counts={"db_error": 7}), "P2", ("db.log_errors",)),
    ("integrity failed and errors logged", dict(db_integrity="failed", log_counts={"db_error": 7}), "P1",
     ("db.integrity_failed",)),
    # non-critical components and monitoring alerts
    ("prometheus down", dict(components={"prometheus": "down", "nginx": "up"}), "P2", ("components.down",)),
    ("two components down", dict(components={"prometheus": "down", "nginx": "down"}), "P2",
     ("components.down", "components.down")),
    ("an alert firing", dict(alerts_firing=("ProverHighErrorRate",)), "P2", ("alerts.firing",)),
    # memory
    ("memory exactly 80%", dict(replicas=(replica("prover-1", mem=3.2 * GIB), replica("prover-2"))), None, ()),
    ("memory 81%", dict(replicas=(replica("prover-1", mem=0.81 * 4 * GIB), replica("prover-2"))), "P2", ("memory.high",)),
    ("memory grows to the limit within a day", dict(replicas=(replica("prover-1", growth=1 * MIB), replica("prover-2"))),
     "P3", ("memory.growing",)),
    ("memory grows slowly (limit in > 1 day)", dict(replicas=(replica("prover-1", growth=20_000), replica("prover-2"))),
     None, ()),
    ("memory high and growing: one reason", dict(replicas=(replica("prover-1", mem=3.6 * GIB, growth=4 * MIB),
                                                          replica("prover-2"))), "P2", ("memory.high",)),
    ("both replicas high", dict(replicas=(replica("prover-1", mem=3.6 * GIB), replica("prover-2", mem=3.7 * GIB))), "P2",
     ("memory.high", "memory.high")),
    ("out of memory logged", dict(log_counts={"out_of_memory": 1}), "P2", ("memory.oom",)),
    # one client dominating while clients are refused
    ("dominant client, rate limited", dict(top_client_share=0.31, rate_limited_rate=40.0), "P2", ("abuse.dominant_client",)),
    ("exactly 25%, rate limited", dict(top_client_share=0.25, rate_limited_rate=1.0), "P2", ("abuse.dominant_client",)),
    ("dominant client, nobody refused", dict(top_client_share=0.9, rate_limited_rate=0.0), None, ()),
    ("refusals spread over many clients", dict(top_client_share=0.05, rate_limited_rate=3.0), None, ()),
    # signals that disagree: the worst wins, every reason is kept, worst first
    ("P2 errors + P0 outage", dict(error_ratio=0.1, replicas=(replica("a", False), replica("b", False))), "P0",
     ("replicas.all_down", "error_ratio.p2")),
    ("P3 key + P1 errors", dict(vk_status="missing", error_ratio=0.27), "P1", ("error_ratio.p1", "keys.vk_missing")),
    ("P1 latency + P2 errors + P2 alert", dict(latency_p95=7.0, error_ratio=0.07, alerts_firing=("X",)), "P1",
     ("latency.p1", "error_ratio.p2", "alerts.firing")),
    ("invalid proofs raise errors too", dict(verification_failures=30, log_counts={"verification_failed": 30},
                                             error_ratio=0.9, vk_status="changed"), "P0",
     ("proofs.invalid", "keys.vk_changed", "error_ratio.p1")),
]


@pytest.mark.parametrize("changes, level, rule_ids", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_rule_table(changes, level, rule_ids):
    a = assess(sig(**changes))
    assert a.level == level
    assert tuple(r.rule_id for r in a.reasons) == rule_ids
    if level is not None:
        assert a.reasons[0].level == level
        assert all(r.text.endswith(f"({r.level})") for r in a.reasons)


def test_every_packaged_rule_fires_in_some_row():
    fired = {r.rule_id for _, changes, _, _ in ROWS for r in assess(sig(**changes)).reasons}
    assert fired == {rule.id for rule in load_rules()}


@pytest.mark.parametrize(
    "changes, text",
    [
        (dict(error_ratio=0.27), "error ratio 27.0% > 20% (P1)"),
        (dict(error_ratio=0.2), "error ratio 20.0% >= 5% (P2)"),
        (dict(latency_p95=6.0, latency_p95_at_least=True), "p95 latency at least 6.0 s > 5 s (P1)"),
        (dict(latency_p95=5.0), "p95 latency 5.0 s >= 1 s (P2)"),
        (dict(proof_rate=3.0, proof_rate_baseline=12.0),
         "proof rate dropped to 3.0 req/s < 10 req/s (it was 12.0 req/s) (P1)"),
        (dict(replicas=(replica("prover-1", False), replica("prover-2", False))),
         "complete outage: every replica is down (prover-1, prover-2) (P0)"),
        (dict(replicas=(replica("prover-1"), replica("prover-2", False))),
         "partial outage: 1 of 2 replicas down (prover-2), 50.0% of capacity > 20% (P1)"),
        (dict(components={"prometheus": "down"}), "prometheus is down (P2)"),
        (dict(alerts_firing=("ProverServiceDown", "HighCPUUsage")),
         "monitoring alert firing: ProverServiceDown, HighCPUUsage (P2)"),
        (dict(replicas=(replica("prover-1", mem=3.6 * GIB), replica("prover-2"))),
         "prover-1 uses 90.0% of its memory limit > 80% (P2)"),
        (dict(replicas=(replica("prover-1", mem=1 * GIB, growth=0.1 * MIB), replica("prover-2"))),
         "prover-1 memory grows 0.1 MiB/s: at its limit in 8.5 h (P3)"),
        (dict(replicas=(replica("prover-1", mem=3.99 * GIB, growth=4 * MIB), replica("prover-2"))),
         "prover-1 uses 99.8% of its memory limit > 80% (P2)"),
        (dict(top_client="203.0.113.5", top_client_share=0.31, rate_limited_rate=85.0),
         "one client (203.0.113.5) sends 31.0% of requests while clients are rate limited (85.0 req/s) (P2)"),
        (dict(db_integrity=None, db_error="database disk image is malformed"),
         "proofs.db is damaged: database disk image is malformed (P1)"),
    ],
)
def test_reason_texts(changes, text):
    assert assess(sig(**changes)).reasons[0].text == text


def test_a_reason_carries_the_raw_value_and_subject():
    (reason,) = assess(sig(replicas=(replica("prover-1", mem=3.6 * GIB), replica("prover-2")))).reasons
    assert (reason.level, reason.rule_id, reason.subject) == ("P2", "memory.high", "prover-1")
    assert reason.value == pytest.approx(0.9)
    (reason,) = assess(sig(error_ratio=0.27)).reasons
    assert reason.value == 0.27 and reason.subject is None


# ----------------------------------------------------------------- lower bounds

def test_a_bound_below_the_p1_threshold_says_the_level_may_be_worse():
    a = assess(sig(latency_p95=2.0, latency_p95_at_least=True))
    assert a.level == "P2"
    assert a.reasons[0].text == "p95 latency at least 2.0 s >= 1 s (P2)"
    assert a.uncertain == ("p95 latency is at least 2.0 s: cannot tell whether it is > 5 s (P1, latency.p1)",)


def test_a_bound_above_the_p1_threshold_leaves_nothing_uncertain():
    a = assess(sig(latency_p95=6.0, latency_p95_at_least=True))
    assert (a.level, a.uncertain) == ("P1", ())


def test_a_bound_below_both_thresholds_settles_neither():
    a = assess(sig(latency_p95=0.5, latency_p95_at_least=True))
    assert a.level is None
    assert len(a.uncertain) == 2 and "> 5 s (P1" in a.uncertain[0] and ">= 1 s (P2" in a.uncertain[1]


def test_an_exact_value_is_never_uncertain():
    assert assess(sig(latency_p95=2.0)).uncertain == ()


# ----------------------------------------------------------------- unknown signals

def test_nothing_observed_is_no_level_and_lists_what_is_missing():
    a = assess(Signals(taken_at=0.0))
    assert a.level is None and a.reasons == ()
    for name in ("replicas", "error_ratio", "latency_p95", "proof_rate", "db_integrity", "vk_status", "log_counts"):
        assert name in a.missing
    # No component configured is nothing to check, not a missing signal.
    assert "components" not in a.missing
    assert len(a.missing) == len(set(a.missing))


@pytest.mark.parametrize(
    "changes, missing",
    [
        (dict(error_ratio=None), ("error_ratio",)),
        (dict(latency_p95=None), ("latency_p95",)),
        (dict(proof_rate=3.0, proof_rate_baseline=None), ("proof_rate_baseline",)),
        (dict(vk_status=None), ("vk_status",)),
        (dict(db_integrity=None), ("db_integrity",)),
        (dict(log_lines=None, log_counts={}), ("log_counts",)),
        (dict(components={"prometheus": "up", "nginx": "unknown"}), ("components (nginx)",)),
        (dict(replicas=()), ("replicas",)),
        (dict(replicas=(replica("prover-1"), replica("prover-2", None))), ("replicas",)),
        (dict(replicas=(replica("prover-1", mem=None), replica("prover-2"))),
         ("memory_ratio (prover-1)", "memory_growth (prover-1)")),
        (dict(replicas=(replica("prover-1", growth=None), replica("prover-2"))), ("memory_growth (prover-1)",)),
        (dict(top_client_share=None, rate_limited_rate=3.0), ("top_client_share",)),
    ],
)
def test_unknown_signal_fires_nothing_and_is_listed(changes, missing):
    a = assess(sig(**changes))
    assert a.level is None
    assert a.missing == missing


def test_nan_is_unknown_and_a_wrong_type_does_not_crash():
    a = assess(sig(error_ratio=float("nan")))
    assert (a.level, a.missing) == (None, ("error_ratio",))
    a = assess(sig(latency_p95="slow", error_ratio=0.3))  # type: ignore[arg-type]
    assert a.level == "P1" and a.missing == ("latency_p95",)


@pytest.mark.parametrize(
    "changes",
    [
        dict(proof_rate=20.0, proof_rate_baseline=None),  # 20 req/s is no drop whatever the baseline was
        dict(top_client_share=None, rate_limited_rate=0.0),  # nobody refused: no abuse whoever dominates
    ],
)
def test_a_rule_already_settled_false_does_not_ask_for_more(changes):
    assert assess(sig(**changes)).missing == ()


def test_unknown_signals_do_not_hide_known_problems():
    a = assess(sig(error_ratio=0.3, latency_p95=None, vk_status=None))
    assert a.level == "P1"
    assert set(a.missing) == {"latency_p95", "vk_status"}


# ----------------------------------------------------------------- targets

@pytest.mark.parametrize(
    "changes, response, resolution",
    [
        (dict(vk_status="changed"), 15, 240),
        (dict(error_ratio=0.3), 60, 1440),
        (dict(error_ratio=0.1), 240, 4320),
        (dict(vk_status="missing"), 1440, None),
        ({}, None, None),
    ],
)
def test_targets_of_the_level_are_the_runbooks(changes, response, resolution):
    a = assess(sig(**changes))
    assert (a.response_minutes, a.resolution_minutes) == (response, resolution)


def test_configured_targets_are_used():
    targets = {**DEFAULT_TARGETS, "P1": Target(30, 600)}
    a = assess(sig(error_ratio=0.3), targets=targets)
    assert (a.response_minutes, a.resolution_minutes) == (30, 600)


# ----------------------------------------------------------------- config overrides

@pytest.mark.parametrize(
    "changes, thresholds, default_level, overridden_level",
    [
        (dict(error_ratio=0.15), dict(error_ratio_p1=0.10), "P2", "P1"),
        (dict(error_ratio=0.27), dict(error_ratio_p1=0.30), "P1", "P2"),
        (dict(error_ratio=0.03), dict(error_ratio_p2=0.02), None, "P2"),
        (dict(error_ratio=0.07), dict(error_ratio_p2=0.10), "P2", None),
        (dict(latency_p95=3.0), dict(latency_p95_p1_seconds=2.0), "P2", "P1"),
        (dict(latency_p95=0.6), dict(latency_p95_p2_seconds=0.5), None, "P2"),
        (dict(latency_p95=2.0, latency_p95_at_least=True), dict(latency_p95_p1_seconds=1.5), "P2", "P1"),
        (dict(proof_rate=4.0, proof_rate_baseline=6.0), dict(proof_rate_p1=5.0), None, "P1"),
        (dict(proof_rate=8.0, proof_rate_baseline=12.0), dict(proof_rate_p1=5.0), "P1", None),
        (dict(replicas=(replica("prover-1", mem=0.75 * 4 * GIB), replica("prover-2"))), dict(memory_ratio_warn=0.7),
         None, "P2"),
        # the replica-share rule follows the error thresholds: 1 of 4 down is 25 %
        (dict(replicas=(replica("p1", False), *(replica(f"p{i}") for i in range(2, 5)))), dict(error_ratio_p1=0.3),
         "P1", "P2"),
    ],
)
def test_config_thresholds_change_the_outcome(changes, thresholds, default_level, overridden_level):
    s = sig(**changes)
    assert assess(s).level == default_level
    assert assess(s, SeverityThresholds(**thresholds)).level == overridden_level


def test_override_shows_in_the_reason_text():
    a = assess(sig(error_ratio=0.15), SeverityThresholds(error_ratio_p1=0.1))
    assert a.reasons[0].text == "error ratio 15.0% > 10% (P1)"


# ----------------------------------------------------------------- helpers and summary

def test_level_helpers():
    assert [level_rank(x) for x in ("P0", "P1", "P2", "P3", None)] == [0, 1, 2, 3, 4]
    assert worst_level(["P2", None, "P1", "P3"]) == "P1"
    assert worst_level([None]) is None


def test_summary_names_the_worst_reason():
    a = assess(sig(error_ratio=0.3, alerts_firing=("X",)))
    assert a.summary == "P1: error ratio 30.0% > 20% (P1) (+1 more)"
    assert assess(Signals(taken_at=0.0)).summary.startswith("no known problem (")


# ----------------------------------------------------------------- the rules file

GOOD_RULE = """
[[rule]]
id = "error_ratio.p1"
level = "P1"
group = "error_ratio"
when = [{ signal = "error_ratio", op = ">", setting = "error_ratio_p1" }]
text = "error ratio {value} > {threshold}"
"""


def test_a_team_copy_of_the_rules_is_used(tmp_path: Path):
    path = tmp_path / "rules.toml"
    path.write_text(GOOD_RULE.replace('level = "P1"', 'level = "P0"'))
    rules = load_rules(path)
    a = assess(sig(error_ratio=0.3), rules=rules)
    assert a.level == "P0" and a.reasons[0].text == "error ratio 30.0% > 20% (P0)"
    # Only that rule: the packaged ones are not mixed in.
    assert assess(sig(vk_status="changed"), rules=rules).level is None


def test_an_unreadable_rules_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SeverityRulesError, match=r"nope\.toml: cannot read"):
        load_rules(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[rule]\nid = 1", r"rules\.toml: not valid TOML"),
        ("", r"needs at least one \[\[rule\]\] table"),
        ("[other]\nx = 1", r"unknown top-level key\(s\) other"),
        (GOOD_RULE.replace('"error_ratio.p1"', '"Bad Id"'), r"rule 1: id must be lower-case dotted text"),
        (GOOD_RULE + GOOD_RULE, r"rule 'error_ratio.p1': id used twice"),
        (GOOD_RULE.replace('level = "P1"', 'level = "P5"'), r"level must be one of P0, P1, P2, P3, got 'P5'"),
        (GOOD_RULE.replace('group = "error_ratio"', 'group = "x"\ncolour = "red"'), r"unknown key\(s\) colour"),
        (GOOD_RULE.replace('signal = "error_ratio"', 'signal = "eror_ratio"'), r"unknown signal 'eror_ratio'"),
        (GOOD_RULE.replace('op = ">"', 'op = "=>"'), r"takes op > >= < <= == !=, got '=>'"),
        (GOOD_RULE.replace('setting = "error_ratio_p1"', 'setting = "error_p1"'), r"unknown \[severity\] setting 'error_p1'"),
        (GOOD_RULE.replace('setting = "error_ratio_p1"', 'setting = "error_ratio_p1", value = 0.2'),
         r"needs exactly one of value = \.\.\. or setting = \.\.\."),
        (GOOD_RULE.replace('setting = "error_ratio_p1"', 'value = "high"'), r"'error_ratio' > needs a number, got 'high'"),
        (GOOD_RULE.replace('{ signal = "error_ratio", op = ">", setting = "error_ratio_p1" }',
                           '{ signal = "vk_status", op = "==", value = "chnaged" }'),
         r"'vk_status' is one of match, changed, missing, got 'chnaged'"),
        (GOOD_RULE.replace('{ signal = "error_ratio", op = ">", setting = "error_ratio_p1" }',
                           '{ signal = "db_error", op = "matches", value = "(unclosed" }'), r"bad regular expression"),
        (GOOD_RULE.replace('{ signal = "error_ratio", op = ">", setting = "error_ratio_p1" }',
                           '{ signal = "memory_ratio", op = ">", value = 0.5 }, { signal = "component", op = "==", value = "down" }'),
         r"conditions mix per-component and per-replica signals"),
        (GOOD_RULE.replace("when = [{", "when = []\n#"), r"`when` must be a non-empty list"),
        (GOOD_RULE.replace("{value} > {threshold}", "{value} > {limit}"), r"text names \{limit\}, which is not a signal"),
        (GOOD_RULE.replace("{value} > {threshold}", "{value:.2f}"), r"drop the format spec"),
        (GOOD_RULE.replace("{value} > {threshold}", "{value"), r"bad text template"),
        (GOOD_RULE.replace('text = "error ratio {value} > {threshold}"', ""), r"text must be non-empty text"),
    ],
)
def test_malformed_rules_are_refused_with_a_clear_message(text, message):
    with pytest.raises(SeverityRulesError, match=message):
        parse_rules(text, source="rules.toml")
