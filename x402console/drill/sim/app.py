"""The gin engine of the prover: routing, and the middleware chain every request runs through.

gin.Default() + main.go give, in order: Logger, Recovery, rate limiter, active_requests gauge,
then the route handler (5 handlers). Unknown paths and wrong methods run the same chain with a
404 handler, so they are rate limited, counted and logged too. A path that differs from a route
only by a trailing slash is redirected by gin before any middleware runs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from x402console.drill.sim.clientip import client_ip
from x402console.drill.sim.config import normalize_ip
from x402console.drill.sim.faults import MAX_HELD_CONNECTIONS, FaultController
from x402console.drill.sim.httpserver import Request, Response
from x402console.drill.sim.limiter import RateLimiter
from x402console.drill.sim.logs import ProverLog
from x402console.drill.sim.metrics import ProverMetrics
from x402console.drill.sim.routes import json_response
from x402console.drill.sim.store import ProofStore

RouteHandler = Callable[[Request, str], Awaitable[Response]]


def rate_limit_body(limit: int) -> dict[str, str]:
    return {"error": "Rate limit exceeded", "message": f"Maximum {limit} requests per minute. Please try again later."}


class ProverApp:
    def __init__(
        self,
        *,
        routes: dict[tuple[str, str], RouteHandler],
        log: ProverLog,
        metrics: ProverMetrics,
        limiter: RateLimiter,
        faults: FaultController,
        store: ProofStore,
        exempt_ips: frozenset[str],
        intended: bool,
    ) -> None:
        self.routes = routes
        self.log = log
        self.metrics = metrics
        self.limiter = limiter
        self.faults = faults
        self.store = store
        self.exempt_ips = exempt_ips
        self.intended = intended
        self.requests_served = 0

    async def handle(self, req: Request) -> Response:
        handler = self.routes.get((req.method, req.path))
        if handler is None:
            redirect = self._trailing_slash_redirect(req)
            if redirect is not None:
                return redirect
        start = time.perf_counter_ns()
        ip = client_ip(req.header, req.peer_host)
        try:
            response = await self._limited(req, ip, handler)
        except Exception as exc:  # gin's Recovery middleware
            self.log.recovery(exc)
            response = Response(500)
        path = req.path + ("?" + req.raw_query if req.raw_query else "")
        self.log.access(response.status, time.perf_counter_ns() - start, ip, req.method, path)
        self.requests_served += 1
        return response

    async def gate(self) -> bool:
        """The hang fault: a request arrives and is never answered (until the fault is cleared).

        It is held before being read, so a held connection costs only its socket buffers; past
        MAX_HELD_CONNECTIONS new ones are dropped rather than held.
        """
        if not self.faults.hanging:
            return True
        if self.faults.held_connections >= MAX_HELD_CONNECTIONS:
            return False
        self.faults.held_connections += 1
        try:
            await self.faults.wait_until_unhung()
        finally:
            self.faults.held_connections -= 1
        return True

    async def _limited(self, req: Request, ip: str, handler: RouteHandler | None) -> Response:
        if (normalize_ip(ip) or ip) not in self.exempt_ips and not self.limiter.allow(ip):
            if self.intended:
                self.metrics.note_rate_limited(ip)
                self.log.rate_limited(ip)
                self.store.log_rate_limit(ip, req.path)
            return json_response(429, rate_limit_body(self.limiter.max_rate))
        gauge = self.metrics.active_requests
        gauge.inc()
        try:
            if handler is None:
                return Response(404, b"404 page not found", "text/plain")
            return await handler(req, ip)
        finally:
            gauge.dec()

    def _trailing_slash_redirect(self, req: Request) -> Response | None:
        """gin's RedirectTrailingSlash: 301 for GET, 307 otherwise, no middleware, no access line."""
        path = req.path
        if req.method == "CONNECT" or path == "/":
            return None
        other = path[:-1] if path.endswith("/") else path + "/"
        if (req.method, other) not in self.routes:
            return None
        code = 301 if req.method == "GET" else 307
        location = other + ("?" + req.raw_query if req.raw_query else "")
        self.log.gin_debug(f"redirecting request {code}: {other} --> {location}")
        headers = [("Location", location)]
        if req.method in ("GET", "HEAD"):
            text = "Moved Permanently" if code == 301 else "Temporary Redirect"
            body = f'<a href="{location}">{text}</a>.\n\n'.encode()
            return Response(code, body, "text/html; charset=utf-8", headers)
        return Response(code, b"", None, headers)

    def describe(self) -> dict[str, Any]:
        return {"requests_served": self.requests_served, "rate_limit_buckets": len(self.limiter.buckets)}
