"""Timeline filter and exports: what is kept, stable columns, UTC timestamps, and text from logs
that cannot smuggle control characters, escape sequences, table breaks or formulas into files."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from datetime import datetime, timedelta, timezone

import pytest

from x402console.journal import Actor, Journal
from x402console.journal.models import TimelineEvent
from x402console.journal.timeline_export import (
    CSV_COLUMNS,
    TimelineFilter,
    export,
    export_csv,
    export_jsonl,
    export_markdown,
    filter_events,
    format_for_path,
    load_events,
    md_escape,
    write_export,
)

T0 = datetime(2025, 3, 1, 3, 0, 0, tzinfo=timezone.utc)
HOSTILE = "Proof failed \x1b]0;owned\x07 path=/\x1b[2J\x1b[31mred\x1b[0m | <img src=x> [a](http://e) =cmd\r\nforged\u202e"


def ev(n: int, minutes: float, kind: str = "note", actor: str = "alice@ops1 (commander)", summary: str = "s",
       details: dict | None = None, incident_id: int | None = 1) -> TimelineEvent:
    return TimelineEvent(n, incident_id, T0 + timedelta(minutes=minutes), kind, actor, summary,
                         json.dumps(details or {}), "console-a", n)


EVENTS = (
    ev(1, 0, "status_changed", summary="Incident #1 declared"),
    ev(2, 1, "observation", "console", "prover-1 health failing", {"replica": "prover-1"}, incident_id=None),
    ev(3, 2, "note", "bob@ops2", "restarting prover-1 now"),
    ev(4, 3, "escalation", "bob@ops2 (scribe)", "Escalate to backup", {"key": "1:0:tier:1:backup"}),
    ev(5, 4, "note", "carol@ops3", "Database LOCKED again", incident_id=2),
    ev(6, 5, "observation", "console", HOSTILE, {"line": HOSTILE, "nested": {"z": 1, "a": [HOSTILE]}}),
)


def ids(events) -> list[int]:
    return [e.id for e in events]


def no_controls(text: str) -> bool:
    """Nothing a terminal would act on: no C0 (except the file's own newlines), DEL, C1, bidi."""
    return not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c in "\u202a\u202b\u202c\u202d\u202e"
                   for c in text)


# ------------------------------------------------------------------ filtering

@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (TimelineFilter(), [1, 2, 3, 4, 5, 6]),
        (TimelineFilter(incident_id=1), [1, 3, 4, 6]),
        (TimelineFilter(kinds={"note"}), [3, 5]),
        (TimelineFilter(kinds=["note", "escalation"], incident_id=1), [3, 4]),
        (TimelineFilter(actors={"bob"}), [3, 4]),
        (TimelineFilter(actors={"bob@ops2"}), [3, 4]),
        (TimelineFilter(actors={"bob@ops2 (scribe)"}), [4]),
        (TimelineFilter(actors={"bo"}), []),
        (TimelineFilter(actors=["alice", "carol@ops3"]), [1, 5]),
        # since inclusive, until exclusive, exactly at the event times
        (TimelineFilter(since=T0 + timedelta(minutes=2)), [3, 4, 5, 6]),
        (TimelineFilter(until=T0 + timedelta(minutes=2)), [1, 2]),
        (TimelineFilter(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)), [2, 3]),
        # another zone means the same instant
        (TimelineFilter(since=datetime(2025, 3, 1, 4, 3, tzinfo=timezone(timedelta(hours=1)))), [4, 5, 6]),
        (TimelineFilter(text="locked"), [5]),
        (TimelineFilter(text="PROVER-1"), [2, 3]),  # summary of 2 and 3, details of 2
        (TimelineFilter(text="backup", kinds={"note"}), []),
        (TimelineFilter(text="   "), [1, 2, 3, 4, 5, 6]),
    ],
)
def test_filter_keeps_exactly_the_matching_events(flt, expected):
    shuffled = list(EVENTS)
    random.Random(4).shuffle(shuffled)
    assert ids(filter_events(shuffled, flt)) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kinds": {"bogus"}}, "unknown event kind"),
        ({"since": datetime(2025, 3, 1)}, "timezone-aware"),
        ({"since": T0, "until": T0}, "later than"),
        ({"actors": {""}}, "non-empty"),
        ({"incident_id": "3"}, "integer"),
    ],
)
def test_bad_filters_are_refused_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimelineFilter(**kwargs)


def test_filter_describes_itself():
    flt = TimelineFilter(kinds={"note", "escalation"}, actors="bob", since=T0, text="x", incident_id=3)
    assert flt.describe() == "incident #3; kinds escalation, note; actors bob; from 2025-03-01T03:00:00.000000Z; text containing 'x'"
    assert TimelineFilter().describe() == "all events"


# ------------------------------------------------------------------ CSV

def test_csv_has_stable_columns_utc_times_and_neutral_text():
    text = export_csv(list(reversed(EVENTS)))
    assert no_controls(text)
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]
    assert rows[1][1] == "2025-03-01T03:00:00.000000Z" and rows[6][1] == "2025-03-01T03:05:00.000000Z"
    assert rows[2][2] == ""  # environment-wide: no incident
    hostile = rows[6]
    assert "\x1b" not in hostile[5] and "␛" in hostile[5] and "owned" not in hostile[5]
    assert "␍␊forged" in hostile[5] and "\\u202e" in hostile[5]
    details = json.loads(hostile[6])
    assert list(details) == ["line", "nested"] and list(details["nested"]) == ["a", "z"]
    assert no_controls(json.dumps(details, ensure_ascii=False))


