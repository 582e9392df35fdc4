"""Injected faults: their parameters, and the real effects each one has on the process.

Each fault produces the symptoms of one runbook incident through a real mechanism, never by
writing the symptom directly: the process really exits, sockets really stay unanswered, RSS
really grows, pages of proofs.db are really overwritten, the vk file is really edited.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from x402console.drill.sim.keys import BASE_FIELD, VkFile


class FaultError(ValueError):
    """Unknown fault or bad parameters (the control API answers 400)."""


@dataclass(frozen=True)
class Param:
    kind: type
    default: Any
    low: float
    high: float


SPECS: dict[str, dict[str, Param]] = {
    "crash": {"exit_code": Param(int, 2, 0, 255), "after_seconds": Param(float, 0.0, 0, 86400)},
    "hang": {},
    "error_ratio": {"ratio": Param(float, 0.3, 0, 1)},
    "latency": {"seconds": Param(float, 6.0, 0, 600), "jitter": Param(float, 0.5, 0, 600)},
    "invalid_proofs": {"ratio": Param(float, 1.0, 0, 1)},
    "db_corruption": {"pages": Param(int, 4, 1, 1024)},
    "memory_leak": {"mb_per_second": Param(float, 5.0, 0.01, 1024), "max_mb": Param(int, 400, 1, 16384)},
    "vk_change": {},
}
FAULT_NAMES = tuple(SPECS)

# what a failing prove step reports under error_ratio: resource trouble inside gnark's prover
INJECTED_PROVE_ERRORS = (
    # (no out-of-memory text here: a high error rate must not read as Incident 7, Memory Leak)
    "groth16: prove: msm: worker pool closed",
    "constraint #20519 is not satisfied: [eddsa.Verify] 0 == 1",
    "solver: hint github.com/consensys/gnark/std/math/bits.nNaf failed: context deadline exceeded",
)
MAX_HELD_CONNECTIONS = 1024


def normalize(name: str, params: Any) -> dict[str, Any]:
    """The params with defaults filled in, or FaultError with a readable reason."""
    if name not in SPECS:
        raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise FaultError(f"{name}: params must be a JSON object")
    spec = SPECS[name]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise FaultError(f"{name}: unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(spec) or 'none'}")
    out: dict[str, Any] = {}
    for key, p in spec.items():
        value = params.get(key, p.default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FaultError(f"{name}: {key} must be a number")
        if p.kind is int:
            if float(value) != int(value):
                raise FaultError(f"{name}: {key} must be an integer")
            value = int(value)
        else:
            value = float(value)
        if not p.low <= value <= p.high:
            raise FaultError(f"{name}: {key} must be between {p.low:g} and {p.high:g}")
        out[key] = value
    return out


def parse_fault_arg(text: str) -> tuple[str, dict[str, Any]]:
    """--fault NAME[=JSON]."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    params: Any = {}
    if sep:
        try:
            params = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise FaultError(f"--fault {name}: params are not valid JSON ({exc.msg})") from None
    return name, normalize(name, params)


class MemoryLeak:
    """Holds ever more touched memory so RSS (not just virtual size) grows."""

    TICK_S = 0.1

    def __init__(self) -> None:
        self.chunks: list[bytearray] = []
        self.task: asyncio.Task[None] | None = None

    @property
    def held_mb(self) -> float:
        return sum(len(c) for c in self.chunks) / (1 << 20)

    def start(self, mb_per_second: float, max_mb: int) -> None:
        self.stop(release=False)
        self.task = asyncio.get_running_loop().create_task(self._grow(mb_per_second, max_mb))

    async def _grow(self, mb_per_second: float, max_mb: int) -> None:
        per_tick = int(mb_per_second * (1 << 20) * self.TICK_S)
        limit = max_mb << 20
        while True:
            held = sum(len(c) for c in self.chunks)
            n = min(per_tick, limit - held)
            if n > 0:
                # a one-byte pattern repeated is a memset: every page gets written, hence resident
                self.chunks.append(bytearray(b"\xa5") * n)
            await asyncio.sleep(self.TICK_S)

    def stop(self, release: bool = True) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if release:
            self.chunks.clear()


