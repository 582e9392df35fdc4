"""HTTP health probes of every replica, and the bounded fetch every HTTP source shares.

The prover's /health answers ``{"service": ..., "status": "healthy", "version": ...}`` with 200
(reference/x402-system.md). Anything else is reported with what went wrong in words an on-call
engineer can act on: timed out (a hung replica accepts the connection and never answers),
connection refused (the process is gone), HTTP 5xx/429, a body that is not the health JSON.

A failing probe is the observation itself, not a failure of this source, so the probes keep
the refresh cadence instead of backing off: backing off would hide a recovery for up to 30 s.
Each replica has its own chain (backoff.ReplicaChains), so one hung replica, which holds its
probe for the whole timeout, never delays the samples of the others.
"""

from __future__ import annotations

import asyncio
import errno
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from x402console.sources.backoff import ReplicaChains, sleep_or_stop, unless_stopped
from x402console.sources.models import HealthSample, ReplicaIdentity, SourceStatus

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HealthProber",
    "Fetched",
    "FetchError",
    "fetch_bounded",
    "describe_http_error",
    "make_client",
    "ReplicasProvider",
    "Sink",
]

ReplicasProvider = Callable[[], "tuple[ReplicaIdentity, ...]"]
Sink = Callable[[Any], None]

HEALTH_BODY_LIMIT = 64 * 1024
HEALTHY = "healthy"


@dataclass(frozen=True)
class Fetched:
    status_code: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    truncated: bool
    latency_ms: float


class FetchError(Exception):
    """A request that got no HTTP answer; the message is already worded for the operator."""

    def __init__(self, message: str, *, timed_out: bool = False, refused: bool = False, connected: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.refused = refused
        # The TCP connection was made: something is listening, it just did not answer well.
        self.connected = connected


def make_client(timeout_seconds: float = 5.0, max_connections: int = 64, *, tls: bool = True,
                lean: bool = False) -> httpx.AsyncClient:
    """The hub's one client: no proxy variables (loopback and ops networks, not the internet),
    a pool sized for a few dozen replicas, and a default timeout that every request overrides.

    With tls=False (every configured URL is plain http) no SSL context is built: loading the
    CA bundle costs 25-50 ms of start-up for nothing.

    With lean=True, plain-http GETs through fetch_bounded take the lean client (sources/
    lean_http.py) instead of httpx: a tenth of the CPU per request for the console's polling.
    httpx itself (~100 ms of imports with httpcore and anyio) is then only loaded for the first
    request the lean client does not take (https, a POST), so a console watching plain-http
    replicas shows its data that much sooner. Close such a client with close_client().
    """
    def build() -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            trust_env=False,
            verify=tls,
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections // 2),
            follow_redirects=False,
        )

    if not lean:
        return build()
    from x402console.sources.lean_http import LeanPool

    return LazyClient(build, LeanPool())  # type: ignore[return-value]


class LazyClient:
    """An httpx.AsyncClient made on first use, with the lean pool beside it (make_client)."""

    def __init__(self, build: Callable[[], httpx.AsyncClient], lean: Any) -> None:
        self._build = build
        self._client: httpx.AsyncClient | None = None
        self.x402_lean = lean

    @property
    def built(self) -> bool:
        return self._client is not None

    def __getattr__(self, name: str) -> Any:
        # Only reached for what this class does not define: the httpx API.
        if name.startswith("__") or name in ("_build", "_client", "x402_lean"):
            raise AttributeError(name)
        if self._client is None:
            self._client = self._build()
        return getattr(self._client, name)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


async def close_client(client: httpx.AsyncClient) -> None:
    lean = getattr(client, "x402_lean", None)
    if lean is not None:
        await lean.aclose()
    await client.aclose()


def _refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError) or getattr(cur, "errno", None) == errno.ECONNREFUSED:
            return True
        if "connection refused" in str(cur).lower() or "errno 111" in str(cur).lower():
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def describe_http_error(exc: BaseException, timeout: float) -> FetchError:
    """Turn whatever httpx/asyncio (or the lean client) raised into one operator-readable FetchError."""
    if isinstance(exc, FetchError):
        return exc
    if type(exc).__module__.split(".")[0] == "httpx":
        import httpx  # already loaded: it raised this

        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)):
            return FetchError(f"timed out after {timeout:g} s waiting for an answer", timed_out=True, connected=True)
        if isinstance(exc, httpx.ConnectTimeout):
            return FetchError(f"timed out after {timeout:g} s connecting", timed_out=True)
        if isinstance(exc, httpx.TimeoutException):
            return FetchError(f"timed out after {timeout:g} s", timed_out=True)
        if isinstance(exc, httpx.ConnectError):
            if _refused(exc):
                return FetchError("connection refused", refused=True)
            return FetchError(f"cannot connect: {exc or type(exc).__name__}")
        if isinstance(exc, httpx.RemoteProtocolError):
            return FetchError(f"connection closed without a valid answer ({exc or 'protocol error'})", connected=True)
        if isinstance(exc, httpx.ReadError):
            return FetchError(f"connection broken while reading the answer ({exc or 'read error'})", connected=True)
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return FetchError(f"bad URL: {exc}")
        if isinstance(exc, httpx.HTTPError):
            return FetchError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return FetchError(f"timed out after {timeout:g} s", timed_out=True)
    if isinstance(exc, ValueError):
        return FetchError(f"bad URL: {exc}")
    if isinstance(exc, OSError):
        return FetchError(f"network error: {exc.strerror or exc}")
    return FetchError(f"{type(exc).__name__}: {exc}")


