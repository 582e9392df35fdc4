"""Configuration: defaults, the shipped example, paths, XDG locations, overrides, writing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from x402console.config import (
    ConfigError,
    Contact,
    EscalationTier,
    NotifyHook,
    Replica,
    Settings,
    Target,
    default_config_path,
    default_state_dir,
    example_config_path,
    load_config,
    settings_to_dict,
    write_config,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated HOME with no XDG overrides, and the cwd inside it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.chdir(home)
    return home


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- defaults
def test_defaults_are_the_runbooks(home: Path) -> None:
    s = load_config()  # no file at the default path
    assert s.source is None and s.replicas == ()
    # Severity levels (runbook): P1 > 20 % errors, P2 5-20 %; p95 P1 > 5 s, P2 1-5 s; P1 < 10 req/s.
    sev = s.severity
    assert (sev.error_ratio_p1, sev.error_ratio_p2) == (0.20, 0.05)
    assert (sev.latency_p95_p1_seconds, sev.latency_p95_p2_seconds) == (5.0, 1.0)
    assert sev.proof_rate_p1 == 10.0 and sev.memory_ratio_warn == 0.80
    assert s.targets == {
        "P0": Target(15, 240),
        "P1": Target(60, 24 * 60),
        "P2": Target(4 * 60, 3 * 24 * 60),
        "P3": Target(24 * 60, None),
    }
    tiers = [(t.name, t.after_minutes, t.contacts, t.respond_within_minutes) for t in s.escalation_tiers]
    assert tiers == [
        ("on-call engineer", 0, ("on-call",), 15),
        ("backup engineer", 30, ("backup",), None),
        ("team lead", 60, ("team-lead",), None),
    ]
    assert {c.name for c in s.contacts} >= {"on-call", "backup", "team-lead", "security"}


def test_defaults_are_the_real_systems(home: Path) -> None:
    s = load_config()
    m = s.metrics
    assert (m.proofs_total, m.errors_total, m.duration_histogram, m.verification_histogram) == (
        "proof_generation_total", "proof_generation_errors_total",
        "proof_generation_duration_seconds", "proof_verification_duration_seconds",
    )
    assert (m.rate_limited_total, m.active_requests, m.resident_memory) == (
        "rate_limit_exceeded_total", "active_requests", "process_resident_memory_bytes")
    assert (s.prover.port, s.prover.health_path, s.prover.metrics_path) == (8080, "/health", "/metrics")
    assert s.prover.memory_limit_bytes == 4 * 1024**3
    assert (s.discovery.mode, s.discovery.compose_project, s.discovery.compose_service) == ("compose", "x402", "prover")
    assert s.nginx.deny_file == Path("/etc/nginx/blocked_ips.conf")
    assert s.nginx.test_command == ("nginx", "-t") and s.nginx.reload_command == ("nginx", "-s", "reload")
    # Without a file, relative defaults are relative to the current directory.
    assert s.database.path == home / "proofs.db" and s.database.backups_dir == home / "backups"
    assert s.database.backup_name_format == "proofs_backup_%Y-%m-%d_%H-%M-%S.db"
    assert s.database.retention_days == 7
    assert [h.url for h in s.docker_hosts] == ["unix:///var/run/docker.sock"]
    assert s.environment.journal == home / ".local/state/x402console/journal.db"
    assert s.environment.operator  # filled in from the OS user


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.ui.fps = 1  # type: ignore[misc]
    assert dataclasses.replace(s.ui, fps=5) != s.ui
    assert dataclasses.replace(s.ui, fps=5) == dataclasses.replace(s.ui, fps=5)
    assert hash(s.severity) == hash(Settings().severity)


# ---------------------------------------------------------------------------- example file
def test_shipped_example_loads(home: Path) -> None:
    s = load_config(example_config_path())
    assert s.source == example_config_path()
    assert s.environment.name == "production"
    assert s.replicas == (
        Replica("prover-1", "http://127.0.0.1:8080/health", "http://127.0.0.1:8080/metrics",
                log_file=Path("/var/log/x402/prover-1.log")),
    )
    assert s.notify_hooks == (NotifyHook("security", "webhook", "http://127.0.0.1:9999/hook"),)
    assert [t.after_minutes for t in s.escalation_tiers] == [0, 30, 60]
    assert s.prometheus.url == "http://127.0.0.1:9090"
    # The example documents the defaults: its thresholds and targets are the built-in ones.
    assert s.severity == Settings().severity and s.targets == Settings().targets
    assert s.database.path == example_config_path().parent / "proofs.db"


def test_full_file_loads(tmp_path: Path, home: Path) -> None:
    path = _write(tmp_path / "etc" / "config.toml", """
