"""Make one log line safe to put on a terminal.

Log text comes from processes we do not trust (a prover under attack logs attacker-chosen
paths and header values), and the console runs in the engineer's terminal, inside tmux, over
SSH. Any escape sequence that reached the screen could retitle the window, write the
clipboard (OSC 52), plant hidden hyperlinks (OSC 8), move the cursor to forge lines, or
reorder text with bidi overrides. So every line is reduced to printable characters here,
before it is parsed, stored or shown.

Choices, so readers of the output know what they are looking at:
- Invalid UTF-8 bytes become the text ``\\xNN`` (Python's ``backslashreplace``), not U+FFFD:
  during an incident the exact bytes are evidence, and ``\\xNN`` is pure ASCII. A literal
  backslash-x already in the text looks the same; that ambiguity is accepted.
- SGR sequences (colours: ``ESC[...m``) are dropped silently: gin and Go panics print them
  routinely and they carry no information. Every other escape sequence (cursor movement,
  erase, OSC title/hyperlink/clipboard, DCS/SOS/PM/APC strings, single-character ESC
  sequences) is replaced by one visible ``␛``. Terminated OSC/DCS strings lose their body
  (a hyperlink's URL, a clipboard payload); an unterminated one keeps its text after the
  ``␛``, since without the ESC that text is inert and may be the rest of a real message.
- C0 controls become the Unicode control pictures (``␀``..``␟``), DEL becomes ``␡``,
  tab expands to spaces (tab stops every 8 columns).
- C1 controls (U+0080..U+009F), bidi overrides/isolates (U+202A..U+202E, U+2066..U+2069),
  the line/paragraph separators U+2028/U+2029 and lone surrogates become ``\\uXXXX`` text
  (surrogate-escaped bytes U+DC80..U+DCFF become ``\\xNN`` like invalid bytes do).
- One trailing ``\\n`` or ``\\r\\n`` is the line terminator and is removed, not shown.
- A line longer than ``max_len`` characters (after sanitising) is cut and ends with
  ``…[+N chars]``. Work is bounded: at most ``max_len * 4 + 1024`` input characters are
  sanitised; characters beyond that are counted in N as they are (raw).
"""

from __future__ import annotations

import re

__all__ = ["sanitize_line", "ESC_PLACEHOLDER"]

ESC_PLACEHOLDER = "\u241b"  # ␛

# Anything that needs the slow path: C0 (tab included), DEL, C1, separators, bidi, surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

_ST = "(?:\x07|\x1b\\\\|\x9c)"  # string terminator: BEL (xterm), ESC \, or 8-bit ST
_SEQUENCE = re.compile(
    # CSI: ESC [ or 8-bit CSI, parameter bytes, intermediate bytes, final byte (may be missing)
    "(?P<csi>(?:\x1b\\[|\x9b)[\x30-\x3f]*+[\x20-\x2f]*+(?P<final>[\x40-\x7e])?)"
    # OSC, DCS, SOS, PM, APC with a terminator: the whole string goes
    "|(?:\x1b[\\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*+" + _ST +
    # the same introducers unterminated: only the introducer goes
    "|(?:\x1b[\\]PX^_]|[\x90\x98\x9d\x9e\x9f])"
    # other ESC sequences: ESC, intermediates, final (ESC c, ESC 7, ESC ( B, ESC # 8 ...)
    "|\x1b[\x20-\x2f]*+[\x30-\x7e]?"
    # single characters that must not reach the terminal as they are (tab handled later)
    "|(?P<char>[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff])"
)


def _replace(match: re.Match[str]) -> str:
    ch = match.group("char")
    if ch is not None:
        code = ord(ch)
        if code < 0x20:
            return chr(0x2400 + code)
        if code == 0x7F:
            return "\u2421"  # ␡
        if 0xDC80 <= code <= 0xDCFF:
            return f"\\x{code - 0xDC00:02x}"
        return f"\\u{code:04x}"
    if match.group("csi") is not None and match.group("final") == "m":
        return ""  # colours
    return ESC_PLACEHOLDER


def _decode(raw: bytes) -> str:
    if raw.isascii():
        return raw.decode("ascii")
    return raw.decode("utf-8", "backslashreplace")


def _cut(text: str, max_len: int, dropped_raw: int) -> str:
    extra = len(text) - max_len + dropped_raw if len(text) > max_len else dropped_raw
    if extra <= 0:
        return text
    return f"{text[:max_len]}…[+{extra} chars]"


def sanitize_line(raw: bytes | str, max_len: int = 2000) -> str:
    """One line of untrusted text -> printable text safe for any terminal (see module doc)."""
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        text = _decode(bytes(raw))
    else:
        raise TypeError(f"sanitize_line takes bytes or str, not {type(raw).__name__}")
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]

    # Fast path: the common log line is short printable ASCII.
    if len(text) <= max_len and text.isascii() and text.isprintable():
        return text

    bound = max_len * 4 + 1024
    dropped_raw = 0
    if len(text) > bound:
        dropped_raw = len(text) - bound
        text = text[:bound]

    if _UNSAFE.search(text) is not None:
        text = _SEQUENCE.sub(_replace, text)
        if "\t" in text:
            text = text.expandtabs(8)
    return _cut(text, max_len, dropped_raw)
