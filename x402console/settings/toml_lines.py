"""Line numbers of keys in TOML source text.

tomllib returns plain dicts with no positions, so to say *where* a bad value is we scan the
text again. The scan runs only when there is an error to report, and only on text tomllib has
already accepted, so it can be simple: it follows strings, comments, arrays and inline tables
just well enough to know which key each line belongs to.

Key paths are tuples: table and key names as str, array positions as int, e.g.
("replicas", 2, "health_url") for the third [[replicas]] block's health_url.
"""

from __future__ import annotations

KeyPath = tuple[str | int, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        # Current element index of each array of tables, keyed by its resolved path.
        self.aot_index: dict[KeyPath, int] = {}

    # ------------------------------------------------------------------ low level
    def _peek(self, n: int = 0) -> str:
        j = self.i + n
        return self.s[j] if j < len(self.s) else ""

    def _advance(self, n: int = 1) -> None:
        self.line += self.s.count("\n", self.i, self.i + n)
        self.i += n

    def _skip_blank(self, newlines: bool) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self._advance()
            elif c == "#":
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end < 0 else end
            else:
                return

    def _record(self, path: KeyPath, line: int) -> None:
        self.lines.setdefault(path, line)
        # Implicitly created parents point at the first line that created them.
        for n in range(1, len(path)):
            self.lines.setdefault(path[:n], line)

    # ------------------------------------------------------------------ keys
    def _key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            c = self._peek()
            if c == '"':
                parts.append(self._basic_string())
            elif c == "'":
                end = self.s.index("'", self.i + 1)
                parts.append(self.s[self.i + 1 : end])
                self.i = end + 1
            else:
                start = self.i
                while self._peek() and self._peek() in _BARE:
                    self.i += 1
                if self.i == start:
                    raise ValueError(f"no key at offset {start}")
                parts.append(self.s[start : self.i])
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return parts
            self.i += 1

    def _basic_string(self) -> str:
        # Single-line basic string; returns its decoded value (keys may use escapes).
        out: list[str] = []
        self.i += 1
        while True:
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\":
                e = self.s[self.i + 1]
                if e in "uU":
                    width = 4 if e == "u" else 8
                    out.append(chr(int(self.s[self.i + 2 : self.i + 2 + width], 16)))
                    self.i += 2 + width
                    continue
                out.append(_ESCAPES.get(e, e))
                self.i += 2
                continue
            out.append(c)
            self.i += 1

    def _resolve(self, parts: list[str]) -> KeyPath:
        path: KeyPath = ()
        for p in parts:
            path += (p,)
            if path in self.aot_index:
                path += (self.aot_index[path],)
        return path

    # ------------------------------------------------------------------ values
    def _skip_multiline(self, quote: str, escapes: bool) -> None:
        self._advance(3)
        while True:
            c = self._peek()
            if c == "":
                return
            if escapes and c == "\\":
                self._advance(2)
                continue
            if self.s.startswith(quote * 3, self.i):
                self._advance(3)
                # Up to two quotes right before the closing delimiter belong to the content.
                extra = 0
                while extra < 2 and self._peek() == quote:
                    self._advance()
                    extra += 1
                return
            self._advance()

    def _value(self, path: KeyPath) -> None:
        c = self._peek()
        if c == '"':
            if self.s.startswith('"""', self.i):
                self._skip_multiline('"', escapes=True)
            else:
                self._basic_string()
        elif c == "'":
            if self.s.startswith("'''", self.i):
                self._skip_multiline("'", escapes=False)
            else:
                self.i = self.s.index("'", self.i + 1) + 1
        elif c == "[":
            self._advance()
            index = 0
            while True:
                self._skip_blank(newlines=True)
                if self._peek() in ("]", ""):
                    self._advance()
                    return
                self._record(path + (index,), self.line)
                self._value(path + (index,))
                index += 1
                self._skip_blank(newlines=True)
                if self._peek() == ",":
                    self._advance()
        elif c == "{":
            self._advance()
            while True:
                self._skip_blank(newlines=True)
                if self._peek() in ("}", ""):
                    self._advance()
                    return
                self._keyval(path)
                self._skip_blank(newlines=True)
                if self._peek() == ",":
                    self._advance()
        else:
            # Numbers, booleans, dates (which may contain one space) end at a delimiter.
            while self._peek() and self._peek() not in ",]}#\r\n":
                self.i += 1

    def _keyval(self, prefix: KeyPath) -> None:
        line = self.line
        path = prefix + tuple(self._key())
        self._record(path, line)
        self._skip_blank(newlines=False)
        if self._peek() != "=":
            raise ValueError(f"expected '=' at line {self.line}")
        self.i += 1
        self._skip_blank(newlines=False)
        self._value(path)

    # ------------------------------------------------------------------ document
    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self._skip_blank(newlines=True)
            if self.i >= len(self.s):
                return self.lines
            if self._peek() == "[":
                line = self.line
                array = self._peek(1) == "["
                self.i += 2 if array else 1
                parts = self._key()
                self.i += 2 if array else 1
                if array:
                    base = self._resolve(parts[:-1]) + (parts[-1],)
                    index = self.aot_index.get(base, -1) + 1
                    self.aot_index[base] = index
                    table = base + (index,)
                else:
                    table = self._resolve(parts)
                self._record(table, line)
            else:
                self._keyval(table)


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map each key path in `text` (already valid TOML) to the line where it is defined.

    Tables map to their header line, arrays of tables to their first header, array elements to
    the line where they start. A scan that trips on something unexpected returns what it has.
    """
    scanner = _Scanner(text)
    try:
        return scanner.scan()
    except (ValueError, IndexError):
        return scanner.lines


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of `path`, or of its nearest enclosing key or table that the text defines."""
    for n in range(len(path), 0, -1):
        line = lines.get(path[:n])
        if line is not None:
            return line
    return None
