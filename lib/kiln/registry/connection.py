"""The registry's SQLite connection: opening, migrating, transactions and reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kiln.errors import RegistryError
from kiln.registry.schema import MIGRATIONS, migrate


class Connection:
    """One SQLite file in WAL mode; the per-concern parts of Registry build on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(path, timeout=60, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout = 60000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(
                f"the registry {path} is not a usable SQLite database ({exc}); "
                "move it aside to start a new one, or restore it from a backup"
            ) from exc

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all of it is written, or none of it.

        Private: the connection never leaves the registry (Registry.transaction hands callers a
        Transaction instead), so that another backend can take SQLite's place.
        """
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot write to the registry {self.path}: {exc}") from exc
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._conn.execute("ROLLBACK")
                raise RegistryError(f"cannot write to the registry {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples: for bulk reads, where sqlite3.Row costs more than the query."""
        try:
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        current = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise RegistryError(
                f"the registry {self.path} has schema {current}, newer than this kiln "
                f"understands ({len(MIGRATIONS)}); upgrade kiln"
            )
        if current == len(MIGRATIONS):
            return
        with self._transaction() as conn:
            migrate(conn)

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])
