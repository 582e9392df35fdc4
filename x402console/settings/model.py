"""The typed, immutable settings the rest of the console reads.

Defaults are the runbook's (seed/INCIDENT_RESPONSE.md: thresholds, targets, escalation) and the
real system's (reference/x402-system.md: metric names, routes, port, compose names, backups).
Sequences are tuples so a Settings value can be shared between threads and compared safely.
Paths in a Settings built by load_config are absolute; the defaults below keep the relative
form the config file would use.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Any

from x402console.records import Record, record
from x402console.settings.paths import default_state_dir

DISCOVERY_MODES = ("compose", "services", "pattern", "static")
LOG_FORMATS = ("auto", "gin", "json")
HOOK_KINDS = ("webhook", "command")
ESCALATION_CONDITIONS = ("unacknowledged", "unresolved")
SEVERITY_LEVELS = ("P0", "P1", "P2", "P3")

LOCAL_DOCKER_URL = "unix:///var/run/docker.sock"


def _default_journal() -> Path:
    return default_state_dir() / "journal.db"


@record
class Environment(Record):
    """[environment]: which system this is and who operates it."""

    name: str = "x402"
    drill: bool = False
    read_only: bool = False
    journal: Path = field(default_factory=_default_journal)
    # "" means "the OS user"; load_config fills it in so the journal always names someone.
    operator: str = ""


@record
class DockerHost(Record):
    """One [[docker.hosts]] entry: a Docker engine to watch."""

    name: str = "local"
    url: str = LOCAL_DOCKER_URL
    tls_verify: bool = False
    timeout_seconds: float = 10.0


@record
class Discovery(Record):
    """[discovery]: how prover replicas are found."""

    mode: str = "compose"
    compose_project: str = "x402"
    compose_service: str = "prover"
    compose_services: tuple[str, ...] = ("prover-1", "prover-2")
    name_patterns: tuple[str, ...] = ("x402-prover-*", "*-prover-[0-9]*")
    include_oneoff: bool = False


@record
class ProverSettings(Record):
    """[prover]: what every prover replica serves and how it behaves."""

    port: int = 8080
    health_path: str = "/health"
    metrics_path: str = "/metrics"
    health_timeout_seconds: float = 5.0
    log_format: str = "auto"
    honours_env: bool = False
    pprof: bool = False
    memory_limit_bytes: int = 4 * 1024**3


@record
class Replica(Record):
    """One [[replicas]] entry: a prover known by URL rather than discovered."""

    name: str
    health_url: str
    metrics_url: str
    log_file: Path | None = None
    pid_file: Path | None = None
    control_url: str | None = None
    docker_host: str | None = None


@record
class PrometheusSettings(Record):
    """[prometheus]: the fleet's Prometheus (url None = scrape replicas directly)."""

    url: str | None = "http://127.0.0.1:9090"
    job: str = "prover"
    timeout_seconds: float = 5.0


@record
class MetricNames(Record):
    """[metrics]: metric names (the real ones by default, reference 2.1)."""

    proofs_total: str = "proof_generation_total"
    errors_total: str = "proof_generation_errors_total"
    duration_histogram: str = "proof_generation_duration_seconds"
    verification_histogram: str = "proof_verification_duration_seconds"
    rate_limited_total: str = "rate_limit_exceeded_total"
    active_requests: str = "active_requests"
    resident_memory: str = "process_resident_memory_bytes"
    window_minutes: int = 10


@record
class NginxSettings(Record):
    """[nginx]: the deny file and the commands that check and reload nginx."""

    deny_file: Path = Path("/etc/nginx/blocked_ips.conf")
    test_command: tuple[str, ...] = ("nginx", "-t")
    reload_command: tuple[str, ...] = ("nginx", "-s", "reload")
    url: str | None = None


@record
class FirewallSettings(Record):
    """[firewall]: the iptables rule the runbook gives, if wanted."""

    iptables: bool = False
    chain: str = "INPUT"
    iptables_command: tuple[str, ...] = ("iptables",)


@record
class DatabaseSettings(Record):
    """[database]: proofs.db and its backups."""

    path: Path = Path("proofs.db")
    backups_dir: Path = Path("backups")
    backup_name_format: str = "proofs_backup_%Y-%m-%d_%H-%M-%S.db"
    retention_days: int = 7
    delete_batch_size: int = 5000


