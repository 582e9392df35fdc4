"""Bounded store of log records for the log pane, with a filtered index kept as records arrive.

Pure Python on purpose (no textual/rich): the hot path of the log pane lives here and is unit
tested without an app.

Every record gets a sequence number when it is appended; numbers only ever grow, so a record
keeps its identity while older records are evicted under it. The view uses sequence numbers to
cache rendered lines and to keep the line under the user's eyes still while the ring turns.

Memory is flat: the records sit in a fixed ring of `capacity` slots and the filtered index holds
at most `capacity` live entries (plus a compaction slack of the same size).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable, Iterator, Protocol

from x402console.sources.logparse import LogFilter, LogRecord, PresetFilter

__all__ = [
    "DEFAULT_CAPACITY",
    "MAX_TRACKED_REPLICAS",
    "ViewFilter",
    "LineSource",
    "LogBuffer",
    "FrozenLines",
    "LiveLines",
    "find_line",
]

DEFAULT_CAPACITY = 10_000
# Replica names come from discovery, but a misbehaving source must not grow this without bound.
MAX_TRACKED_REPLICAS = 256
_COMPACT_AT = 4096


@dataclass(frozen=True)
class ViewFilter:
    """What the user asked to see: all conditions must hold (text AND preset AND replica)."""

    text: LogFilter | None = None
    preset: PresetFilter | None = None
    replica: str | None = None
    # Request paths whose successful access lines are hidden: the console's own /health and
    # /metrics polls (and Prometheus's scrapes). A failed probe (status >= 400) still shows.
    hide_paths: frozenset[str] = frozenset()

    @property
    def is_empty(self) -> bool:
        return self.text is None and self.preset is None and self.replica is None and not self.hide_paths

    @cached_property
    def matches(self) -> Callable[[LogRecord], bool]:
        """The predicate, built once as plain closures: it runs for every arriving line.

        The text condition follows the LogFilter's own fields and rules (see _text_predicate).
        """
        checks: list[Callable[[LogRecord], bool]] = []
        if self.hide_paths:
            paths = self.hide_paths

            def not_a_probe(record: LogRecord) -> bool:
                path = record.path
                if path is None:
                    return True
                status = record.http_status
                return (status is not None and status >= 400) or path.split("?", 1)[0] not in paths

            checks.append(not_a_probe)
        if self.replica is not None:
            name = self.replica
            checks.append(lambda record: record.replica == name)
        if self.preset is not None:
            checks.append(self.preset.matches)
        if self.text is not None:
            found = _text_predicate(self.text)
            if self.text.invert:
                checks.append(lambda record: not found(record))
            else:
                checks.append(found)
        if not checks:
            return lambda record: True
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:
            first, second = checks
            return lambda record: first(record) and second(record)
        return lambda record: all(check(record) for check in checks)


def _text_predicate(text: LogFilter) -> Callable[[LogRecord], bool]:
    """Does the raw line contain the filter's pattern (invert not applied)?

    Same answer as LogFilter.matches (pattern escaped unless regex, IGNORECASE unless
    case-sensitive, searched in the raw line), faster for the common case: a case-insensitive
    IGNORECASE regex search costs about four times `needle in line.lower()`, and for an ASCII
    pattern in an ASCII line the two agree exactly (non-ASCII lines take the regex path, where
    Unicode case folding differs from lower()).
    """
    flags = 0 if text.case_sensitive else re.IGNORECASE
    search = re.compile(text.pattern if text.regex else re.escape(text.pattern), flags).search
    if text.regex:
        return lambda record: search(record.raw) is not None
    if text.case_sensitive:
        needle = text.pattern
        return lambda record: needle in record.raw
    if text.pattern.isascii():
        lowered = text.pattern.lower()

        def contains(record: LogRecord) -> bool:
            raw = record.raw
            if raw.isascii():
                return lowered in raw.lower()
            return search(raw) is not None

        return contains
    return lambda record: search(record.raw) is not None


class LineSource(Protocol):
    """The lines a view shows, addressed by position (0 = oldest shown line)."""

    def __len__(self) -> int: ...

    def seq_at(self, position: int) -> int: ...

    def record_at(self, position: int) -> LogRecord: ...

    def position_of(self, seq: int) -> int:
        """Position of `seq`, or of the first shown line after it (len() when none)."""
        ...


class LogBuffer:
    """Ring buffer of the newest `capacity` records plus the positions that pass a ViewFilter.

    With no filter the shown lines are simply the retained ones and no index is kept, which is
    the common case at high rates.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError("capacity must be a positive integer")
        self.capacity = capacity
        self._slots: list[LogRecord | None] = [None] * capacity
        self._next = 0
        self._filter = ViewFilter()
        self._all = True
        self._index: list[int] = []
        self._head = 0
        self._matched = 0
        self._longest = 0
        self._replicas: dict[str, int] = {}
        self._floor = 0  # first_seq after a clear()
        self.live = LiveLines(self)

    # --- appending ---------------------------------------------------------------------------

    def extend(self, records: Iterable[LogRecord]) -> int:
        """Append records; returns how many were appended. Oldest records fall out silently."""
        slots = self._slots
        cap = self.capacity
        start = seq = self._next
        longest = self._longest
        replicas = self._replicas
        if self._all:
            for record in records:
                slots[seq % cap] = record
                seq += 1
                size = len(record.message)
                if size > longest:
                    longest = size
                name = record.replica
                if name not in replicas:
                    self._see_replica(name)
            self._matched += seq - start
        else:
            matches = self._filter.matches
            index = self._index
            matched = 0
            for record in records:
                slots[seq % cap] = record
                if matches(record):
                    index.append(seq)
                    matched += 1
                seq += 1
                size = len(record.message)
                if size > longest:
                    longest = size
                name = record.replica
                if name not in replicas:
                    self._see_replica(name)
            self._matched += matched
        self._next = seq
        self._longest = longest
        if not self._all:
            self._trim_index()
        return seq - start

    def append(self, record: LogRecord) -> int:
        """Append one record; returns its sequence number."""
        self.extend((record,))
        return self._next - 1

    def _see_replica(self, name: str) -> None:
        if len(self._replicas) < MAX_TRACKED_REPLICAS:
            self._replicas[name] = len(self._replicas)

    def _trim_index(self) -> None:
        index = self._index
        first = self.first_seq
        head = self._head
        if head < len(index) and index[head] < first:
            head = bisect_left(index, first, head)
        if head >= _COMPACT_AT and head * 2 >= len(index):
            del index[:head]
            head = 0
        self._head = head

    def clear(self) -> None:
        """Forget every record; sequence numbers keep growing so cached lines never alias."""
        self._slots = [None] * self.capacity
        self._floor = self._next
        self._index = []
        self._head = 0
        self._longest = 0
        self._matched = 0

    # --- what is retained --------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Records ever appended (the next sequence number)."""
        return self._next

    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest retained record."""
        first = self._next - self.capacity
        return first if first > self._floor else self._floor

    @property
    def evicted(self) -> int:
        """Records no longer retained (pushed out by newer ones, or cleared)."""
        return self.first_seq

    def __len__(self) -> int:
        return self._next - self.first_seq

    def get(self, seq: int) -> LogRecord | None:
        """The record with that sequence number, or None when it was evicted or never existed."""
        if self.first_seq <= seq < self._next:
            return self._slots[seq % self.capacity]
        return None

    def __iter__(self) -> Iterator[LogRecord]:
        slots = self._slots
        cap = self.capacity
        for seq in range(self.first_seq, self._next):
            yield slots[seq % cap]  # type: ignore[misc]

    @property
    def longest_message(self) -> int:
        """Longest message length appended since the last clear (it never shrinks in between)."""
        return self._longest

    @property
    def replicas(self) -> list[str]:
        """Replica names in the order they were first seen (at most MAX_TRACKED_REPLICAS)."""
        return list(self._replicas)

    # --- the filtered view -------------------------------------------------------------------

    @property
    def filter(self) -> ViewFilter:
        return self._filter

    def set_filter(self, view_filter: ViewFilter) -> None:
        """Show only records passing `view_filter`; the index is rebuilt over retained records."""
        self._filter = view_filter
        self._all = view_filter.is_empty
        self._index = []
        self._head = 0
        if self._all:
            self._matched = len(self)
            return
        matches = view_filter.matches
        slots = self._slots
        cap = self.capacity
        index = self._index
        for seq in range(self.first_seq, self._next):
            if matches(slots[seq % cap]):  # type: ignore[arg-type]
                index.append(seq)
        self._matched = len(index)

    @property
    def matched_total(self) -> int:
        """Monotonic count of shown records since the last set_filter (retained ones included).

        The difference between two readings is how many new lines the filter let through,
        whatever was evicted meanwhile: the pane's "+N new lines" while paused.
        """
        return self._matched

    @property
    def shown(self) -> int:
        if self._all:
            return len(self)
        return len(self._index) - self._head

    def seq_at(self, position: int) -> int:
        size = self.shown
        if position < 0:
            position += size
        if not 0 <= position < size:
            raise IndexError(position)
        if self._all:
            return self.first_seq + position
        return self._index[self._head + position]

    def record_at(self, position: int) -> LogRecord:
        seq = self.seq_at(position)
        return self._slots[seq % self.capacity]  # type: ignore[return-value]

    def position_of(self, seq: int) -> int:
        if self._all:
            return min(max(seq - self.first_seq, 0), len(self))
        return bisect_left(self._index, seq, self._head) - self._head

    def snapshot(self) -> FrozenLines:
        """The shown lines as they are now, unaffected by later appends (for pause)."""
        if self._all:
            seqs = list(range(self.first_seq, self._next))
        else:
            seqs = self._index[self._head:]
        cap = self.capacity
        slots = self._slots
        return FrozenLines(seqs, [slots[s % cap] for s in seqs])  # type: ignore[misc]

    def __bool__(self) -> bool:  # an empty buffer is still a buffer
        return True


class LiveLines:
    """The buffer's shown lines as a LineSource: changes as records arrive and are evicted."""

    __slots__ = ("buffer",)

    def __init__(self, buffer: LogBuffer) -> None:
        self.buffer = buffer

    def __len__(self) -> int:
        return self.buffer.shown

    def __bool__(self) -> bool:
        return True

    def seq_at(self, position: int) -> int:
        return self.buffer.seq_at(position)

    def record_at(self, position: int) -> LogRecord:
        return self.buffer.record_at(position)

    def position_of(self, seq: int) -> int:
        return self.buffer.position_of(seq)


