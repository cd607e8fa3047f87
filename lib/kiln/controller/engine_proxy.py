"""The Docker engine, as the sandbox sees it: one container's endpoints and nothing else.

The engine's own socket is root on the host (`docker run -v /:/host` is one request away), so it
never enters the sandbox. Instead the sandbox's /run/docker.sock is this proxy: it reads each
request's first line, lets through only what Ansible's docker connection (and Mitogen's) needs
against the one container the run targets, and answers everything else 403. One request per
connection: the engine is asked to close after its answer, so it never reads a second request
the proxy has not seen. The one exception is an exec's start, which becomes the exec's raw
stream: its body alone goes first, and the rest only once the engine has switched protocols.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterable
from pathlib import Path

from kiln.controller.bridge import Acceptor, splice

_VERSION = r"(?:/v[0-9.]+)?"
_ANY = re.compile(rf"^{_VERSION}/(?:_ping|version)(?:\?.*)?$")
_EXEC = re.compile(rf"^{_VERSION}/exec/[0-9a-f]{{64}}/(?:start|json|resize)(?:\?.*)?$")
_EXEC_START = re.compile(rf"^{_VERSION}/exec/[0-9a-f]{{64}}/start(?:\?.*)?$")
_CONTAINER = re.compile(rf"^{_VERSION}/containers/([^/?]+)/(json|exec|archive|resize)(?:\?.*)?$")
_HEAD_MAX = 64 * 1024
FORBIDDEN = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)


def allowed(method: str, path: str, containers: Iterable[str]) -> bool:
    """May the sandbox send `method path` to the engine, given the one container it targets?"""
    if _ANY.match(path) or _EXEC.match(path):
        return True
    match = _CONTAINER.match(path)
    if match is None:
        return False
    wanted = match.group(1)
    for name in containers:
        if wanted == name or (len(wanted) >= 12 and len(name) == 64 and name.startswith(wanted)):
            return True
    return False


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    """(a message's head up to its blank line, the bytes read after it); head is b"" if none."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk or len(data) > _HEAD_MAX:
            return b"", b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _headers(head: bytes) -> list[bytes]:
    return head.rstrip(b"\r\n").split(b"\r\n")[1:]


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in _headers(head):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _close_after(head: bytes) -> bytes:
    """The request head asking the engine to close after its answer (and not to upgrade).

    The engine then reads no second request from the connection: one the proxy has not seen.
    """
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    kept = [
        line
        for line in lines[1:]
        if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"upgrade")
    ]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n"


def _read_exactly(conn: socket.socket, have: bytes, length: int) -> bytes:
    while len(have) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        have += chunk
    return have


class EngineProxy(Acceptor):
    """Listens on path (inside the run's directory) and forwards allowed requests to engine."""

    def __init__(self, path: Path, engine: Path, containers: Iterable[str]) -> None:
        self.containers = tuple(containers)
        self.refused: list[str] = []
        self._engine = engine
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        path.chmod(0o600)
        listener.listen(16)
        super().__init__(listener)

    def handle(self, client: socket.socket) -> None:
        with client:
            head, rest = _read_head(client)
            request = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, target = request.partition(" ")
            path = target.rpartition(" ")[0]
            if not head or not allowed(method, path, self.containers):
                self.refused.append(request or "(no request)")
                body = b'{"message": "kiln: the sandbox may reach only its builder"}'
                with contextlib.suppress(OSError):
                    client.sendall(FORBIDDEN % (len(body), body))
                return
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as engine:
                engine.connect(str(self._engine))
                if _EXEC_START.match(path) and _header(head, b"upgrade") is not None:
                    self._exec_stream(client, engine, head, rest)
                else:
                    engine.sendall(_close_after(head) + rest)
                    splice(client, engine)

    def _exec_stream(
        self, client: socket.socket, engine: socket.socket, head: bytes, rest: bytes
    ) -> None:
        """An exec's start, which becomes its raw stream once the engine answers 101.

        The request's body is sent alone; until the engine has switched protocols, nothing else
        the client sent goes on (on an error the engine would read it as a next request).
        """
        length = _header(head, b"content-length")
        if length is None or not length.isdigit():
            return  # a chunked or unsized body: not what a docker client sends here
        data = _read_exactly(client, rest, int(length))
        body, extra = data[: int(length)], data[int(length) :]
        engine.sendall(head + body)
        answer, after = _read_head(engine)
        if not answer.startswith(b"HTTP/1.1 101"):  # an error: its body, and the end
            size = _header(answer, b"content-length") or b"0"
            after = _read_exactly(engine, after, int(size)) if size.isdigit() else after
            client.sendall(answer + after)
            return
        client.sendall(answer + after)
        if extra:
            engine.sendall(extra)
        splice(client, engine)
