"""The simulator's settings, from the command line and (profile intended only) the environment."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from x402console.drill.sim.faults import FaultError, parse_fault_arg

TOKEN_ENV = "X402_SIM_CONTROL_TOKEN"


class ConfigError(Exception):
    pass


@dataclass
class SimConfig:
    state_dir: Path
    db_path: Path
    backup_dir: Path
    keys_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    name: str = "prover-1"
    profile: str = "coded"
    log_format: str = "gin"
    backup_interval_s: float = 0.0
    backup_retention_days: float = 7.0
    proof_ttl_s: float = 3600.0
    exempt_ips: frozenset[str] = frozenset()
    pprof: bool = False
    control_port: int | None = None
    control_token: str | None = None
    faults: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    rate_limit_per_minute: int = 10
    cache_size: int = 1000
    cache_ttl_s: float = 3600.0
    log_level_env: str | None = None
    cleanup_interval_s: float = 3600.0
    header_timeout_s: float = 30.0
    idle_timeout_s: float = 120.0
    seed: int | None = None

    @property
    def intended(self) -> bool:
        return self.profile == "intended"


def normalize_ip(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _positive_int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name}={raw!r}: must be a positive integer")
    return int(raw)


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> SimConfig:
    env = os.environ if env is None else env
    state_dir = Path(args.state_dir)
    exempt: set[str] = set()
    for raw in args.exempt_ip or []:
        ip = normalize_ip(raw)
        if ip is None:
            raise ConfigError(f"--exempt-ip {raw!r}: not an IP address")
        exempt.add(ip)
    token = args.control_token or env.get(TOKEN_ENV) or None
    control_port = args.control_port or None
    if control_port is not None and not token:
        raise ConfigError(f"--control-port needs a token: pass --control-token or set {TOKEN_ENV}")
    faults = []
    for text in args.fault or []:
        try:
            faults.append(parse_fault_arg(text))
        except FaultError as exc:
            raise ConfigError(str(exc)) from None
    cfg = SimConfig(
        state_dir=state_dir,
        db_path=Path(args.db) if args.db else state_dir / "proofs.db",
        backup_dir=Path(args.backup_dir) if args.backup_dir else state_dir / "backups",
        keys_dir=Path(args.keys_dir) if args.keys_dir else state_dir / "keys",
        host=args.host,
        port=args.port,
        name=args.name,
        profile=args.profile,
        log_format=args.log_format or ("json" if args.profile == "intended" else "gin"),
        backup_interval_s=args.backup_interval,
        backup_retention_days=args.backup_retention_days,
        proof_ttl_s=args.proof_ttl,
        exempt_ips=frozenset(exempt),
        pprof=args.pprof,
        control_port=control_port,
        control_token=token,
        faults=faults,
        log_level_env=env.get("LOG_LEVEL"),
        cleanup_interval_s=args.cleanup_interval,
        header_timeout_s=args.header_timeout,
        idle_timeout_s=args.idle_timeout,
        seed=args.seed,
    )
    if cfg.intended:
        # the documented env knobs; as coded, main.go hard-codes 10/min, 1000 entries and 1 h
        cfg.rate_limit_per_minute = _positive_int_env(env, "RATE_LIMIT_PER_MINUTE", 10)
        cfg.cache_size = _positive_int_env(env, "CACHE_SIZE", 1000)
        cfg.cache_ttl_s = float(_positive_int_env(env, "CACHE_TTL_SECONDS", 3600))
    return cfg
