"""Prometheus text exposition (0.0.4) parser, tolerant of OpenMetrics 1.0.

Used when the console scrapes a replica's /metrics itself (no Prometheus, or Prometheus down).
A scrape is untrusted input of any size: the parser never raises for bad input; it keeps what
it can read and reports every problem with its line number (``Exposition.errors``). Input
beyond ``max_bytes`` or ``max_lines`` is not read, and that is reported too.

Format facts relied on (reference/ops-apis.md C2, C3):
- ``# HELP`` / ``# TYPE`` lines; other ``#`` lines are comments. At most one of each per family;
  TYPE before the family's first sample. No TYPE means untyped.
- label values escape ``\\\\``, ``\\"`` and ``\\n``; HELP escapes ``\\\\`` and ``\\n``; a trailing comma
  inside the braces is allowed; quoted metric names inside the braces are accepted.
- values are Go floats: ``NaN``, ``+Inf``, ``-Inf`` in any case; 0.0.4 timestamps are int64
  milliseconds (may be negative); OpenMetrics timestamps are float seconds, converted to ms.
- OpenMetrics is recognised by the content type or a final ``# EOF``; its ``unknown`` type is
  reported as ``untyped``, ``# UNIT`` is kept, exemplars (`` # {...} v [ts]``) are skipped.
- histogram samples ``x_bucket``/``x_sum``/``x_count`` (and summary ``x_sum``/``x_count``)
  belong to family ``x``; buckets are checked (``+Inf`` present and equal to ``_count``,
  cumulative counts not decreasing) and violations reported.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

__all__ = [
    "Sample",
    "MetricFamily",
    "ParseIssue",
    "Exposition",
    "parse_exposition",
    "wanted_names",
    "parse_float",
    "value",
    "total",
    "histogram_buckets",
    "MAX_BYTES",
    "MAX_LINES",
]

MAX_BYTES = 10 * 1024 * 1024
MAX_LINES = 200_000
_MAX_ISSUES = 1_000  # a garbage body must not produce a garbage-sized error list

TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped", "gaugehistogram", "stateset", "info"})
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("_sum", "_count", "_created"),
    "counter": ("_total", "_created"),
    "info": ("_info",),
}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float
    timestamp_ms: int | None = None
    line: int = 0


@dataclass(slots=True)
class MetricFamily:
    name: str
    type: str = "untyped"
    help: str | None = None
    unit: str | None = None
    samples: list[Sample] = field(default_factory=list)
    line: int = 0
    _typed: bool = False
    _helped: bool = False


@dataclass(frozen=True, slots=True)
class ParseIssue:
    line: int  # 1-based; 0 for problems of the whole input
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(slots=True)
class Exposition:
    families: dict[str, MetricFamily] = field(default_factory=dict)
    errors: list[ParseIssue] = field(default_factory=list)
    openmetrics: bool = False
    truncated: bool = False

    def family(self, name: str) -> MetricFamily | None:
        """By family name, or by a sample name (x_bucket, x_total) that belongs to one."""
        fam = self.families.get(name)
        if fam is not None:
            return fam
        for suffix in ("_bucket", "_sum", "_count", "_total", "_created", "_gsum", "_gcount", "_info"):
            if name.endswith(suffix):
                fam = self.families.get(name[: -len(suffix)])
                if fam is not None and suffix in _SUFFIXES.get(fam.type, ()):
                    return fam
        return None

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        fam = self.family(name)
        return None if fam is None else value(fam, labels, sample_name=name)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_float(text: str) -> float | None:
    """Go ParseFloat as the text format uses it; None when it is not a number."""
    if _FLOAT.fullmatch(text) is None:
        return None
    return float(text)


def _unescape(text: str, quote: bool) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "n":
                out.append("\n")
                i += 2
                continue
            if nxt == "\\" or (quote and nxt == '"'):
                out.append(nxt)
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


class _LineError(Exception):
    pass


def _read_quoted(line: str, pos: int) -> tuple[str, int]:
    """A "..." string starting at pos (the quote); returns (unescaped text, index after it)."""
    i = pos + 1
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return _unescape(line[pos + 1 : i], quote=True), i + 1
        i += 1
    raise _LineError("unterminated quoted string")


def _skip_blank(line: str, pos: int) -> int:
    n = len(line)
    while pos < n and line[pos] in " \t":
        pos += 1
    return pos


def _parse_labels(line: str, pos: int) -> tuple[str | None, dict[str, str], int]:
    """From just after '{' to just after '}': (quoted metric name or None, labels, end)."""
    labels: dict[str, str] = {}
    name: str | None = None
    n = len(line)
    while True:
        pos = _skip_blank(line, pos)
        if pos >= n:
            raise _LineError("unterminated label set (missing '}')")
        if line[pos] == "}":
            return name, labels, pos + 1
        if line[pos] == '"':
            key, pos = _read_quoted(line, pos)
            pos = _skip_blank(line, pos)
            if pos < n and line[pos] != "=":
                if name is not None or labels:
                    raise _LineError("a quoted metric name must come first in the braces")
                name = key
                key = ""
        else:
            match = _LABEL_NAME.match(line, pos)
            if match is None:
                raise _LineError(f"invalid label name at column {pos + 1}")
            key = match.group(0)
            pos = _skip_blank(line, match.end())
        if key:
            if pos >= n or line[pos] != "=":
                raise _LineError(f"expected '=' after label {key!r}")
            pos = _skip_blank(line, pos + 1)
            if pos >= n or line[pos] != '"':
                raise _LineError(f"label {key!r}: value must be a quoted string")
            val, pos = _read_quoted(line, pos)
            if key in labels:
                raise _LineError(f"duplicate label {key!r}")
            labels[key] = val
        pos = _skip_blank(line, pos)
        if pos < n and line[pos] == ",":
            pos += 1  # a trailing comma before '}' is allowed
        elif pos < n and line[pos] != "}":
            raise _LineError(f"expected ',' or '}}' at column {pos + 1}")


def _parse_sample(line: str, lineno: int, openmetrics: bool) -> Sample:
    name: str | None = None
    pos = 0
    if line[0] != "{":
        match = _NAME.match(line)
        if match is None:
            raise _LineError("invalid metric name")
        name = match.group(0)
        pos = match.end()
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        quoted_name, labels, pos = _parse_labels(line, pos + 1)
        if quoted_name is not None:
            if name is not None:
                raise _LineError("metric name given twice")
            name = quoted_name
    if not name:
        raise _LineError("missing metric name")
    if pos < len(line) and line[pos] not in " \t":
        raise _LineError(f"unexpected character {line[pos]!r} after metric name")
    rest = line[pos:]
    hash_at = rest.find(" # ")
    if hash_at >= 0:  # an OpenMetrics exemplar follows; consoles have no use for it
        rest = rest[:hash_at]
    tokens = rest.split()
    if not tokens:
        raise _LineError("missing value")
    if len(tokens) > 2:
        raise _LineError("too many fields after the value")
    number = parse_float(tokens[0])
    if number is None:
        raise _LineError(f"invalid value {tokens[0][:40]!r}")
    stamp: int | None = None
    if len(tokens) == 2:
        if openmetrics:
            seconds = parse_float(tokens[1])
            if seconds is None or not math.isfinite(seconds):
                raise _LineError(f"invalid timestamp {tokens[1][:40]!r}")
            stamp = round(seconds * 1000)
        else:
            if _INT.fullmatch(tokens[1]) is None:
                raise _LineError(f"invalid timestamp {tokens[1][:40]!r} (int64 milliseconds expected)")
            stamp = int(tokens[1])
            if not -(2**63) <= stamp < 2**63:
                raise _LineError("timestamp out of int64 range")
    return Sample(name, labels, number, stamp, lineno)


class _Parser:
    def __init__(self, openmetrics: bool) -> None:
        self.result = Exposition(openmetrics=openmetrics)
        self.current: MetricFamily | None = None
        self.seen_samples: set[str] = set()

    def error(self, lineno: int, message: str) -> None:
        errors = self.result.errors
        if len(errors) < _MAX_ISSUES:
            errors.append(ParseIssue(lineno, message))
        elif len(errors) == _MAX_ISSUES:
            errors.append(ParseIssue(0, "too many errors; the rest are not listed"))

    def declared(self, name: str, lineno: int) -> MetricFamily:
        fam = self.result.families.get(name)
        if fam is None:
            fam = MetricFamily(name, line=lineno)
            self.result.families[name] = fam
        self.current = fam
        return fam

    def meta(self, line: str, lineno: int) -> None:
        parts = line[1:].lstrip(" \t").split(None, 2)
        if not parts or parts[0] not in ("HELP", "TYPE", "UNIT", "EOF"):
            return  # a comment
        keyword = parts[0]
        if keyword == "EOF":
            return
        if len(parts) < 2 or _NAME.fullmatch(parts[1]) is None:
            self.error(lineno, f"# {keyword}: missing or invalid metric name")
            return
        name = parts[1]
        text = parts[2] if len(parts) > 2 else ""
        fam = self.declared(name, lineno)
        if keyword == "HELP":
            if fam._helped:
                self.error(lineno, f"duplicate HELP for {name}")
                return
            fam._helped = True
            fam.help = _unescape(text, quote=False)
        elif keyword == "TYPE":
            kind = text.strip().lower()
            if kind == "unknown":
                kind = "untyped"
            if fam._typed:
                self.error(lineno, f"duplicate TYPE for {name}")
                return
            if kind not in TYPES:
                self.error(lineno, f"unknown TYPE {text.strip()[:40]!r} for {name}")
                return
            if fam.samples:
                self.error(lineno, f"TYPE for {name} after its first sample")
                return
            fam._typed = True
            fam.type = kind
        else:
            fam.unit = text.strip() or None

    def family_for(self, sample_name: str, lineno: int) -> MetricFamily:
        cur = self.current
        if cur is not None and (
            sample_name == cur.name
            or (sample_name.startswith(cur.name) and sample_name[len(cur.name):] in _SUFFIXES.get(cur.type, ()))
        ):
            return cur
        fam = self.result.family(sample_name)
        if fam is None:
            fam = MetricFamily(sample_name, line=lineno)
            self.result.families[sample_name] = fam
        elif fam.samples and fam is not cur:
            self.error(lineno, f"samples of {fam.name} are not contiguous")
        self.current = fam
        return fam

    def sample(self, line: str, lineno: int) -> None:
        try:
            smp = _parse_sample(line, lineno, self.result.openmetrics)
        except _LineError as exc:
            self.error(lineno, str(exc))
            return
        fam = self.family_for(smp.name, lineno)
        key = smp.name + "\x00" + "\x00".join(f"{k}={v}" for k, v in sorted(smp.labels.items()))
        if key in self.seen_samples:
            self.error(lineno, f"duplicate sample {smp.name}{dict(smp.labels)}")
        self.seen_samples.add(key)
        fam.samples.append(smp)

    def check_histograms(self) -> None:
        for fam in self.result.families.values():
            if fam.type not in ("histogram", "gaugehistogram"):
                continue
            series: dict[tuple[tuple[str, str], ...], list[tuple[float, float, int]]] = {}
            counts: dict[tuple[tuple[str, str], ...], float] = {}
            for smp in fam.samples:
                rest = tuple(sorted((k, v) for k, v in smp.labels.items() if k != "le"))
                if smp.name.endswith("_bucket"):
                    le = parse_float(smp.labels.get("le", "").strip())
                    if le is None:
                        self.error(smp.line, f"{smp.name}: missing or invalid le label")
                        continue
                    series.setdefault(rest, []).append((le, smp.value, smp.line))
                elif smp.name.endswith(("_count", "_gcount")):
                    counts[rest] = smp.value
            for rest, buckets in series.items():
                where = buckets[0][2]
                label_text = "{" + ",".join(f'{k}="{v}"' for k, v in rest) + "}" if rest else ""
                les = [b[0] for b in buckets]
                if les != sorted(les):
                    self.error(where, f"{fam.name}{label_text}: buckets not in increasing le order")
                ordered = sorted(buckets)
                if not ordered or not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
                    self.error(where, f"{fam.name}{label_text}: no le=\"+Inf\" bucket")
                elif rest in counts and counts[rest] != ordered[-1][1]:
                    self.error(where, f"{fam.name}{label_text}: +Inf bucket differs from _count")
                if any(b[1] > a_next[1] for b, a_next in zip(ordered, ordered[1:])):
                    self.error(where, f"{fam.name}{label_text}: bucket counts decrease")


def parse_exposition(
    text: str | bytes,
    content_type: str | None = None,
    *,
    max_bytes: int = MAX_BYTES,
    max_lines: int = MAX_LINES,
    only: frozenset[str] | None = None,
) -> Exposition:
    """Parse a /metrics body. Never raises for bad input: see ``Exposition.errors``.

    ``only`` (from ``wanted_names``): parse just the lines of these families and skip the
    families the page declares (HELP/TYPE) that are not wanted, samples and problems unread.
    Most of a Go service's page is runtime families nobody here reads, and a console scrapes
    every replica every refresh. A line of no declared family is still parsed, so a garbage
    body (an HTML page, a proxy's error text) is reported as before.
    """
    if isinstance(text, (bytes, bytearray)):
        body = bytes(text[: max_bytes + 1]).decode("utf-8", "replace")
        too_big = len(text) > max_bytes
    else:
        body = text
        too_big = len(body) > max_bytes
    if too_big:
        cut = body.rfind("\n", 0, max_bytes)
        body = body[: cut + 1 if cut >= 0 else 0]
    stripped_end = body.rstrip()
    openmetrics = bool(content_type and "openmetrics" in content_type.lower()) or stripped_end.endswith("# EOF")
    parser = _Parser(openmetrics)
    if too_big:
        parser.result.truncated = True
        parser.error(0, f"input larger than {max_bytes} bytes; the rest was not read")

    lineno = 0
    skipping: str | None = None
    for lineno, line in enumerate(body.split("\n"), start=1):
        if lineno > max_lines:
            parser.result.truncated = True
            parser.error(0, f"more than {max_lines} lines; the rest was not read")
            break
        line = line.strip(" \t\r")
        if not line:
            continue
        if only is not None:
            name = _line_metric(line)
            if name == _KEEP:
                pass  # a comment, # EOF, a quoted name: parsed, and no family boundary
            elif name in only:
                skipping = None
            elif line[0] == "#":
                skipping = name  # the declaration of a family nobody asked for
                continue
            elif skipping is not None and name.startswith(skipping) and name[len(skipping):] in _ANY_SUFFIX:
                continue
        if line[0] == "#":
            parser.meta(line, lineno)
        else:
            parser.sample(line, lineno)
    if openmetrics and not too_big and not stripped_end.endswith("# EOF"):
        parser.error(0, "OpenMetrics exposition does not end with # EOF")
    parser.check_histograms()
    return parser.result


_KEEP = ""  # what _line_metric says of a line the filter must not skip
_ANY_SUFFIX = frozenset({""} | {suffix for group in _SUFFIXES.values() for suffix in group})


def _line_metric(line: str) -> str:
    """The metric name a (stripped, non-empty) line is about; _KEEP for lines a filter keeps
    whatever it wants (comments, # EOF, names in quotes, lines too broken to name)."""
    if line[0] == "#":
        parts = line[1:].split(None, 2)
        return parts[1] if len(parts) > 1 and parts[0] in ("HELP", "TYPE", "UNIT") else _KEEP
    if line[0] == "{":
        return _KEEP
    end = len(line)
    for stop in ("{", " ", "\t"):
        at = line.find(stop, 0, end)
        if at >= 0:
            end = at
    return line[:end]


def wanted_names(names: Iterable[str]) -> frozenset[str]:
    """The line names ``parse_exposition(only=...)`` keeps to answer ``family`` / ``value`` for
    each of ``names``, whether a name is given as its family (x) or as a sample (x_total), in
    the 0.0.4 style (TYPE x_total counter) or the OpenMetrics one (TYPE x counter)."""
    keep = {_KEEP}
    for name in names:
        bases = {name} | {name[: -len(s)] for s in _ANY_SUFFIX if s and name.endswith(s) and len(name) > len(s)}
        for base in bases:
            keep.update(base + s for s in _ANY_SUFFIX)
    return frozenset(keep)


# --- helpers for readers -------------------------------------------------------------------


def _label_match(sample: Sample, labels: Mapping[str, str] | None) -> bool:
    if not labels:
        return True
    sl = sample.labels
    return all(sl.get(k) == v for k, v in labels.items())


def _default_sample_name(fam: MetricFamily) -> tuple[str, ...]:
    if fam.type == "counter":
        return (fam.name, fam.name + "_total")
    if fam.type in ("histogram", "summary"):
        return (fam.name + "_count",) if fam.type == "histogram" else (fam.name, fam.name + "_count")
    return (fam.name,)


def value(
    family: MetricFamily | None, labels: Mapping[str, str] | None = None, *, sample_name: str | None = None
) -> float | None:
    """The value of the first sample whose labels include ``labels`` (None: no such sample).

    Without ``sample_name``: the family's own sample (counter: ``x`` or ``x_total``; histogram:
    ``x_count``). Samples with no labels are preferred when ``labels`` is not given.
    """
    if family is None:
        return None
    names = (sample_name,) if sample_name and sample_name != family.name else _default_sample_name(family)
    found: Sample | None = None
    for smp in family.samples:
        if smp.name in names and _label_match(smp, labels):
            if labels or not smp.labels:
                return smp.value
            if found is None:
                found = smp
    return None if found is None else found.value


def total(
    family: MetricFamily | None, labels: Mapping[str, str] | None = None, *, sample_name: str | None = None
) -> float | None:
    """Sum over every matching sample (e.g. rate_limit_exceeded_total over all ip labels)."""
    if family is None:
        return None
    names = (sample_name,) if sample_name else _default_sample_name(family)
    values = [s.value for s in family.samples if s.name in names and _label_match(s, labels)]
    return math.fsum(values) if values else None


def histogram_buckets(
    family: MetricFamily | None, labels: Mapping[str, str] | None = None
) -> list[tuple[float, float]]:
    """(le, cumulative count) sorted by le, for the series matching ``labels``.

    Several matching series (e.g. per instance) are summed per le, which is what
    ``sum by (le)`` does before histogram_quantile. Buckets with an unreadable le are skipped.
    """
    if family is None:
        return []
    bucket_name = family.name + "_bucket"
    sums: dict[float, float] = {}
    for smp in family.samples:
        if smp.name != bucket_name or not _label_match(smp, labels):
            continue
        le = parse_float(smp.labels.get("le", "").strip())
        if le is None or math.isnan(le):
            continue
        sums[le] = sums.get(le, 0.0) + smp.value
    return sorted(sums.items())