@record
class CircuitSettings(Record):
    """[circuits]: verification keys and the commands that check the circuit."""

    verification_key: Path = Path("circuits/build/verification_key.json")
    trusted_verification_key: Path = Path("backup/verification_key.json")
    workdir: Path = Path("circuits")
    # Empty: the runbook's `npm run verify` / `npm run test:circuit` do not exist in the real repo.
    verify_command: tuple[str, ...] = ()
    test_command: tuple[str, ...] = ()


@record
class SeverityThresholds(Record):
    """[severity]: the runbook's thresholds between P1 and P2."""

    error_ratio_p1: float = 0.20
    error_ratio_p2: float = 0.05
    latency_p95_p1_seconds: float = 5.0
    latency_p95_p2_seconds: float = 1.0
    proof_rate_p1: float = 10.0
    memory_ratio_warn: float = 0.80


@record
class Target(Record):
    """Response and resolution targets of one severity level, in minutes."""

    response_minutes: int
    # None = best effort (written as 0 in the file).
    resolution_minutes: int | None


DEFAULT_TARGETS: dict[str, Target] = {
    "P0": Target(15, 4 * 60),
    "P1": Target(60, 24 * 60),
    "P2": Target(4 * 60, 3 * 24 * 60),
    # "1 business day" is kept as 24 h: the console has no business calendar.
    "P3": Target(24 * 60, None),
}


@record
class Contact(Record):
    """One [[contacts]] entry."""

    name: str
    role: str = ""
    pager: str | None = None
    email: str | None = None
    hook: str | None = None


@record
class EscalationTier(Record):
    """One [[escalation.tiers]] entry: who is paged, and when."""

    name: str
    after_minutes: int = 0
    contacts: tuple[str, ...] = ()
    condition: str = "unacknowledged"
    # How soon this tier is expected to answer (runbook: on-call within 15 min); None = unstated.
    respond_within_minutes: int | None = None


@record
class NotifyHook(Record):
    """One [[notify.hooks]] entry: how a message leaves the console."""

    name: str
    kind: str = "webhook"
    url: str | None = None
    command: tuple[str, ...] = ()
    timeout_seconds: float = 10.0


@record
class UISettings(Record):
    """[ui]: refresh and rendering limits."""

    refresh_seconds: float = 1.0
    ssh_fps: int = 10
    fps: int = 30
    log_buffer_lines: int = 10000
    max_line_length: int = 2000


# The runbook's emergency contacts. Its phone numbers and e-mail addresses are placeholders
# ("[Phone/Pager]", "@your-domain.com"), so none is copied: paging needs a real value.
DEFAULT_CONTACTS: tuple[Contact, ...] = (
    Contact("on-call", role="on-call engineer"),
    Contact("backup", role="backup engineer"),
    Contact("team-lead", role="team lead"),
    Contact("security", role="security team"),
    Contact("infrastructure", role="infrastructure team"),
)

# Runbook escalation policy: on-call (respond within 15 min), backup engineer if no response
# after 30 min, team lead after 1 hour (whatever the acknowledgement state).
DEFAULT_ESCALATION: tuple[EscalationTier, ...] = (
    EscalationTier("on-call engineer", 0, ("on-call",), "unacknowledged", 15),
    EscalationTier("backup engineer", 30, ("backup",), "unacknowledged"),
    EscalationTier("team lead", 60, ("team-lead",), "unresolved"),
)


def _default_docker_hosts() -> tuple[DockerHost, ...]:
    return (DockerHost(),)


@record
class Settings(Record):
    """Everything the configuration file holds, checked and typed."""

    environment: Environment = field(default_factory=Environment)
    docker_hosts: tuple[DockerHost, ...] = field(default_factory=_default_docker_hosts)
    discovery: Discovery = field(default_factory=Discovery)
    prover: ProverSettings = field(default_factory=ProverSettings)
    replicas: tuple[Replica, ...] = ()
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    metrics: MetricNames = field(default_factory=MetricNames)
    nginx: NginxSettings = field(default_factory=NginxSettings)
    firewall: FirewallSettings = field(default_factory=FirewallSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    circuits: CircuitSettings = field(default_factory=CircuitSettings)
    severity: SeverityThresholds = field(default_factory=SeverityThresholds)
    targets: dict[str, Target] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    contacts: tuple[Contact, ...] = DEFAULT_CONTACTS
    escalation_tiers: tuple[EscalationTier, ...] = DEFAULT_ESCALATION
    notify_hooks: tuple[NotifyHook, ...] = ()
    ui: UISettings = field(default_factory=UISettings)
    keymap: dict[str, str] = field(default_factory=dict)
    # Where the settings came from; not part of equality so a written-then-read copy compares equal.
    source: Path | None = field(default=None, compare=False)
