"""gin 1.9.1 ClientIP() with every proxy trusted (X-Forwarded-For, then X-Real-IP, then peer)."""

from __future__ import annotations

import pytest

from x402console.drill.sim.clientip import client_ip, parse_go_ip


def headers(**h: str):
    lowered = {k.lower().replace("_", "-"): v for k, v in h.items()}
    return lambda name: lowered.get(name.lower(), "")


@pytest.mark.parametrize(
    ("xff", "real_ip", "peer", "expected"),
    [
        ("", "", "127.0.0.1", "127.0.0.1"),
        ("203.0.113.7", "", "127.0.0.1", "203.0.113.7"),
        # a fully valid chain yields its leftmost item: the client can choose its own IP
        ("203.0.113.7, 10.0.0.1, 127.0.0.1", "", "127.0.0.1", "203.0.113.7"),
        ("  198.51.100.9  ", "", "127.0.0.1", "198.51.100.9"),
        # an invalid item anywhere in the walk invalidates the header; X-Real-IP is next
        ("203.0.113.7, garbage", "192.0.2.5", "127.0.0.1", "192.0.2.5"),
        ("garbage, 203.0.113.7", "192.0.2.5", "127.0.0.1", "192.0.2.5"),
        ("unknown", "", "127.0.0.1", "127.0.0.1"),
        ("203.0.113.7,", "", "127.0.0.1", "127.0.0.1"),  # trailing empty item is not an IP
        ("", "192.0.2.5", "127.0.0.1", "192.0.2.5"),
        ("", "bogus", "127.0.0.2", "127.0.0.2"),
        ("2001:db8::1", "", "127.0.0.1", "2001:db8::1"),
        ("fe80::1%eth0", "", "127.0.0.1", "127.0.0.1"),  # net.ParseIP rejects zones
        ("010.0.0.1", "", "127.0.0.1", "127.0.0.1"),  # and leading zeros
        ("1.2.3.4:5678", "", "127.0.0.1", "127.0.0.1"),  # and ports
        ("::ffff:1.2.3.4", "", "127.0.0.1", "::ffff:1.2.3.4"),  # returned as written
        ("", "", "::ffff:127.0.0.3", "127.0.0.3"),  # peer printed like net.IP.String()
        ("", "", "::1", "::1"),
    ],
)
def test_client_ip_table(xff: str, real_ip: str, peer: str, expected: str) -> None:
    assert client_ip(headers(x_forwarded_for=xff, x_real_ip=real_ip), peer) == expected


def test_untrusted_proxy_stops_the_walk() -> None:
    trusted = lambda ip: ip.startswith("10.") or ip == "127.0.0.1"  # noqa: E731
    h = headers(x_forwarded_for="203.0.113.7, 198.51.100.1, 10.0.0.1")
    assert client_ip(h, "127.0.0.1", trusted) == "198.51.100.1"


def test_unparseable_peer_gives_empty_ip() -> None:
    assert client_ip(headers(x_forwarded_for="203.0.113.7"), "not-an-ip") == ""


@pytest.mark.parametrize("text", ["1.2.3", "256.1.1.1", " 1.2.3.4", "", "::1%lo", "01.2.3.4"])
def test_parse_go_ip_rejects(text: str) -> None:
    assert parse_go_ip(text) is None
