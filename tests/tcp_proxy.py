"""A TCP proxy for fault tests (not a test module): forwards, stalls or cuts connections.

``TcpProxy(host, port)`` listens on 127.0.0.1 (a free port) and forwards every connection to
``host:port``. ``stall()`` makes it accept new connections and forward nothing (a server that
hangs during the handshake), ``forward()`` restores forwarding for new connections and
``cut()`` closes every connection it carries (a network cut mid-query). Threads only, every
wait bounded, and the proxy closes itself after ``lifetime`` seconds even if a test forgets.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from types import TracebackType

_POLL = 0.1  # how often blocked threads look at the closed flag (seconds)


class TcpProxy:
    """A thread-based proxy from 127.0.0.1:<free port> to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, lifetime: float = 120.0) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self._deadline = time.monotonic() + lifetime
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._stalling = False
        self._sockets: list[socket.socket] = []  # everything to close on cut()/close()
        self.accepted = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self._listener.listen(128)
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    # -- control ------------------------------------------------------------------------------

    def stall(self) -> None:
        """New connections are accepted and then left silent (no bytes either way)."""
        self._stalling = True

    def forward(self) -> None:
        """New connections are forwarded to the target again."""
        self._stalling = False

    def cut(self) -> int:
        """Close every connection the proxy carries now (both sides); how many sockets."""
        with self._lock:
            socks, self._sockets = self._sockets, []
        for s in socks:
            _hard_close(s)
        return len(socks)

    def close(self) -> None:
        """Stop listening, cut everything and wait (bounded) for the proxy's threads."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        for t in list(self._threads):
            if t is not threading.current_thread():
                t.join(timeout=2.0)

    @property
    def alive_threads(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True, name="tcp-proxy")  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def _running(self) -> bool:
        if time.monotonic() > self._deadline and not self._closed.is_set():
            self._closed.set()
            with contextlib.suppress(OSError):
                self._listener.close()
            self.cut()
        return not self._closed.is_set()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._sockets.append(s)

    def _accept_loop(self) -> None:
        while self._running():
            try:
                client, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._track(client)
            if self._stalling:
                continue  # held open, never read: the client waits for a server that says nothing
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
            except OSError:
                _hard_close(client)
                continue
            self._track(upstream)
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while self._running():
                readable, _w, _x = select.select([src], [], [], _POLL)
                if not readable:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket closed by cut()
            pass
        finally:
            _hard_close(src)
            _hard_close(dst)


def _hard_close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
