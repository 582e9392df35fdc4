"""Traffic generator for the drill environment: paced payment-proof requests to loopback provers.

Open loop: requests leave on a fixed schedule (`--rate` per second in total), whatever the
prover's answers or delays, the way real clients keep arriving during an incident. Normal
requests take turns over `--clients` client IPs. The prover limits every client IP to 10
requests per minute (a fixed window anchored at the IP's first request), so each client must
stay at or below 10/60 req/s: a rate of R req/s needs at least 6*R clients (more than 60 clients
above 10 req/s), else normal users get 429s too. Attack mode adds `--attack-ips` further IPs,
each sending `--attack-rate` req/s, far above that limit: the rate limit / DDoS incident.

The client IP travels in one of two ways (`--ip-mode`):
- xff: an `X-Forwarded-For` header with an address from the documentation ranges
  203.0.113.0/24, 198.51.100.0/24 and 192.0.2.0/24. Only header text: every packet goes to the
  loopback target. gin trusts all proxies, so the prover takes this as the client IP.
- source: each client binds its own local address 127.0.0.2..127.0.0.254 and sends no header,
  as clients behind nginx look once nginx adds `X-Forwarded-For $remote_addr`.

Safety: only loopback targets are accepted; every run is bounded by `--duration` and
`--max-requests`; at most `--max-in-flight` requests are outstanding (a request that finds the
bound full is dropped and counted, never queued); each request has a total `--timeout`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import ipaddress
import json
import math
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx

from x402console.drill.traffic_mix import ATTACK, INVALID_KINDS, Mix, build

DOC_RANGES = ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")
SOURCE_FIRST, SOURCE_LAST = 2, 254  # 127.0.0.1 is left to the console and the provers
MAX_XFF_IPS = 3 * 254
MAX_SOURCE_IPS = SOURCE_LAST - SOURCE_FIRST + 1
MAX_DURATION = 24 * 3600.0
MAX_RATE = 1000.0  # total normal req/s; the attack is capped the same way
PROVER_LIMIT_PER_MINUTE = 10
DEFAULT_TARGET = "http://127.0.0.1:8080"
DEFAULT_PATH = "/generate-proof"
MAX_ERROR_KEYS = 50  # distinct error texts kept in the stats; the rest are pooled
LATENCY_SAMPLES = 20_000
STOP_GRACE = 0.5  # seconds in-flight requests get to finish after a stop request

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TrafficConfigError(ValueError):
    """A configuration the generator refuses to run (message meant for the operator)."""


def loopback_url(url: str) -> str:
    """The URL to post to, or TrafficConfigError when it is not a loopback http(s) URL.

    A target given without a path gets /generate-proof.
    """
    if not isinstance(url, str):
        raise TrafficConfigError(f"target must be a URL string, got {url!r}")
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise TrafficConfigError(f"target {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise TrafficConfigError(f"target {url!r} must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise TrafficConfigError(f"target {url!r} must not carry credentials")
    if host.lower() != "localhost":
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            addr = None
        if addr is None or not addr.is_loopback:
            raise TrafficConfigError(
                f"refusing target {url!r}: only loopback targets (127.0.0.0/8, ::1, localhost) "
                "are allowed; load never leaves this machine"
            )
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def xff_ips(count: int) -> list[str]:
    """`count` distinct documentation-range addresses, spread over the three ranges."""
    nets = [ipaddress.ip_network(r) for r in DOC_RANGES]
    return [str(nets[i % 3].network_address + 1 + i // 3) for i in range(count)]


def source_ips(count: int) -> list[str]:
    return [f"127.0.0.{SOURCE_FIRST + i}" for i in range(count)]


@dataclass
class TrafficConfig:
    targets: list[str] = field(default_factory=lambda: [DEFAULT_TARGET])
    rate: float = 5.0  # total normal requests per second
    clients: int = 50
    ip_mode: str = "xff"  # xff | source
    invalid_ratio: float = 0.1
    attack_ips: int = 0
    attack_rate: float = 2.0  # per attack IP, requests per second
    duration: float = 60.0
    max_requests: int = 100_000
    timeout: float = 10.0
    max_in_flight: int = 64
    seed: int | None = None
    invalid_kinds: tuple[str, ...] = INVALID_KINDS

    def validate(self) -> list[str]:
        """The URLs to post to; raises TrafficConfigError naming the first bad setting."""
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if not self.targets:
            raise TrafficConfigError("at least one target is needed")
        urls = [loopback_url(t) for t in self.targets]
        if self.ip_mode not in ("xff", "source"):
            raise TrafficConfigError(f"ip mode must be 'xff' or 'source', got {self.ip_mode!r}")
        if self.ip_mode == "source":
            for t in self.targets:
                if ":" in (urlsplit(t.strip()).hostname or ""):
                    raise TrafficConfigError(f"source mode binds 127.0.0.x addresses, so target {t!r} must be IPv4")
        _check_number("rate", self.rate, 0, MAX_RATE)
        _check_number("invalid ratio", self.invalid_ratio, 0, 1)
        _check_number("attack rate", self.attack_rate, 0, MAX_RATE)
        _check_int("attack ips", self.attack_ips, 0)
        _check_int("clients", self.clients, 1 if self.rate > 0 else 0)
        if self.attack_ips * self.attack_rate > MAX_RATE:
            raise TrafficConfigError(f"attack ips x attack rate must be at most {MAX_RATE:g} req/s")
        if self.rate <= 0 and self.attack_ips * self.attack_rate <= 0:
            raise TrafficConfigError("nothing to send: rate is 0 and there is no attack")
        limit = MAX_SOURCE_IPS if self.ip_mode == "source" else MAX_XFF_IPS
        if self.clients + self.attack_ips > limit:
            raise TrafficConfigError(
                f"clients + attack ips is {self.clients + self.attack_ips}; {self.ip_mode} mode has "
                f"{limit} distinct addresses"
            )
        _check_number("duration", self.duration, 0, MAX_DURATION, low_open=True)
        _check_int("max requests", self.max_requests, 1)
        _check_number("timeout", self.timeout, 0, 3600, low_open=True)
        _check_int("max in flight", self.max_in_flight, 1)
        if not self.invalid_kinds or any(k not in INVALID_KINDS for k in self.invalid_kinds):
            raise TrafficConfigError(f"invalid kinds must be among {', '.join(INVALID_KINDS)}")
        return urls

    def client_ips(self) -> tuple[list[str], list[str]]:
        """(normal client IPs, attack IPs), all distinct.

        Normal clients come from the start of the address pool and attackers from its end, so
        an attack-only generator run beside a normal one (the drill does that) still gets
        addresses no normal client uses.
        """
        pool = source_ips(MAX_SOURCE_IPS) if self.ip_mode == "source" else xff_ips(MAX_XFF_IPS)
        attack = pool[len(pool) - self.attack_ips :][::-1] if self.attack_ips else []
        return pool[: self.clients], attack

    def per_client_per_minute(self) -> float:
        return 60.0 * self.rate / self.clients if self.clients else 0.0


def _check_number(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TrafficConfigError(f"{name} must be a number, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        bound = f"more than {low:g}" if low_open else f"at least {low:g}"
        raise TrafficConfigError(f"{name} must be {bound} and at most {high:g}, got {value:g}")


def _check_int(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TrafficConfigError(f"{name} must be a whole number, got {value!r}")
    if value < low:
        raise TrafficConfigError(f"{name} must be at least {low}, got {value}")


# ---------------------------------------------------------------- schedule and pacing


@dataclass(frozen=True)
class Slot:
    at: float  # seconds after the start
    stream: str  # "normal" | "attack"
    client: int  # index into that stream's IPs


def _stream(name: str, rate: float, clients: int, duration: float) -> Iterator[Slot]:
    if rate <= 0 or clients <= 0:
        return
    k = 0
    while (at := k / rate) < duration:  # k/rate, not a running sum: no drift over long runs
        yield Slot(at, name, k % clients)
        k += 1


def schedule(
    rate: float,
    clients: int,
    duration: float,
    max_requests: int,
    attack_ips: int = 0,
    attack_rate: float = 0.0,
) -> Iterator[Slot]:
    """Every request of a run in time order: `rate`/s taking turns over `clients`, plus
    `attack_ips` IPs at `attack_rate`/s each, all before `duration`, at most `max_requests`."""
    streams = [_stream("normal", rate, clients, duration)]
    if attack_ips > 0:
        # One stream at K*R taking turns over K IPs gives each IP exactly R req/s.
        streams.append(_stream("attack", attack_ips * attack_rate, attack_ips, duration))
    merged = heapq.merge(*streams, key=lambda s: s.at)
    for n, slot in enumerate(merged):
        if n >= max_requests:
            return
        yield slot


class Pacer:
    """Releases slots when their time comes; late slots go at once (open loop, no skipping)."""

    def __init__(self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep, stop: asyncio.Event | None = None):
        self.clock = clock
        self.sleep = sleep
        self.stop = stop
        self.start = clock()

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def wait_until(self, at: float) -> bool:
        """Wait until `at` seconds after the start; False when stopped first."""
        while not self.stopped():
            delay = self.start + at - self.clock()
            if delay <= 0:
                return True
            if self.stop is None:
                await self.sleep(delay)
                continue
            sleeper = asyncio.ensure_future(self.sleep(delay))
            stopper = asyncio.ensure_future(self.stop.wait())
            try:
                await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, stopper):
                    task.cancel()
        return False

    async def release(self, slots: Iterable[Slot]) -> AsyncIterator[Slot]:
        for slot in slots:
            if not await self.wait_until(slot.at):
                return
            yield slot


# ---------------------------------------------------------------- statistics


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))  # nearest rank
    return sorted_values[rank - 1]


@dataclass
class TrafficStats:
    scheduled: int = 0  # slots reached: sent + dropped
    sent: int = 0
    completed: int = 0  # got an HTTP answer, any status
    by_status: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)  # sent requests per kind
    by_kind_status: dict[str, dict[str, int]] = field(default_factory=dict)
    by_error: dict[str, int] = field(default_factory=dict)  # the prover's {"error": ...} texts
    connection_errors: int = 0
    timeouts: int = 0
    other_errors: int = 0
    dropped: int = 0  # the in-flight bound was full when the slot came
    cancelled: int = 0  # still in flight when the run was stopped
    elapsed_s: float = 0.0
    stopped_by: str = ""  # duration | max_requests | stop
    # A uniform sample of answered requests' latencies: percentiles stay honest while memory
    # stays bounded over a day-long run.
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    _sampler: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def record_sent(self, kind: str) -> None:
        self.sent += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    def record_answer(self, kind: str, status: int, latency_ms: float, error: str | None) -> None:
        code = str(status)
        self.completed += 1
        self.by_status[code] = self.by_status.get(code, 0) + 1
        per_kind = self.by_kind_status.setdefault(kind, {})
        per_kind[code] = per_kind.get(code, 0) + 1
        if len(self.latencies_ms) < LATENCY_SAMPLES:
            self.latencies_ms.append(latency_ms)
        else:
            slot = self._sampler.randrange(self.completed)
            if slot < LATENCY_SAMPLES:
                self.latencies_ms[slot] = latency_ms
        if error is not None:
            key = error if error in self.by_error or len(self.by_error) < MAX_ERROR_KEYS else "(other)"
            self.by_error[key] = self.by_error.get(key, 0) + 1

    def latency_p50_ms(self) -> float | None:
        return _percentile(sorted(self.latencies_ms), 0.50)

    def latency_p95_ms(self) -> float | None:
        return _percentile(sorted(self.latencies_ms), 0.95)

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("latencies_ms", "_sampler")}
        values = sorted(self.latencies_ms)
        data["latency_p50_ms"] = _percentile(values, 0.50)
        data["latency_p95_ms"] = _percentile(values, 0.95)
        return data

    def summary_line(self) -> str:
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(self.by_status.items())) or "none"
        p50, p95 = self.latency_p50_ms(), self.latency_p95_ms()
        lat = f"p50={p50:.1f}ms p95={p95:.1f}ms" if p50 is not None and p95 is not None else "p50=- p95=-"
        return (
            f"traffic: sent={self.sent} answered={self.completed} status[{statuses}] "
            f"conn_errors={self.connection_errors} timeouts={self.timeouts} dropped={self.dropped} "
            f"cancelled={self.cancelled} {lat} elapsed={self.elapsed_s:.1f}s stopped_by={self.stopped_by}"
        )


# ---------------------------------------------------------------- the run


def _error_text(response: httpx.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return None


class _Clients:
    """The httpx clients: one shared client (xff) or one per bound local address (source)."""

    def __init__(self, config: TrafficConfig):
        limits = httpx.Limits(max_connections=config.max_in_flight, max_keepalive_connections=config.max_in_flight)
        common = {"timeout": httpx.Timeout(config.timeout), "trust_env": False, "follow_redirects": False}
        self.shared: httpx.AsyncClient | None = None
        self.by_ip: dict[str, httpx.AsyncClient] = {}
        self.mode = config.ip_mode
        if self.mode == "xff":
            self.shared = httpx.AsyncClient(limits=limits, **common)
        else:
            normal, attack = config.client_ips()
            for ip in normal + attack:
                transport = httpx.AsyncHTTPTransport(local_address=ip, limits=limits, retries=0)
                self.by_ip[ip] = httpx.AsyncClient(transport=transport, **common)

    def for_ip(self, ip: str) -> tuple[httpx.AsyncClient, dict[str, str]]:
        headers = {"Content-Type": "application/json", "User-Agent": "x402console-traffic"}
        if self.shared is not None:
            headers["X-Forwarded-For"] = ip
            return self.shared, headers
        return self.by_ip[ip], headers

    async def aclose(self) -> None:
        for client in [self.shared, *self.by_ip.values()]:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()


async def _send(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    kind: str,
    body: bytes,
    timeout: float,
    stats: TrafficStats,
) -> None:
    t0 = time.perf_counter()
    try:
        # httpx bounds each phase; wait_for bounds the whole exchange (a trickling answer too).
        response = await asyncio.wait_for(client.post(url, content=body, headers=headers), timeout)
    except (httpx.TimeoutException, TimeoutError):
        stats.timeouts += 1
    except httpx.TransportError:
        stats.connection_errors += 1
    except httpx.HTTPError:
        stats.other_errors += 1
    else:
        stats.record_answer(kind, response.status_code, (time.perf_counter() - t0) * 1000.0, _error_text(response))


async def generate(
    config: TrafficConfig,
    stop: asyncio.Event | None = None,
    *,
    stats: TrafficStats | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> TrafficStats:
    """Run the traffic `config` describes until its duration or request bound, or `stop`.

    Pass `stats` to watch the counters while the run goes on. Raises TrafficConfigError for a
    configuration it refuses (non-loopback target included) before sending anything.
    """
    urls = config.validate()
    stats = stats if stats is not None else TrafficStats()
    rng = random.Random(config.seed)
    mix = Mix(config.invalid_ratio, rng, config.invalid_kinds)
    normal_ips, attack_ips = config.client_ips()
    clients = _Clients(config)
    pacer = Pacer(clock=clock, sleep=sleep, stop=stop)
    in_flight: set[asyncio.Task[None]] = set()
    slots = schedule(
        config.rate, config.clients, config.duration, config.max_requests, config.attack_ips, config.attack_rate
    )
    target_turn = 0
    try:
        async with contextlib.aclosing(pacer.release(slots)) as released:
            async for slot in released:
                stats.scheduled += 1
                if len(in_flight) >= config.max_in_flight:
                    stats.dropped += 1
                    continue
                if slot.stream == "attack":
                    ip, req = attack_ips[slot.client], build(ATTACK, rng, time.time())
                else:
                    ip, req = normal_ips[slot.client], mix.next(time.time())
                client, headers = clients.for_ip(ip)
                url = urls[target_turn % len(urls)]
                target_turn += 1
                stats.record_sent(req.kind)
                task = asyncio.ensure_future(_send(client, url, headers, req.kind, req.body, config.timeout, stats))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        if pacer.stopped():
            stats.stopped_by = "stop"
        elif stats.scheduled >= config.max_requests:
            stats.stopped_by = "max_requests"
        else:
            # The schedule ends at the last slot; the run lasts its whole duration.
            stats.stopped_by = "duration" if await pacer.wait_until(config.duration) else "stop"
        if in_flight:
            # Each request ends by its own timeout; after a stop only a short grace is given.
            if stats.stopped_by == "stop":
                await asyncio.wait(set(in_flight), timeout=STOP_GRACE)
            else:
                await _drain(set(in_flight), config.timeout + 1.0, stop)
    finally:
        leftover = [t for t in in_flight if not t.done()]
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.gather(*leftover, return_exceptions=True)
        stats.cancelled += len(leftover)
        await clients.aclose()
        stats.elapsed_s = clock() - pacer.start
    return stats


async def _drain(tasks: set[asyncio.Task[None]], timeout: float, stop: asyncio.Event | None) -> None:
    """Wait up to `timeout` for `tasks`; a stop request cuts that to STOP_GRACE."""
    all_done = asyncio.ensure_future(asyncio.wait(tasks))
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    try:
        await asyncio.wait({all_done} | ({stopper} if stopper else set()), timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if stopper is not None and stopper.done() and not all_done.done():
            await asyncio.wait(tasks, timeout=STOP_GRACE)
    finally:
        all_done.cancel()
        if stopper is not None:
            stopper.cancel()


# ---------------------------------------------------------------- command line

HELP_EPILOG = f"""\
The prover allows each client IP {PROVER_LIMIT_PER_MINUTE} requests per minute, so normal
traffic stays clear of 429s only while --clients >= 6 x --rate: above 10 req/s that means
more than 60 clients (e.g. --rate 20 --clients 120). Attack IPs (--attack-ips, each at
--attack-rate req/s) are meant to exceed the limit: that is the DDoS incident.

