"""A small HTTP/1.1 server on asyncio streams, answering malformed input the way Go's net/http does.

Why hand-written: the simulator must hold connections open without answering (the hang fault),
reproduce Go's error responses byte for byte, and stay stdlib-only.

Bounds (Go's http.Server has none of the timeouts; a simulator on a shared box needs them):
headers are capped at 1 MiB + 4 KiB (Go's DefaultMaxHeaderBytes) -> 431; bodies at 10 MiB -> 413;
a request's headers must arrive within header_timeout, its body within body_timeout, and an idle
keep-alive connection is closed after idle_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEADER_BYTES = (1 << 20) + 4096
# one header line (and the read buffer of a connection) is capped lower than the whole head, so
# a connection that is held without being read costs at most a few hundred KiB
MAX_LINE_BYTES = 64 << 10
MAX_BODY_BYTES = 10 << 20
MAX_CONNECTIONS = 4096

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
LINGER_SECONDS = 0.5  # Go's rstAvoidanceDelay
_REASONS = {413: "Request Entity Too Large", 431: "Request Header Fields Too Large"}


def reason(status: int) -> str:
    if status in _REASONS:
        return _REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@dataclass
class Request:
    method: str
    target: str
    path: str
    raw_query: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    peer_host: str
    peer_port: int

    def header(self, name: str) -> str:
        """Header.Get: the first value of that header, or ""."""
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return ""

    @property
    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.raw_query, keep_blank_values=True))


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


Handler = Callable[[Request], Awaitable[Response]]
# awaited when a request starts arriving, before it is read; False drops the connection
Gate = Callable[[], Awaitable[bool]]


class _BadRequest(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class _DateCache:
    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._text = email.utils.formatdate(now, usegmt=True)
        return self._text


def _decode_path(raw: str) -> str:
    """url.Parse's unescaping; a bad %-escape is a 400 like in Go."""
    data = raw.encode("latin-1", "replace")
    if b"%" in data:
        if re.search(rb"%(?![0-9A-Fa-f]{2})", data):
            raise _BadRequest(400, "400 Bad Request")
        data = _PCT.sub(lambda m: bytes([int(m.group(1), 16)]), data)
    return data.decode("utf-8", "surrogateescape")


