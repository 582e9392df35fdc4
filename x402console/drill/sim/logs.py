"""The prover's log output in its two shapes.

gin  (as coded): Go stdlib `log` lines on stderr (`2006/01/02 15:04:05 <message>`, no level),
      plus gin's debug banner on stdout.
json (as intended): logrus JSONFormatter on stdout, keys sorted, `timestamp`/`level`/`message`,
      level from LOG_LEVEL. main.go's own log.Printf calls land in logrus at info level there.
Both shapes keep gin's access log on stdout, since gin.Default() installs the Logger middleware
either way. Each line is flushed at once: stdout is usually a file or a pipe to docker logs.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from typing import Any, BinaryIO

from x402console.drill.sim.gofmt import (
    gin_timestamp,
    go_duration,
    go_json,
    go_quote,
    rfc3339,
    stdlib_timestamp,
)

SERVICE = "x402-zk-prover"
VERSION = "1.0.0"
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "fatal": 50}

ROUTES = (
    ("POST", "/generate-proof", "main.generateProofHandler"),
    ("GET", "/health", "main.healthHandler"),
    ("GET", "/metrics", "main.metricsHandler.func1"),
    ("GET", "/cache/stats", "main.cacheStatsHandler"),
)
PPROF_ROUTES = (
    ("GET", "/debug/pprof/", "main.pprofIndex"),
    ("GET", "/debug/pprof/cmdline", "main.pprofCmdline"),
    ("GET", "/debug/pprof/goroutine", "main.pprofGoroutine"),
    ("GET", "/debug/pprof/heap", "main.pprofHeap"),
    ("GET", "/debug/pprof/profile", "main.pprofProfile"),
)


def gin_access_line(ts: str, status: int, latency_ns: int, ip: str, method: str, path: str, error: str = "") -> str:
    """gin's defaultLogFormatter without colours:
    "[GIN] %v |%s %3d %s| %13v | %15s |%s %-7s %s %#v\\n%s"."""
    if latency_ns > 60 * 1_000_000_000:
        latency_ns -= latency_ns % 1_000_000_000
    return (
        f"[GIN] {ts} | {status:3d} | {go_duration(latency_ns):>13} | {ip:>15} |"
        f" {method:<7}  {go_quote(path)}\n{error}"
    )


def logrus_json_line(level: str, message: str, fields: dict[str, Any], ts: str) -> str:
    entry = dict(fields)
    entry.update({"level": level, "message": message, "timestamp": ts})
    return go_json(entry, sort_keys=True) + "\n"


class Streams:
    """stdout/stderr as bytes, one flush per line, safe from the DB worker thread too."""

    def __init__(self, out: BinaryIO | None = None, err: BinaryIO | None = None) -> None:
        self.out = out or sys.stdout.buffer
        self.err = err or sys.stderr.buffer
        self._lock = threading.Lock()

    def _write(self, stream: BinaryIO, text: str) -> None:
        data = text.encode("utf-8", "surrogateescape")
        with self._lock:
            try:
                stream.write(data)
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed pipe must not take the prover down

    def stdout(self, text: str) -> None:
        self._write(self.out, text)

    def stderr(self, text: str) -> None:
        self._write(self.err, text)


class ProverLog:
    """Events the prover reports; subclasses render them as gin/stdlib or logrus JSON."""

    format_name = ""

    def __init__(self, streams: Streams) -> None:
        self.streams = streams

    # gin's own output, identical in both shapes -------------------------------------------
    def access(self, status: int, latency_ns: int, ip: str, method: str, path: str) -> None:
        self.streams.stdout(gin_access_line(gin_timestamp(), status, latency_ns, ip, method, path))

    def recovery(self, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(exc))
        self.streams.stderr(
            f"\n\n\x1b[31m{stdlib_timestamp()} [Recovery] {gin_timestamp()} panic recovered:\n{exc}\n{tb}\x1b[0m\n"
        )

    def panic(self, message: str) -> None:
        """A Go runtime panic: printed by the runtime itself, never through the logger."""
        self.streams.stderr(
            f"panic: {message}\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x8a1b2c]\n\n"
            f"goroutine {os.getpid() % 97 + 3} [running]:\nmain.generateProofHandler(0xc0001b2100)\n"
            "\t/root/main.go:292 +0x1a5\ngithub.com/gin-gonic/gin.(*Context).Next(...)\n"
            "\t/go/pkg/mod/github.com/gin-gonic/gin@v1.9.1/context.go:174\n"
        )

    # overridden per shape -------------------------------------------------------------------
    def info(self, message: str, **fields: Any) -> None:
        raise NotImplementedError

    def fatal(self, message: str, **fields: Any) -> None:
        raise NotImplementedError

    def gin_debug(self, text: str) -> None:
        """gin debug-mode output; only the as-coded shape runs gin in debug mode."""

    def startup(self, port: int, constraints: int, keys_loaded: bool, keys_saved_error: str | None) -> None:
        raise NotImplementedError

    def ready(self, port: int, routes: tuple[tuple[str, str, str], ...]) -> None:
        """Just before listening."""
        raise NotImplementedError

    def serving(self) -> None:
        """The listener is up."""

    def listen_failed(self, err: str) -> None:
        """gin's Run() reports the listen error before main.go's fatal line."""

    def bind_failed(self, ip: str, err: str) -> None:
        raise NotImplementedError

    def validation_failed(self, ip: str, field: str, message: str) -> None:
        raise NotImplementedError

    def cache_hit(self, ip: str) -> None:
        raise NotImplementedError

    def generating(self, ip: str) -> None:
        raise NotImplementedError

    def signature_failed(self, ip: str, err: str) -> None:
        raise NotImplementedError

    def stage_failed(self, ip: str, req: dict[str, Any], stage: str, err: str, duration_ns: int) -> None:
        raise NotImplementedError

    def generated(self, ip: str, req: dict[str, Any], ms: int) -> None:
        raise NotImplementedError

    def rate_limited(self, ip: str) -> None:
        raise NotImplementedError

    def db_initialized(self, path: str) -> None:
        raise NotImplementedError

    def db_store_failed(self, err: str, request_hash: str) -> None:
        raise NotImplementedError

    def db_stored(self, request_hash: str, ip: str, expires_at: str) -> None:
        raise NotImplementedError

    def db_cleanup(self, rows: int) -> None:
        raise NotImplementedError

    def db_cleanup_failed(self, err: str) -> None:
        raise NotImplementedError

    def backup_worker_started(self, interval_s: float, path: str) -> None:
        raise NotImplementedError

    def backup_done(self, path: str, size: int) -> None:
        raise NotImplementedError

    def backup_failed(self, what: str, err: str) -> None:
        raise NotImplementedError

    def backup_cleanup_done(self, deleted: int) -> None:
        raise NotImplementedError



class GinLog(ProverLog):
    format_name = "gin"

    def _std(self, message: str) -> None:
        self.streams.stderr(f"{stdlib_timestamp()} {message}\n")

    def info(self, message: str, **fields: Any) -> None:
        self._std(message)

    def fatal(self, message: str, **fields: Any) -> None:
        self._std(message)

    def gin_debug(self, text: str) -> None:
        self.streams.stdout("[GIN-debug] " + (text if text.endswith("\n") else text + "\n"))

    def startup(self, port: int, constraints: int, keys_loaded: bool, keys_saved_error: str | None) -> None:
        self._std("Starting Umbra Protocol prover service...")
        self._std("Compiling circuit...")
        self._std(f"Circuit constraints: {constraints}")
        if keys_loaded:
            self._std("Loading proving key from trusted setup...")
            self._std("Loading verification key from trusted setup...")
            self._std("Keys loaded from trusted setup ceremony")
        else:
            self._std("WARNING: No trusted setup keys found, generating new keys")
            self._std("WARNING: This is for development only - do NOT use in production")
            if keys_saved_error is None:
                self._std("Keys saved to ./keys/ directory")
            else:
                self._std(f"Warning: Failed to save keys: {keys_saved_error}")
        self._std("Circuit compiled successfully")
        self._std("Rate limiter initialized")
        self._std("Proof cache initialized")
        self._std(f"Prover service ready on :{port}")

    def ready(self, port: int, routes: tuple[tuple[str, str, str], ...]) -> None:
        self.gin_debug("[WARNING] Creating an Engine instance with the Logger and Recovery middleware already attached.\n\n")
        self.gin_debug(
            '[WARNING] Running in "debug" mode. Switch to "release" mode in production.\n'
            " - using env:\texport GIN_MODE=release\n"
            " - using code:\tgin.SetMode(gin.ReleaseMode)\n\n"
        )
        for method, path, handler in routes:
            self.gin_debug(f"{method:<6} {path:<25} --> {handler} (5 handlers)\n")
        self.gin_debug(
            "[WARNING] You trusted all proxies, this is NOT safe. We recommend you to set a value.\n"
            "Please check https://pkg.go.dev/github.com/gin-gonic/gin#readme-don-t-trust-all-proxies for details.\n"
        )
        self.gin_debug(f"Listening and serving HTTP on :{port}\n")

    def listen_failed(self, err: str) -> None:
        self.streams.stderr(f"[GIN-debug] [ERROR] {err}\n")

    def bind_failed(self, ip: str, err: str) -> None:
        self._std(f"Invalid request from {ip}: {err}")

    def validation_failed(self, ip: str, field: str, message: str) -> None:
        self._std(f"Validation failed from {ip}: {message}")

    def cache_hit(self, ip: str) -> None:
        self._std(f"✓ Proof served from cache for {ip}")

    def generating(self, ip: str) -> None:
        self._std(f"Generating proof for {ip}")

    def signature_failed(self, ip: str, err: str) -> None:
        self._std(f"Signature verification failed: {err}")

    def stage_failed(self, ip: str, req: dict[str, Any], stage: str, err: str, duration_ns: int) -> None:
        self._std(f"{stage} failed: {err}")

    def generated(self, ip: str, req: dict[str, Any], ms: int) -> None:
        self._std(f"Proof generated in {ms}ms")

    def rate_limited(self, ip: str) -> None:
        pass  # main.go logs nothing for a 429; only the [GIN] access line shows it

    def db_initialized(self, path: str) -> None:
        pass  # as coded there is no database; keep the startup banner exactly as main.go's

    def db_store_failed(self, err: str, request_hash: str) -> None:
        self._std(f"Failed to store proof in database: {err}")

    def db_stored(self, request_hash: str, ip: str, expires_at: str) -> None:
        pass

    def db_cleanup(self, rows: int) -> None:
        if rows > 0:
            self._std(f"Cleaned up {rows} expired proofs")

    def db_cleanup_failed(self, err: str) -> None:
        self._std(f"Failed to cleanup expired proofs: {err}")

    def backup_worker_started(self, interval_s: float, path: str) -> None:
        self._std(f"Backup worker started (every {go_duration(int(interval_s * 1e9))}, path {path})")

    def backup_done(self, path: str, size: int) -> None:
        self._std(f"Database backup completed successfully: {path} ({size} bytes)")

    def backup_failed(self, what: str, err: str) -> None:
        self._std(f"{what}: {err}")

    def backup_cleanup_done(self, deleted: int) -> None:
        self._std(f"Cleanup of old backups completed: {deleted} deleted")



class JsonLog(ProverLog):
    format_name = "json"

    def __init__(self, streams: Streams, level: str = "info") -> None:
        super().__init__(streams)
        self.threshold = LEVELS[level]

    @staticmethod
    def level_from_env(value: str | None) -> str:
        """initLogger's switch: debug | warn | error, anything else is info."""
        return {"debug": "debug", "warn": "warning", "error": "error"}.get(value or "", "info")

    def _emit(self, level: str, message: str, **fields: Any) -> None:
        if LEVELS[level] >= self.threshold:
            self.streams.stdout(logrus_json_line(level, message, fields, rfc3339()))

    def info(self, message: str, **fields: Any) -> None:
        self._emit("info", message, **fields)

    def fatal(self, message: str, **fields: Any) -> None:
        self._emit("fatal", message, **fields)

    def startup(self, port: int, constraints: int, keys_loaded: bool, keys_saved_error: str | None) -> None:
        self._emit("info", "Logger initialized", service=SERVICE, version=VERSION)
        self._emit("info", "Service starting", service=SERVICE, version=VERSION, port=str(port))
        self._emit("info", "Compiling circuit...")
        self._emit("info", f"Circuit constraints: {constraints}")
        if keys_loaded:
            self._emit("info", "Keys loaded from trusted setup ceremony")
        else:
            self._emit("info", "WARNING: No trusted setup keys found, generating new keys")
            if keys_saved_error is not None:
                self._emit("info", f"Warning: Failed to save keys: {keys_saved_error}")
        self._emit("info", "Circuit compiled successfully")
        self._emit("info", "Rate limiter initialized")
        self._emit("info", "Proof cache initialized")

    def ready(self, port: int, routes: tuple[tuple[str, str, str], ...]) -> None:
        pass  # GIN_MODE=release in the intended deployment (.env.production): no debug banner

    def serving(self) -> None:
        self._emit("info", "Service is ready to accept requests", service=SERVICE, status="ready")

    def _validation(self, ip: str, field: str, reason: str) -> None:
        self._emit("warning", "Input validation failed", client_ip=ip, operation="validation", field=field, reason=reason)

    def bind_failed(self, ip: str, err: str) -> None:
        self._validation(ip, "request", err)

    def validation_failed(self, ip: str, field: str, message: str) -> None:
        self._validation(ip, field, message)

    def cache_hit(self, ip: str) -> None:
        self._emit("debug", "Proof served from cache", client_ip=ip, operation="cache", result="hit")

    def generating(self, ip: str) -> None:
        self._emit("debug", "Cache miss, generating new proof", client_ip=ip, operation="cache", result="miss")

    def signature_failed(self, ip: str, err: str) -> None:
        self._validation(ip, "signature", err)

    def _proof_result(self, ip: str, req: dict[str, Any], ms: int, success: bool) -> None:
        self._emit(
            "info" if success else "error",
            "Proof generated successfully" if success else "Proof generation failed",
            client_ip=ip,
            min_amount=req.get("minAmount", ""),
            actual_amount=req.get("actualAmount", ""),
            duration_ms=ms,
            success=success,
            operation="proof_generation",
        )

    def stage_failed(self, ip: str, req: dict[str, Any], stage: str, err: str, duration_ns: int) -> None:
        self._emit("error", "Circuit operation failed", operation="circuit", error=f"{stage} failed: {err}")
        self._proof_result(ip, req, duration_ns // 1_000_000, False)

    def generated(self, ip: str, req: dict[str, Any], ms: int) -> None:
        self._proof_result(ip, req, ms, True)

    def rate_limited(self, ip: str) -> None:
        self._emit("warning", "Rate limit exceeded", client_ip=ip, operation="rate_limit")

    def db_initialized(self, path: str) -> None:
        self._emit("info", "Database initialized", database_path=path)
        self._emit("info", "Database cleanup worker started (runs every 1 hour)")

    def db_store_failed(self, err: str, request_hash: str) -> None:
        self._emit("error", "Failed to store proof in database", error=err, request_hash=request_hash)

    def db_stored(self, request_hash: str, ip: str, expires_at: str) -> None:
        self._emit("debug", "Proof stored in database", request_hash=request_hash, client_ip=ip, expires_at=expires_at)

    def db_cleanup(self, rows: int) -> None:
        if rows > 0:
            self._emit("info", "Cleaned up expired proofs", rows_deleted=rows)

    def db_cleanup_failed(self, err: str) -> None:
        self._emit("error", "Failed to cleanup expired proofs", error=err)

    def backup_worker_started(self, interval_s: float, path: str) -> None:
        self._emit("info", "Backup worker started", interval_hours=interval_s / 3600.0, backup_path=path)

    def backup_done(self, path: str, size: int) -> None:
        self._emit("info", "Database backup completed successfully", backup_file=path, size_bytes=size)

    def backup_failed(self, what: str, err: str) -> None:
        self._emit("error", what, error=err)

    def backup_cleanup_done(self, deleted: int) -> None:
        self._emit("info", "Cleanup of old backups completed", deleted_count=deleted)


def make_log(fmt: str, streams: Streams | None = None, log_level_env: str | None = None) -> ProverLog:
    streams = streams or Streams()
    if fmt == "json":
        return JsonLog(streams, JsonLog.level_from_env(log_level_env))
    return GinLog(streams)
