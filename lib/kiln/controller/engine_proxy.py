"""The Docker engine, as the sandbox sees it: one container's endpoints and nothing else.

The engine's own socket is root on the host (`docker run -v /:/host` is one request away), so it
never enters the sandbox. Instead the sandbox's /run/docker.sock is this proxy: it reads each
request's first line, lets through only what Ansible's docker connection (and Mitogen's) needs
against the one container the run targets, and answers everything else 403. One request per
connection (it asks the engine to close after each), so every request is seen; an exec's
hijacked stream is passed through as it is.
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


def _read_head(client: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(4096)
        if not chunk:
            break
        head += chunk
        if len(head) > _HEAD_MAX:
            break
    return head


def _close_after(head: bytes) -> bytes:
    """The request head asking the engine to close after its answer, unless it upgrades."""
    top, sep, rest = head.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    if any(line.lower().startswith(b"upgrade:") for line in lines[1:]):
        return head
    lines = [lines[0], *(ln for ln in lines[1:] if not ln.lower().startswith(b"connection:"))]
    return b"\r\n".join([*lines, b"Connection: close"]) + sep + rest


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
            head = _read_head(client)
            request = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = request.partition(" ")
            path = rest.rpartition(" ")[0]
            if not allowed(method, path, self.containers):
                self.refused.append(request)
                body = b'{"message": "kiln: the sandbox may reach only its builder"}'
                with contextlib.suppress(OSError):
                    client.sendall(FORBIDDEN % (len(body), body))
                return
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as engine:
                engine.connect(str(self._engine))
                engine.sendall(_close_after(head))
                splice(client, engine)
