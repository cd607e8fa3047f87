"""Cross-process locks: one bake or one deploy of a role at a time.

With a SQLite registry they are fcntl locks on files under .kiln/locks (one machine); with a
PostgreSQL registry, advisory locks in its database, so they hold across every machine sharing it.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiln.model import Project

__all__ = ["file_lock", "project_lock"]


def project_lock(
    project: Project, name: str, on_wait: Callable[[], None] | None = None
) -> AbstractContextManager[None]:
    """Hold the project's lock called name wherever its registry lives (see the module)."""
    if project.registry_path is None:
        # Imported here: a SQLite project never loads psycopg.
        from kiln.registry.postgres_backend import advisory_lock

        return advisory_lock(project.registry_url, name, on_wait)
    return file_lock(project.state_path / "locks" / f"{name}.lock", on_wait)


@contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on path; the OS drops it if the holder dies, even by kill -9.

    ``on_wait`` is called once, before blocking, when another process holds the lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
