"""Configuration: a TOML file -> typed, immutable Settings; clear errors with file and line.

The file format is documented by the example shipped in x402console/data/default-config.toml.
Every key is optional; defaults are the runbook's and the real x402 system's. Relative paths in a
file are relative to that file's directory; `~` expands.

This module stays cheap to import (the `status` and `sim` commands load it): the parser, the
validator and the writer are imported on first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from x402console.settings.errors import ConfigError
from x402console.settings.model import (
    DEFAULT_CONTACTS,
    DEFAULT_ESCALATION,
    DEFAULT_TARGETS,
    CircuitSettings,
    Contact,
    DatabaseSettings,
    Discovery,
    DockerHost,
    Environment,
    EscalationTier,
    FirewallSettings,
    MetricNames,
    NginxSettings,
    NotifyHook,
    PrometheusSettings,
    ProverSettings,
    Replica,
    Settings,
    SeverityThresholds,
    Target,
    UISettings,
)
from x402console.settings.paths import default_config_path, default_state_dir

__all__ = [
    "DEFAULT_CONTACTS", "DEFAULT_ESCALATION", "DEFAULT_TARGETS", "CircuitSettings", "ConfigError",
    "Contact", "DatabaseSettings", "Discovery", "DockerHost", "Environment", "EscalationTier",
    "FirewallSettings", "MetricNames", "NginxSettings", "NotifyHook", "PrometheusSettings",
    "ProverSettings", "Replica", "SeverityThresholds", "Settings", "Target", "UISettings",
    "default_config_path", "default_state_dir", "example_config_path", "load_config",
    "settings_to_dict", "write_config",
]

# A config file is a few kilobytes; anything this big is a wrong path (a log, a database).
MAX_CONFIG_BYTES = 1024 * 1024


def example_config_path() -> Path:
    """The annotated example configuration shipped with the package."""
    return Path(__file__).parent / "data" / "default-config.toml"


# ---------------------------------------------------------------------------- reading
def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("no such file", path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a configuration file", path) from None
    except PermissionError:
        raise ConfigError("permission denied", path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"file is larger than {MAX_CONFIG_BYTES // 1024} KiB; is this really the configuration?", path)
    try:
        # utf-8-sig: tolerate the byte-order mark some editors write.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); save the file as UTF-8",
            path, line,
        ) from None
    if not text.strip():
        raise ConfigError("file is empty; add settings, or delete it to use the defaults", path, 1)
    return text


def _parse(text: str, path: Path) -> dict[str, Any]:
    import re
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if found:
            line: int | None = int(found.group(1))
            message = f"invalid TOML: {message[: found.start()]} (column {found.group(2)})"
        elif message.endswith("(at end of document)"):
            line = text.count("\n") + (0 if text.endswith("\n") else 1)
            message = f"invalid TOML: {message[: -len(' (at end of document)')]} (at end of file)"
        else:
            line = None
            message = f"invalid TOML: {message}"
        raise ConfigError(message, path, line) from None


def _normalise_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    """Nested dict from {"a.b": v} or {"a": {"b": v}}, and the key paths it sets."""
    nested: dict[str, Any] = {}
    paths: list[tuple[str, ...]] = []

    def put(target: dict[str, Any], parts: tuple[str, ...], value: Any, prefix: tuple[str, ...]) -> None:
        for part in parts[:-1]:
            node = target.get(part)
            if not isinstance(node, dict):
                node = target[part] = {}
            target = node
        last = parts[-1]
        if isinstance(value, Mapping):
            node = target.get(last)
            if not isinstance(node, dict):
                node = target[last] = {}
            for k, v in value.items():
                put(node, tuple(str(k).split(".")), v, prefix + parts)
        else:
            target[last] = value
            paths.append(prefix + parts)

    for key, value in overrides.items():
        put(nested, tuple(str(key).split(".")), value, ())
    return nested, paths


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(path: Path | str | None = None, *, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read and check the configuration.

    path None means default_config_path(); a missing default file gives the defaults, a missing
    file named explicitly is an error. `overrides` (e.g. from command-line flags) are applied on
    top of the file: nested tables or dotted keys, {"environment.read_only": True}; relative paths
    in them are relative to the current directory. Raises ConfigError.
    """
    from x402console.settings.convert import Context, Invalid
    from x402console.settings.validate import build_settings, dotted

    explicit = path is not None
    file = Path(path) if path is not None else default_config_path()
    text: str | None = None
    data: dict[str, Any] = {}
    if explicit or os.path.lexists(file):
        text = _read_text(file)
        data = _parse(text, file)
    over_paths: list[tuple[str, ...]] = []
    if overrides:
        nested, over_paths = _normalise_overrides(overrides)
        data = _merge(data, nested)

    cwd = Path.cwd()
    source = Path(os.path.abspath(file)) if text is not None else None
    ctx = Context(source.parent if source is not None else cwd, cwd, over_paths)
    try:
        settings = build_settings(data, ctx)
    except Invalid as exc:
        key = dotted(exc.key)
        if ctx.from_overrides(exc.key):
            raise ConfigError(f"{exc.message} (from overrides)", None, None, key) from None
        line = None
        if text is not None:
            from x402console.settings.toml_lines import key_lines, line_of

            line = line_of(key_lines(text), exc.key)
        raise ConfigError(exc.message, file if text is not None else None, line, key) from None
    import dataclasses

    return dataclasses.replace(settings, source=source)


# ---------------------------------------------------------------------------- writing
def settings_to_dict(settings: Settings) -> dict[str, Any]:
    """The config-file shape of `settings` (plain dicts, lists, str, int, float, bool)."""
    from x402console.settings.writer import settings_to_dict as convert

    return convert(settings)


def write_config(data: Mapping[str, Any] | Settings, path: Path | str) -> None:
    """Write `data` (Settings, or a dict shaped like the file) as TOML, atomically.

    A dict is checked first, as load_config would check the written file (relative paths
    against `path`'s directory), so a bad dict raises ConfigError instead of leaving a file the
    console then refuses. load_config(path) afterwards equals `data` when it is a loaded Settings.
    """
    from x402console.settings.convert import Context, Invalid
    from x402console.settings.validate import build_settings, dotted
    from x402console.settings.writer import EmitError, atomic_write_text, dumps
    from x402console.settings.writer import settings_to_dict as convert

    target = Path(path)
    if isinstance(data, Settings):
        plain: Mapping[str, Any] = convert(data)
    elif isinstance(data, Mapping):
        plain = data
        base = Path(os.path.abspath(target)).parent
        try:
            build_settings(dict(plain), Context(base, Path.cwd()))
        except Invalid as exc:
            raise ConfigError(exc.message, target, None, dotted(exc.key)) from None
    else:
        raise TypeError(f"write_config needs Settings or a dict, not {type(data).__name__}")
    try:
        text = dumps(plain)
    except EmitError as exc:
        raise ConfigError(exc.message, target, None, dotted(exc.key) or None) from None
    try:
        atomic_write_text(target, text)
    except IsADirectoryError:
        raise ConfigError("is a directory, not a configuration file", target) from None
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", target) from None
