"""The embedded backend: one SQLite file in WAL mode, under the project's .kiln/ by default."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kiln.errors import RegistryError
from kiln.registry.backend import behind_by
from kiln.registry.rows import Columns
from kiln.registry.schema import MIGRATIONS, migrate


class SqliteSession:
    """The open transaction's statements on the SQLite connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Columns | None:
        row: Columns | None = self._conn.execute(sql, params).fetchone()
        return row


class SqliteBackend:
    """Writers take SQLite's write lock at BEGIN (IMMEDIATE), so they queue across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
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
    def transaction(self) -> Iterator[SqliteSession]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot write to the registry {self.path}: {exc}") from exc
        try:
            yield SqliteSession(self._conn)
        except sqlite3.DatabaseError as exc:
            self._conn.execute("ROLLBACK")
            raise RegistryError(f"cannot write to the registry {self.path}: {exc}") from exc
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._conn.execute("ROLLBACK")
            raise RegistryError(f"cannot write to the registry {self.path}: {exc}") from exc

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Columns]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples: for bulk reads, where sqlite3.Row costs more than the query."""
        try:
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc

    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def ids_follow(self, table: str) -> None:
        return None  # AUTOINCREMENT counts the ids a copy wrote itself

    def after_bulk_load(self) -> None:
        return None  # SQLite plans kiln's queries from their indexes alone (schema.py)

    def check(self) -> str:
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    def _migrate(self) -> None:
        if behind_by(self.location, self.schema_version(), len(MIGRATIONS)):
            with self.transaction():
                migrate(self._conn)
