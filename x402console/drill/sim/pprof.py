"""/debug/pprof/* for the simulator, opt-in with --pprof (the real prover has no such routes).

Go's pprof serves protobuf by default; a Python process has no Go profile to give, so every
endpoint answers with the text forms (what Go gives for ?debug=1/2), built from real data:
- goroutine: every Python thread's stack and every asyncio task's await chain (a task per
  connection plays the goroutine-per-connection role of net/http);
- heap: tracemalloc's top allocation sites (tracing starts with --pprof, so the leak is visible);
- profile?seconds=N: cProfile of the event loop thread for N seconds (default 30, at most 30).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import html
import io
import os
import pstats
import sys
import threading
import tracemalloc
from collections import Counter
from types import FrameType
from typing import Any

from x402console.drill.sim.httpserver import Request, Response

TEXT = "text/plain; charset=utf-8"
MAX_PROFILE_SECONDS = 30
TRACE_FRAMES = 8


def _frame_lines(frames: list[FrameType]) -> list[tuple[str, str]]:
    """(function, file:line) innermost first, the order Go prints stacks in."""
    out = []
    for f in reversed(frames):
        code = f.f_code
        module = f.f_globals.get("__name__", "?")
        out.append((f"{module}.{getattr(code, 'co_qualname', code.co_name)}", f"{code.co_filename}:{f.f_lineno}"))
    return out


def _thread_stack(frame: FrameType | None) -> list[FrameType]:
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames


def _task_stack(task: asyncio.Task[Any]) -> list[FrameType]:
    """Outermost-first frames of a task, following the await chain down to where it waits."""
    frames: list[FrameType] = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return frames


def goroutine_dump(loop: asyncio.AbstractEventLoop, debug: int) -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    stacks: list[tuple[str, str, list[tuple[str, str]]]] = []
    for ident, frame in sys._current_frames().items():
        stacks.append((f"thread {names.get(ident, ident)}", "running", _frame_lines(_thread_stack(frame))))
    for task in asyncio.all_tasks(loop):
        state = "select" if not task.done() else "dead"
        stacks.append((f"task {task.get_name()}", state, _frame_lines(_task_stack(task))))
    if debug >= 2:
        parts = []
        for i, (who, state, lines) in enumerate(stacks, 1):
            body = "".join(f"{fn}(...)\n\t{where}\n" for fn, where in lines)
            parts.append(f"goroutine {i} [{state}]: // {who}\n{body}")
        return "\n".join(parts)
    groups = Counter(tuple(lines) for _, _, lines in stacks)
    out = [f"goroutine profile: total {len(stacks)}\n"]
    for lines, count in groups.most_common():
        out.append(f"{count} @\n" + "".join(f"#\t{fn}\t{where}\n" for fn, where in lines) + "\n")
    return "".join(out)


def heap_profile() -> str:
    if not tracemalloc.is_tracing():
        tracemalloc.start(TRACE_FRAMES)
        return "heap profile: 0: 0 [0: 0] @ heap/1048576\n# tracing started now; request again to see allocations\n"
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>"))
    )
    stats = snapshot.statistics("traceback")
    total_count = sum(s.count for s in stats)
    total_size = sum(s.size for s in stats)
    current, peak = tracemalloc.get_traced_memory()
    out = [f"heap profile: {total_count}: {total_size} [{total_count}: {total_size}] @ heap/1048576\n"]
    for stat in stats[:50]:
        out.append(f"{stat.count}: {stat.size} [{stat.count}: {stat.size}] @\n")
        for fr in reversed(stat.traceback):
            out.append(f"#\t{fr.filename}:{fr.lineno}\n")
        out.append("\n")
    out.append("# runtime.MemStats\n")
    out.append(f"# Alloc = {current}\n# HeapAlloc = {current}\n# PeakAlloc = {peak}\n")
    out.append(f"# Sys = {_rss_bytes()}\n# NumGC = {sum(s['collections'] for s in gc.get_stats())}\n")
    return "".join(out)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Pprof:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._profiling = False
        if not tracemalloc.is_tracing():
            tracemalloc.start(TRACE_FRAMES)

    def routes(self) -> dict[str, Any]:
        return {
            "/debug/pprof/": self.index,
            "/debug/pprof/cmdline": self.cmdline,
            "/debug/pprof/goroutine": self.goroutine,
            "/debug/pprof/heap": self.heap,
            "/debug/pprof/profile": self.profile,
        }

    async def index(self, req: Request, ip: str) -> Response:
        items = "".join(
            f'<a href="{html.escape(name)}?debug=1">{html.escape(name)}</a><br>\n'
            for name in ("cmdline", "goroutine", "heap", "profile")
        )
        body = (
            "<html>\n<head>\n<title>/debug/pprof/</title>\n</head>\n<body>\n/debug/pprof/<br>\n<br>\n"
            f"Types of profiles available:<br>\n{items}</body>\n</html>\n"
        )
        return Response(200, body.encode(), "text/html; charset=utf-8")

    async def cmdline(self, req: Request, ip: str) -> Response:
        return Response(200, "\x00".join(sys.argv).encode("utf-8", "surrogateescape"), TEXT)

    async def goroutine(self, req: Request, ip: str) -> Response:
        debug = _int(req.query.get("debug"), 1)
        return Response(200, goroutine_dump(self.loop, debug).encode("utf-8", "replace"), TEXT)

    async def heap(self, req: Request, ip: str) -> Response:
        text = await asyncio.get_running_loop().run_in_executor(None, heap_profile)
        return Response(200, text.encode("utf-8", "replace"), TEXT)

    async def profile(self, req: Request, ip: str) -> Response:
        seconds = _int(req.query.get("seconds"), MAX_PROFILE_SECONDS)
        if seconds <= 0:
            seconds = MAX_PROFILE_SECONDS
        seconds = min(seconds, MAX_PROFILE_SECONDS)
        if self._profiling:
            return Response(500, b"Could not enable CPU profiling: cpu profiling already in use\n", TEXT)
        self._profiling = True
        profiler = cProfile.Profile()
        try:
            profiler.enable()
            try:
                await asyncio.sleep(seconds)
            finally:
                profiler.disable()
        finally:
            self._profiling = False
        buf = io.StringIO()
        buf.write(f"CPU profile of the event loop thread for {seconds}s\n")
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(60)
        return Response(200, buf.getvalue().encode("utf-8", "replace"), TEXT)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default