[environment]
name = "staging"
read_only = true
operator = "alice"

[[docker.hosts]]
name = "local"
url = "unix:///run/docker.sock"
[[docker.hosts]]
name = "edge"
url = "tcp://10.0.0.5:2376"
tls_verify = true
timeout_seconds = 2.5
[[docker.hosts]]
name = "bastion"
url = "ssh://ops@bastion.example:2222"

[discovery]
mode = "services"
compose_services = ["prover-1", "prover-2", "prover-3"]

[[replicas]]
name = "p1"
health_url = "https://p1.example/health"
docker_host = "edge"

[prometheus]
url = ""

[targets]
P3 = { response = 2880 }

[[notify.hooks]]
name = "mail"
kind = "command"
command = ["mail", "-s", "P0 INCIDENT", "security@example.org"]

[[contacts]]
name = "on-call"
email = "oncall@example.org"
hook = "mail"
[[contacts]]
name = "lead"

[[escalation.tiers]]
contacts = ["on-call"]
[[escalation.tiers]]
after_minutes = 45
contacts = ["on-call", "lead"]
condition = "unresolved"

[keymap]
restart_replica = "r"
refresh = "ctrl+r,f5"
""")
    s = load_config(path)
    assert s.environment.read_only and s.environment.operator == "alice"
    assert [h.name for h in s.docker_hosts] == ["local", "edge", "bastion"]
    assert s.docker_hosts[1].tls_verify and s.docker_hosts[1].timeout_seconds == 2.5
    assert s.discovery.compose_services == ("prover-1", "prover-2", "prover-3")
    # metrics_url defaults to the health URL's origin plus [prover] metrics_path.
    assert s.replicas[0].metrics_url == "https://p1.example/metrics"
    assert s.prometheus.url is None
    assert s.targets["P3"] == Target(2880, None) and s.targets["P0"] == Target(15, 240)
    assert s.notify_hooks[0].command == ("mail", "-s", "P0 INCIDENT", "security@example.org")
    assert s.contacts[0] == Contact("on-call", email="oncall@example.org", hook="mail")
    assert s.escalation_tiers == (
        EscalationTier("tier 1", 0, ("on-call",)),
        EscalationTier("tier 2", 45, ("on-call", "lead"), "unresolved"),
    )
    assert s.keymap == {"restart_replica": "r", "refresh": "ctrl+r,f5"}


# ---------------------------------------------------------------------------- paths and XDG
def test_relative_paths_resolve_against_the_file(tmp_path: Path, home: Path) -> None:
    path = _write(tmp_path / "etc" / "x402" / "config.toml", """
