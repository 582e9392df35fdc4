"""The client IP exactly as gin 1.9.1's Context.ClientIP() computes it with default settings.

Defaults: every proxy is trusted, ForwardedByClientIP is on, RemoteIPHeaders is
[X-Forwarded-For, X-Real-IP]. Because everything is trusted, any client can pick its own IP
with a header, which is the spoofing behaviour runbook Incident 6 runs into.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

REMOTE_IP_HEADERS = ("X-Forwarded-For", "X-Real-IP")


def parse_go_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """net.ParseIP: dotted IPv4 (no leading zeros) or IPv6 without a zone; else None."""
    if not text or "%" in text or text.strip() != text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def go_ip_string(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """net.IP.String(): an IPv4-mapped IPv6 address prints as plain IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _validate_header(value: str, trusted: Callable[[str], bool]) -> str | None:
    """gin's Engine.validateHeader: walk the list from the right, stop at the first invalid item."""
    if value == "":
        return None
    items = value.split(",")
    for i in range(len(items) - 1, -1, -1):
        item = items[i].strip()
        if parse_go_ip(item) is None:
            return None
        if i == 0 or not trusted(item):
            return item
    return None


def client_ip(
    header: Callable[[str], str],
    peer_host: str,
    trusted: Callable[[str], bool] = lambda _ip: True,
) -> str:
    """ClientIP() for a request; `header(name)` returns the first value of that header or ""."""
    remote = parse_go_ip(peer_host.strip())
    if remote is None:
        return ""
    if trusted(str(remote)):
        for name in REMOTE_IP_HEADERS:
            ip = _validate_header(header(name), trusted)
            if ip is not None:
                return ip
    return go_ip_string(remote)
