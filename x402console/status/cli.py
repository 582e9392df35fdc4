"""`x402console status`: one look at the system, a suggested severity, and an exit code.

Wired into x402console/cli.py with ``add_parser(subparsers)`` and ``run_status(args)``; also
runnable alone as ``python -m x402console.status``. Never imports the UI.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import textwrap
from pathlib import Path
from typing import Any, TextIO

# The exit codes are report.py's; they are repeated here so that building the main parser (on
# every start of the console) does not import the report and everything it needs (~25 ms).
EXIT_OK, EXIT_DEGRADED, EXIT_CRITICAL, EXIT_UNOBSERVABLE = 0, 1, 2, 3

__all__ = ["add_parser", "add_arguments", "build_parser", "run_status", "main", "HELP_EPILOG"]

DESCRIPTION = textwrap.fill(
    "Take one look at the x402 system: health of every replica, key metrics, log patterns, "
    "proofs.db and the verification key; print the severity the runbook suggests, the runbook "
    "incidents it looks like, and the journal's open incidents. Read-only: nothing is written "
    "anywhere, not even to proofs.db or the journal.",
    width=88,
)

HELP_EPILOG = f"""\
exit status:
  {EXIT_OK}  healthy: no severity suggested
  {EXIT_DEGRADED}  P3 or P2 suggested
  {EXIT_CRITICAL}  P1 or P0 suggested
  {EXIT_UNOBSERVABLE}  could not observe: configuration or usage error, or no replica configured or discovered

--json prints one JSON object (schema 1) whose keys are always present:
  schema, taken_at, environment, drill, config, window_seconds, exit_code, verdict
  (ok|degraded|critical|unobservable), severity {{level, summary, reasons, uncertain, missing,
  response_minutes, resolution_minutes}}, incidents [{{incident, title, score, evidence,
  missing}}] (top 3), open_incidents, replicas, metrics, logs, database, verification_key,
  components, alerts_firing, unobserved. On a configuration error: the same keys, empty,
  plus "error".
"""


def _usage_error(parser: argparse.ArgumentParser, message: str) -> None:
    """argparse exits 2 on a usage error, which here means "P1/P0 suggested": a script
    checking the status must read a mistyped flag as "could not observe" instead."""
    parser.print_usage(sys.stderr)
    parser.exit(EXIT_UNOBSERVABLE, f"{parser.prog}: error: {message}\n")


class StatusArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        _usage_error(self, message)
        raise AssertionError("unreachable")


def add_arguments(p: argparse.ArgumentParser, *, config_default: Any = None) -> None:
    p.add_argument("--config", type=Path, default=config_default,
                   help="configuration file (default: $XDG_CONFIG_HOME/x402console/config.toml)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--window", type=float, default=60.0, metavar="S",
                   help="seconds of logs (and of Prometheus rates) to look back over (default 60)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="time budget of the whole collection (default 10)")
    p.add_argument("--scrape-interval", type=float, default=None, metavar="S",
                   help="without Prometheus: seconds between the two /metrics scrapes (default 2)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `status` to the main parser's subcommands."""
    p = subparsers.add_parser(
        "status", help="one-shot summary: health, metrics, suggested severity, likely incident",
        description=DESCRIPTION, epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # SUPPRESS: `x402console --config F status` must keep F (a subparser default would reset it).
    add_arguments(p, config_default=argparse.SUPPRESS)
    # Errors in the subcommand's own flags exit 3 too (the parent's parser class is not ours).
    p.error = functools.partial(_usage_error, p)  # type: ignore[method-assign]
    return p


def build_parser() -> argparse.ArgumentParser:
    p = StatusArgumentParser(prog="x402console status", description=DESCRIPTION, epilog=HELP_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def _emit(report: dict, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        from x402console.status.report import render_text

        out.write(render_text(report))
    out.flush()


def _bad_number(name: str, value: float | None, low: float, high: float) -> str | None:
    if value is None:
        return None
    if not (low <= value <= high):
        return f"{name} must be between {low:g} and {high:g} seconds, not {value:g}"
    return None


def run_status(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from x402console.status.report import build_report, error_report

    out = out or sys.stdout
    err = err or sys.stderr
    config = getattr(args, "config", None)
    as_json = bool(getattr(args, "json", False))
    window = float(getattr(args, "window", 60.0))
    timeout = float(getattr(args, "timeout", 10.0))
    interval = getattr(args, "scrape_interval", None)
    problem = (_bad_number("--window", window, 1, 7 * 86400) or _bad_number("--timeout", timeout, 1, 600)
               or _bad_number("--scrape-interval", interval, 0.2, 300))
    if problem:
        if as_json:
            _emit(error_report(problem, config=str(config) if config else None), True, out)
        print(f"x402console status: {problem}", file=err)
        return EXIT_UNOBSERVABLE

    from x402console.config import ConfigError, load_config

    try:
        settings = load_config(config)
    except ConfigError as exc:
        if as_json:
            _emit(error_report(str(exc), config=str(config) if config else None), True, out)
        print(f"x402console status: {exc}", file=err)
        return EXIT_UNOBSERVABLE

    from x402console.core.matcher import match
    from x402console.core.severity import assess
    from x402console.status.collect import collect_signals
    from x402console.status.journal_read import open_incidents

    signals = collect_signals(settings, window_seconds=window, timeout=timeout, scrape_interval=interval)
    assessment = assess(signals, settings.severity, settings.targets)
    matches = match(signals, thresholds=settings.severity)
    incidents, journal_problem = open_incidents(Path(settings.environment.journal))
    report = build_report(
        signals, assessment, matches, incidents, settings=settings, window_seconds=window,
        extra_unobserved=[journal_problem] if journal_problem else [],
    )
    _emit(report, as_json, out)
    return int(report["exit_code"])


def main(argv: list[str] | None = None) -> int:
    return run_status(build_parser().parse_args(argv))
