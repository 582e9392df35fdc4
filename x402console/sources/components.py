"""Supporting components that are not provers: nginx (the entry point and its deny file).

nginx counts as up when its URL gives any HTTP answer at all: a 403, 404 or 502 still proves
nginx itself is listening (a 502 says the provers behind it are not, which the health pane
shows). The deny file is what the block-IP action edits, so its presence and its number of
``deny`` lines are part of the state. A component being down is an observation, so the probe
keeps its cadence instead of backing off.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any


from x402console.sources.backoff import sleep_or_stop, unless_stopped
from x402console.sources.health import FetchError, Sink, fetch_bounded, make_client
from x402console.sources.models import ComponentState, SourceStatus

if TYPE_CHECKING:
    import httpx

__all__ = ["ComponentProbe", "DenyFileState", "read_deny_file"]

DENY_FILE_LIMIT = 16 * 1024 * 1024
NGINX_TIMEOUT = 3.0


@dataclass(frozen=True)
class DenyFileState:
    path: Path
    exists: bool
    deny_lines: int = 0
    error: str | None = None

    def describe(self) -> str:
        if self.error:
            return f"deny file {self.path}: {self.error}"
        if not self.exists:
            return f"deny file {self.path} does not exist"
        plural = "" if self.deny_lines == 1 else "s"
        return f"deny file {self.path}: {self.deny_lines} deny line{plural}"


def read_deny_file(path: Path) -> DenyFileState:
    """Count the active ``deny ...;`` lines (comments and other directives are not blocks)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(DENY_FILE_LIMIT + 1)
    except FileNotFoundError:
        return DenyFileState(path, False)
    except IsADirectoryError:
        return DenyFileState(path, False, error="is a directory")
    except OSError as exc:
        return DenyFileState(path, path.exists(), error=f"cannot read: {exc.strerror or exc}")
    text = raw[:DENY_FILE_LIMIT].decode("utf-8", "replace")
    count = 0
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("deny") and stripped[4:5] in (" ", "\t"):
            count += 1
    error = f"larger than {DENY_FILE_LIMIT // (1024 * 1024)} MiB; only the start was counted" if len(raw) > DENY_FILE_LIMIT else None
    return DenyFileState(path, True, count, error)


class ComponentProbe:
    """Emits ComponentState("nginx", ...) every few seconds."""

    name = "components"

    def __init__(
        self,
        settings: Any,
        *,
        client: httpx.AsyncClient | None = None,
        interval: float | None = None,
    ) -> None:
        self.settings = settings
        # nginx changes rarely and a deny file can be large: no need for the UI refresh rate.
        self.interval = float(interval if interval is not None else max(2.0, settings.ui.refresh_seconds))
        self._client = client

    async def nginx(self, client: httpx.AsyncClient) -> ComponentState:
        cfg = self.settings.nginx
        deny = await asyncio.to_thread(read_deny_file, Path(cfg.deny_file))
        if not cfg.url:
            # Without a URL only the deny file can be checked; a missing one means nginx is not
            # set up the way the block action expects.
            ok = deny.exists and deny.error is None
            return ComponentState("nginx", ok, f"no [nginx] url configured; {deny.describe()}", time.time())
        try:
            fetched = await fetch_bounded(client, "GET", cfg.url, timeout=NGINX_TIMEOUT, limit=64 * 1024)
        except FetchError as exc:
            if exc.connected:
                # nginx accepted the connection: it is up, what it proxies to is not answering.
                detail = f"{cfg.url}: accepts connections but {exc} (upstreams not answering?)"
                return ComponentState("nginx", True, f"{detail}; {deny.describe()}", time.time())
            return ComponentState("nginx", False, f"{cfg.url}: {exc}; {deny.describe()}", time.time())
        answer = f"{cfg.url}: HTTP {fetched.status_code} in {fetched.latency_ms:.0f} ms"
        return ComponentState("nginx", True, f"{answer}; {deny.describe()}", time.time())

    async def run(self, sink: Sink, stop: asyncio.Event) -> None:
        client = self._client or make_client(NGINX_TIMEOUT)
        try:
            while not stop.is_set():
                try:
                    finished, state = await unless_stopped(stop, lambda: self.nginx(client))
                except Exception as exc:  # a bug must show as a status, never end the source
                    sink(SourceStatus(self.name, False, f"internal error: {type(exc).__name__}: {exc}",
                                      retry_in=self.interval))
                else:
                    if not finished:
                        break
                    sink(state)
                    sink(SourceStatus(self.name, True, updated_at=time.time()))
                if await sleep_or_stop(stop, self.interval):
                    break
        finally:
            if self._client is None:
                await client.aclose()
