"""Throughput of the log hot path: sanitize_line + parse_log_line, lines per second.

Run: .venv/bin/python bench/bench_parsers.py [--lines N] [--runs R]
Prints medians of R runs for a realistic mix of prover lines (gin access, stdlib, logrus JSON),
plain and hostile (escape sequences, bidi, invalid UTF-8) side by side. Never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Callable

from x402console.sources.logparse import parse_log_line
from x402console.sources.sanitize import sanitize_line

IPS = [f"203.0.113.{i}" for i in range(1, 60)] + [f"198.51.100.{i}" for i in range(1, 30)]
STDLIB = [
    "Generating proof for {ip}",
    "Proof generated in {ms}ms",
    "✓ Proof served from cache for {ip}",
    "Validation failed from {ip}: amount must be positive",
    "Invalid request from {ip}: invalid character 'x' looking for beginning of value",
    "Proof generation failed: constraint #12 is not satisfied",
    "Signature verification failed: invalid signature",
]


def _gin(rng: random.Random, ip: str, path: str = "/generate-proof") -> str:
    status = rng.choice([200, 200, 200, 200, 400, 429, 429, 500])
    latency = rng.choice(["1.234567ms", "734.12ms", "12.5µs", "2.001s", "850ns"])
    return f'[GIN] 2025/11/15 - 10:30:01 | {status:3d} | {latency:>13} | {ip:>15} | POST     "{path}"'


def _stdlib(rng: random.Random, ip: str) -> str:
    msg = rng.choice(STDLIB).format(ip=ip, ms=rng.randint(50, 3000))
    return f"2025/11/15 10:30:01 {msg}"


def _json(rng: random.Random, ip: str, message: str = "Input validation failed") -> str:
    entry = rng.choice([
        {"client_ip": ip, "field": "amount", "level": "warning", "message": message, "operation": "validation",
         "reason": "must be positive", "timestamp": "2025-11-15T10:30:00Z"},
        {"actual_amount": "5", "client_ip": ip, "duration_ms": rng.randint(50, 3000), "level": "info",
         "message": "Proof generated successfully", "min_amount": "1", "operation": "proof_generation",
         "success": True, "timestamp": "2025-11-15T10:30:00Z"},
        {"client_ip": ip, "level": "warning", "message": "Rate limit exceeded", "operation": "rate_limit",
         "timestamp": "2025-11-15T10:30:00Z"},
    ])
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def plain_lines(n: int, seed: int = 402) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ip = rng.choice(IPS)
        kind = rng.random()
        line = _gin(rng, ip) if kind < 0.4 else _stdlib(rng, ip) if kind < 0.7 else _json(rng, ip)
        out.append(line.encode("utf-8") + b"\n")
    return out


HOSTILE_PAYLOADS = [
    "\x1b]0;pwned\x07",
    "\x1b]52;c;cm0gLXJmIH4K\x07",
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "\x1b[2J\x1b[H",
    "\x1b[31mred\x1b[0m",
    "\x9b6n",
    "\u202egnp.exe",
    "\x1bP1$r0m\x1b\\",
    "a\tb\rc\x08d\x00",
]


def hostile_lines(n: int, seed: int = 402) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ip = rng.choice(IPS)
        payload = rng.choice(HOSTILE_PAYLOADS)
        kind = rng.random()
        if kind < 0.4:
            line = _gin(rng, ip, "/generate-proof?x=" + payload)
        elif kind < 0.7:
            line = _stdlib(rng, ip) + " " + payload
        else:
            line = _json(rng, ip, "Input validation failed " + payload)
        data = line.encode("utf-8")
        if rng.random() < 0.2:
            data += b" \xff\xfe\xc3"  # invalid UTF-8
        out.append(data + b"\n")
    return out


def _median_rate(fn: Callable[[], None], count: int, runs: int) -> float:
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        rates.append(count / elapsed if elapsed > 0 else float("inf"))
    return statistics.median(rates)


def measure(lines: list[bytes], runs: int) -> dict[str, float]:
    texts = [sanitize_line(line) for line in lines]

    def sanitize_only() -> None:
        for line in lines:
            sanitize_line(line)

    def parse_only() -> None:
        for text in texts:
            parse_log_line(text, "prover-1")

    def both() -> None:
        for line in lines:
            parse_log_line(sanitize_line(line), "prover-1")

    return {
        "sanitize_line": _median_rate(sanitize_only, len(lines), runs),
        "parse_log_line": _median_rate(parse_only, len(lines), runs),
        "sanitize+parse": _median_rate(both, len(lines), runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    plain = measure(plain_lines(args.lines), args.runs)
    hostile = measure(hostile_lines(args.lines), args.runs)
    print(f"{args.lines} lines per run, median of {args.runs} runs (lines/s)")
    print(f"{'stage':<16} {'plain':>12} {'hostile':>12}")
    for stage in plain:
        print(f"{stage:<16} {plain[stage]:>12,.0f} {hostile[stage]:>12,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
