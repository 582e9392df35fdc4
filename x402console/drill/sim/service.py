"""Start-up, background workers and shutdown of one simulated prover process."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from x402console.drill.sim.app import ProverApp
from x402console.drill.sim.cache import ProofCache
from x402console.drill.sim.config import SimConfig
from x402console.drill.sim.control import ControlApi, status_document
from x402console.drill.sim.faults import FaultController, FaultError, hard_exit
from x402console.drill.sim.httpserver import HttpServer
from x402console.drill.sim.keys import KeyLoadError, load_or_create
from x402console.drill.sim.limiter import GC_INTERVAL_S, RateLimiter
from x402console.drill.sim.logs import PPROF_ROUTES, ROUTES, ProverLog, make_log
from x402console.drill.sim.metrics import CIRCUIT_CONSTRAINTS, ProverMetrics
from x402console.drill.sim.prover import ProvingSystem
from x402console.drill.sim.routes import Routes
from x402console.drill.sim.store import ProofStore, StoreInitError

CACHE_SWEEP_S = 5 * 60.0


def _listen_error(host: str, port: int, exc: OSError) -> str:
    """Go's net.Listen error text, e.g. listen tcp 127.0.0.1:8080: bind: address already in use."""
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    if exc.errno == errno.EADDRINUSE:
        reason = "address already in use"
    return f"listen tcp {host}:{port}: bind: {reason}"


async def _every(interval_s: float, job: Callable[[], Awaitable[None]], *, first_delay: float | None = None) -> None:
    await asyncio.sleep(interval_s if first_delay is None else first_delay)
    while True:
        with contextlib.suppress(Exception):
            await job()
        await asyncio.sleep(interval_s)


