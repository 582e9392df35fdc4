"""Pick events out of an incident timeline and write them as Markdown, JSON Lines or CSV.

Timeline text is not ours: summaries and details quote log lines, container names and HTTP
headers that an attacker may have chosen. An export is read later in a terminal (`cat`,
`less -R`), pasted into a ticket or opened in a spreadsheet, so every string is neutralised on
the way out with the same rules the console applies to log lines (sources.sanitize): escape
sequences and control characters become visible placeholders, never raw bytes. CSV cells that
a spreadsheet would run as a formula get a leading apostrophe; Markdown cells have the
characters that change a table's structure or hide text (pipes, HTML, links) escaped.

Every export is deterministic: events in (time, id) order, fixed columns, UTC timestamps in one
fixed-width ISO form, JSON keys sorted inside `details`.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from x402console.journal.models import EVENT_KINDS, TimelineEvent
from x402console.sources.sanitize import sanitize_line

__all__ = [
    "TimelineFilter", "FORMATS", "CSV_COLUMNS", "filter_events", "load_events", "neutralise",
    "neutralise_json", "md_escape", "iso_utc", "event_record", "export_markdown", "export_jsonl",
    "export_csv", "export", "format_for_path", "write_export",
]

FORMATS = ("md", "jsonl", "csv")
CSV_COLUMNS = ("id", "ts", "incident_id", "kind", "actor", "summary", "details", "origin", "origin_seq")
# Long enough for any summary or traceback line the journal holds; a cut is marked in the text.
MAX_TEXT = 8000
_FORMULA_START = ("=", "+", "-", "@")
# Characters that turn Markdown text into structure: table cells (|), HTML tags (<), links
# and images ([, ]), code (`), emphasis (*, ~), entities (&) and the escape itself. ">" only
# quotes at the start of a line, and neutralised text never starts one.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<|~&])")
# Underscores only emphasise at a word edge; snake_case_names stay readable unescaped.
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


class _EventSource(Protocol):
    async def events(
        self, incident_id: int | None = None, since_id: int = 0, kinds: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> tuple[TimelineEvent, ...]: ...


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(timezone.utc)


@dataclass(frozen=True)
class TimelineFilter:
    """Which events to keep. Every criterion given must hold; None means "any".

    kinds: event kinds (journal EVENT_KINDS). actors: an event matches an entry equal to its
    whole actor text ("alice@ops1 (commander)"), its user@host ("alice@ops1") or its user
    ("alice"). since is inclusive, until exclusive (both timezone-aware). text: a
    case-insensitive substring of the summary or of the details' JSON text. incident_id: one
    incident's events; None keeps every event, environment-wide ones included.
    """

    kinds: frozenset[str] | None = None
    actors: frozenset[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    incident_id: int | None = None

    def __post_init__(self) -> None:
        # Accept any iterable of names (a list from a form, one string) but store a frozenset,
        # so a filter is hashable and cannot change after it is built.
        for name in ("kinds", "actors"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str):
                value = (value,)
            items = frozenset(value)
            if any(not isinstance(v, str) or not v.strip() for v in items):
                raise ValueError(f"{name} must be non-empty names, got {sorted(map(repr, items))}")
            object.__setattr__(self, name, frozenset(v.strip() for v in items))
        if self.kinds is not None:
            unknown = sorted(self.kinds - set(EVENT_KINDS))
            if unknown:
                raise ValueError(f"unknown event kind(s) {', '.join(unknown)}; known: {', '.join(EVENT_KINDS)}")
        object.__setattr__(self, "since", _aware("since", self.since))
        object.__setattr__(self, "until", _aware("until", self.until))
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError(f"until ({iso_utc(self.until)}) must be later than since ({iso_utc(self.since)})")
        if self.text is not None:
            if not isinstance(self.text, str):
                raise ValueError(f"text must be a string, got {self.text!r}")
            object.__setattr__(self, "text", self.text.strip() or None)
        if self.incident_id is not None and (not isinstance(self.incident_id, int) or isinstance(self.incident_id, bool)):
            raise ValueError(f"incident_id must be an integer or None, got {self.incident_id!r}")

    def matches(self, event: TimelineEvent) -> bool:
        if self.incident_id is not None and event.incident_id != self.incident_id:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.since is not None and event.ts < self.since:
            return False
        if self.until is not None and event.ts >= self.until:
            return False
        if self.actors is not None and not (_actor_names(event.actor) & self.actors):
            return False
        if self.text is not None:
            needle = self.text.casefold()
            if needle not in event.summary.casefold() and needle not in event.details_json.casefold():
                return False
        return True

    def describe(self) -> str:
        """One line saying what the filter keeps, for the head of an export."""
        parts = []
        if self.incident_id is not None:
            parts.append(f"incident #{self.incident_id}")
        if self.kinds is not None:
            parts.append("kinds " + ", ".join(sorted(self.kinds)))
        if self.actors is not None:
            parts.append("actors " + ", ".join(sorted(self.actors)))
        if self.since is not None:
            parts.append(f"from {iso_utc(self.since)}")
        if self.until is not None:
            parts.append(f"before {iso_utc(self.until)}")
        if self.text is not None:
            parts.append(f"text containing {self.text!r}")
        return "; ".join(parts) if parts else "all events"


def _actor_names(actor: str) -> frozenset[str]:
    whole = actor.strip()
    who = whole.split(" (", 1)[0]
    user = who.split("@", 1)[0]
    return frozenset({whole, who, user})


def filter_events(events: Iterable[TimelineEvent], flt: TimelineFilter | None = None) -> tuple[TimelineEvent, ...]:
    """The events `flt` keeps, in timeline order (time, then id)."""
    kept = events if flt is None else (e for e in events if flt.matches(e))
    return tuple(sorted(kept, key=lambda e: (e.ts, e.id)))


async def load_events(journal: _EventSource, flt: TimelineFilter | None = None) -> tuple[TimelineEvent, ...]:
    """Read the filtered timeline from a journal.

    The journal's query narrows by incident and kind in SQL, and by time too once
    Journal.events takes `since`/`until`; the whole filter is then applied here as well, so the
    result is the same either way.
    """
    flt = flt or TimelineFilter()
    kwargs: dict[str, Any] = {
        "incident_id": flt.incident_id, "kinds": sorted(flt.kinds) if flt.kinds is not None else None,
    }
    if {"since", "until"} <= set(inspect.signature(journal.events).parameters):
        kwargs.update(since=flt.since, until=flt.until)
    return filter_events(await journal.events(**kwargs), flt)


# ---------------------------------------------------------------------------- text rules

def iso_utc(dt: datetime) -> str:
    """2025-03-01T03:00:00.000000Z: fixed width, so text order is time order."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def neutralise(text: object, max_len: int = MAX_TEXT) -> str:
    """Untrusted text -> one printable line (no control characters, no escape sequences)."""
    return sanitize_line(str(text), max_len=max_len)


