"""A throwaway PostgreSQL cluster from Debian's postgresql package, on a unix socket only.

Tests start one per pytest worker (tests/conftest.py's `postgres` fixture) and give each test a
database of its own; a test that stops the server (a registry that goes away) starts its own.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

#: The skip reason when Debian's postgresql is not installed (CI turns it into a failure).
MISSING = "missing tool: postgresql (initdb and pg_ctl from Debian's postgresql package)"
_names = itertools.count(1)


def server_bin() -> Path | None:
    """The directory of initdb and pg_ctl (Debian keeps them off PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """initdb, pg_ctl start and stop, and databases on demand; no TCP port at all."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Not under pytest's tmp_path: its 0700 parents would keep the postgres user out.
        self.root = Path(tempfile.mkdtemp(prefix="kiln-pg-"))
        self.root.chmod(0o755)
        self.data, self.socket, self.log = self.root / "data", self.root / "sock", self.root / "log"
        self.socket.mkdir()
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "kiln", "--no-sync")

    def start(self) -> None:
        options = f"-k {self.socket} -c listen_addresses= -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """Stop at once, as a crash or a pulled cable would: sessions are cut mid-command."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://kiln@/{database}?host={self.socket}"

    def new_database(self) -> str:
        """A fresh, empty database, and its URL."""
        name = f"kiln_{os.getpid()}_{next(_names)}"
        self._run("createdb", "-h", str(self.socket), "-U", "kiln", name)
        return self.url(name)

    def remove(self) -> None:
        # As the postgres user, as every pg_ctl here: run as root, pg_ctl refuses to stop it, and
        # the server outlives its deleted directory until it notices (about a minute).
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, text=True)


@contextmanager
def throwaway_cluster() -> Iterator[PostgresCluster]:
    """A started cluster, removed afterwards; the test skips (fails in CI) without postgresql."""
    bindir = server_bin()
    if bindir is None:
        pytest.skip(MISSING)
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