class Service:
    def __init__(self, cfg: SimConfig, log: ProverLog | None = None) -> None:
        self.cfg = cfg
        self.log = log or make_log(cfg.log_format, log_level_env=cfg.log_level_env)
        self.started = time.time()
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.store = ProofStore(cfg.db_path)
        self.server: HttpServer | None = None
        self.control: ControlApi | None = None

    # -- entry --------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # handlers first: a stop requested while starting still ends in a clean exit 0
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop_event.set)
        code = await self._start()
        if code is not None:
            await self._shutdown()
            return code
        await self.stop_event.wait()
        await self._shutdown()
        return 0

    async def _start(self) -> int | None:
        cfg, log = self.cfg, self.log
        loop = asyncio.get_running_loop()
        rng = random.Random(cfg.seed)
        try:
            keys = load_or_create(cfg.keys_dir)
        except KeyLoadError as exc:
            log.fatal(f"Failed to initialize circuit: {exc}")
            return 1
        log.startup(cfg.port, CIRCUIT_CONSTRAINTS, keys.loaded, keys.save_error)
        try:
            await self.store.open()
        except StoreInitError as exc:
            log.fatal(f"Failed to initialize database: {exc}")
            return 1
        log.db_initialized(str(cfg.db_path))

        self.metrics = ProverMetrics(intended=cfg.intended, loop=loop)
        self.cache = ProofCache(cfg.cache_size, cfg.cache_ttl_s)
        self.limiter = RateLimiter(cfg.rate_limit_per_minute, 60.0)
        self.prover = ProvingSystem(keys, random.Random(rng.random()))
        self.faults = FaultController(
            vk=self.prover.vk,
            damage_db=lambda pages: self.store.damage(pages, rng.randrange(1 << 30)),
            on_crash=self._crash,
            rng=random.Random(rng.random()),
        )
        routes = Routes(
            log=log,
            metrics=self.metrics,
            cache=self.cache,
            prover=self.prover,
            store=self.store,
            faults=self.faults,
            proof_ttl_s=cfg.proof_ttl_s,
        ).table()
        route_list = ROUTES
        if cfg.pprof:
            from x402console.drill.sim.pprof import Pprof

            pprof = Pprof(loop)
            routes.update({("GET", path): handler for path, handler in pprof.routes().items()})
            route_list = ROUTES + PPROF_ROUTES
        self.app = ProverApp(
            routes=routes,
            log=log,
            metrics=self.metrics,
            limiter=self.limiter,
            faults=self.faults,
            store=self.store,
            exempt_ips=cfg.exempt_ips,
            intended=cfg.intended,
        )
        log.ready(cfg.port, route_list)
        self.server = HttpServer(
            self.app.handle,
            header_timeout=cfg.header_timeout_s,
            body_timeout=2 * cfg.header_timeout_s,
            idle_timeout=cfg.idle_timeout_s,
            gate=self.app.gate,
        )
        try:
            await self.server.start(cfg.host, cfg.port)
        except OSError as exc:
            err = _listen_error(cfg.host, cfg.port, exc)
            log.listen_failed(err)
            log.fatal(f"Failed to start server: {err}")
            return 1
        if cfg.control_port:
            self.control = ControlApi(
                token=cfg.control_token or "", faults=self.faults, backup=self.backup_now, status=self.status
            )
            try:
                await self.control.start(cfg.control_port)
            except OSError as exc:
                log.fatal(f"Failed to start control listener: {_listen_error('127.0.0.1', cfg.control_port, exc)}")
                return 1
        log.serving()
        for name, params in cfg.faults:
            try:
                await self.faults.set(name, params)
            except FaultError as exc:
                log.fatal(f"Failed to inject fault: {exc}")
                return 1
        self._start_workers()
        return None

    def _start_workers(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()

        async def gc_buckets() -> None:
            self.limiter.gc()

        async def sweep_cache() -> None:
            self.cache.sweep()

        async def cleanup_db() -> None:
            try:
                rows = await self.store.cleanup_expired()
            except Exception as exc:
                self.log.db_cleanup_failed(str(exc))
            else:
                self.log.db_cleanup(rows)

        self.tasks += [
            loop.create_task(_every(GC_INTERVAL_S, gc_buckets)),
            loop.create_task(_every(CACHE_SWEEP_S, sweep_cache)),
            loop.create_task(_every(cfg.cleanup_interval_s, cleanup_db)),
        ]
        if cfg.backup_interval_s > 0:
            self.log.backup_worker_started(cfg.backup_interval_s, str(cfg.backup_dir))
            self.tasks.append(loop.create_task(self._backup_worker()))

    async def _backup_worker(self) -> None:
        """backup.go's worker: one backup at once, then each interval a backup and retention."""
        await self._backup_logged("Initial backup failed")
        retention_s = self.cfg.backup_retention_days * 86400.0
        while True:
            await asyncio.sleep(self.cfg.backup_interval_s)
            await self._backup_logged("Scheduled backup failed")
            try:
                deleted = await self.store.cleanup_backups(self.cfg.backup_dir, retention_s)
            except Exception as exc:
                self.log.backup_failed("Backup cleanup failed", str(exc))
            else:
                if deleted:
                    self.log.backup_cleanup_done(len(deleted))

    async def _backup_logged(self, failure: str) -> None:
        try:
            await self.backup_now()
        except Exception as exc:
            self.log.backup_failed(failure, str(exc))

    async def backup_now(self) -> Path:
        path, size = await self.store.backup(self.cfg.backup_dir)
        self.log.backup_done(str(path), size)
        return path

    def status(self) -> dict[str, object]:
        extra: dict[str, object] = {
            "port": self.server.port if self.server else self.cfg.port,
            "cache": self.cache.stats(),
            "connections": self.server.connection_count if self.server else 0,
            **self.app.describe(),
        }
        return status_document(self.cfg, self.faults, self.started, extra)

    def _crash(self, code: int) -> None:
        if code == 2:
            self.log.panic("runtime error: invalid memory address or nil pointer dereference")
        else:
            self.log.fatal(f"Fatal error in prover: exit status {code}")
        hard_exit(code)

    async def _shutdown(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if hasattr(self, "faults"):
            self.faults.shutdown()
        if self.control is not None:
            await self.control.server.close()
        if self.server is not None:
            await self.server.close()
        with contextlib.suppress(Exception):
            await self.store.close()


async def serve(cfg: SimConfig) -> int:
    return await Service(cfg).run()
