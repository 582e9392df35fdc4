"""`x402console sim` / `python -m x402console.drill.sim`: run one simulated x402 prover.

Imports stay light (no UI, no docker): drills start several of these processes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from x402console.drill.sim.config import TOKEN_ENV, ConfigError, from_args
from x402console.drill.sim.faults import FAULT_NAMES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="x402console sim",
        description="A simulated x402 prover: the real prover's routes, metrics, logs and proofs.db, with injectable faults.",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    p.add_argument("--name", default="prover-1", help="replica name shown by /status (default prover-1)")
    p.add_argument(
        "--profile",
        choices=("coded", "intended"),
        default="coded",
        help="coded: main.go as committed (hard-coded limits, dead metrics); intended: env config, "
        "rate_limit_exceeded_total, circuit_constraints_total, verification_failures_total",
    )
    p.add_argument(
        "--log-format", choices=("gin", "json"), default=None, help="default: gin for coded, json for intended"
    )
    p.add_argument("--state-dir", default=".", help="directory for proofs.db, backups/ and keys/ (default .)")
    p.add_argument("--db", default=None, help="SQLite file (default STATE_DIR/proofs.db)")
    p.add_argument("--backup-dir", default=None, help="backup directory (default STATE_DIR/backups)")
    p.add_argument(
        "--backup-interval", type=float, default=0.0, metavar="SECONDS", help="scheduled backups (0 = none)"
    )
    p.add_argument("--backup-retention-days", type=float, default=7.0, help="delete older *.db backups (default 7)")
    p.add_argument("--keys-dir", default=None, help="verification_key.json + payment_proof.pk (default STATE_DIR/keys)")
    p.add_argument("--proof-ttl", type=float, default=3600.0, metavar="SECONDS", help="expires_at = now + ttl")
    p.add_argument("--exempt-ip", action="append", metavar="IP", help="never rate limited (repeatable)")
    p.add_argument("--pprof", action="store_true", help="serve /debug/pprof/* (404 otherwise, as in the real prover)")
    p.add_argument("--control-port", type=int, default=0, help="fault control API port on 127.0.0.1 (0 = none)")
    p.add_argument("--control-token", default=None, help=f"control API bearer token (or env {TOKEN_ENV})")
    p.add_argument(
        "--fault",
        action="append",
        metavar="NAME[=JSON]",
        help=f"start with a fault on (repeatable); names: {', '.join(FAULT_NAMES)}",
    )
    p.add_argument(
        "--cleanup-interval", type=float, default=3600.0, metavar="SECONDS", help="expired-proof cleanup (default 3600)"
    )
    p.add_argument("--header-timeout", type=float, default=30.0, help="seconds allowed to send request headers (a body gets twice that; default 30)")
    p.add_argument("--idle-timeout", type=float, default=120.0, help="seconds an idle keep-alive connection stays")
    p.add_argument("--seed", type=int, default=None, help="seed the simulator's randomness")
    return p


def run_sim(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error, already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not 0 <= args.port <= 65535 or not 0 <= args.control_port <= 65535:
        print("x402console sim: error: ports must be between 0 and 65535", file=sys.stderr)
        return 2
    try:
        cfg = from_args(args)
    except ConfigError as exc:
        print(f"x402console sim: error: {exc}", file=sys.stderr)
        return 2
    from x402console.drill.sim.service import serve

    try:
        return asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(run_sim())
