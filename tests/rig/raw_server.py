"""A loopback TCP server that answers however a test wants, for clients facing broken or
hostile peers."""

from __future__ import annotations

import socket
import threading
from typing import Callable

__all__ = ["RawServer"]


class RawServer:
    """A loopback TCP server whose every connection is handled by `behave(conn)` on a thread."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.behave = behave
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self.requests.append(conn.recv(65536))
                    self.behave(conn)
                except OSError:
                    pass

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()
