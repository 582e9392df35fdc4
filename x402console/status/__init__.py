"""Signals for severity and matching, from the live console's store or from one headless look,
and the `x402console status` command built on them. Never imports textual or rich.

Public names (imported on first use, so `import x402console.status` stays cheap):
  signals_from_store(store, settings, now, *, logs=None, ...) -> Signals
  collect_signals(settings, *, window_seconds=60, timeout=10, scrape_interval=None) -> Signals
  collect_signals_async(...)  the same, awaitable
  LogCounter, LogSnapshot     log lines counted by LOG_PATTERNS over a window
"""

from __future__ import annotations

from typing import Any

__all__ = ["signals_from_store", "collect_signals", "collect_signals_async", "LogCounter", "LogSnapshot"]

_WHERE = {
    "signals_from_store": "x402console.status.from_store",
    "collect_signals": "x402console.status.collect",
    "collect_signals_async": "x402console.status.collect",
    "LogCounter": "x402console.status.logcount",
    "LogSnapshot": "x402console.status.logcount",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'x402console.status' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
