"""Post-mortem drafts written from the incident journal (see build.py for the rules, render.py
for the document, cli.py for `x402console postmortem`).

Kept import-light: `x402console.postmortem.cli` is imported when the main parser is built, and
importing this package must not load the journal (aiosqlite) until a post-mortem is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from x402console.postmortem.build import build_postmortem
    from x402console.postmortem.model import TODO_MARKER, PostMortem
    from x402console.postmortem.render import render_markdown

__all__ = ["TODO_MARKER", "PostMortem", "build_postmortem", "render_markdown"]

_HOMES = {
    "TODO_MARKER": "model", "PostMortem": "model", "build_postmortem": "build", "render_markdown": "render",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
