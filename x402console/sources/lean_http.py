"""Plain-http GETs on kept-alive connections: the console's own once-a-second polling.

httpx costs about a millisecond of CPU per request (its pool, its event objects, anyio); the
console asks every replica for /health and /metrics every second, which made HTTP a third of
its idle cost. The polling needs none of what httpx adds: no TLS, no redirects, no proxies,
no cookies, one GET at a time per connection. This client does exactly that and nothing more;
anything else (https, other methods, extra options) still goes through httpx.

Errors are the same worded FetchErrors as fetch_bounded's, so callers cannot tell the paths
apart except by speed.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Mapping

from x402console.sources.http_url import split_http_url

MAX_HEADER_LINE = 16 * 1024
MAX_HEADERS = 100
IDLE_PER_HOST = 4


class LeanProtocolError(Exception):
    """The peer answered something that is not HTTP/1.x."""


class LeanPool:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self.closed = False

    async def get(self, url: str, *, timeout: float, limit: int, headers: Mapping[str, str] | None = None):
        from x402console.sources.health import Fetched, FetchError

        try:
            host, port, target, host_header = split_http_url(url)
        except ValueError as exc:
            raise FetchError(str(exc)) from None
        lines = [f"GET {target} HTTP/1.1", f"Host: {host_header}:{port}", "User-Agent: x402console",
                 "Accept: */*", "Connection: keep-alive"]
        for name, value in (headers or {}).items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise FetchError(f"bad header {name!r}: line breaks are not allowed")
            lines.append(f"{name}: {value}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        started = time.monotonic()
        connected = False
        key = (host, port)
        try:
            async with asyncio.timeout(timeout):
                # A kept-alive connection may have been closed by the server meanwhile, or the
                # server died mid-request: one retry on a fresh connection when no byte of an
                # answer came (a GET; the retry then tells "refused" from "closed").
                for attempt in (0, 1):
                    conn = self._take(key) if attempt == 0 else None
                    if conn is None:
                        conn = await asyncio.open_connection(host, port, limit=MAX_HEADER_LINE)
                    connected = True
                    reader, writer = conn
                    try:
                        writer.write(request)
                        status, reason, hdrs, body, truncated, keep = await self._exchange(reader, limit)
                    except (ConnectionError, asyncio.IncompleteReadError, LeanProtocolError) as exc:
                        writer.close()
                        if attempt == 0 and not _answered(exc):
                            continue
                        raise
                    except BaseException:
                        writer.close()
                        raise
                    if keep and not self.closed:
                        self._put(key, conn)
                    else:
                        writer.close()
                    encoding = hdrs.get("content-encoding", "").strip().lower()
                    if encoding in ("gzip", "x-gzip", "deflate") and body:
                        body, more = _inflate(body, encoding, limit)
                        truncated = truncated or more
                    elif encoding not in ("", "identity"):
                        raise LeanProtocolError(f"unsupported Content-Encoding {encoding!r}")
                    return Fetched(status, reason, hdrs, body, truncated, (time.monotonic() - started) * 1000.0)
        except FetchError:
            raise
        except (TimeoutError, asyncio.TimeoutError):
            what = "waiting for an answer" if connected else "connecting"
            raise FetchError(f"timed out after {timeout:g} s {what}", timed_out=True, connected=connected) from None
        except ConnectionRefusedError:
            raise FetchError("connection refused", refused=True) from None
        except asyncio.IncompleteReadError:
            raise FetchError("connection closed without a valid answer (incomplete answer)", connected=True) from None
        except LeanProtocolError as exc:
            raise FetchError(f"connection closed without a valid answer ({exc})", connected=True) from None
        except ConnectionError as exc:
            raise FetchError(f"connection broken while reading the answer ({exc.strerror or exc})", connected=connected) from None
        except OSError as exc:
            raise FetchError(f"cannot connect: {exc.strerror or exc}") from None
        raise FetchError("no answer")  # both attempts used up (unreachable in practice)

    async def _exchange(self, reader: asyncio.StreamReader, limit: int):
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise LeanProtocolError(f"not an HTTP status line: {line[:60]!r}")
        version, status, reason = parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n"):
                break
            if not raw:
                raise asyncio.IncompleteReadError(b"", None)
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise LeanProtocolError(f"malformed header line {raw[:60]!r}")
            headers[name.strip().lower()] = value.strip()
        else:
            raise LeanProtocolError(f"more than {MAX_HEADERS} header lines")
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        if status in (204, 304) or 100 <= status < 200:
            return status, reason, headers, b"", False, keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, truncated = await _read_chunked(reader, limit)
            return status, reason, headers, body, truncated, keep and not truncated
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise LeanProtocolError(f"bad Content-Length {length!r}")
            n = int(length)
            body = await reader.readexactly(min(n, limit))
            # A body over the limit is left unread: that connection cannot be reused.
            return status, reason, headers, body, n > limit, keep and n <= limit
        body = await reader.read(limit + 1)
        chunks = [body]
        while len(body) <= limit:
            more = await reader.read(limit + 1 - len(body))
            if not more:
                break
            chunks.append(more)
            body = b"".join(chunks)
        return status, reason, headers, body[:limit], len(body) > limit, False

    def _take(self, key):
        idle = self._idle.get(key)
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    def _put(self, key, conn) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= IDLE_PER_HOST:
            conn[1].close()
            return
        idle.append(conn)

    async def aclose(self) -> None:
        self.closed = True
        writers = [w for conns in self._idle.values() for _, w in conns]
        self._idle.clear()
        for w in writers:
            w.close()
        for w in writers:
            try:
                await asyncio.wait_for(w.wait_closed(), 1.0)
            except Exception:
                pass


def _inflate(body: bytes, encoding: str, limit: int) -> tuple[bytes, bool]:
    """Decompress at most `limit` bytes (a gzip bomb stops at the limit, as httpx's would)."""
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, limit)
    except zlib.error as exc:
        raise LeanProtocolError(f"undecodable {encoding} body: {exc}") from None
    return out, bool(d.unconsumed_tail)


def _answered(exc: BaseException) -> bool:
    """True when part of an answer arrived: then a retry could run the request twice."""
    return isinstance(exc, asyncio.IncompleteReadError) and bool(exc.partial)


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    out = bytearray()
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise asyncio.IncompleteReadError(bytes(out), None)
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise LeanProtocolError(f"bad chunk size {size_line[:40]!r}") from None
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(out), False
        room = limit - len(out)
        if size > room:
            out += await reader.readexactly(room)
            return bytes(out), True
        out += await reader.readexactly(size)
        await reader.readline()  # the CRLF after the chunk
