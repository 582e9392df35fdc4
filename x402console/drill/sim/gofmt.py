"""Text exactly as the Go prover prints it: durations, quoted strings, JSON, timestamps.

The console parses the real prover's output, so every byte the simulator writes has to follow
the Go formatting rules (time.Duration.String, fmt %#v on strings, encoding/json, log.LstdFlags).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from typing import Any

_NS_PER_S = 1_000_000_000


def _frac(v: int, prec: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction v/10**prec without trailing zeros, and v // 10**prec."""
    digits = []
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits.append(str(digit))
        v //= 10
    text = ("." + "".join(reversed(digits))) if printed else ""
    return text, v


def go_duration(ns: int) -> str:
    """time.Duration(ns).String(), e.g. 1.234567ms, 850µs, 2.5s, 1m0.5s."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < _NS_PER_S:
        if u < 1_000:
            prec, unit = 0, "ns"
        elif u < 1_000_000:
            prec, unit = 3, "µs"
        else:
            prec, unit = 6, "ms"
        frac, whole = _frac(u, prec)
        text = f"{whole}{frac}{unit}"
    else:
        frac, whole = _frac(u, 9)
        text = f"{whole % 60}{frac}s"
        minutes = whole // 60
        if minutes:
            text = f"{minutes % 60}m{text}"
            hours = minutes // 60
            if hours:
                text = f"{hours}h{text}"
    return ("-" + text) if neg else text


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(s: str) -> str:
    """strconv.Quote (what fmt's %#v prints for a string).

    Bytes that were not valid UTF-8 arrive as surrogate escapes (from decoding with
    errors="surrogateescape") and come out as \\xNN, like Go prints invalid bytes.
    """
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_quote_char(ch: str) -> str:
    """encoding/json's quoteChar, used in its syntax error messages: 'x', '\\'', '"'."""
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + go_quote(ch)[1:-1] + "'"


def _clean_utf8(s: str) -> str:
    # Lone surrogates cannot be encoded; Go would have replaced the invalid bytes with U+FFFD.
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if any(
        0xD800 <= ord(c) <= 0xDFFF for c in s
    ) else s


def _clean(obj: Any) -> Any:
    if isinstance(obj, str):
        return _clean_utf8(obj)
    if isinstance(obj, dict):
        return {_clean_utf8(str(k)): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def go_json(obj: Any, *, sort_keys: bool = False) -> str:
    """encoding/json.Marshal: compact, raw UTF-8, <>& and U+2028/9 escaped.

    Go sorts map keys (gin.H, logrus fields) but keeps struct field order, hence the flag.
    """
    text = json.dumps(_clean(obj), ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def go_json_bytes(obj: Any, *, sort_keys: bool = False) -> bytes:
    return go_json(obj, sort_keys=sort_keys).encode("utf-8")


def stdlib_timestamp(t: float | None = None) -> str:
    """log.LstdFlags prefix (local time): 2006/01/02 15:04:05."""
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(time.time() if t is None else t))


def gin_timestamp(t: float | None = None) -> str:
    """gin's access log time: 2006/01/02 - 15:04:05 (local time)."""
    return time.strftime("%Y/%m/%d - %H:%M:%S", time.localtime(time.time() if t is None else t))


def rfc3339(t: float | None = None) -> str:
    """time.RFC3339 in local time; Go writes Z for a zero offset."""
    stamp = _dt.datetime.fromtimestamp(time.time() if t is None else t).astimezone()
    text = stamp.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def rfc3339_nano(t: float) -> str:
    """Go's default time.Time JSON form (RFC3339Nano, trailing zeros dropped)."""
    stamp = _dt.datetime.fromtimestamp(t).astimezone()
    base = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{stamp.microsecond:06d}".rstrip("0")
    offset = stamp.strftime("%z")
    zone = "Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}"
    return f"{base}{'.' + frac if frac else ''}{zone}"
