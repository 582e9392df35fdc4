"""Raw TOML data (dicts from tomllib) -> a checked Settings, or the first specific problem.

Tables are read in file order so the first error reported is the first one in the file; then
the checks that relate several settings (references between names, ordering, thresholds) run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from x402console.settings import convert as c
from x402console.settings.convert import Context, Converter, Invalid
from x402console.settings.model import (
    DEFAULT_CONTACTS,
    DEFAULT_ESCALATION,
    DEFAULT_TARGETS,
    DISCOVERY_MODES,
    ESCALATION_CONDITIONS,
    HOOK_KINDS,
    LOG_FORMATS,
    SEVERITY_LEVELS,
    CircuitSettings,
    Contact,
    DatabaseSettings,
    Discovery,
    DockerHost,
    Environment,
    EscalationTier,
    FirewallSettings,
    MetricNames,
    NginxSettings,
    NotifyHook,
    PrometheusSettings,
    ProverSettings,
    Replica,
    Settings,
    SeverityThresholds,
    Target,
    UISettings,
)
from x402console.settings.toml_lines import KeyPath

T = TypeVar("T")

ENVIRONMENT: dict[str, Converter] = {
    "name": c.text,
    "drill": c.boolean,
    "read_only": c.boolean,
    "journal": c.path,
    "operator": c.text,
}
DOCKER_HOST: dict[str, Converter] = {
    "name": c.name,
    "url": c.docker_url,
    "tls_verify": c.boolean,
    "timeout_seconds": c.positive,
}
DISCOVERY: dict[str, Converter] = {
    "mode": c.choice(*DISCOVERY_MODES),
    "compose_project": c.compose_project,
    "compose_service": c.name,
    "compose_services": c.string_list,
    "name_patterns": c.string_list,
    "include_oneoff": c.boolean,
}
PROVER: dict[str, Converter] = {
    "port": c.integer(1, 65535),
    "health_path": c.url_path,
    "metrics_path": c.url_path,
    "health_timeout_seconds": c.positive,
    "log_format": c.choice(*LOG_FORMATS),
    "honours_env": c.boolean,
    "pprof": c.boolean,
    "memory_limit_bytes": c.integer(1),
}
REPLICA: dict[str, Converter] = {
    "name": c.name,
    "health_url": c.http_url,
    "metrics_url": c.http_url,
    "log_file": c.opt_path,
    "pid_file": c.opt_path,
    "control_url": c.opt_http_url,
    "docker_host": c.opt_name,
}
PROMETHEUS: dict[str, Converter] = {
    "url": c.opt_http_url,
    "job": c.nonempty_text,
    "timeout_seconds": c.positive,
}
METRICS: dict[str, Converter] = {
    **{f.name: c.metric_name for f in dataclasses.fields(MetricNames) if f.name != "window_minutes"},
    "window_minutes": c.integer(1, 7 * 24 * 60),
}
NGINX: dict[str, Converter] = {
    "deny_file": c.path,
    "test_command": c.command,
    "reload_command": c.command,
    "url": c.opt_http_url,
}
FIREWALL: dict[str, Converter] = {
    "iptables": c.boolean,
    "chain": c.chain_name,
    "iptables_command": c.command,
}
DATABASE: dict[str, Converter] = {
    "path": c.path,
    "backups_dir": c.path,
    "backup_name_format": c.backup_name_format,
    "retention_days": c.integer(1, 36500),
    "delete_batch_size": c.integer(1, 1_000_000),
}
CIRCUITS: dict[str, Converter] = {
    "verification_key": c.path,
    "trusted_verification_key": c.path,
    "workdir": c.path,
    "verify_command": c.command,
    "test_command": c.command,
}
SEVERITY: dict[str, Converter] = {
    "error_ratio_p1": c.ratio,
    "error_ratio_p2": c.ratio,
    "latency_p95_p1_seconds": c.positive,
    "latency_p95_p2_seconds": c.positive,
    "proof_rate_p1": c.number(0),
    "memory_ratio_warn": c.number(0, 1, lo_open=True),
}
TARGET: dict[str, Converter] = {
    "response": c.integer(1),
    "resolution": c.zero_is_none(c.integer(0)),
}
CONTACT: dict[str, Converter] = {
    "name": c.name,
    "role": c.text,
    "pager": c.opt_text,
    "email": c.email,
    "hook": c.opt_name,
}
TIER: dict[str, Converter] = {
    "name": c.nonempty_text,
    "after_minutes": c.integer(0),
    "contacts": c.string_list,
    "condition": c.choice(*ESCALATION_CONDITIONS),
    "respond_within_minutes": c.zero_is_none(c.integer(0)),
}
HOOK: dict[str, Converter] = {
    "name": c.name,
    "kind": c.choice(*HOOK_KINDS),
    "url": c.opt_http_url,
    "command": c.command,
    "timeout_seconds": c.positive,
}
UI: dict[str, Converter] = {
    "refresh_seconds": c.number(0, 3600, lo_open=True),
    "ssh_fps": c.integer(1, 240),
    "fps": c.integer(1, 240),
    "log_buffer_lines": c.integer(1, 10_000_000),
    "max_line_length": c.integer(1, 10_000_000),
}

# Top level: table name -> what it holds. "docker", "escalation" and "notify" only wrap an array.
TOP_LEVEL = (
    "environment", "docker", "discovery", "prover", "replicas", "prometheus", "metrics", "nginx",
    "firewall", "database", "circuits", "severity", "targets", "contacts", "escalation", "notify",
    "ui", "keymap",
)
ARRAYS_OF_TABLES = {"replicas", "contacts"}
WRAPPERS = {"docker": "hosts", "escalation": "tiers", "notify": "hooks"}


# ---------------------------------------------------------------------------- helpers
def dotted(key: KeyPath) -> str:
    """("replicas", 2, "health_url") -> 'replicas[2].health_url' (quoted where TOML needs it)."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        bare = part and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in part)
        text = part if bare else c.quote_for_message(part)
        out += f".{text}" if out else text
    return out


