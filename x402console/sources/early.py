"""The replicas' first /health and /metrics answers, fetched while the UI is still loading.

Importing Textual and laying out the panes takes about half a second; the sources start only
after that, and a request rate needs two scrapes some time apart. One plain GET of each
configured URL, started on a thread the moment the configuration is read, puts a health answer
and a first scrape in hand by the time the sources start: the health pane can show it at once
and the first real scrape already makes a rate.

Only plain-http URLs of the configured replicas (Docker-discovered ones are not known yet).
The requests are HTTP/1.0, so the answer is never chunked and ends when the server closes the
connection. The thread spends its time waiting on sockets (the GIL is released there), so it
does not slow the import it overlaps. A request that fails is dropped: the sources' own first
request reports the error in their usual words. Nothing here imports more than the standard
library's socket layer.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Iterable

from x402console.sources.http_url import METRICS_ACCEPT, split_http_url

__all__ = ["EarlyAnswer", "EarlyFetch", "start_early_fetch"]

# Enough for any real /metrics page; each consumer applies its own, smaller limit.
READ_LIMIT = 8 * 1024 * 1024
MAX_HEAD = 64 * 1024
DEFAULT_MAX_AGE_S = 5.0  # older answers are not worth showing: the sources are about to ask again


class EarlyAnswer:
    """One complete HTTP answer; `at` is the wall-clock time it was complete."""

    __slots__ = ("url", "status", "reason", "headers", "body", "latency_ms", "at", "monotonic")

    def __init__(self, url: str, status: int, reason: str, headers: dict[str, str], body: bytes,
                 latency_ms: float, at: float, monotonic: float) -> None:
        self.url, self.status, self.reason, self.headers = url, status, reason, headers
        self.body, self.latency_ms, self.at, self.monotonic = body, latency_ms, at, monotonic

    def bounded(self, limit: int) -> tuple[bytes, bool]:
        """The body cut to a consumer's limit, and whether it was cut."""
        return (self.body[:limit], True) if len(self.body) > limit else (self.body, False)


def parse_answer(raw: bytes) -> tuple[int, str, dict[str, str], bytes] | None:
    """(status, reason, headers, body) of a whole HTTP/1.x answer read to EOF; None when it is
    not one, is incomplete (shorter than its Content-Length) or is encoded (we asked for none)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or len(head) > MAX_HEAD:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            return None
        headers[name.strip().lower()] = value.strip()
    if headers.get("content-encoding", "identity").lower() != "identity":
        return None
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None  # not allowed in an HTTP/1.0 answer; the sources will ask properly
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or len(body) < int(length):
            return None
        body = body[: int(length)]
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body


def get_once(url: str, timeout: float, accept: str) -> EarlyAnswer | None:
    """One HTTP/1.0 GET; None on any failure (the caller never reports it)."""
    try:
        host, port, target, host_header = split_http_url(url)
    except ValueError:
        return None
    request = (f"GET {target} HTTP/1.0\r\nHost: {host_header}:{port}\r\nUser-Agent: x402console\r\n"
               f"Accept: {accept}\r\n\r\n").encode("latin-1", "replace")
    started = time.monotonic()
    deadline = started + timeout
    chunks: list[bytes] = []
    size = 0
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            while size <= READ_LIMIT + MAX_HEAD:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            else:
                return None  # larger than anything the sources would read
    except (OSError, ValueError):
        return None
    parsed = parse_answer(b"".join(chunks))
    if parsed is None:
        return None
    status, reason, headers, body = parsed
    done = time.monotonic()
    return EarlyAnswer(url, status, reason, headers, body, (done - started) * 1000.0, time.time(), done)


class EarlyFetch:
    """GETs a list of URLs once, on a daemon thread; `answer(url)` never waits for it."""

    def __init__(self, requests: Iterable[tuple[str, str]], timeout: float = 1.0) -> None:
        self.requests = [(url, accept) for url, accept in dict.fromkeys(requests) if url.startswith("http://")]
        self.timeout = timeout
        self._answers: dict[str, EarlyAnswer] = {}
        self._thread: threading.Thread | None = None
        self.done = threading.Event()
        self.attempted = 0  # requests started (the rest were given up with the time budget)

    def start(self) -> EarlyFetch:
        if self.requests and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="early-fetch", daemon=True)
            self._thread.start()
        else:
            self.done.set()
        return self

    def _run(self) -> None:
        # The whole fetch is worth at most two timeouts: past that the sources are running and
        # ask for themselves (with many unreachable replicas it would otherwise go on for long).
        give_up_at = time.monotonic() + 2 * self.timeout
        try:
            for url, accept in self.requests:
                if time.monotonic() >= give_up_at:
                    break
                self.attempted += 1
                answer = get_once(url, min(self.timeout, give_up_at - time.monotonic()), accept)
                if answer is not None:
                    self._answers[url] = answer  # one dict store: atomic under the GIL
        finally:
            self.done.set()

    def answer(self, url: str, max_age: float = DEFAULT_MAX_AGE_S) -> EarlyAnswer | None:
        found = self._answers.get(url)
        if found is None or time.monotonic() - found.monotonic > max_age:
            return None
        return found


def start_early_fetch(settings: Any) -> EarlyFetch | None:
    """Health URLs first (the health pane is the first thing an operator reads), then /metrics."""
    replicas = list(getattr(settings, "replicas", ()) or ())
    if not replicas:
        return None
    timeout = min(1.0, float(settings.prover.health_timeout_seconds))
    requests = [(r.health_url, "application/json") for r in replicas if r.health_url]
    if not settings.prometheus.url:  # with Prometheus the console does not scrape replicas itself
        requests += [(r.metrics_url, METRICS_ACCEPT) for r in replicas if r.metrics_url]
    return EarlyFetch(requests, timeout).start()
