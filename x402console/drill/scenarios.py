"""Drill scenarios: the runbook's incidents as data (scenarios.toml), read and checked here."""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

SCENARIO_NAMES = (
    "service_down",
    "high_error_rate",
    "slow_performance",
    "invalid_proofs",
    "db_corruption",
    "ddos",
    "memory_leak",
)
KNOWN_FAULTS = {"crash", "hang", "error_ratio", "latency", "invalid_proofs", "db_corruption",
                "memory_leak", "vk_change"}


@dataclass(frozen=True)
class FaultStep:
    replica: str  # a replica name, or "all"
    fault: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attack:
    ips: int
    rate: float


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    incident: int
    severity: str
    summary: str
    security: bool
    faults: tuple[FaultStep, ...]
    traffic: dict[str, Any]
    attack: Attack | None

    def fault_plan(self, replicas: list[str], memory_limit_bytes: int) -> list[tuple[str, str, dict]]:
        """(replica, fault, params) for each replica the scenario touches, in order.

        A memory leak with max_mb = 0 grows to just under the replica's memory limit.
        """
        plan: list[tuple[str, str, dict]] = []
        for step in self.faults:
            targets = replicas if step.replica == "all" else [step.replica]
            for r in targets:
                if r not in replicas:
                    continue
                params = dict(step.params)
                if step.fault == "memory_leak" and not params.get("max_mb"):
                    params["max_mb"] = max(16, int(memory_limit_bytes * 0.95 / 2**20))
                plan.append((r, step.fault, params))
        return plan


class ScenarioError(ValueError):
    pass


def _parse(name: str, raw: dict[str, Any]) -> Scenario:
    try:
        faults = tuple(
            FaultStep(str(f["replica"]), str(f["fault"]), dict(f.get("params", {}))) for f in raw.get("faults", [])
        )
        for f in faults:
            if f.fault not in KNOWN_FAULTS:
                raise ScenarioError(f"scenario {name}: unknown fault {f.fault!r}")
        attack_raw = raw.get("attack")
        attack = Attack(int(attack_raw["ips"]), float(attack_raw["rate"])) if attack_raw else None
        severity = str(raw["severity"])
        if severity not in ("P0", "P1", "P2", "P3"):
            raise ScenarioError(f"scenario {name}: severity must be P0..P3, not {severity!r}")
        return Scenario(
            name=name,
            title=str(raw["title"]),
            incident=int(raw["incident"]),
            severity=severity,
            summary=str(raw.get("summary", "")),
            security=bool(raw.get("security", False)),
            faults=faults,
            traffic=dict(raw.get("traffic", {})),
            attack=attack,
        )
    except (KeyError, TypeError) as exc:
        raise ScenarioError(f"scenario {name}: missing or malformed key {exc}") from None


def load_scenarios(text: str | None = None) -> dict[str, Scenario]:
    if text is None:
        text = resources.files("x402console.drill").joinpath("scenarios.toml").read_text()
    data = tomllib.loads(text)
    return {name: _parse(name, raw) for name, raw in data.items()}


def pick_scenario(name: str, rng: random.Random | None = None) -> Scenario:
    scenarios = load_scenarios()
    if name == "random":
        name = (rng or random.Random()).choice(sorted(scenarios))
    if name not in scenarios:
        raise ScenarioError(f"unknown scenario {name!r}; choose one of: {', '.join(sorted(scenarios))}, random")
    return scenarios[name]
