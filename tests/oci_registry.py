"""A throwaway OCI registry from Debian's docker-registry package (Distribution 2.8) on 127.0.0.1.

The Docker engine trusts registries on 127.0.0.0/8 without TLS, so `docker push 127.0.0.1:PORT/...`
works as against a team's registry. Tests stop and start it to see pushes fail and recover.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

#: The skip reason when Debian's docker-registry is not installed (CI turns it into a failure).
MISSING = "missing tool: docker-registry (Debian's docker-registry package)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OciRegistry:
    """`docker-registry serve` with its storage in a temporary directory."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="kiln-oci-"))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config = self.root / "config.yml"
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            f"http:\n  addr: {self.address}\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.root / "log").open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "serve", str(self.config)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not answer on {self.address}; see {log.name}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
            self._proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def throwaway_registry() -> Iterator[OciRegistry]:
    """A started registry, removed afterwards; the test skips (fails in CI) without it."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip(MISSING)
    registry = OciRegistry(binary)
    try:
        registry.start()
        yield registry
    finally:
        registry.remove()
