"""`x402console status`: exit codes, the JSON object's keys, errors, and no UI import."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rig.components import free_port
from x402console.config import write_config
from x402console.status.cli import add_parser, build_parser, run_status

UI_ONLY = ("textual", "rich", "textual_plotext", "plotext")
TOP_KEYS = {
    "schema", "taken_at", "environment", "drill", "config", "window_seconds", "exit_code", "verdict", "severity",
    "incidents", "open_incidents", "replicas", "metrics", "logs", "database", "verification_key", "components",
    "alerts_firing", "unobserved",
}
FAST = ["--window", "5", "--timeout", "2", "--scrape-interval", "0.2"]


def _config(tmp_path: Path, replicas: list[dict]) -> Path:
    path = tmp_path / "config.toml"
    write_config({
        "environment": {"name": "unit", "journal": str(tmp_path / "journal.db")},
        "discovery": {"mode": "static"},
        "prometheus": {"url": ""},
        "database": {"path": str(tmp_path / "proofs.db")},
        "circuits": {"verification_key": str(tmp_path / "vk.json"),
                     "trusted_verification_key": str(tmp_path / "backup" / "vk.json")},
        "replicas": replicas,
    }, path)
    return path


def _down_config(tmp_path: Path) -> Path:
    port = free_port()  # nothing listens there: connection refused
    return _config(tmp_path, [{"name": "prover-1", "health_url": f"http://127.0.0.1:{port}/health",
                               "metrics_url": f"http://127.0.0.1:{port}/metrics"}])


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_status(build_parser().parse_args(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_running_status_never_imports_the_ui(tmp_path):
    config = _down_config(tmp_path)
    code = (
        "import sys\n"
        "from x402console.status.cli import main\n"
        f"rc = main(['--config', {str(config)!r}, '--json', *{FAST!r}])\n"
        f"print('UI', sorted(m for m in sys.modules if m.split('.')[0] in {UI_ONLY!r}))\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "UI []"


def test_every_replica_down_is_p0_with_exit_2_and_stable_json_keys(tmp_path):
    code, out, _ = _run(["--config", str(_down_config(tmp_path)), "--json", *FAST])
    report = json.loads(out)
    assert code == 2 and report["exit_code"] == 2 and report["verdict"] == "critical"
    assert set(report) == TOP_KEYS
    assert report["severity"]["level"] == "P0"
    assert report["severity"]["response_minutes"] == 15
    assert report["incidents"][0]["incident"] == 1
    assert report["replicas"][0]["up"] is False
    assert report["open_incidents"] == []  # no journal file: not an error
    assert report["config"].endswith("config.toml")
    assert report["verification_key"]["status"] == "missing"
    # checks that could not run say so
    assert report["database"]["integrity"] is None
    assert any(u.startswith("proofs.db:") and "does not exist" in u for u in report["unobserved"])


def test_text_output_leads_with_the_verdict(tmp_path):
    code, out, _ = _run(["--config", str(_down_config(tmp_path)), *FAST])
    assert code == 2
    lines = out.splitlines()
    assert lines[1].startswith("verdict: P0 suggested")
    assert any("runbook incident 1" in line for line in lines)
    assert any(line.strip().startswith("prover-1") and "DOWN" in line for line in lines)


def test_no_replica_found_is_exit_3(tmp_path):
    # Compose discovery on an engine that is not there: nothing to look at.
    path = tmp_path / "config.toml"
    write_config({
        "environment": {"name": "unit", "journal": str(tmp_path / "journal.db")},
        "discovery": {"mode": "compose"},
        "docker": {"hosts": [{"name": "gone", "url": f"unix://{tmp_path}/docker.sock", "timeout_seconds": 1}]},
        "prometheus": {"url": ""},
        "database": {"path": str(tmp_path / "proofs.db")},
    }, path)
    code, out, _ = _run(["--config", str(path), "--json", *FAST])
    report = json.loads(out)
    assert code == 3 and report["verdict"] == "unobservable"
    assert report["components"] == {"docker:gone": "down"}
    assert "replicas: none configured or discovered" in report["unobserved"]
    assert any("docker host gone" in u for u in report["unobserved"])


def test_configuration_error_is_exit_3_with_file_and_line(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[prometheus]\nurl = "ftp://example"\n')
    code, out, err = _run(["--config", str(bad)])
    assert code == 3 and out == ""
    assert "config.toml:2" in err and "prometheus" in err
    code, out, _ = _run(["--config", str(bad), "--json"])
    report = json.loads(out)
    assert code == 3 and report["exit_code"] == 3 and "config.toml:2" in report["error"]
    assert TOP_KEYS <= set(report)


def test_out_of_range_numbers_are_refused(tmp_path):
    code, _, err = _run(["--config", str(_down_config(tmp_path)), "--window", "0"])
    assert code == 3 and "--window" in err


def test_help_documents_the_exit_codes():
    text = build_parser().format_help()
    for line in ("0  healthy", "1  P3 or P2", "2  P1 or P0", "3  could not observe"):
        assert line in text


def test_add_parser_keeps_a_config_given_before_the_subcommand():
    parent = argparse.ArgumentParser(prog="x402console")
    parent.add_argument("--config", type=Path)
    add_parser(parent.add_subparsers(dest="command"))
    assert parent.parse_args(["--config", "a.toml", "status"]).config == Path("a.toml")
    args = parent.parse_args(["status", "--config", "b.toml", "--json", "--window", "30"])
    assert (args.config, args.json, args.window) == (Path("b.toml"), True, 30.0)
    assert parent.parse_args(["status"]).config is None


@pytest.mark.parametrize("argv", [["--window", "abc"], ["--bogus"]])
def test_usage_errors_exit_3_not_2_which_means_critical(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 3
    assert "error:" in capsys.readouterr().err


def test_usage_errors_in_the_wired_subcommand_exit_3(capsys):
    parent = argparse.ArgumentParser(prog="x402console")
    add_parser(parent.add_subparsers(dest="command"))
    with pytest.raises(SystemExit) as exc:
        parent.parse_args(["status", "--window", "abc"])
    assert exc.value.code == 3


def test_the_cli_exit_codes_are_the_reports() -> None:
    # status/cli.py repeats them so that building the main parser stays cheap; they must agree.
    from x402console.status import cli, report

    assert (cli.EXIT_OK, cli.EXIT_DEGRADED, cli.EXIT_CRITICAL, cli.EXIT_UNOBSERVABLE) == (
        report.EXIT_OK, report.EXIT_DEGRADED, report.EXIT_CRITICAL, report.EXIT_UNOBSERVABLE)
