"""`x402console postmortem ID` (also `python -m x402console.postmortem ID`).

Writes the incident's post-mortem draft, by default to postmortem-<ID>-<YYYY-MM-DD>.md in the
current directory; an existing file is never overwritten without --force. The journal is only
read: a missing path is an error here, never a new empty journal.

Exit codes: 0 written; 1 the journal or the output file cannot be used; 2 bad arguments or
configuration; 3 no such incident in the journal.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

EXIT_OK, EXIT_FILE, EXIT_USAGE, EXIT_NO_INCIDENT = 0, 1, 2, 3
PROG = "x402console postmortem"
EPILOG = ("exit codes: 0 written; 1 journal or output file unusable (missing, damaged, exists without "
          "--force); 2 bad arguments or configuration; 3 no such incident")


class _Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _add_arguments(p: argparse.ArgumentParser, *, config_default: object) -> None:
    p.add_argument("incident", metavar="ID", help="incident number (as in the journal: 12 or #12)")
    # SUPPRESS under the main parser: its own --config (before the command word) must survive
    # when this one is not given.
    p.add_argument("--config", type=Path, default=config_default, metavar="FILE",
                   help="configuration file (default: $XDG_CONFIG_HOME/x402console/config.toml)")
    p.add_argument("--journal", type=Path, metavar="PATH",
                   help="incident journal to read (default: [environment] journal of the configuration)")
    p.add_argument("-o", "--output", metavar="FILE|-",
                   help="where to write the Markdown ('-' = standard output; default "
                        "postmortem-<ID>-<date>.md in the current directory)")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    p.add_argument("--detection-window", type=float, default=60.0, metavar="MINUTES",
                   help="how far before the declaration an observation counts as the first signal (default 60)")
    p.add_argument("--now", metavar="ISO8601",
                   help="the generation time to write (UTC; default: now), for reproducible output")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add the `postmortem` command to the main parser's subparsers."""
    p = subparsers.add_parser(
        "postmortem", help="write an incident's post-mortem draft from the journal",
        description=(__doc__ or "").split("\n\n")[1].replace("\n", " "), epilog=EPILOG,
    )
    _add_arguments(p, config_default=argparse.SUPPRESS)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[1].replace("\n", " "),
                                epilog=EPILOG)
    _add_arguments(p, config_default=None)
    return p


def _incident_id(text: str) -> int:
    raw = text.strip().removeprefix("#")
    if not raw.isdigit() or int(raw) < 1:
        raise _Failure(EXIT_USAGE, f"incident ID must be a positive number like 12 or #12, got {text!r}")
    return int(raw)


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Failure(EXIT_USAGE, f"--now: not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _check_journal(path: Path) -> None:
    """Refuse what Journal.open would otherwise turn into a fresh journal."""
    if not path.exists():
        raise _Failure(EXIT_FILE, f"journal {path}: no such file (give the journal with --journal PATH)")
    if not path.is_file():
        raise _Failure(EXIT_FILE, f"journal {path}: is not a regular file")
    if path.stat().st_size == 0:
        raise _Failure(EXIT_FILE, f"journal {path}: is empty, not an x402console journal")


async def _build(path: Path, incident_id: int, settings: object, now: datetime, window: timedelta) -> str:
    from x402console.journal import IncidentNotFound, Journal, JournalError
    from x402console.postmortem.build import build_postmortem
    from x402console.postmortem.render import render_markdown

    try:
        journal = await Journal.open(path)
    except JournalError as exc:
        raise _Failure(EXIT_FILE, f"journal {exc}") from None
    try:
        pm = await build_postmortem(journal, incident_id, settings, now, detection_window=window)  # type: ignore[arg-type]
    except IncidentNotFound:
        known = [i.id for i in await journal.incidents()]
        listed = ", ".join(f"#{i}" for i in known[-10:]) if known else "none"
        raise _Failure(EXIT_NO_INCIDENT, f"no incident #{incident_id} in journal {path} (incidents: {listed})") from None
    except JournalError as exc:
        raise _Failure(EXIT_FILE, f"journal {exc}") from None
    finally:
        await journal.close()
    return render_markdown(pm)


def _write(text: str, output: str | None, incident_id: int, now: datetime, force: bool) -> str | None:
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    path = Path(output) if output else Path.cwd() / f"postmortem-{incident_id}-{now:%Y-%m-%d}.md"
    if path.is_dir():
        raise _Failure(EXIT_FILE, f"{path}: is a directory; give a file name with --output")
    try:
        if force:
            # Write beside it and rename, so a failure never leaves half a post-mortem behind.
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        else:
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
    except FileExistsError:
        raise _Failure(EXIT_FILE, f"{path}: already exists; use --force to overwrite it, or --output FILE") from None
    except OSError as exc:
        raise _Failure(EXIT_FILE, f"{path}: cannot write: {exc.strerror or exc}") from None
    return str(path)


def run_postmortem(args: argparse.Namespace) -> int:
    """Run the command from parsed arguments (those add_parser or build_parser define)."""
    from x402console.config import ConfigError, load_config

    try:
        incident_id = _incident_id(args.incident)
        now = _now(args.now)
        if not args.detection_window >= 0:
            raise _Failure(EXIT_USAGE, f"--detection-window must be zero or more minutes, got {args.detection_window:g}")
        try:
            settings = load_config(getattr(args, "config", None))
        except ConfigError as exc:
            raise _Failure(EXIT_USAGE, str(exc)) from None
        path = Path(args.journal).expanduser() if args.journal else Path(settings.environment.journal)
        _check_journal(path)
        import asyncio  # here, not at the top: the main parser imports this module for every command

        text = asyncio.run(_build(path, incident_id, settings, now, timedelta(minutes=args.detection_window)))
        written = _write(text, args.output, incident_id, now, args.force)
    except _Failure as exc:
        print(f"x402console: {exc}", file=sys.stderr)
        return exc.code
    if written is not None:
        print(f"x402console: wrote the post-mortem draft of incident #{incident_id} to {written}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_postmortem(build_parser().parse_args(argv))
