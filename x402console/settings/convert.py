"""Checks that turn one raw TOML value into a typed setting, or say precisely what is wrong.

Every converter has the signature (value, key, ctx) -> typed value and raises Invalid with the
key path it was given, so the caller can point at the file line.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from x402console.settings.toml_lines import KeyPath

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_COMPOSE_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]*")
_CHAIN = re.compile(r"[A-Za-z0-9_.-]{1,28}")


class Invalid(Exception):
    """A bad value at `key`; load_config turns it into a ConfigError with file and line."""

    def __init__(self, key: KeyPath, message: str) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message


class Context:
    """What converters need besides the value: where relative paths start."""

    def __init__(self, base_dir: Path, cwd: Path, override_paths: Iterable[KeyPath] = ()) -> None:
        self.base_dir = base_dir
        self.cwd = cwd
        self.override_paths = tuple(override_paths)

    def from_overrides(self, key: KeyPath) -> bool:
        return any(key[: len(p)] == p for p in self.override_paths)

    def base_for(self, key: KeyPath) -> Path:
        # Overrides come from the command line, where a relative path means the shell's cwd.
        return self.cwd if self.from_overrides(key) else self.base_dir


Converter = Callable[[Any, KeyPath, Context], Any]


# ---------------------------------------------------------------------------- messages
def quote_for_message(value: str) -> str:
    """Double-quoted with control characters escaped, as the user would type them in TOML."""
    out: list[str] = []
    for c in value:
        o = ord(c)
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\u{o:04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return "a date/time"
    return f"a {type(value).__name__}"


def show(value: Any, limit: int = 60) -> str:
    if isinstance(value, str):
        text = quote_for_message(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = "{...}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def wrong_type(key: KeyPath, expected: str, value: Any) -> Invalid:
    hint = ""
    if isinstance(value, str) and expected in ("a number", "an integer"):
        try:
            float(value)
            hint = "; remove the quotes"
        except ValueError:
            pass
    if isinstance(value, str) and expected.startswith("a boolean") and value.lower() in ("true", "false"):
        hint = "; remove the quotes"
    return Invalid(key, f"must be {expected}, not {type_name(value)} ({show(value)}){hint}")


def suggest(word: str, choices: Iterable[str]) -> str | None:
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def one_of(choices: Iterable[str]) -> str:
    return ", ".join(f'"{c}"' for c in choices)


# ---------------------------------------------------------------------------- scalars
def boolean(value: Any, key: KeyPath, ctx: Context) -> bool:
    if not isinstance(value, bool):
        raise wrong_type(key, "a boolean (true or false)", value)
    return value


def text(value: Any, key: KeyPath, ctx: Context) -> str:
    """Free text shown to people; any characters are allowed (the UI escapes them)."""
    if not isinstance(value, str):
        raise wrong_type(key, "a string", value)
    return value


def nonempty_text(value: Any, key: KeyPath, ctx: Context) -> str:
    got = text(value, key, ctx)
    if not got.strip():
        raise Invalid(key, "must not be empty")
    return got


def opt_text(value: Any, key: KeyPath, ctx: Context) -> str | None:
    return text(value, key, ctx) or None


def _has_control(value: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


def name(value: Any, key: KeyPath, ctx: Context) -> str:
    """A name other settings refer to and an operator may have to type to confirm an action."""
    got = nonempty_text(value, key, ctx)
    if _has_control(got):
        raise Invalid(key, f"must not contain control characters ({show(got)})")
    if got != got.strip():
        raise Invalid(key, f"must not start or end with spaces ({show(got)})")
    return got


def opt_name(value: Any, key: KeyPath, ctx: Context) -> str | None:
    if value == "":
        return None
    return name(value, key, ctx)


def _check_number(value: Any, key: KeyPath, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong_type(key, expected, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid(key, f"must be a finite number, not {show(value)}")


def _range_message(lo: float | None, hi: float | None, lo_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"must be between {lo:g} and {hi:g}"
    if lo is not None:
        return f"must be greater than {lo:g}" if lo_open else f"must be at least {lo:g}"
    return f"must be at most {hi:g}"


def _in_range(v: float, lo: float | None, hi: float | None, lo_open: bool) -> bool:
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    return hi is None or v <= hi


def integer(lo: int | None = None, hi: int | None = None) -> Converter:
    def convert(value: Any, key: KeyPath, ctx: Context) -> int:
        _check_number(value, key, "an integer")
        if isinstance(value, float):
            raise Invalid(key, f"must be an integer, not a float ({show(value)})")
        if not _in_range(value, lo, hi, False):
            raise Invalid(key, f"{_range_message(lo, hi, False)} (got {value})")
        return int(value)

    return convert


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Converter:
    def convert(value: Any, key: KeyPath, ctx: Context) -> float:
        _check_number(value, key, "a number")
        if not _in_range(value, lo, hi, lo_open):
            raise Invalid(key, f"{_range_message(lo, hi, lo_open)} (got {value:g})")
        return float(value)

    return convert


positive = number(0, lo_open=True)
ratio = number(0, 1)


def zero_is_none(conv: Converter) -> Converter:
    """For minute counts where 0 means 'no target' (best effort)."""

    def convert(value: Any, key: KeyPath, ctx: Context) -> Any:
        value = conv(value, key, ctx)
        return None if value == 0 else value

    return convert


def choice(*choices: str) -> Converter:
    def convert(value: Any, key: KeyPath, ctx: Context) -> str:
        if not isinstance(value, str):
            raise wrong_type(key, "a string", value)
        if value not in choices:
            close = suggest(value, choices)
            hint = f'; did you mean "{close}"?' if close else ""
            raise Invalid(key, f"must be one of {one_of(choices)}, not {show(value)}{hint}")
        return value

    return convert


def pattern(regex: re.Pattern[str], what: str) -> Converter:
    def convert(value: Any, key: KeyPath, ctx: Context) -> str:
        if not isinstance(value, str):
            raise wrong_type(key, "a string", value)
        if not regex.fullmatch(value):
            raise Invalid(key, f"must be {what}, not {show(value)}")
        return value

    return convert


identifier = pattern(_IDENTIFIER, "an identifier (letters, digits, _; not starting with a digit)")
metric_name = pattern(_METRIC_NAME, "a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
compose_project = pattern(_COMPOSE_PROJECT, "a compose project name (lowercase letters, digits, _ and -)")
chain_name = pattern(_CHAIN, "an iptables chain name (up to 28 letters, digits, _ . -)")


def url_path(value: Any, key: KeyPath, ctx: Context) -> str:
    if not isinstance(value, str):
        raise wrong_type(key, "a string", value)
    if not value.startswith("/") or any(c.isspace() for c in value) or _has_control(value):
        raise Invalid(key, f"must be a URL path starting with / and without spaces, not {show(value)}")
    return value


def email(value: Any, key: KeyPath, ctx: Context) -> str | None:
    if not isinstance(value, str):
        raise wrong_type(key, "a string", value)
    if value == "":
        return None
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value) or _has_control(value):
        raise Invalid(key, f"must be an e-mail address like name@example.org, not {show(value)}")
    return value


def backup_name_format(value: Any, key: KeyPath, ctx: Context) -> str:
    import time

    if not isinstance(value, str):
        raise wrong_type(key, "a string", value)
    if "/" in value or "\\" in value or "\0" in value:
        raise Invalid(key, f"must be a file name, without / or \\ ({show(value)})")
    if "%" not in value:
        raise Invalid(key, "must contain a strftime time code such as %Y-%m-%d_%H-%M-%S, or every backup overwrites the last")
    try:
        sample = time.strftime(value, time.gmtime(0))
    except ValueError as exc:
        raise Invalid(key, f"is not a valid strftime format: {exc}") from None
    if not sample or "/" in sample:
        raise Invalid(key, f"must format to a file name (got {show(sample)})")
    return value


# ---------------------------------------------------------------------------- arrays
def _array(value: Any, key: KeyPath) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise wrong_type(key, "an array", value)
    return list(value)


def string_list(value: Any, key: KeyPath, ctx: Context) -> tuple[str, ...]:
    items = _array(value, key)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise wrong_type(key + (i,), "a string", item)
        if not item.strip():
            raise Invalid(key + (i,), "must not be empty")
    return tuple(items)


def command(value: Any, key: KeyPath, ctx: Context) -> tuple[str, ...]:
    """An argv array (never a shell string: arguments are passed as they are written)."""
    if isinstance(value, str):
        raise Invalid(key, f"must be an array of arguments like [\"nginx\", \"-t\"], not a string ({show(value)})")
    items = _array(value, key)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise wrong_type(key + (i,), "a string", item)
        if "\0" in item:
            raise Invalid(key + (i,), "contains a NUL character")
    if items and not items[0]:
        raise Invalid(key + (0,), "the program name must not be empty")
    return tuple(items)


# ---------------------------------------------------------------------------- paths
def path(value: Any, key: KeyPath, ctx: Context) -> Path:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        raise wrong_type(key, "a string (a path)", value)
    if not value:
        raise Invalid(key, "must not be empty")
    if "\0" in value:
        raise Invalid(key, "contains a NUL character")
    try:
        p = Path(value).expanduser()
    except RuntimeError as exc:  # "~someone" for an unknown user
        raise Invalid(key, f"cannot expand {show(value)}: {exc}") from None
    return p if p.is_absolute() else ctx.base_for(key) / p


def opt_path(value: Any, key: KeyPath, ctx: Context) -> Path | None:
    if value == "" or value is None:
        return None
    return path(value, key, ctx)


PATH_CONVERTERS: frozenset[Converter] = frozenset({path, opt_path})


# ---------------------------------------------------------------------------- URLs
def _split(value: Any, key: KeyPath) -> tuple[str, SplitResult]:
    if not isinstance(value, str):
        raise wrong_type(key, "a string (a URL)", value)
    if not value:
        raise Invalid(key, "must not be empty")
    if any(c.isspace() for c in value) or _has_control(value):
        raise Invalid(key, f"must not contain spaces or control characters ({show(value)})")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise Invalid(key, f"is not a valid URL ({show(value)}): {exc}") from None
    if port == 0:
        raise Invalid(key, f"has port 0 ({show(value)})")
    return value, parts


def http_url(value: Any, key: KeyPath, ctx: Context) -> str:
    url, parts = _split(value, key)
    if parts.scheme.lower() not in ("http", "https"):
        raise Invalid(key, f"must start with http:// or https:// (got {show(url)})")
    if not parts.hostname:
        raise Invalid(key, f"has no host ({show(url)})")
    return url


def opt_http_url(value: Any, key: KeyPath, ctx: Context) -> str | None:
    if value == "":
        return None
    return http_url(value, key, ctx)


def docker_url(value: Any, key: KeyPath, ctx: Context) -> str:
    url, parts = _split(value, key)
    scheme = parts.scheme.lower()
    if scheme == "unix":
        if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
            raise Invalid(key, f"unix:// needs an absolute socket path, e.g. unix:///var/run/docker.sock (got {show(url)})")
    elif scheme == "tcp":
        if not parts.hostname:
            raise Invalid(key, f"tcp:// needs a host and port, e.g. tcp://127.0.0.1:2376 (got {show(url)})")
        if parts.username is not None:
            raise Invalid(key, f"tcp:// must not contain a user name (got {show(url)})")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise Invalid(key, f"tcp:// must be only host:port (got {show(url)})")
    elif scheme == "ssh":
        if not parts.hostname:
            raise Invalid(key, f"ssh:// needs a host, e.g. ssh://user@host (got {show(url)})")
        if parts.password is not None:
            raise Invalid(key, "ssh:// must not contain a password; use an SSH key or agent")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise Invalid(key, f"ssh:// must be only user@host[:port], without a path (got {show(url)})")
    else:
        raise Invalid(key, f"must start with unix://, tcp:// or ssh:// (got {show(url)})")
    return url
