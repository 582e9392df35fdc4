"""What an operator types in the action picker's parameter box.

Plain text is the action's main parameter, as typed (a message, a number of days, a backup
name). Text that starts with one of the action's parameter names and "=" is a list of
name=value pairs separated by spaces, for the parameters the box does not ask for
(`wal=no`, `days=30 batch_size=2000`); such values cannot hold spaces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PAIR_START = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")


def parse_param_text(text: str, names: Sequence[str]) -> dict[str, str]:
    """Parameters from the box's text; `names` are the action's, its main one first.
    Raises ValueError with the reason for a malformed pair list."""
    text = text.strip()
    if not text or not names:
        return {}
    start = _PAIR_START.match(text)
    if start is None or start.group(1) not in names:
        return {names[0]: text}
    found: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"expected name=value, got {token!r}")
        if key not in names:
            raise ValueError(f"unknown parameter {key!r} (this action has: {', '.join(names)})")
        if key in found:
            raise ValueError(f"{key} is given twice")
        found[key] = value
    return found