async def fetch_bounded(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout: float,
    limit: int,
    **kwargs: Any,
) -> Fetched:
    """One request with a total time budget and a cap on the body read into memory.

    httpx timeouts apply per network operation (a server trickling one byte a second never
    trips them), so the whole exchange also runs under asyncio's timeout, a little longer so
    that httpx's own, more telling, exception (connect or read timeout) normally wins.
    Raises FetchError.
    """
    lean = getattr(client, "x402_lean", None)
    if lean is not None and method == "GET" and url.startswith("http://") and set(kwargs) <= {"headers"}:
        return await lean.get(url, timeout=timeout, limit=limit, headers=kwargs.get("headers"))
    import httpx

    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout + 0.5):
            async with client.stream(method, url, timeout=httpx.Timeout(timeout), **kwargs) as resp:
                body = bytearray()
                truncated = False
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        del body[limit:]
                        truncated = True
                        break
                return Fetched(
                    resp.status_code,
                    resp.reason_phrase or "",
                    dict(resp.headers),
                    bytes(body),
                    truncated,
                    (time.monotonic() - started) * 1000.0,
                )
    except Exception as exc:  # every failure becomes a worded FetchError (cancellation passes)
        raise describe_http_error(exc, timeout) from exc


def _snippet(body: bytes, n: int = 60) -> str:
    text = body[:n].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(text + ("..." if len(body) > n else ""))


def judge_health(fetched: Fetched) -> tuple[bool, str | None, str | None]:
    """(ok, error, status_text) for one /health answer."""
    code = fetched.status_code
    status_text: str | None = None
    try:
        doc = json.loads(fetched.body.decode("utf-8")) if fetched.body else None
    except (UnicodeDecodeError, ValueError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("status"), str):
        status_text = doc["status"][:80]
    if code == 429:
        return False, "HTTP 429 Too Many Requests (the health check is being rate limited)", status_text
    if code >= 500:
        return False, f"HTTP {code} {fetched.reason}".rstrip(), status_text
    if code != 200:
        return False, f"HTTP {code} {fetched.reason}".rstrip(), status_text
    if fetched.truncated:
        return False, f"HTTP 200 but the body is larger than {HEALTH_BODY_LIMIT // 1024} KiB", status_text
    if doc is None:
        return False, f"HTTP 200 but the body is not JSON: {_snippet(fetched.body)}", None
    if not isinstance(doc, dict) or status_text is None:
        return False, f"HTTP 200 but the JSON has no status field: {_snippet(fetched.body)}", status_text
    if status_text != HEALTHY:
        return False, f"status is {status_text!r}, not {HEALTHY!r}", status_text
    return True, None, status_text


def health_sample(name: str, fetched: Fetched, at: float) -> HealthSample:
    ok, error, status_text = judge_health(fetched)
    return HealthSample(
        name, ok, at, status_code=fetched.status_code,
        latency_ms=round(fetched.latency_ms, 3), error=error, status_text=status_text,
    )


class HealthProber:
    """GETs every replica's health URL each refresh and emits one HealthSample per replica."""

    name = "health"

    def __init__(
        self,
        settings: Any,
        replicas_provider: ReplicasProvider,
        *,
        client: httpx.AsyncClient | None = None,
        interval: float | None = None,
        early: Any = None,
    ) -> None:
        self.settings = settings
        self.replicas_provider = replicas_provider
        self.timeout = float(settings.prover.health_timeout_seconds)
        self.interval = float(interval if interval is not None else settings.ui.refresh_seconds)
        self._client = client
        self._early = early  # sources.early.EarlyFetch: answers fetched while the UI loaded

    async def probe(self, client: httpx.AsyncClient, replica: ReplicaIdentity) -> HealthSample:
        """One probe; never raises (every failure is a not-ok sample with the reason)."""
        try:
            fetched = await fetch_bounded(
                client, "GET", replica.health_url, timeout=self.timeout, limit=HEALTH_BODY_LIMIT,
                headers={"Accept": "application/json"},
            )
        except FetchError as exc:
            return HealthSample(replica.name, False, time.time(), error=str(exc))
        return health_sample(replica.name, fetched, time.time())

    async def _chain(self, client: httpx.AsyncClient, sink: Sink, replica: ReplicaIdentity, stop: asyncio.Event) -> None:
        early = self._early.answer(replica.health_url) if self._early is not None else None
        if early is not None:
            # The answer fetched at start-up is shown at once; the next probe keeps the cadence.
            body, truncated = early.bounded(HEALTH_BODY_LIMIT)
            fetched = Fetched(early.status, early.reason, early.headers, body, truncated, early.latency_ms)
            sink(health_sample(replica.name, fetched, early.at))
            if await sleep_or_stop(stop, max(0.0, self.interval - (time.monotonic() - early.monotonic))):
                return
        while True:
            finished, sample = await unless_stopped(stop, lambda: self.probe(client, replica))
            if not finished:
                return
            sink(sample)
            if await sleep_or_stop(stop, self.interval):
                return

    async def run(self, sink: Sink, stop: asyncio.Event) -> None:
        client = self._client or make_client(self.timeout)
        chains = ReplicaChains(lambda r, s: self._chain(client, sink, r, s))
        try:
            while not stop.is_set():
                try:
                    replicas = tuple(self.replicas_provider())
                except Exception as exc:  # a provider bug must not end the probes
                    replicas = ()
                    sink(SourceStatus(self.name, False, f"cannot list replicas: {exc}", retry_in=self.interval))
                else:
                    chains.reconcile(replicas, stop)
                    if replicas:
                        sink(SourceStatus(self.name, True, updated_at=time.time()))
                    else:
                        sink(SourceStatus(self.name, False, "no replicas known yet", retry_in=self.interval))
                if await sleep_or_stop(stop, self.interval):
                    break
        finally:
            await chains.close()
            if self._client is None:
                await client.aclose()
