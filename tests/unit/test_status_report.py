"""The status report: exit codes per level, JSON that is always valid, text that leads with the
verdict."""

from __future__ import annotations

import json

import pytest

from x402console.core.matcher import match
from x402console.core.severity import assess
from x402console.core.signals import LOG_PATTERNS, ReplicaSignal, Signals
from x402console.settings.model import Settings
from x402console.status.journal_read import OpenIncident
from x402console.status.report import build_report, error_report, exit_code_for, render_text

NOW = 1_800_000_000.0
ONE_UP = (ReplicaSignal("prover-1", up=True, state="running"),)


@pytest.mark.parametrize("level, code", [(None, 0), ("P3", 1), ("P2", 1), ("P1", 2), ("P0", 2)])
def test_exit_code_per_level(level, code):
    assert exit_code_for(level, Signals(NOW, replicas=ONE_UP)) == code


def test_nothing_to_observe_is_3_whatever_the_level():
    assert exit_code_for(None, Signals(NOW)) == 3
    assert exit_code_for("P2", Signals(NOW)) == 3


def _report(signals: Signals, incidents=()) -> dict:
    settings = Settings()
    return build_report(signals, assess(signals, settings.severity, settings.targets), match(signals),
                        list(incidents), settings=settings, window_seconds=60)


def test_json_is_valid_without_nan_and_names_every_log_pattern():
    signals = Signals(
        NOW,
        replicas=(ReplicaSignal("prover-1", up=True, state="running", memory_bytes=float("nan"),
                                memory_limit_bytes=512.0, memory_growth_bytes_per_s=float("inf")),),
        error_ratio=0.31,
        latency_p95=2.0,
        latency_p95_at_least=True,
        log_counts={"generation_failed": 12},
        log_lines=40,
    )
    report = _report(signals, [OpenIncident(3, "errors up", "P1", "acknowledged", False, True, 2, "2026-11-26T10:00:00Z")])
    text = json.dumps(report, allow_nan=False)  # raises on NaN/Infinity
    again = json.loads(text)
    assert again["replicas"][0]["memory_bytes"] is None
    assert again["replicas"][0]["memory_growth_bytes_per_s"] is None
    assert set(again["logs"]["counts"]) == set(LOG_PATTERNS)
    assert again["metrics"]["latency_p95_at_least"] is True
    assert again["severity"]["level"] == "P1" and again["exit_code"] == 2
    assert again["incidents"][0]["incident"] == 2
    assert again["open_incidents"][0]["id"] == 3
    assert again["taken_at"].endswith("Z")


def test_text_leads_with_the_verdict_and_shows_lower_bounds():
    signals = Signals(NOW, replicas=ONE_UP, latency_p95=2.0, latency_p95_at_least=True, error_ratio=0.0)
    text = render_text(_report(signals))
    lines = text.splitlines()
    assert lines[1] == "verdict: P2 suggested (respond within 4 h, resolve within 3 days)"
    assert "p95 ≥ 2.00 s" in text
    assert "open incidents (journal): none" in text


def test_healthy_text_says_ok():
    text = render_text(_report(Signals(NOW, replicas=ONE_UP, error_ratio=0.0, log_lines=10)))
    assert text.splitlines()[1] == "verdict: ok, no severity suggested"
    assert "logs: 10 lines; nothing notable" in text


def test_error_report_has_every_key_and_exit_3():
    report = error_report("config.toml:3: [prometheus] url: must start with http://")
    assert report["exit_code"] == 3 and report["verdict"] == "unobservable"
    assert "config.toml:3" in render_text(report)
    json.dumps(report, allow_nan=False)
