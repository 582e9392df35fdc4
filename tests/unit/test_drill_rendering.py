"""Generated Prometheus and nginx configuration (checked by the real tools in integration tests)."""

from pathlib import Path

import pytest

from x402console.drill.nginx_env import render_config as nginx_config
from x402console.drill.prometheus_env import render_config as prom_config
from x402console.drill.prometheus_env import render_rules


def test_rules_fill_every_placeholder_and_scale_for():
    text = render_rules(512 << 20, for_scale=0.1)
    assert "${" not in text
    assert str(512 << 20) in text
    assert "for: 3s" in text  # 30 s scaled by 0.1
    assert "{{ $labels.instance }}" in text  # Prometheus templating left alone


def test_rules_keep_the_real_rule_names_they_stand_for():
    text = render_rules(1 << 30)
    for name in ("ProverServiceDown", "ProverHighErrorRate", "HighProofGenerationTime", "ProverMemoryHigh",
                 "HighVerificationFailureRate", "HighRateLimitHitRate", "LowProofRate"):
        assert f"alert: {name}" in text


def test_prometheus_config_scrapes_every_replica_under_job_prover():
    text = prom_config(["127.0.0.1:8080", "127.0.0.1:8081"], Path("/x/rules.yml"), scrape_interval=1)
    assert "job_name: 'prover'" in text
    assert "'127.0.0.1:8080'" in text and "'127.0.0.1:8081'" in text
    assert "scrape_interval: 1s" in text
    assert "/x/rules.yml" in text


def test_nginx_config_includes_the_deny_file_and_forwards_the_client_address(tmp_path):
    text = nginx_config(tmp_path, 8088, ["127.0.0.1:8080"], tmp_path / "blocked_ips.conf")
    assert f"include {tmp_path / 'blocked_ips.conf'};" in text
    assert "listen 127.0.0.1:8088;" in text
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    assert "server 127.0.0.1:8080" in text
    assert "daemon off;" in text