def _unknown(key: KeyPath, known: Any, value: Any) -> Invalid:
    word = str(key[-1])
    close = c.suggest(word, known)
    aot = isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    if len(key) == 1 and (isinstance(value, dict) or aot):
        open_, shut = ("[[", "]]") if aot else ("[", "]")
        message = f"unknown table {open_}{word}{shut}"
        hint = f"; did you mean {open_}{close}{shut}?" if close else ""
    else:
        message = f'unknown key "{word}"'
        hint = f'; did you mean "{close}"?' if close else ""
    if not hint:
        hint = f" (known: {', '.join(known)})"
    return Invalid(key, message + hint)


def _table(raw: Any, key: KeyPath) -> dict[str, Any]:
    if not isinstance(raw, dict):
        where = dotted(key)
        raise Invalid(key, f"must be a table ([{where}] or {where} = {{ ... }}), not {c.type_name(raw)} ({c.show(raw)})")
    return raw


def _read(raw: Any, key: KeyPath, spec: dict[str, Converter], ctx: Context) -> dict[str, Any]:
    table = _table(raw, key)
    out: dict[str, Any] = {}
    for name, value in table.items():
        conv = spec.get(name)
        if conv is None:
            raise _unknown(key + (name,), spec, value)
        out[name] = conv(value, key + (name,), ctx)
    return out


def _build(cls: type[T], raw: Any, key: KeyPath, spec: dict[str, Converter], ctx: Context,
           required: tuple[str, ...] = (), extra: dict[str, Any] | None = None) -> T:
    values = _read(raw, key, spec, ctx)
    for name in required:
        if name not in values:
            raise Invalid(key + (name,), "is required but missing")
    values = {**(extra or {}), **values}
    defaults = None
    for name, conv in spec.items():
        # Relative default paths get the same treatment as relative paths written in the file.
        if name not in values and conv in c.PATH_CONVERTERS:
            defaults = defaults or _defaults(cls)
            default = defaults.get(name)
            if default is not None:
                values[name] = conv(default, key + (name,), ctx)
    return cls(**values)


def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _elements(raw: Any, key: KeyPath) -> list[tuple[KeyPath, dict[str, Any]]]:
    where = dotted(key)
    if isinstance(raw, dict):
        raise Invalid(key, f"must be an array of tables: write [[{where}]] blocks, not [{where}]")
    if not isinstance(raw, list):
        raise Invalid(key, f"must be an array of tables ([[{where}]]), not {c.type_name(raw)} ({c.show(raw)})")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise Invalid(key + (i,), f"must be a table, not {c.type_name(item)} ({c.show(item)})")
        out.append((key + (i,), item))
    return out


