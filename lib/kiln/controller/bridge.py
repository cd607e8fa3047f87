"""A unix-socket bridge to a builder's SSH port, for a sandbox that has no network at all.

Outside the sandbox, `SocketToPort` accepts on a unix socket in the run's directory and connects
each client to the builder's forwarded port on the host's loopback. Inside (its own network
namespace, loopback only), `PortToSocket` listens on the same loopback address and port and
connects each client to that unix socket. ssh (or Mitogen) inside connects to 127.0.0.1:PORT as
Packer's inventory says, and reaches that one port of the host: nothing else of it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Self

_CHUNK = 65536


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy source to sink until source ends, then end sink's writing side."""
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def splice(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways between two connected sockets until both ends are done."""
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()


class Acceptor:
    """Accepts on a listening socket in a thread and handles each client in a thread of its own."""

    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    def handle(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Relay(Acceptor):
    """Connect each client with connect() and copy bytes both ways."""

    def __init__(self, listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
        self._connect = connect
        super().__init__(listener)

    def handle(self, client: socket.socket) -> None:
        with client:
            try:
                upstream = self._connect()
            except OSError:
                return
            with upstream:
                splice(client, upstream)


class SocketToPort(_Relay):
    """Outside the sandbox: unix socket path → host:port."""

    def __init__(self, path: Path, host: str, port: int) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        path.chmod(0o600)
        listener.listen(16)

        def connect() -> socket.socket:
            upstream = socket.create_connection((host, port), timeout=30)
            upstream.settimeout(None)  # the timeout was for connecting; a task may idle longer
            return upstream

        super().__init__(listener, connect)


class PortToSocket(_Relay):
    """Inside the sandbox: host:port (its own loopback) → unix socket path."""

    def __init__(self, host: str, port: int, path: Path) -> None:
        listener = socket.create_server((host, port), backlog=16)

        def connect() -> socket.socket:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(str(path))
            return upstream

        super().__init__(listener, connect)