class FrozenLines:
    """A LineSource that never changes: what a paused view shows."""

    __slots__ = ("_seqs", "_records")

    def __init__(self, seqs: list[int], records: list[LogRecord]) -> None:
        if len(seqs) != len(records):
            raise ValueError("seqs and records must have the same length")
        self._seqs = seqs
        self._records = records

    def __len__(self) -> int:
        return len(self._seqs)

    def __bool__(self) -> bool:
        return True

    def seq_at(self, position: int) -> int:
        return self._seqs[position]

    def record_at(self, position: int) -> LogRecord:
        return self._records[position]

    def position_of(self, seq: int) -> int:
        return bisect_left(self._seqs, seq)


def find_line(
    source: LineSource,
    predicate: Callable[[LogRecord], bool],
    start: int,
    backwards: bool = False,
    wrap: bool = True,
) -> int | None:
    """Position of the next shown line (after `start`, or before it when backwards) that
    satisfies `predicate`, wrapping around once; None when no line does.

    `start` may be -1 (search forwards from the top) or len(source) (backwards from the end).
    """
    size = len(source)
    if size == 0:
        return None
    step = -1 if backwards else 1
    record_at = source.record_at
    position = start
    for _ in range(size if wrap else max(0, (start if backwards else size - 1 - start))):
        position += step
        if position >= size or position < 0:
            if not wrap:
                return None
            position %= size
        if predicate(record_at(position)):
            return position
    return None
