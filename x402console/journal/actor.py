"""Who did it: the OS user and host behind a console, and the incident role they hold.

Several engineers share one ops box during an incident, so the user name alone is not
enough to tell consoles apart on a shared journal; user@host is what the timeline records.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass

from x402console.journal.models import ROLES


@dataclass(frozen=True)
class Actor:
    user: str
    host: str
    role: str | None = None

    def __post_init__(self) -> None:
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")

    @property
    def who(self) -> str:
        return f"{self.user}@{self.host}"

    def with_role(self, role: str | None) -> Actor:
        return Actor(self.user, self.host, role)

    def __str__(self) -> str:
        # The role is part of the recorded text on purpose: a post-mortem needs to know who was
        # commander at the moment of each decision, and roles change during an incident.
        return f"{self.who} ({self.role})" if self.role else self.who


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # Containers often run with a uid that has no passwd entry.
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def current_actor(role: str | None = None) -> Actor:
    return Actor(user=_os_user(), host=socket.gethostname() or "localhost", role=role)