def test_csv_cells_that_a_spreadsheet_would_evaluate_are_defused():
    events = [ev(1, 0, summary="=HYPERLINK(\"http://x\")"), ev(2, 1, summary="+1"), ev(3, 2, summary="-2"),
              ev(4, 3, summary="@SUM(A1)"), ev(5, 4, summary="plain = fine")]
    rows = list(csv.reader(io.StringIO(export_csv(events))))[1:]
    assert [r[5] for r in rows] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "plain = fine"]


# ------------------------------------------------------------------ JSON Lines

def test_jsonl_one_object_per_event_with_fixed_keys():
    text = export_jsonl(EVENTS)
    assert no_controls(text)
    lines = text.splitlines()
    assert len(lines) == len(EVENTS) and text.endswith("\n")
    records = [json.loads(line) for line in lines]
    assert all(tuple(r) == CSV_COLUMNS for r in records)
    assert records[1] == {"id": 2, "ts": "2025-03-01T03:01:00.000000Z", "incident_id": None, "kind": "observation",
                          "actor": "console", "summary": "prover-1 health failing", "details": {"replica": "prover-1"},
                          "origin": "console-a", "origin_seq": 2}
    hostile = records[5]
    # Decoded strings are inert too: a consumer printing them gets no escape sequence.
    for value in (hostile["summary"], hostile["details"]["line"], hostile["details"]["nested"]["a"][0]):
        assert no_controls(value) and "\n" not in value


# ------------------------------------------------------------------ Markdown

def test_markdown_table_cells_cannot_break_the_table_or_inject_html():
    text = export_markdown(EVENTS, TimelineFilter(incident_id=1), title="Incident #1 | timeline")
    assert no_controls(text)
    rows = [line for line in text.splitlines() if line.startswith("| 2025")]
    assert [r.split(" | ")[1] for r in rows] == ["#1"] * 4  # the filter applies
    for row in rows:
        unescaped_pipes = row.replace("\\|", "").count("|")
        assert unescaped_pipes == 6, row  # five cells
    hostile = rows[-1]
    assert re.search(r"(?<!\\)[<\[]", hostile) is None, hostile
    assert "\\<img" in hostile and "\\[a\\](http://e)" in hostile
    assert text.startswith("# Incident #1 \\| timeline\n")
    assert "Filter: incident #1. 4 event(s); times are UTC." in text


def test_markdown_is_deterministic_and_says_when_nothing_matches():
    shuffled = list(EVENTS)
    random.Random(9).shuffle(shuffled)
    assert export_markdown(shuffled) == export_markdown(EVENTS)
    assert "_No events match._" in export_markdown([], TimelineFilter(kinds={"note"}))


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("snake_case_name", "snake_case_name"), ("_emph_", "\\_emph\\_"), ("a*b*", "a\\*b\\*"),
     ("`code`", "\\`code\\`"), ("R&D", "R\\&D"), ("a -> b", "a -> b"), ("x\\y", "x\\\\y")],
)
def test_md_escape(raw, escaped):
    assert md_escape(raw) == escaped


# ------------------------------------------------------------------ files

def test_write_export_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "timeline.csv"
    write_export(EVENTS, path)
    first = path.read_text(encoding="utf-8")
    assert first.startswith(",".join(CSV_COLUMNS) + "\n")
    with pytest.raises(FileExistsError):
        write_export(EVENTS[:1], path)
    assert path.read_text(encoding="utf-8") == first
    write_export(EVENTS[:1], path, force=True)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2


@pytest.mark.parametrize(("name", "fmt"), [("a.md", "md"), ("a.MARKDOWN", "md"), ("a.jsonl", "jsonl"),
                                           ("a.ndjson", "jsonl"), ("a.csv", "csv")])
def test_format_for_path(name, fmt):
    assert format_for_path(name) == fmt


def test_unknown_formats_are_refused():
    with pytest.raises(ValueError, match="use .md, .jsonl or .csv"):
        format_for_path("timeline.txt")
    with pytest.raises(ValueError, match="unknown export format"):
        export(EVENTS, "xml")


# ------------------------------------------------------------------ from a real journal

async def test_load_events_from_a_journal_file(tmp_path):
    now = [T0]
    journal = await Journal.open(tmp_path / "journal.db", clock=lambda: now[0], actor=Actor("alice", "ops1"),
                                 origin="console-a")
    try:
        one = await journal.declare_incident("Errors", "P1", "alice@ops1")
        two = await journal.declare_incident("Memory", "P2", "bob@ops2")
        now[0] = T0 + timedelta(minutes=5)
        await journal.add_event("note", "checked logs", "bob@ops2", one.id)
        await journal.add_event("observation", "rss growing", "console", None)
        now[0] = T0 + timedelta(minutes=10)
        await journal.add_event("note", "restart planned", "alice@ops1", two.id)

        got = await load_events(journal, TimelineFilter(incident_id=one.id))
        assert [e.summary for e in got] == ["Incident #1 declared: Errors (P1)", "checked logs"]
        got = await load_events(journal, TimelineFilter(kinds={"note"}, since=T0 + timedelta(minutes=6)))
        assert [e.summary for e in got] == ["restart planned"]
        got = await load_events(journal, TimelineFilter(actors={"bob"}))
        assert [e.summary for e in got] == ["Incident #2 declared: Memory (P2)", "checked logs"]
        assert len(await load_events(journal)) == 5
    finally:
        await journal.close()