[environment]
journal = "~/j/journal.db"
[database]
path = "data/proofs.db"
backups_dir = "../backups"
[circuits]
workdir = "/abs/circuits"
[discovery]
mode = "static"
[[replicas]]
name = "p"
health_url = "http://127.0.0.1:1/health"
log_file = "logs/p.log"
pid_file = ""
""")
    s = load_config(path)
    base = tmp_path / "etc" / "x402"
    assert s.environment.journal == home / "j" / "journal.db"
    assert s.database.path == base / "data" / "proofs.db"
    assert s.database.backups_dir == base / ".." / "backups"
    assert s.circuits.workdir == Path("/abs/circuits")
    # Defaults that are relative also follow the file.
    assert s.circuits.verification_key == base / "circuits/build/verification_key.json"
    assert s.replicas[0].log_file == base / "logs" / "p.log" and s.replicas[0].pid_file is None
    assert s.docker_hosts == ()  # static discovery and no [[docker.hosts]]: no Docker


def test_relative_config_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "conf" / "c.toml", '[database]\npath = "p.db"\n')
    monkeypatch.chdir(tmp_path)
    s = load_config(Path("conf/c.toml"))
    assert s.source == tmp_path / "conf" / "c.toml"
    assert s.database.path == tmp_path / "conf" / "p.db"


def test_xdg_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert default_config_path() == tmp_path / "h/.config/x402console/config.toml"
    assert default_state_dir() == tmp_path / "h/.local/state/x402console"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    assert default_config_path() == tmp_path / "cfg/x402console/config.toml"
    assert default_state_dir() == tmp_path / "st/x402console"
    # The XDG spec says relative values are invalid and must be ignored.
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/cfg")
    monkeypatch.setenv("XDG_STATE_HOME", "")
    assert default_config_path() == tmp_path / "h/.config/x402console/config.toml"
    assert default_state_dir() == tmp_path / "h/.local/state/x402console"


def test_default_path_is_read_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    s = load_config()
    assert s.source is None and s.environment.journal == tmp_path / "st/x402console/journal.db"
    cfg = _write(tmp_path / "cfg/x402console/config.toml", '[environment]\nname = "from-xdg"\n')
    s = load_config()
    assert s.environment.name == "from-xdg" and s.source == cfg
    cfg.write_text("[ui]\nfps = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config()  # a broken default file is an error, not silently the defaults
    assert str(info.value).startswith(f"{cfg}:2: ui.fps: must be between 1 and 240")


# ---------------------------------------------------------------------------- overrides
def test_overrides_nested_and_dotted(tmp_path: Path, home: Path) -> None:
    path = _write(tmp_path / "c.toml", '[environment]\nname = "x"\n[ui]\nfps = 20\n')
    s = load_config(path, overrides={"environment.read_only": True, "ui": {"ssh_fps": 5}, "database.path": "rel.db"})
    assert s.environment.read_only and s.environment.name == "x"
    assert (s.ui.fps, s.ui.ssh_fps) == (20, 5)
    # Paths given as overrides come from the command line: relative to the cwd, not the file.
    assert s.database.path == home / "rel.db"
    assert s.database.backups_dir == tmp_path / "backups"


# ---------------------------------------------------------------------------- writing
def test_round_trip_of_loaded_settings(tmp_path: Path, home: Path) -> None:
    for source in (example_config_path(), None):
        s = load_config(source)
        out = tmp_path / "out" / "config.toml"
        write_config(s, out)
        back = load_config(out)
        assert back == s
        assert back.source == out
        assert settings_to_dict(back) == settings_to_dict(s)


def test_round_trip_of_edge_values(tmp_path: Path, home: Path) -> None:
    s = load_config()
    s = dataclasses.replace(
        s,
        docker_hosts=(),
        discovery=dataclasses.replace(s.discovery, mode="static", compose_services=(), name_patterns=()),
        replicas=(Replica("r", "http://127.0.0.1:1/h", "http://127.0.0.1:1/m", control_url="http://127.0.0.1:2"),),
        prometheus=dataclasses.replace(s.prometheus, url=None),
        contacts=(),
        escalation_tiers=(),
        notify_hooks=(),
        keymap={"quit": "q", "refresh": "ctrl+r,f5"},
        severity=dataclasses.replace(s.severity, error_ratio_p1=1e-3, error_ratio_p2=0.0, proof_rate_p1=0.1 + 0.2),
        targets={**s.targets, "P1": Target(1, None)},
    )
    out = tmp_path / "edge.toml"
    write_config(s, out)
    assert load_config(out) == s


HOSTILE = 'q"uote \\back\\slash\nnew\tline \r\x00\x01\x1b[31m\x7f é ✓ 😀 \u2028 \'single\' """ \'\'\' #no-comment ]] ='


def test_hostile_strings_survive_round_trip(tmp_path: Path, home: Path) -> None:
    s = load_config()
    s = dataclasses.replace(
        s,
        environment=dataclasses.replace(s.environment, name=HOSTILE, operator=HOSTILE),
        contacts=(Contact("on-call", role=HOSTILE, pager=HOSTILE, hook="h"), *s.contacts[1:]),
        escalation_tiers=(dataclasses.replace(s.escalation_tiers[0], name=HOSTILE), *s.escalation_tiers[1:]),
        notify_hooks=(NotifyHook("h", "command", command=("printf", HOSTILE.replace("\x00", ""), "")),),
        prometheus=dataclasses.replace(s.prometheus, job=HOSTILE),
        database=dataclasses.replace(s.database, path=tmp_path / 'dir "with" \\ quotes\nand newline' / "p.db"),
        keymap={"odd": "ctrl+\\,\"", "other": "é"},
    )
    out = tmp_path / "hostile.toml"
    write_config(s, out)
    text = out.read_text(encoding="utf-8")
    assert "\x00" not in text and "\x1b" not in text  # control characters are escaped, not raw
    assert load_config(out) == s


def test_emitter_round_trips_hostile_keys_and_shapes() -> None:
    from x402console.settings.writer import dumps

    data = {
        "top": 1,
        HOSTILE: {"a.b": HOSTILE, "": "empty key", "nested": {"deep": {"x": [1, 2.5, True, "s"]}}},
        "aot": [{"k": 1, "sub": [{"z": "1"}, {"z": "2"}]}, {"k": 2}],
        "mixed": [[1, 2], ["a"], []],
        "inline_list": [{"a": 1}, 2],
        "floats": {"big": 1e300, "small": -2.5e-300, "inf": float("inf"), "neg": -0.0},
        "empty": {},
        "empty_list": [],
        "skipped": None,
    }
    back = tomllib.loads(dumps(data))
    expected = {k: v for k, v in data.items() if k != "skipped"}
    assert back == expected


