"""Writing TOML: a small emitter (the stdlib only reads TOML) and an atomic file write.

The emitter covers what configuration needs: tables, nested tables, arrays of tables, arrays,
inline tables for small nested records, and strings escaped so that any Python str without lone
surrogates reads back unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from x402console.settings.model import Settings
from x402console.settings.toml_lines import KeyPath

_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_INT64 = (-(2**63), 2**63 - 1)


class EmitError(ValueError):
    """A value TOML cannot hold, at `key`."""

    def __init__(self, key: KeyPath, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


# ---------------------------------------------------------------------------- scalars
def quote(text: str, key: KeyPath = ()) -> str:
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        elif 0xD800 <= o <= 0xDFFF:
            raise EmitError(key, f"string contains a lone surrogate (U+{o:04X}), which TOML cannot hold")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _key(name: Any, key: KeyPath) -> str:
    if not isinstance(name, str):
        raise EmitError(key, f"table keys must be strings, not {type(name).__name__}")
    if name and all(ch in _BARE_KEY for ch in name):
        return name
    return quote(name, key)


def _header(path: KeyPath) -> str:
    # Array positions are implicit in TOML headers: [[a.b]] under the latest [[a]].
    return ".".join(_key(p, path) for p in path if not isinstance(p, int))


def _scalar(value: Any, key: KeyPath) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise EmitError(key, f"integer {value} does not fit TOML's 64 bits")
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest form that reads back identically; always has . or e
    if isinstance(value, str):
        return quote(value, key)
    if isinstance(value, Path):
        return quote(str(value), key)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    raise EmitError(key, f"cannot write a {type(value).__name__} as TOML")


def _inline(value: Any, key: KeyPath) -> str:
    if isinstance(value, Mapping):
        items = [f"{_key(k, key)} = {_inline(v, key + (k,))}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_inline(v, key + (i,)) for i, v in enumerate(value)) + "]"
    return _scalar(value, key)


# ---------------------------------------------------------------------------- tables
def _is_table_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _is_flat(value: Mapping[str, Any]) -> bool:
    return all(not isinstance(v, Mapping) and not _is_table_array(v) for v in value.values())


def _emit_table(table: Mapping[str, Any], path: KeyPath, out: list[str], header: str | None) -> None:
    inline: list[tuple[str, Any]] = []
    nested: list[tuple[str, Any]] = []
    for name, value in table.items():
        if value is None:
            continue  # TOML has no null: an absent key means "the default"
        # Small flat records below a table (targets.P0) read best inline, one per line.
        is_subtable = isinstance(value, Mapping) and not (path and _is_flat(value))
        if is_subtable or _is_table_array(value):
            nested.append((name, value))
        else:
            inline.append((name, value))
    if header is not None and (inline or not nested or header.startswith("[[")):
        if out:
            out.append("")
        out.append(header)
    for name, value in inline:
        out.append(f"{_key(name, path)} = {_inline(value, path + (name,))}")
    for name, value in nested:
        sub = path + (name,)
        if isinstance(value, Mapping):
            _emit_table(value, sub, out, f"[{_header(sub)}]")
        else:
            for i, item in enumerate(value):
                _emit_table(item, sub + (i,), out, f"[[{_header(sub)}]]")


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text for `data` (str keys; None values are left out)."""
    out: list[str] = []
    _emit_table(data, (), out, None)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- settings
def _plain(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            # Optional numbers use 0 for "none" (best effort), optional strings and paths "".
            value = 0 if "int" in str(f.type) else ""
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    """The config-file shape of `settings`; load_config of its TOML gives `settings` back."""
    s = settings
    return {
        "environment": _plain(s.environment),
        "docker": {"hosts": [_plain(h) for h in s.docker_hosts]},
        "discovery": _plain(s.discovery),
        "prover": _plain(s.prover),
        "replicas": [_plain(r) for r in s.replicas],
        "prometheus": _plain(s.prometheus),
        "metrics": _plain(s.metrics),
        "nginx": _plain(s.nginx),
        "firewall": _plain(s.firewall),
        "database": _plain(s.database),
        "circuits": _plain(s.circuits),
        "severity": _plain(s.severity),
        "targets": {
            level: {"response": t.response_minutes, "resolution": t.resolution_minutes or 0}
            for level, t in s.targets.items()
        },
        "contacts": [_plain(ct) for ct in s.contacts],
        "escalation": {"tiers": [_plain(t) for t in s.escalation_tiers]},
        "notify": {"hooks": [_plain(h) for h in s.notify_hooks]},
        "ui": _plain(s.ui),
        "keymap": dict(s.keymap),
    }


# ---------------------------------------------------------------------------- files
def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader sees the old file or the new one, never half.

    A new file is private (0600: webhook URLs may carry tokens); an existing file keeps its mode.
    """
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    except OSError:
        pass
    finally:
        os.close(dir_fd)
