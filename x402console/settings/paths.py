"""Where configuration and state live by default (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path

APP_DIR = "x402console"


def _xdg_dir(variable: str, fallback: tuple[str, ...]) -> Path:
    # The XDG spec says relative values must be ignored, as if unset.
    value = os.environ.get(variable, "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home().joinpath(*fallback)


def default_config_path() -> Path:
    """$XDG_CONFIG_HOME/x402console/config.toml, else ~/.config/x402console/config.toml."""
    return _xdg_dir("XDG_CONFIG_HOME", (".config",)) / APP_DIR / "config.toml"


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/x402console, else ~/.local/state/x402console."""
    return _xdg_dir("XDG_STATE_HOME", (".local", "state")) / APP_DIR