--ip-mode xff puts documentation-range addresses in X-Forwarded-For (header text only;
{", ".join(DOC_RANGES)}; at most {MAX_XFF_IPS} IPs in all).
--ip-mode source binds 127.0.0.2..127.0.0.254 instead (at most {MAX_SOURCE_IPS} IPs) and
sends no header.

Only loopback targets are accepted (127.0.0.0/8, ::1, localhost); any other is refused
with exit code 2. A target without a path gets {DEFAULT_PATH}.

Exit codes: 0 after a run (also when stopped by SIGTERM/SIGINT), 1 when the report cannot
be written, 2 for bad arguments or a refused target.
"""


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def build_parser(prog: str = "x402console traffic") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Send paced payment-proof requests (valid, invalid and attack) to loopback provers.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--target", action="append", metavar="URL",
                   help=f"prover URL, repeatable (round-robin); default {DEFAULT_TARGET}")
    p.add_argument("--rate", type=_float, default=5.0, metavar="REQ_PER_S",
                   help="total normal requests per second (default 5; >10 req/s needs >60 clients)")
    p.add_argument("--clients", type=_int, default=50, metavar="N",
                   help="distinct normal client IPs, used in turn (default 50; keep >= 6 x rate)")
    p.add_argument("--ip-mode", choices=("xff", "source"), default="xff",
                   help="how the client IP travels: X-Forwarded-For header or bound 127.0.0.x (default xff)")
    p.add_argument("--invalid-ratio", type=_float, default=0.1, metavar="R",
                   help="share of normal requests that are invalid, 0..1 (default 0.1)")
    p.add_argument("--attack-ips", type=_int, default=0, metavar="K", help="extra attacking IPs (default 0)")
    p.add_argument("--attack-rate", type=_float, default=2.0, metavar="REQ_PER_S",
                   help="requests per second from each attacking IP (default 2)")
    p.add_argument("--duration", type=_float, default=60.0, metavar="SECONDS",
                   help=f"stop after this many seconds (default 60, at most {MAX_DURATION:.0f})")
    p.add_argument("--max-requests", type=_int, default=100_000, metavar="N",
                   help="stop after this many requests, dropped ones included (default 100000)")
    p.add_argument("--timeout", type=_float, default=10.0, metavar="SECONDS",
                   help="total time allowed per request (default 10)")
    p.add_argument("--max-in-flight", type=_int, default=64, metavar="N",
                   help="outstanding requests at most; a request finding it full is dropped (default 64)")
    p.add_argument("--seed", type=_int, default=None, help="random seed for a repeatable mix")
    p.add_argument("--report-json", type=Path, default=None, metavar="PATH", help="write the statistics here at the end")
    return p


def _config_from_args(args: argparse.Namespace) -> TrafficConfig:
    return TrafficConfig(
        targets=args.target or [DEFAULT_TARGET],
        rate=args.rate,
        clients=args.clients,
        ip_mode=args.ip_mode,
        invalid_ratio=args.invalid_ratio,
        attack_ips=args.attack_ips,
        attack_rate=args.attack_rate,
        duration=args.duration,
        max_requests=args.max_requests,
        timeout=args.timeout,
        max_in_flight=args.max_in_flight,
        seed=args.seed,
    )


def _report(config: TrafficConfig, stats: TrafficStats) -> dict:
    cfg = asdict(config)
    cfg["invalid_kinds"] = list(config.invalid_kinds)
    return {"config": cfg, "stats": stats.to_dict()}


async def _run(config: TrafficConfig) -> TrafficStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no support
            pass
    try:
        return await generate(config, stop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_traffic(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return int(exc.code or 0)
    config = _config_from_args(args)
    try:
        config.validate()
    except TrafficConfigError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    report_path: Path | None = args.report_json
    if report_path is not None and not report_path.parent.is_dir():
        print(f"{parser.prog}: error: --report-json directory {report_path.parent} does not exist", file=sys.stderr)
        return 2
    if config.per_client_per_minute() > PROVER_LIMIT_PER_MINUTE:
        print(
            f"{parser.prog}: note: {config.rate:g} req/s over {config.clients} clients is "
            f"{config.per_client_per_minute():.0f} req/min per client, above the prover's "
            f"{PROVER_LIMIT_PER_MINUTE}/min: normal traffic will get 429s "
            f"(use --clients {math.ceil(config.rate * 60 / PROVER_LIMIT_PER_MINUTE)} or more to avoid it)",
            file=sys.stderr,
        )
    stats = asyncio.run(_run(config))
    print(stats.summary_line(), file=sys.stderr)
    if stats.sent and not stats.completed:
        print(f"{parser.prog}: note: no request got an answer; is the target up?", file=sys.stderr)
    if report_path is not None:
        try:
            tmp = report_path.with_name(report_path.name + ".tmp")
            tmp.write_text(json.dumps(_report(config, stats), indent=2) + "\n")
            tmp.replace(report_path)
        except OSError as exc:
            print(f"{parser.prog}: error: cannot write report {report_path}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(run_traffic(sys.argv[1:]))
