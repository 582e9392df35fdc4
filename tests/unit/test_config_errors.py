"""Every kind of bad configuration gives a ConfigError naming the file, the line and the key."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from x402console.config import ConfigError, load_config

# (id, file text, expected line, expected key or None, fragment the message must contain)
CASES: list[tuple[str, str, int, str | None, str]] = [
    ("toml-syntax", '[environment]\nname = "x"\n[prover\nport = 1\n', 3, None, "invalid TOML"),
    ("toml-unterminated-string", '[environment]\nname = "x\n', 2, None, "invalid TOML"),
    ("toml-duplicate-key", "[ui]\nfps = 10\nfps = 20\n", 3, None, "invalid TOML"),
    ("unknown-table", '[environment]\nname = "x"\n\n[promethues]\nurl = ""\n', 4, "promethues",
     "unknown table [promethues]; did you mean [prometheus]?"),
    ("unknown-array-table", '[[replica]]\nname = "a"\n', 1, "replica", "did you mean [[replicas]]?"),
    ("unknown-key", '[prometheus]\nurl = ""\ntimeout = 5\n', 3, "prometheus.timeout",
     'unknown key "timeout"; did you mean "timeout_seconds"?'),
    ("unknown-top-level-key", 'name = "x"\n[ui]\n', 1, "name", 'unknown key "name"'),
    ("unknown-key-in-array-element",
     '[[replicas]]\nname = "a"\nhealth_url = "http://127.0.0.1:1/health"\n\n[[replicas]]\nname = "b"\nhelth_url = "x"\n',
     7, "replicas[1].helth_url", 'did you mean "health_url"?'),
    ("string-for-integer", '[prover]\nport = "8080"\n', 2, "prover.port",
     'must be an integer, not a string ("8080"); remove the quotes'),
    ("string-for-boolean", '[environment]\n\nread_only = "yes"\n', 3, "environment.read_only",
     "must be a boolean (true or false), not a string"),
    ("float-for-integer", "[ui]\nfps = 2.5\n", 2, "ui.fps", "must be an integer, not a float (2.5)"),
    ("table-for-string", "[environment]\nname = { first = 1 }\n", 2, "environment.name", "must be a string, not a table"),
    ("section-not-table", 'prometheus = "http://127.0.0.1:9090"\n', 1, "prometheus", "must be a table"),
    ("negative-timeout", "[prometheus]\ntimeout_seconds = -1\n", 2, "prometheus.timeout_seconds",
     "must be greater than 0 (got -1)"),
    ("ratio-above-one", "[severity]\nerror_ratio_p1 = 1.5\n", 2, "severity.error_ratio_p1", "must be between 0 and 1"),
    ("port-out-of-range", "[prover]\nport = 70000\n", 2, "prover.port", "must be between 1 and 65535"),
    ("inverted-error-thresholds", "[severity]\nerror_ratio_p1 = 0.1\nerror_ratio_p2 = 0.3\n", 3,
     "severity.error_ratio_p2", "P2 threshold error_ratio_p2 = 0.3 is above the P1 threshold error_ratio_p1 = 0.1"),
    ("inverted-latency-only-p2-set", "[severity]\nlatency_p95_p2_seconds = 6\n", 2,
     "severity.latency_p95_p2_seconds", "above the P1 threshold latency_p95_p1_seconds = 5"),
    ("inverted-latency-only-p1-set", "[severity]\n\nlatency_p95_p1_seconds = 0.5\n", 3,
     "severity.latency_p95_p1_seconds", "above the P1 threshold"),
    ("prometheus-url-no-scheme", '[prometheus]\nurl = "localhost:9090"\n', 2, "prometheus.url",
     'must start with http:// or https:// (got "localhost:9090")'),
    ("health-url-ftp",
     '[[replicas]]\nname = "a"\nhealth_url = "http://127.0.0.1:1/health"\n[[replicas]]\nname = "b"\nhealth_url = "ftp://127.0.0.1:1/health"\n',
     6, "replicas[1].health_url", "must start with http:// or https://"),
    ("webhook-url-bad-port", '[[notify.hooks]]\nname = "h"\nurl = "http://127.0.0.1:99999/x"\n', 3,
     "notify.hooks[0].url", "is not a valid URL"),
    ("docker-url-http", '[[docker.hosts]]\nname = "x"\nurl = "http://127.0.0.1:2375"\n', 3, "docker.hosts[0].url",
     "must start with unix://, tcp:// or ssh://"),
    ("docker-unix-relative", '[[docker.hosts]]\nurl = "unix://var/run/docker.sock"\n', 2, "docker.hosts[0].url",
     "unix:// needs an absolute socket path"),
    ("docker-tcp-no-host", '[[docker.hosts]]\nurl = "tcp://"\n', 2, "docker.hosts[0].url", "tcp:// needs a host"),
    ("ssh-no-host", '[[docker.hosts]]\nname = "remote"\nurl = "ssh://"\n', 3, "docker.hosts[0].url", "ssh:// needs a host"),
    ("ssh-password", '[[docker.hosts]]\nurl = "ssh://ops:hunter2@box"\n', 2, "docker.hosts[0].url",
     "must not contain a password"),
    ("ssh-path", '[[docker.hosts]]\nurl = "ssh://ops@box/var/run/docker.sock"\n', 2, "docker.hosts[0].url",
     "without a path"),
    ("ssh-bad-port", '[[docker.hosts]]\nurl = "ssh://ops@box:abc"\n', 2, "docker.hosts[0].url", "is not a valid URL"),
    ("tls-verify-on-unix", '[[docker.hosts]]\nurl = "unix:///var/run/docker.sock"\ntls_verify = true\n', 3,
     "docker.hosts[0].tls_verify", "only applies to tcp:// hosts"),
    ("discovery-mode-typo", '[discovery]\nmode = "compse"\n', 2, "discovery.mode",
     'must be one of "compose", "services", "pattern", "static", not "compse"; did you mean "compose"?'),
    ("log-format", '[prover]\nlog_format = "text"\n', 2, "prover.log_format", 'must be one of "auto", "gin", "json"'),
    ("hook-kind", '[[notify.hooks]]\nname = "h"\nkind = "email"\n', 3, "notify.hooks[0].kind",
     'must be one of "webhook", "command"'),
    ("escalation-condition",
     '[[escalation.tiers]]\nname = "t"\ncontacts = ["on-call"]\ncondition = "unanswered"\n', 4,
     "escalation.tiers[0].condition", 'must be one of "unacknowledged", "unresolved"'),
    ("duplicate-replica",
     '[[replicas]]\nname = "p1"\nhealth_url = "http://127.0.0.1:1/health"\n\n[[replicas]]\nname = "p1"\nhealth_url = "http://127.0.0.1:2/health"\n',
     6, "replicas[1].name", 'duplicate name "p1" (already used by replicas[0])'),
    ("duplicate-hook",
     '[[notify.hooks]]\nname = "h"\nurl = "http://127.0.0.1:1/"\n[[notify.hooks]]\nname = "h"\nurl = "http://127.0.0.1:2/"\n',
     5, "notify.hooks[1].name", 'duplicate name "h"'),
    ("duplicate-contact", '[[contacts]]\nname = "on-call"\n[[contacts]]\nname = "on-call"\n', 4, "contacts[1].name",
     'duplicate name "on-call"'),
    ("tiers-out-of-order",
     '[[escalation.tiers]]\nname = "a"\nafter_minutes = 30\ncontacts = ["on-call"]\n\n'
     '[[escalation.tiers]]\nname = "b"\nafter_minutes = 10\ncontacts = ["backup"]\n',
     8, "escalation.tiers[1].after_minutes", 'in order of after_minutes: 10 comes after 30 (tier "a")'),
    ("tier-unknown-contact",
     '[[escalation.tiers]]\nname = "a"\ncontacts = [\n  "on-call",\n  "on-cal",\n]\n', 5,
     "escalation.tiers[0].contacts[1]", 'refers to unknown contact "on-cal"; did you mean "on-call"?'),
    ("contact-unknown-hook",
     '[[notify.hooks]]\nname = "security"\nurl = "http://127.0.0.1:9/"\n\n[[contacts]]\nname = "on-call"\nhook = "securty"\n'
     '[[contacts]]\nname = "backup"\n[[contacts]]\nname = "team-lead"\n',
     7, "contacts[0].hook", 'refers to unknown notify hook "securty"; did you mean "security"?'),
    ("default-tiers-need-contacts", '[[contacts]]\nname = "on-call"\n', 1, "contacts",
     'the default escalation tiers page "backup", "team-lead"'),
    ("keymap-bad-id", '[keymap]\nquit = "q"\n"restart replica" = "r"\n', 3, 'keymap."restart replica"',
     "must be identifiers joined by dots"),
    ("keymap-empty-key", '[keymap]\nquit = ""\n', 2, "keymap.quit", "must name at least one key"),
    ("keymap-empty-entry", '[keymap]\nquit = "q,,x"\n', 2, "keymap.quit", "no empty entry between commas"),
    ("keymap-not-string", "[keymap]\nquit = 5\n", 2, "keymap.quit", "not an integer"),
    ("keymap-conflict", '[keymap]\nquit = "q"\nrefresh = "ctrl+r, q"\n', 3, "keymap.refresh",
     'key "q" is bound to both "quit" and "refresh"'),
    ("replicas-as-table", '[replicas]\nname = "a"\n', 1, "replicas", "write [[replicas]] blocks, not [replicas]"),
    ("replica-missing-health-url", '[ui]\nfps = 10\n\n[[replicas]]\nname = "a"\n', 4, "replicas[0].health_url",
     "is required but missing"),
    ("replica-unknown-docker-host",
     '[[docker.hosts]]\nname = "local"\n[[replicas]]\nname = "a"\nhealth_url = "http://127.0.0.1:1/h"\ndocker_host = "locl"\n',
     6, "replicas[0].docker_host", 'refers to unknown Docker host "locl"; did you mean "local"?'),
    ("static-without-replicas", '[discovery]\nmode = "static"\n', 2, "discovery.mode", "no [[replicas]] are defined"),
    ("compose-without-docker", '[docker]\nhosts = []\n', 2, "docker.hosts", "needs a Docker host"),
    ("target-inline-bad-type", '[targets]\nP0 = { response = 15 }\nP1 = { response = 60, resolution = "1d" }\n', 3,
     "targets.P1.resolution", "must be an integer, not a string"),
    ("target-unknown-level", "[targets]\nP5 = { response = 15 }\n", 2, "targets.P5", "unknown key"),
    ("target-resolution-before-response", "[targets]\n[targets.P2]\nresponse = 240\nresolution = 60\n", 4,
     "targets.P2.resolution", "shorter than the response target"),
    ("inline-array-of-tables-duplicate",
     'replicas = [\n  { name = "a", health_url = "http://127.0.0.1:1/h" },\n  { name = "a", health_url = "http://127.0.0.1:2/h" },\n]\n',
     3, "replicas[1].name", "duplicate name"),
    ("key-after-multiline-string-with-fake-header",
     '[environment]\nname = """\n[prometheus]\nurl = 1\n"""\noperator = 5\n', 6, "environment.operator",
     "must be a string, not an integer"),
    ("backup-format-without-time", '[database]\nbackup_name_format = "proofs.db"\n', 2,
     "database.backup_name_format", "must contain a strftime time code"),
    ("webhook-without-url", '[[notify.hooks]]\nname = "pager"\n', 1, "notify.hooks[0].url",
     'is required for kind = "webhook"'),
    ("command-as-string", '[[notify.hooks]]\nname = "mail"\nkind = "command"\ncommand = "mail -s x"\n', 4,
     "notify.hooks[0].command", "must be an array of arguments"),
    ("metric-name", '[metrics]\nproofs_total = "proof generation"\n', 2, "metrics.proofs_total",
     "must be a Prometheus metric name"),
    ("dotted-key-in-table", '[prometheus]\nurl.host = "x"\n', 2, "prometheus.url", "must be a string (a URL), not a table"),
    ("tier-without-contacts", '[[escalation.tiers]]\nname = "a"\ncontacts = []\n', 3, "escalation.tiers[0].contacts",
     "must name at least one contact"),
    ("nul-in-path", '[database]\npath = "a\\u0000b"\n', 2, "database.path", "contains a NUL character"),
]


@pytest.mark.parametrize(("text", "line", "key", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_names_file_line_and_key(tmp_path: Path, text: str, line: int, key: str | None, fragment: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.path, err.line, err.key) == (path, line, key), str(err)
    prefix = f"{path}:{line}: " + (f"{key}: " if key else "")
    assert str(err).startswith(prefix), str(err)
    assert fragment in err.message, str(err)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("  \n\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:1: file is empty; add settings, or delete it to use the defaults"


def test_comment_only_file_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# nothing set yet\n", encoding="utf-8")
    assert load_config(path).severity.error_ratio_p1 == 0.20


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[environment]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 2
    assert str(info.value).startswith(f"{path}:2: not valid UTF-8 (byte 0xe9 at column 12)")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes('\ufeff[environment]\nname = "café"\n'.encode())
    assert load_config(path).environment.name == "café"


def test_directory_given_as_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a configuration file"


def test_missing_explicit_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: no such file"


def test_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# " + "x" * (1024 * 1024 + 10) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_config(path)


def test_syntax_error_at_end_of_document(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[environment]\nname = "x"\nread_only =', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 3 and "invalid TOML" in info.value.message


def test_error_from_overrides_has_no_file_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[environment]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides={"environment.read_only": "yes"})
    err = info.value
    assert (err.path, err.line, err.key) == (None, None, "environment.read_only")
    assert str(err).startswith("environment.read_only: must be a boolean") and str(err).endswith("(from overrides)")


def test_config_error_str_and_pickle() -> None:
    err = ConfigError("must be positive", Path("c.toml"), 12, "ui.fps")
    assert str(err) == "c.toml:12: ui.fps: must be positive"
    assert str(ConfigError("bad", Path("c.toml"))) == "c.toml: bad"
    assert str(ConfigError("bad", key="ui.fps")) == "ui.fps: bad"
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.line, back.key, back.path) == (str(err), 12, "ui.fps", Path("c.toml"))