def neutralise_json(value: Any) -> Any:
    """A JSON value with every string (keys too) neutralised, and objects' keys sorted."""
    if isinstance(value, Mapping):
        return {neutralise(k): neutralise_json(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [neutralise_json(v) for v in value]
    if isinstance(value, str):
        return neutralise(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return neutralise(value)


def md_escape(text: object, max_len: int = MAX_TEXT) -> str:
    """Untrusted text -> neutralised Markdown inline text, safe inside a table cell."""
    clean = _MD_SPECIAL.sub(r"\\\1", neutralise(text, max_len))
    return _MD_UNDERSCORE.sub(r"\\_", clean)


def _csv_cell(text: str) -> str:
    # OWASP's CSV-injection advice: a leading apostrophe makes the cell plain text.
    return "'" + text if text.startswith(_FORMULA_START) else text


def _details(event: TimelineEvent) -> Any:
    try:
        return neutralise_json(json.loads(event.details_json))
    except ValueError:
        # The schema checks json_valid, but an export must not die on one odd row.
        return {"unparsed": neutralise(event.details_json)}


def event_record(event: TimelineEvent) -> dict[str, Any]:
    """One event as neutralised JSON-ready data, keys in CSV_COLUMNS order."""
    return {
        "id": event.id,
        "ts": iso_utc(event.ts),
        "incident_id": event.incident_id,
        "kind": event.kind,
        "actor": neutralise(event.actor),
        "summary": neutralise(event.summary),
        "details": _details(event),
        "origin": neutralise(event.origin),
        "origin_seq": event.origin_seq,
    }


# ---------------------------------------------------------------------------- formats

def export_jsonl(events: Iterable[TimelineEvent], flt: TimelineFilter | None = None) -> str:
    return "".join(
        json.dumps(event_record(e), ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
        for e in filter_events(events, flt)
    )


def export_csv(events: Iterable[TimelineEvent], flt: TimelineFilter | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for e in filter_events(events, flt):
        rec = event_record(e)
        rec["details"] = json.dumps(rec["details"], ensure_ascii=False, separators=(",", ":"))
        writer.writerow(
            ["" if rec[c] is None else _csv_cell(rec[c]) if isinstance(rec[c], str) else rec[c] for c in CSV_COLUMNS]
        )
    return out.getvalue()


def markdown_table(events: Iterable[TimelineEvent], *, with_incident: bool = True) -> list[str]:
    """The Markdown table rows (header included) of `events`, in timeline order."""
    head = ["Time (UTC)", "Incident", "Kind", "Actor", "Event"] if with_incident else ["Time (UTC)", "Kind", "Actor", "Event"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for e in filter_events(events):
        cells = [e.ts.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")]
        if with_incident:
            cells.append("—" if e.incident_id is None else f"#{e.incident_id}")
        cells += [e.kind, md_escape(e.actor), md_escape(e.summary)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def export_markdown(events: Iterable[TimelineEvent], flt: TimelineFilter | None = None, title: str | None = None) -> str:
    shown = filter_events(events, flt)
    lines = [f"# {md_escape(title) if title else 'Timeline'}", ""]
    lines.append(f"Filter: {md_escape((flt or TimelineFilter()).describe())}. {len(shown)} event(s); times are UTC.")
    lines.append("")
    if shown:
        lines += markdown_table(shown)
    else:
        lines.append("_No events match._")
    return "\n".join(lines) + "\n"


def export(events: Iterable[TimelineEvent], fmt: str, flt: TimelineFilter | None = None, title: str | None = None) -> str:
    """`events` in format `fmt`; `flt`, when given, is applied (again) and described."""
    if fmt == "md":
        return export_markdown(events, flt, title)
    if fmt == "jsonl":
        return export_jsonl(events, flt)
    if fmt == "csv":
        return export_csv(events, flt)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def format_for_path(path: Path | str) -> str:
    """The format a file name asks for (.md/.markdown, .jsonl/.ndjson, .csv)."""
    suffix = Path(path).suffix.lower()
    found = {".md": "md", ".markdown": "md", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(suffix)
    if found is None:
        raise ValueError(f"{path}: cannot tell the export format from {suffix or 'no suffix'!r}; use .md, .jsonl or .csv")
    return found


def write_export(
    events: Iterable[TimelineEvent], path: Path | str, fmt: str | None = None, *,
    flt: TimelineFilter | None = None, title: str | None = None, force: bool = False,
) -> Path:
    """Write an export file; an existing file is refused unless `force` (FileExistsError)."""
    path = Path(path)
    text = export(events, fmt or format_for_path(path), flt, title)
    # "x" refuses an existing file atomically: two consoles exporting at once cannot both win.
    with open(path, "w" if force else "x", encoding="utf-8", newline="") as f:
        f.write(text)
    return path