def _unique_names(items: list[tuple[KeyPath, Any]]) -> None:
    seen: dict[str, KeyPath] = {}
    for key, item in items:
        if item.name in seen:
            raise Invalid(key + ("name",), f'duplicate name "{item.name}" (already used by {dotted(seen[item.name])})')
        seen[item.name] = key


def _reference(key: KeyPath, kind: str, value: str, names: list[str]) -> Invalid:
    close = c.suggest(value, names)
    if close:
        hint = f'; did you mean "{close}"?'
    elif names:
        hint = f" (defined: {c.one_of(names)})"
    else:
        hint = " (none is defined)"
    return Invalid(key, f'refers to unknown {kind} "{value}"{hint}')


def os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no LOGNAME/USER (some containers)
        return "unknown"


# ---------------------------------------------------------------------------- sections
def _targets(raw: Any, ctx: Context) -> dict[str, Target]:
    key: KeyPath = ("targets",)
    table = _table(raw, key)
    targets = dict(DEFAULT_TARGETS)
    for level, value in table.items():
        if level not in SEVERITY_LEVELS:
            raise _unknown(key + (level,), SEVERITY_LEVELS, value)
        lkey = key + (level,)
        if not isinstance(value, dict):
            raise Invalid(lkey, "must be a table like { response = 60, resolution = 1440 }, "
                                f"not {c.type_name(value)} ({c.show(value)})")
        got = _read(value, lkey, TARGET, ctx)
        default = DEFAULT_TARGETS[level]
        target = Target(
            got.get("response", default.response_minutes),
            got["resolution"] if "resolution" in got else default.resolution_minutes,
        )
        if target.resolution_minutes is not None and target.resolution_minutes < target.response_minutes:
            which = "resolution" if "resolution" in got else "response"
            raise Invalid(lkey + (which,), f"resolution target ({target.resolution_minutes} min) is shorter than "
                                           f"the response target ({target.response_minutes} min)")
        targets[level] = target
    return targets


