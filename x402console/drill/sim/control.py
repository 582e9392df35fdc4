"""The fault control API: a second listener, on 127.0.0.1 only, behind a bearer token.

It is how the drill environment and the tests switch faults on and off in a running prover.
It shares nothing with the prover's routes: no rate limit, no access log, no metrics.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from x402console.drill.sim.faults import FaultController, FaultError
from x402console.drill.sim.httpserver import HttpServer, Request, Response

JSON = "application/json"


def _json(status: int, obj: Any) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), JSON)


class ControlApi:
    def __init__(
        self,
        *,
        token: str,
        faults: FaultController,
        backup: Callable[[], Awaitable[Path]],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self._token = ("Bearer " + token).encode()
        self.faults = faults
        self._backup = backup
        self._status = status
        self.server = HttpServer(self.handle, header_timeout=10, idle_timeout=30)

    async def start(self, port: int) -> None:
        await self.server.start("127.0.0.1", port)

    def _authorized(self, req: Request) -> bool:
        given = req.header("Authorization").encode("latin-1", "replace")
        return hmac.compare_digest(given, self._token)

    async def handle(self, req: Request) -> Response:
        if not self._authorized(req):
            return _json(401, {"error": "missing or wrong bearer token"})
        try:
            return await self._route(req)
        except FaultError as exc:
            return _json(400, {"error": str(exc)})
        except Exception as exc:
            return _json(500, {"error": f"{type(exc).__name__}: {exc}"})

    async def _route(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        if parts == ["faults"]:
            if req.method == "GET":
                return self._faults()
            if req.method == "DELETE":
                await self.faults.clear_all()
                return self._faults()
        elif len(parts) == 2 and parts[0] == "faults":
            name = parts[1]
            if req.method == "PUT":
                params = self._params(req.body)
                await self.faults.set(name, params)
                return self._faults()
            if req.method == "DELETE":
                await self.faults.clear(name)
                return self._faults()
        elif parts == ["backup"] and req.method == "POST":
            path = await self._backup()
            return _json(200, {"file": str(path)})
        elif parts == ["status"] and req.method == "GET":
            return _json(200, self._status())
        return _json(404, {"error": f"no route {req.method} {req.path}"})

    @staticmethod
    def _params(body: bytes) -> Any:
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FaultError(f"body is not valid JSON: {exc}") from None

    def _faults(self) -> Response:
        return _json(200, {"faults": self.faults.snapshot()})


def status_document(cfg: Any, faults: FaultController, started: float, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": cfg.name,
        "pid": os.getpid(),
        "host": cfg.host,
        "port": extra.get("port", cfg.port),
        "control_port": cfg.control_port,
        "profile": cfg.profile,
        "log_format": cfg.log_format,
        "db": str(cfg.db_path),
        "state_dir": str(cfg.state_dir),
        "keys_dir": str(cfg.keys_dir),
        "backup_dir": str(cfg.backup_dir),
        "pprof": cfg.pprof,
        "exempt_ips": sorted(cfg.exempt_ips),
        "rate_limit_per_minute": cfg.rate_limit_per_minute,
        "faults": faults.snapshot(),
        "leaked_mb": round(faults.leak.held_mb, 1),
        "damaged_pages": list(faults.damaged_pages),
        "held_connections": faults.held_connections,
        "started_at": started,
        "uptime_seconds": round(time.time() - started, 3),
        **{k: v for k, v in extra.items() if k != "port"},
    }
