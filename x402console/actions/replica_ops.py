"""What restarting a replica means whatever runs it: shared by the container and process actions.

A replica is anything with a `health_url` and a compose-style `number`; the health check, the
order of a rolling restart and the parameter checks are the same for a container and a process.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

import httpx

from x402console.actions.base import ActionContext, ActionError

HEALTH_TIMEOUT = 60.0


class Failed(Exception):
    """Ends a run with a failed Outcome; the message is for the operator."""


class Cancelled(Exception):
    """The operator cancelled between two steps."""


class _HasHealth(Protocol):
    health_url: str
    number: int | None


R = TypeVar("R", bound=_HasHealth)


async def answers(ctx: ActionContext, url: str) -> tuple[bool, str]:
    # 429 counts: as coded, the prover's rate limiter also covers /health, and a limited answer
    # still proves the server is up (reference section 1.1).
    try:
        response = await ctx.http.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        return False, type(exc).__name__
    return response.status_code in (200, 429), f"HTTP {response.status_code}"


async def health_order(ctx: ActionContext, replicas: Sequence[R]) -> list[R]:
    """Replicas that do not answer go first: restarting them first never lowers the capacity."""
    found = await asyncio.gather(*(answers(ctx, r.health_url) for r in replicas))
    ranked = sorted(zip(replicas, found), key=lambda pair: (pair[1][0], pair[0].number or 0))
    return [r for r, _ in ranked]


def health_timeout(params: Mapping[str, Any]) -> float:
    raw = params.get("health_timeout", HEALTH_TIMEOUT)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 1 <= raw <= 600:
        raise ActionError(f"health_timeout must be seconds between 1 and 600, not {raw!r}")
    return float(raw)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