class FaultController:
    def __init__(
        self,
        *,
        vk: VkFile,
        damage_db: Callable[[int], Awaitable[list[int]]],
        on_crash: Callable[[int], None],
        rng: random.Random | None = None,
    ) -> None:
        self.active: dict[str, dict[str, Any]] = {}
        self.vk = vk
        self._damage_db = damage_db
        self._on_crash = on_crash
        self.rng = rng or random.Random()
        self.leak = MemoryLeak()
        self._vk_original: bytes | None = None
        self._unhung = asyncio.Event()
        self._unhung.set()
        self.held_connections = 0
        self.damaged_pages: list[int] = []
        self._crash_handle: asyncio.TimerHandle | None = None

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.active.items()}

    async def set(self, name: str, params: Any) -> dict[str, Any]:
        norm = normalize(name, params)
        loop = asyncio.get_running_loop()
        if name == "crash":
            # leave time for the control API to answer the request that asked for the crash
            delay = max(norm["after_seconds"], 0.05)
            if self._crash_handle is not None:
                self._crash_handle.cancel()
            self._crash_handle = loop.call_later(delay, self._on_crash, norm["exit_code"])
        elif name == "hang":
            self._unhung.clear()
        elif name == "db_corruption":
            try:
                self.damaged_pages = await self._damage_db(norm["pages"])
            except Exception as exc:
                raise FaultError(f"db_corruption: could not damage the database: {exc}") from None
        elif name == "memory_leak":
            self.leak.start(norm["mb_per_second"], norm["max_mb"])
        elif name == "vk_change":
            try:
                self._change_vk()
            except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
                raise FaultError(f"vk_change: cannot edit {self.vk.path}: {exc}") from None
        self.active[name] = norm
        return norm

    async def clear(self, name: str) -> None:
        if name not in SPECS:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
        if name not in self.active:
            return
        del self.active[name]
        if name == "crash" and self._crash_handle is not None:
            self._crash_handle.cancel()
            self._crash_handle = None
        elif name == "hang":
            self._unhung.set()
        elif name == "memory_leak":
            self.leak.stop()
        elif name == "vk_change":
            self._restore_vk()
        # db_corruption: the damage stays; recovery is the trainee's job (restore a backup)

    async def clear_all(self) -> None:
        for name in list(self.active):
            await self.clear(name)

    def shutdown(self) -> None:
        self.leak.stop()
        self._unhung.set()

    # -- per-request questions ----------------------------------------------------------------
    @property
    def hanging(self) -> bool:
        return not self._unhung.is_set()

    async def wait_until_unhung(self) -> None:
        await self._unhung.wait()

    def extra_latency(self) -> float:
        p = self.active.get("latency")
        if not p:
            return 0.0
        return max(0.0, p["seconds"] + self.rng.uniform(-p["jitter"], p["jitter"]))

    def injected_prove_error(self) -> str | None:
        p = self.active.get("error_ratio")
        if p and self.rng.random() < p["ratio"]:
            return self.rng.choice(INJECTED_PROVE_ERRORS)
        return None

    def tamper_proof(self) -> bool:
        p = self.active.get("invalid_proofs")
        return bool(p) and self.rng.random() < p["ratio"]

    # -- vk edits -----------------------------------------------------------------------------
    def _change_vk(self) -> None:
        if self._vk_original is not None:
            return
        original = self.vk.path.read_bytes()
        vk = json.loads(original)
        # a different delta is what a botched or foreign phase-2 contribution changes
        x = int(vk["vk_delta_2"][0][0])
        vk["vk_delta_2"][0][0] = str((x + self.rng.randrange(1, 1 << 64)) % BASE_FIELD)
        self.vk.write(json.dumps(vk, indent=1).encode() + b"\n")
        self._vk_original = original

    def _restore_vk(self) -> None:
        if self._vk_original is not None:
            self.vk.write(self._vk_original)
            self._vk_original = None


def hard_exit(code: int) -> None:
    os._exit(code)
