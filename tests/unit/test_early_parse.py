"""The start-up fetch's answer parser (sources/early.py): whole HTTP/1.x answers read to EOF."""

from __future__ import annotations

import pytest

from x402console.sources.early import EarlyAnswer, EarlyFetch, parse_answer


def test_a_plain_answer_gives_status_reason_lowercase_headers_and_body() -> None:
    raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nX-A: 1\r\n\r\nup 1\n"
    assert parse_answer(raw) == (200, "OK", {"content-type": "text/plain; version=0.0.4", "x-a": "1"}, b"up 1\n")


def test_content_length_cuts_trailing_bytes_and_a_short_body_is_refused() -> None:
    assert parse_answer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nokEXTRA") == (
        503, "Service Unavailable", {"content-length": "2"}, b"ok")
    assert parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort") is None
    assert parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nx") is None


@pytest.mark.parametrize("raw", [
    b"",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",  # the head never ended
    b"SSH-2.0-OpenSSH_9.2\r\n\r\n",  # not HTTP
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\nbody",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b",  # we asked for no encoding
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n",  # head over the limit
])
def test_what_is_not_a_whole_plain_answer_is_dropped(raw: bytes) -> None:
    assert parse_answer(raw) is None


def test_bounded_cuts_to_the_consumers_limit() -> None:
    answer = EarlyAnswer("http://x/metrics", 200, "OK", {}, b"0123456789", 1.0, 0.0, 0.0)
    assert answer.bounded(4) == (b"0123", True)
    assert answer.bounded(10) == (b"0123456789", False)


def test_only_plain_http_urls_are_fetched_and_duplicates_once() -> None:
    fetch = EarlyFetch([("https://a/health", "*/*"), ("http://b/health", "*/*"), ("http://b/health", "*/*"),
                        ("", "*/*")])
    assert fetch.requests == [("http://b/health", "*/*")]


def test_nothing_to_fetch_is_done_at_once_and_answers_nothing() -> None:
    fetch = EarlyFetch([]).start()
    assert fetch.done.is_set()
    assert fetch.answer("http://b/health") is None
