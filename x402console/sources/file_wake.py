"""Wake a file follower when one of its files changes, instead of polling it every 50 ms.

Linux reports regular files as always readable to select/poll/epoll (toolong issue #17), so a
follower either polls or asks inotify. Polling two idle log files every 50-250 ms cost an idle
console ~0.4 % of a core in its reader thread; an inotify watch costs nothing until a write.

The watch is only a hint: the follower still reads the files itself (FileTailer), so a missed
or coalesced event costs latency, never data, and `wait()` always returns after `timeout` so
the follower's own checks (rotation, a file that appears later) keep running. The directories
are watched rather than the files, so a file that is rotated, deleted and created again keeps
waking the follower. Where inotify is unavailable (not Linux, no libc, watch limit reached),
FileWake falls back to plain sleeping: the follower then polls as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["FileWake"]

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_DIR_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of NUL-padded name)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        lib.inotify_init1  # noqa: B018  (raises AttributeError where there is no inotify)
        return lib
    except (OSError, AttributeError):
        return None


class FileWake:
    """wait(timeout) returns True early when one of `paths` was written, created, moved or
    removed; interrupt() wakes a waiter from another thread (for a prompt stop)."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._names: dict[int, set[bytes]] = {}  # watch descriptor -> file names in that directory
        self._fd = -1
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_r, False)
        self._interrupted = threading.Event()
        self.error: str | None = None
        lib = _libc()
        if lib is None:
            self.error = "inotify is not available here; polling the log files"
            return
        fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            self.error = f"inotify_init1: {os.strerror(ctypes.get_errno())}; polling the log files"
            return
        self._fd = fd
        by_dir: dict[str, set[bytes]] = {}
        for p in paths:
            p = Path(os.path.abspath(p))
            by_dir.setdefault(str(p.parent), set()).add(os.fsencode(p.name))
        for directory, names in by_dir.items():
            wd = lib.inotify_add_watch(fd, os.fsencode(directory), _DIR_MASK)
            if wd < 0:
                err = ctypes.get_errno()
                # A missing directory is polled (the tailer's backoff reports it); a full watch
                # table (ENOSPC) likewise.
                self.error = f"cannot watch {directory}: {os.strerror(err or errno.EINVAL)}; polling it"
                continue
            self._names.setdefault(wd, set()).update(names)

    @property
    def watching(self) -> bool:
        return bool(self._names)

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when a watched file changed (or the kernel's
        event queue overflowed, which may hide one), False on timeout or interrupt."""
        if self._interrupted.is_set():
            return False
        if not self._names:
            self._interrupted.wait(timeout)
            return False
        try:
            ready, _, _ = select.select([self._fd, self._stop_r], [], [], timeout)
        except (OSError, ValueError):  # closed under us: the follower is stopping
            return False
        if self._stop_r in ready:
            return False
        return self._fd in ready and self._drain()

    def _drain(self) -> bool:
        relevant = False
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return relevant
            except OSError:
                return True
            if not data:
                return relevant
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                name = data[pos + _EVENT.size: pos + _EVENT.size + length].rstrip(b"\0")
                pos += _EVENT.size + length
                if mask & IN_Q_OVERFLOW or name in self._names.get(wd, ()):
                    relevant = True

    def interrupt(self) -> None:
        self._interrupted.set()
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self._fd, self._stop_r, self._stop_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._stop_r = self._stop_w = -1
        self._names.clear()
