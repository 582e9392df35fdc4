"""Entry points of the Textual UI (the only layer that imports textual)."""

from __future__ import annotations

from typing import Any


def run_console(settings: Any, read_only: bool = False, role: str | None = None, early: Any = None) -> int:
    from x402console.ui.console import run_console as _run

    return _run(settings, read_only=read_only, role=role, early=early)


def run_drill_screen(env: Any, read_only: bool = False, role: str | None = None) -> int:
    """The live console on the drill environment's own configuration."""
    from x402console.config import load_config
    from x402console.sources.early import start_early_fetch

    settings = load_config(env.state.config)
    early = start_early_fetch(settings)  # as the CLI does for --config: before textual loads
    from x402console.ui.console import run_console as _run

    return _run(settings, read_only=read_only, drill_env=env, role=role, early=early)