def _flatten_keymap(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Binding ids are dotted (incident.declare), and TOML reads `incident.declare = "x"` as a
    nested table: walk it back into (path, value) pairs."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for name, value in table.items():
        path = prefix + tuple(name.split("."))
        if isinstance(value, dict):
            out.extend(_flatten_keymap(value, path))
        else:
            out.append((path, value))
    return out


def _keymap(raw: Any) -> dict[str, str]:
    key: KeyPath = ("keymap",)
    table = _table(raw, key)
    owner: dict[str, str] = {}
    result: dict[str, str] = {}
    for path, value in _flatten_keymap(table):
        binding = ".".join(path)
        bkey = key + path
        if not all(c._IDENTIFIER.fullmatch(part) for part in path):
            raise Invalid(bkey, f"binding id {c.show(binding)} must be identifiers joined by dots, e.g. incident.declare")
        if not isinstance(value, str):
            raise c.wrong_type(bkey, 'a string of key names, e.g. "r" or "ctrl+r,f5"', value)
        keys = [k.strip() for k in value.split(",")]
        if not value.strip() or any(not k for k in keys):
            raise Invalid(bkey, f"must name at least one key, with no empty entry between commas (got {c.show(value)})")
        for k in keys:
            if any(ch.isspace() for ch in k) or c._has_control(k):
                raise Invalid(bkey, f"key name {c.show(k)} must not contain spaces or control characters")
            if k in owner and owner[k] != binding:
                raise Invalid(bkey, f'key "{k}" is bound to both "{owner[k]}" and "{binding}"')
            owner[k] = binding
        result[binding] = value
    return result


def _wrapped(data: dict[str, Any], name: str) -> tuple[Any, bool]:
    """The array inside [docker] / [escalation] / [notify], and whether it was given."""
    if name not in data:
        return [], False
    inner = WRAPPERS[name]
    table = _table(data[name], (name,))
    for k, v in table.items():
        if k != inner:
            raise _unknown((name, k), (inner,), v)
    if inner not in table:
        return [], False
    return table[inner], True


def build_settings(data: dict[str, Any], ctx: Context) -> Settings:
    """Check `data` (a parsed config file) and build Settings; raises Invalid on the first problem."""
    for name, value in data.items():
        if name not in TOP_LEVEL:
            raise _unknown((name,), TOP_LEVEL, value)

    def section(name: str, cls: type[T], spec: dict[str, Converter]) -> T:
        return _build(cls, data.get(name, {}), (name,), spec, ctx)

    environment = section("environment", Environment, ENVIRONMENT)
    if not environment.operator:
        environment = dataclasses.replace(environment, operator=os_user())

    raw_hosts, hosts_given = _wrapped(data, "docker")
    host_items = [(k, _build(DockerHost, v, k, DOCKER_HOST, ctx)) for k, v in _elements(raw_hosts, ("docker", "hosts"))]
    for k, h in host_items:
        if h.tls_verify and not h.url.lower().startswith("tcp://"):
            raise Invalid(k + ("tls_verify",), f"only applies to tcp:// hosts (url is {c.show(h.url)})")
    _unique_names(host_items)

    discovery = section("discovery", Discovery, DISCOVERY)
    prover = section("prover", ProverSettings, PROVER)

    replica_items = []
    for k, raw in _elements(data.get("replicas", []), ("replicas",)):
        replica_items.append((k, _replica(raw, k, prover, ctx)))
    _unique_names(replica_items)

    prometheus = section("prometheus", PrometheusSettings, PROMETHEUS)
    metrics = section("metrics", MetricNames, METRICS)
    nginx = section("nginx", NginxSettings, NGINX)
    firewall = section("firewall", FirewallSettings, FIREWALL)
    if firewall.iptables and not firewall.iptables_command:
        raise Invalid(("firewall", "iptables_command"), "must not be empty while iptables = true")
    database = section("database", DatabaseSettings, DATABASE)
    circuits = section("circuits", CircuitSettings, CIRCUITS)
    severity = _severity(data.get("severity", {}), ctx)
    targets = _targets(data.get("targets", {}), ctx)

    contacts_given = "contacts" in data
    contact_items = [(k, _build(Contact, v, k, CONTACT, ctx, required=("name",)))
                     for k, v in _elements(data.get("contacts", []), ("contacts",))]
    _unique_names(contact_items)

    raw_tiers, tiers_given = _wrapped(data, "escalation")
    tier_items = []
    for position, (k, v) in enumerate(_elements(raw_tiers, ("escalation", "tiers")), start=1):
        tier = _build(EscalationTier, v, k, TIER, ctx, extra={"name": f"tier {position}"})
        if not tier.contacts:
            raise Invalid(k + ("contacts",), "must name at least one contact")
        tier_items.append((k, tier))
    _unique_names(tier_items)

    raw_hooks, _ = _wrapped(data, "notify")
    hook_items = []
    for k, v in _elements(raw_hooks, ("notify", "hooks")):
        hook_items.append((k, _hook(v, k, ctx)))
    _unique_names(hook_items)

    ui = section("ui", UISettings, UI)
    keymap = _keymap(data.get("keymap", {}))

    # ------------------------------------------------------------ relations between sections
    if hosts_given:
        docker_hosts = tuple(h for _, h in host_items)
    else:
        # No [[docker.hosts]]: Docker-based discovery uses the local engine, static uses none.
        docker_hosts = () if discovery.mode == "static" else (DockerHost(),)
    if not docker_hosts and discovery.mode != "static":
        raise Invalid(("docker", "hosts"), f'discovery mode "{discovery.mode}" needs a Docker host; '
                                           'add [[docker.hosts]] or set discovery.mode = "static"')
    if discovery.mode == "services" and not discovery.compose_services:
        raise Invalid(("discovery", "compose_services"), 'must list at least one service for mode = "services"')
    if discovery.mode == "pattern" and not discovery.name_patterns:
        raise Invalid(("discovery", "name_patterns"), 'must list at least one pattern for mode = "pattern"')
    if discovery.mode == "static" and not replica_items:
        raise Invalid(("discovery", "mode"), 'is "static" but no [[replicas]] are defined')

    host_names = [h.name for h in docker_hosts]
    for k, r in replica_items:
        if r.docker_host is not None and r.docker_host not in host_names:
            raise _reference(k + ("docker_host",), "Docker host", r.docker_host, host_names)

    hook_names = [h.name for _, h in hook_items]
    contacts = tuple(ct for _, ct in contact_items) if contacts_given else DEFAULT_CONTACTS
    for k, ct in contact_items:
        if ct.hook is not None and ct.hook not in hook_names:
            raise _reference(k + ("hook",), "notify hook", ct.hook, hook_names)

    contact_names = [ct.name for ct in contacts]
    if tiers_given:
        tiers = tuple(t for _, t in tier_items)
    else:
        tiers = DEFAULT_ESCALATION
        lacking = [n for t in tiers for n in t.contacts if n not in contact_names]
        if lacking:
            raise Invalid(("contacts",), f"the default escalation tiers page {c.one_of(lacking)}, which [[contacts]] "
                                         "does not define; define them or write [[escalation.tiers]]")
    previous: EscalationTier | None = None
    for k, t in tier_items:
        for i, n in enumerate(t.contacts):
            if n not in contact_names:
                raise _reference(k + ("contacts", i), "contact", n, contact_names)
        if previous is not None and t.after_minutes < previous.after_minutes:
            raise Invalid(k + ("after_minutes",), f"tiers must be in order of after_minutes: {t.after_minutes} comes "
                                                  f'after {previous.after_minutes} (tier "{previous.name}")')
        previous = t

    return Settings(
        environment=environment,
        docker_hosts=docker_hosts,
        discovery=discovery,
        prover=prover,
        replicas=tuple(r for _, r in replica_items),
        prometheus=prometheus,
        metrics=metrics,
        nginx=nginx,
        firewall=firewall,
        database=database,
        circuits=circuits,
        severity=severity,
        targets=targets,
        contacts=contacts,
        escalation_tiers=tiers,
        notify_hooks=tuple(h for _, h in hook_items),
        ui=ui,
        keymap=keymap,
    )


def _replica(raw: Any, key: KeyPath, prover: ProverSettings, ctx: Context) -> Replica:
    table = _table(raw, key)
    extra: dict[str, Any] = {}
    if "metrics_url" not in table and isinstance(table.get("health_url"), str):
        # Same origin as the health URL, path from [prover]: what one prover serves.
        from urllib.parse import urlsplit, urlunsplit

        try:
            parts = urlsplit(table["health_url"])
            extra["metrics_url"] = urlunsplit((parts.scheme, parts.netloc, prover.metrics_path, "", ""))
        except ValueError:
            pass  # the health_url check reports it
    return _build(Replica, table, key, REPLICA, ctx, required=("name", "health_url"), extra=extra)


def _hook(raw: Any, key: KeyPath, ctx: Context) -> NotifyHook:
    hook = _build(NotifyHook, raw, key, HOOK, ctx, required=("name",))
    if hook.kind == "webhook":
        if hook.url is None:
            raise Invalid(key + ("url",), 'is required for kind = "webhook"')
        if hook.command:
            raise Invalid(key + ("command",), 'only applies to kind = "command" (this hook is a webhook)')
    else:
        if not hook.command:
            raise Invalid(key + ("command",), 'is required (an argv array) for kind = "command"')
        if hook.url is not None:
            raise Invalid(key + ("url",), 'only applies to kind = "webhook" (this hook is a command)')
    return hook


def _severity(raw: Any, ctx: Context) -> SeverityThresholds:
    key: KeyPath = ("severity",)
    s = _build(SeverityThresholds, raw, key, SEVERITY, ctx)
    given = raw if isinstance(raw, dict) else {}
    pairs = (
        ("error_ratio_p1", "error_ratio_p2", s.error_ratio_p1, s.error_ratio_p2),
        ("latency_p95_p1_seconds", "latency_p95_p2_seconds", s.latency_p95_p1_seconds, s.latency_p95_p2_seconds),
    )
    for p1, p2, v1, v2 in pairs:
        if v2 > v1:
            # Point at whichever of the two the file actually sets.
            at = p2 if p2 in given or p1 not in given else p1
            raise Invalid(key + (at,), f"the P2 threshold {p2} = {v2:g} is above the P1 threshold {p1} = {v1:g}")
    return s