def test_write_config_checks_a_dict_first(tmp_path: Path) -> None:
    out = tmp_path / "c.toml"
    with pytest.raises(ConfigError) as info:
        write_config({"prometheus": {"url": "localhost:9090"}}, out)
    assert (info.value.path, info.value.key) == (out, "prometheus.url")
    assert not out.exists()


def test_write_config_dict_like_the_drill_writes(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "drill" / "config.toml"
    data = {
        "environment": {"name": "drill (process)", "drill": True, "journal": str(tmp_path / "j.db")},
        "prover": {"port": 8080, "log_format": "gin", "honours_env": False, "memory_limit_bytes": 512 * 1024 * 1024},
        "replicas": [
            {"name": f"prover-{i}", "health_url": f"http://127.0.0.1:{9000 + i}/health",
             "metrics_url": f"http://127.0.0.1:{9000 + i}/metrics", "log_file": f"logs/prover-{i}.log",
             "control_url": f"http://127.0.0.1:{9100 + i}"}
            for i in (1, 2)
        ],
        "database": {"path": "proofs.db"},
        "discovery": {"mode": "static"},
        "prometheus": {"url": "", "job": "prover"},
    }
    write_config(data, out)
    s = load_config(out)
    assert s.environment.drill and s.docker_hosts == () and s.prometheus.url is None
    assert [r.log_file for r in s.replicas] == [out.parent / "logs/prover-1.log", out.parent / "logs/prover-2.log"]
    assert s.database.path == out.parent / "proofs.db"
    assert tomllib.loads(out.read_text(encoding="utf-8"))["replicas"][1]["control_url"] == "http://127.0.0.1:9102"


def test_write_is_atomic_and_keeps_mode(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "c.toml"
    write_config(Settings(), out)
    assert out.stat().st_mode & 0o777 == 0o600  # may hold webhook tokens
    os.chmod(out, 0o640)
    write_config(load_config(out), out)
    assert out.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "home"]  # no temp file left behind


def test_write_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        write_config(Settings(), tmp_path)
    s = dataclasses.replace(Settings(), environment=dataclasses.replace(Settings().environment, name="bad \udc80"))
    with pytest.raises(ConfigError) as info:
        write_config(s, tmp_path / "c.toml")
    assert info.value.key == "environment.name" and "lone surrogate" in info.value.message
    assert not (tmp_path / "c.toml").exists()


# ---------------------------------------------------------------------------- key -> line scan
def test_key_lines_follow_toml_structure() -> None:
    from x402console.settings.toml_lines import key_lines, line_of

    text = '''# comment [not a table]
title = "t"  # [x]
[a]
b.c = 1
"quoted.key" = 'lit'
s = """
[fake]
x = 1
"""
[[arr]]
n = 1
[[arr.sub]]
m = 1
[[arr]]
n = 2
[[arr.sub]]
m = 2
[[arr.sub]]
m = [
  1,
  { q = 3 },
]
[arr.tbl]
k = 1
t = { u = { v = 1 } }
'''
    assert tomllib.loads(text)  # the sample itself is valid TOML
    lines = key_lines(text)
    assert lines[("title",)] == 2
    assert lines[("a",)] == 3 and lines[("a", "b", "c")] == 4 and lines[("a", "quoted.key")] == 5
    assert ("fake",) not in lines and lines[("a", "s")] == 6
    assert lines[("arr",)] == 10 and lines[("arr", 0, "n")] == 11 and lines[("arr", 1, "n")] == 15
    assert lines[("arr", 0, "sub", 0, "m")] == 13
    assert lines[("arr", 1, "sub", 1)] == 18 and lines[("arr", 1, "sub", 1, "m", 1, "q")] == 21
    assert lines[("arr", 1, "tbl", "k")] == 24
    assert lines[("arr", 1, "tbl", "t", "u", "v")] == 25
    assert line_of(lines, ("arr", 1, "sub", 0, "missing")) == 16
    assert line_of(lines, ("nowhere",)) is None


# ---------------------------------------------------------------------------- import cost
def test_import_pulls_in_no_heavy_modules() -> None:
    code = (
        "import sys, x402console.config as c; "
        "heavy = [m for m in ('textual', 'rich', 'httpx', 'docker', 'tomllib', 'difflib', 'tempfile') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_dotted_binding_ids_in_the_keymap(tmp_path):
    # TOML reads incident.declare = "x" as a nested table; both spellings mean the binding id.
    path = tmp_path / "config.toml"
    path.write_text('[keymap]\nincident.declare = "ctrl+d"\n"logs.pause" = "P"\n')
    settings = load_config(path)
    assert settings.keymap == {"incident.declare": "ctrl+d", "logs.pause": "P"}
