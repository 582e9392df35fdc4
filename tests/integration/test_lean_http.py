"""The lean HTTP client against real sockets on loopback: well-formed answers in every framing,
kept-alive connections the server closed, and hostile or broken servers."""

from __future__ import annotations

import asyncio
import gzip
import socket

import pytest

from x402console.sources.health import FetchError, close_client, fetch_bounded, make_client
from x402console.sources.lean_http import LeanPool


class Server:
    """A loopback TCP server answering each request with `answer(request_bytes)` (raw bytes),
    or doing something nasty; counts connections."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader, writer) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                result = self.answer(head)
                if result is None:  # hang
                    await asyncio.sleep(30)
                    return
                if result == b"CLOSE":
                    return
                writer.write(result)
                await writer.drain()
                if b"Connection: close" in result or result.startswith(b"HTTP/1.0"):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_keep_alive_reuses_one_connection_and_sends_headers() -> None:
    async with Server(lambda req: ok(b"up 1\n")) as srv:
        pool = LeanPool()
        for _ in range(5):
            got = await pool.get(srv.url, timeout=2, limit=1024, headers={"Accept": "text/plain"})
            assert (got.status_code, got.body, got.truncated) == (200, b"up 1\n", False)
        await pool.aclose()
    assert srv.connections == 1
    assert b"GET /metrics HTTP/1.1" in srv.requests[0] and b"Accept: text/plain" in srv.requests[0]


async def test_chunked_gzip_and_read_to_close_bodies() -> None:
    text = b"# TYPE x counter\nx_total 3\n" * 50
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
        f"{len(text[i:i + 100]):x}\r\n".encode() + text[i:i + 100] + b"\r\n" for i in range(0, len(text), 100)
    ) + b"0\r\n\r\n"
    zipped = gzip.compress(text)
    answers = iter([chunked, ok(zipped, "Content-Encoding: gzip\r\n"),
                    b"HTTP/1.0 200 OK\r\n\r\n" + text])
    async with Server(lambda req: next(answers)) as srv:
        pool = LeanPool()
        for _ in range(3):
            got = await pool.get(srv.url, timeout=2, limit=1 << 20)
            assert got.body == text and not got.truncated
        await pool.aclose()


async def test_limits_cut_big_bodies_and_gzip_bombs() -> None:
    bomb = gzip.compress(b"\0" * (8 << 20))
    answers = iter([ok(b"a" * 5000), ok(bomb, "Content-Encoding: gzip\r\n")])
    async with Server(lambda req: next(answers)) as srv:
        pool = LeanPool()
        big = await pool.get(srv.url, timeout=2, limit=1000)
        assert big.truncated and big.body == b"a" * 1000
        boom = await pool.get(srv.url, timeout=2, limit=4096)
        assert boom.truncated and len(boom.body) == 4096
        await pool.aclose()
    # an over-limit body is left unread, so that connection was not reused
    assert srv.connections == 2


async def test_a_kept_alive_connection_the_server_closed_is_retried_fresh() -> None:
    state = {"n": 0}

    def answer(req: bytes) -> bytes:
        state["n"] += 1
        # the first answer ends the connection after it (the client does not know)
        return ok(b"one") if state["n"] == 1 else ok(b"two")

    async with Server(answer) as srv:
        pool = LeanPool()
        assert (await pool.get(srv.url, timeout=2, limit=100)).body == b"one"
        # close the server side of the kept connection
        for conns in pool._idle.values():
            for _, w in conns:
                w.transport.get_extra_info("socket").shutdown(socket.SHUT_RD)
        assert (await pool.get(srv.url, timeout=2, limit=100)).body == b"two"
        await pool.aclose()


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"garbage\r\n\r\n", "not an HTTP status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 50\r\n\r\nshort", "closed without a valid answer"),
        (b"CLOSE", "closed without a valid answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nxx", "unsupported Content-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
async def test_broken_servers_give_worded_errors(raw: bytes, words: str) -> None:
    async with Server(lambda req: raw) as srv:
        pool = LeanPool()
        with pytest.raises(FetchError, match=words) as info:
            await pool.get(srv.url, timeout=2, limit=1000)
        assert info.value.connected
        await pool.aclose()


async def test_refused_and_hung() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = LeanPool()
    with pytest.raises(FetchError, match="connection refused") as refused:
        await pool.get(f"http://127.0.0.1:{port}/health", timeout=2, limit=100)
    assert refused.value.refused
    async with Server(lambda req: None) as srv:
        with pytest.raises(FetchError, match="timed out after 0.5 s waiting for an answer") as hung:
            await pool.get(srv.url, timeout=0.5, limit=100)
        assert hung.value.timed_out and hung.value.connected
    await pool.aclose()


async def test_fetch_bounded_takes_the_lean_path_only_for_plain_gets() -> None:
    async with Server(lambda req: ok(b"fine")) as srv:
        client = make_client(2.0, tls=False, lean=True)
        try:
            got = await fetch_bounded(client, "GET", srv.url, timeout=2, limit=100, headers={"X-A": "1"})
            assert got.body == b"fine"
            assert srv.connections == 1 and client.x402_lean._idle  # kept by the lean pool
            assert not client.built  # no httpx client made (nor its imports' cost) for plain GETs
            # a POST goes through httpx (a second connection)
            got = await fetch_bounded(client, "POST", srv.url, timeout=2, limit=100, content=b"x")
            assert got.status_code == 200 and srv.connections == 2
            assert client.built
        finally:
            await close_client(client)
        with pytest.raises(FetchError, match="line breaks"):
            await LeanPool().get(srv.url, timeout=1, limit=10, headers={"X": "a\r\nInjected: 1"})
