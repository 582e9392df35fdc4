"""Plain-http URLs as the console's own minimal clients need them (standard library only: the
start-up fetch uses this before anything else is imported)."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["METRICS_ACCEPT", "split_http_url"]

# What every scrape of a replica's /metrics asks for: the text format, anything else second.
METRICS_ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"


def split_http_url(url: str) -> tuple[str, int, str, str]:
    """(host, port, request target, Host header value) of an http:// URL; ValueError, worded
    for the operator, for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"bad URL: {url!r} (the lean client does plain http only)")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"bad URL: {url!r} has an invalid port") from None
    host = parts.hostname
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, port, target, f"[{host}]" if ":" in host else host