def _split_target(method: str, target: str) -> tuple[str, str]:
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path, query
    if target.lower().startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        if slash < 0:
            return "/", ""
        path, _, query = rest[slash:].partition("?")
        return path, query
    if target == "*" and method == "OPTIONS":
        return "*", ""
    raise _BadRequest(400, "400 Bad Request")


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        *,
        header_timeout: float = 30.0,
        body_timeout: float = 60.0,
        idle_timeout: float = 120.0,
        write_timeout: float = 60.0,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        gate: Gate | None = None,
    ) -> None:
        self.handler = handler
        self.gate = gate
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._dates = _DateCache()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, host, port, limit=MAX_LINE_BYTES, reuse_address=True
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_connections:
            writer.transport.abort()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass
        except Exception:
            pass  # whatever a client sends, only its own connection ends
        finally:
            self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        peer_host, peer_port = str(peer[0]), int(peer[1]) if len(peer) > 1 else 0
        first = True
        while True:
            try:
                async with asyncio.timeout(self.header_timeout if first else self.idle_timeout):
                    first_byte = await reader.read(1)
            except TimeoutError:
                return
            if not first_byte:
                return
            first = False
            if self.gate is not None and not await self.gate():
                return
            try:
                request = await self._read_request(first_byte, reader, writer, peer_host, peer_port)
            except _BadRequest as bad:
                await self._send_raw_error(writer, bad.status, bad.text)
                await self._linger(reader, writer)
                return
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            response = await self.handler(request)
            keep_alive = self._keep_alive(request) and not response.close
            await self._send(writer, request, response, keep_alive)
            if not keep_alive:
                return

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Close the way Go's server does after an error (closeWriteAndWait): half-close, then
        read and drop what the client is still sending for a moment, so closing with unread
        input does not reset the connection before the client has read the error."""
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
        deadline = asyncio.get_running_loop().time() + LINGER_SECONDS
        with contextlib.suppress(Exception):
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0 or not await asyncio.wait_for(reader.read(65536), left):
                    return

    async def _read_request(
        self,
        first_byte: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer_host: str,
        peer_port: int,
    ) -> Request:
        async with asyncio.timeout(self.header_timeout):
            lines = await self._read_head(first_byte, reader)
        request_line = lines[0]
        parts = request_line.split(" ")
        if len(parts) != 3:
            raise _BadRequest(400, "400 Bad Request: malformed HTTP request " + repr(request_line)[:80])
        method, target, version = parts
        if not _TOKEN.fullmatch(method):
            raise _BadRequest(400, "400 Bad Request: invalid method " + repr(method)[:80])
        m = re.fullmatch(r"HTTP/(\d)\.(\d)", version)
        if not m:
            raise _BadRequest(400, "400 Bad Request: malformed HTTP version " + repr(version)[:80])
        if m.group(1) != "1":
            raise _BadRequest(505, "505 HTTP Version Not Supported: unsupported protocol version")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t"):
                raise _BadRequest(400, "400 Bad Request: malformed MIME header line")
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN.fullmatch(name):
                raise _BadRequest(400, "400 Bad Request: malformed MIME header line")
            headers.append((name, value.strip(" \t")))
        lower = [(k.lower(), v) for k, v in headers]
        if version == "HTTP/1.1" and not any(k == "host" for k, _ in lower):
            raise _BadRequest(400, "400 Bad Request: missing required Host header")
        path, raw_query = _split_target(method, target)
        path = _decode_path(path)
        body = await self._read_body(lower, reader, writer, version)
        return Request(method, target, path, raw_query, version, headers, body, peer_host, peer_port)

    async def _read_head(self, first_byte: bytes, reader: asyncio.StreamReader) -> list[str]:
        lines: list[str] = []
        total = 0
        # a leading bare "\n" is a blank line of its own, which Go skips
        pending = b"" if first_byte == b"\n" else first_byte
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise _BadRequest(431, "431 Request Header Fields Too Large") from None
            raw = pending + raw
            pending = b""
            total += len(raw)
            if total > self.max_header_bytes:
                raise _BadRequest(431, "431 Request Header Fields Too Large")
            line = raw.rstrip(b"\n").rstrip(b"\r").decode("latin-1")
            if not lines and line == "":
                continue  # Go skips leading blank lines before the request line
            if line == "":
                return lines
            lines.append(line)

    async def _read_body(
        self,
        headers: list[tuple[str, str]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        version: str,
    ) -> bytes:
        te = [v.lower() for k, v in headers if k == "transfer-encoding"]
        cl = [v for k, v in headers if k == "content-length"]
        if te:
            if te != ["chunked"]:
                raise _BadRequest(501, "501 Not Implemented: unsupported transfer encoding")
            await self._maybe_continue(headers, writer, version)
            async with asyncio.timeout(self.body_timeout):
                return await self._read_chunked(reader)
        if not cl:
            return b""
        if len(set(cl)) != 1 or not cl[0].isdigit():
            raise _BadRequest(400, "400 Bad Request: bad Content-Length")
        length = int(cl[0])
        if length > self.max_body_bytes:
            raise _BadRequest(413, "413 Request Entity Too Large")
        if length == 0:
            return b""
        await self._maybe_continue(headers, writer, version)
        async with asyncio.timeout(self.body_timeout):
            return await reader.readexactly(length)

    async def _maybe_continue(self, headers: list[tuple[str, str]], writer: asyncio.StreamWriter, version: str) -> None:
        if version == "HTTP/1.1" and any(k == "expect" and v.lower() == "100-continue" for k, v in headers):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = (await reader.readuntil(b"\n")).strip()
            size_text = size_line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
                raise _BadRequest(400, "400 Bad Request: malformed chunked encoding")
            size = int(size_text, 16)
            if size == 0:
                while (await reader.readuntil(b"\n")).strip():
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > self.max_body_bytes:
                raise _BadRequest(413, "413 Request Entity Too Large")
            chunks.append(await reader.readexactly(size))
            if (await reader.readexactly(2)) not in (b"\r\n",):
                raise _BadRequest(400, "400 Bad Request: malformed chunked encoding")

    @staticmethod
    def _keep_alive(request: Request) -> bool:
        connection = request.header("Connection").lower()
        if request.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    async def _send(self, writer: asyncio.StreamWriter, request: Request, response: Response, keep_alive: bool) -> None:
        # Go answers in the request's protocol version (HTTP/1.0 or HTTP/1.1)
        proto = "HTTP/1.0" if request.version == "HTTP/1.0" else "HTTP/1.1"
        status_line = f"{proto} {response.status} {reason(response.status)}"
        headers = list(response.headers)
        if response.content_type is not None:
            headers.append(("Content-Type", response.content_type))
        headers.sort(key=lambda kv: kv[0])
        out = [status_line]
        out += [f"{k}: {v}" for k, v in headers]
        if not keep_alive:
            out.append("Connection: close")
        elif request.version == "HTTP/1.0":
            out.append("Connection: keep-alive")
        out.append(f"Date: {self._dates.get()}")
        out.append(f"Content-Length: {len(response.body)}")
        head = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1", "replace")
        writer.write(head if request.method == "HEAD" else head + response.body)
        async with asyncio.timeout(self.write_timeout):
            await writer.drain()

    async def _send_raw_error(self, writer: asyncio.StreamWriter, status: int, text: str) -> None:
        """Go's conn.serve error path: status line, two headers, the text, then close."""
        data = (
            f"HTTP/1.1 {text.split(':', 1)[0]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Connection: close\r\n\r\n{text}"
        ).encode("latin-1", "replace")
        with contextlib.suppress(Exception):
            writer.write(data)
            async with asyncio.timeout(5):
                await writer.drain()
