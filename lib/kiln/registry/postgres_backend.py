"""The team backend: one PostgreSQL database shared by every machine that bakes (psycopg 3).

Writers queue on one transaction-scoped advisory lock, as SQLite's writers queue on its file lock:
the registry's read-then-write steps (allocate a number, move a channel) keep the same meaning on
every machine. Role and deploy locks are session advisory locks (advisory_lock): PostgreSQL drops
them when their holder's connection ends, even by kill -9, like fcntl locks on one machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from kiln.errors import RegistryError
from kiln.registry.backend import behind_by
from kiln.registry.postgres_schema import POSTGRES_MIGRATIONS
from kiln.registry.rows import Columns

#: The advisory lock every write transaction takes first (b"kiln" as a number); role and deploy
#: locks use hashes of their names, in the same key space of the registry's database.
_WRITE_LOCK = 0x6B696C6E
#: Seconds to wait for the server before naming it in an error (the default waits forever).
_CONNECT_TIMEOUT_S = 10


def display_url(url: str) -> str:
    """The URL as messages show it: without a password."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


@lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    """The registry's SQL (qmark placeholders) in psycopg's paramstyle."""
    return sql.replace("%", "%%").replace("?", "%s")


def _connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    try:
        # Client-side binding, as SQLite's: `? IS NULL` needs no type for a None parameter.
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=_CONNECT_TIMEOUT_S,
            cursor_factory=psycopg.ClientCursor,
            row_factory=dict_row,
        )
    except psycopg.Error as exc:
        raise RegistryError(f"cannot reach the registry {display_url(url)}: {exc}") from exc


class PostgresSession:
    """The open transaction's statements on the PostgreSQL connection."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(_pg(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_pg(sql), rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Columns | None:
        return self._conn.execute(_pg(sql), params).fetchone()


class PostgresBackend:
    """A registry in a PostgreSQL database, migrated on first use."""

    def __init__(self, url: str) -> None:
        self.location = display_url(url)
        self._conn = _connect(url)
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[PostgresSession]:
        with self._failures("write to"), self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            yield PostgresSession(self._conn)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Columns]:
        with self._failures("read"):
            return list(self._conn.execute(_pg(sql), params).fetchall())

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._failures("read"), psycopg.ClientCursor(self._conn, row_factory=tuple_row) as cur:
            return cur.execute(_pg(sql), params).fetchall()

    def schema_version(self) -> int:
        """The migrations applied (0 for an empty database)."""
        with self._failures("read"):
            found = self._conn.execute("SELECT to_regclass('kiln_schema') AS t").fetchone()
            if not (found and found["t"]):
                return 0
            row = self._conn.execute("SELECT max(version) AS version FROM kiln_schema").fetchone()
        return int(row["version"] or 0) if row else 0

    def ids_follow(self, table: str) -> str:
        # An identity column's sequence does not see ids written explicitly: move it past them.
        return (
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
            f" (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
        )

    def after_bulk_load(self) -> None:
        # Without statistics and a visibility map, history over a fresh copy sorts a heap scan
        # instead of reading the covering index only (measured by bench/registry_backends.py: 7
        # to 9 ms instead of 2 ms for 10,000 versions); autovacuum had not run a minute later.
        with self._failures("vacuum"):
            self._conn.execute("VACUUM (ANALYZE)")

    def check(self) -> str:
        current = self.schema_version()
        if current != len(POSTGRES_MIGRATIONS):
            return f"schema {current}, expected {len(POSTGRES_MIGRATIONS)}"
        return "ok"

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            detail = str(exc).strip() or type(exc).__name__
            if isinstance(exc, psycopg.OperationalError):
                detail += " (is the PostgreSQL server up and reachable from here?)"
            raise RegistryError(f"cannot {doing} the registry {self.location}: {detail}") from exc

    def _migrate(self) -> None:
        # Read first, without the write lock: an up-to-date database (every open but the
        # first) costs one query, not a place in the writers' queue.
        if not behind_by(self.location, self.schema_version(), len(POSTGRES_MIGRATIONS)):
            return
        with self.transaction():
            self._conn.execute("CREATE TABLE IF NOT EXISTS kiln_schema (version INTEGER NOT NULL)")
            # Re-read under the write lock: another machine may have migrated meanwhile.
            current = self.schema_version()
            for number, statements in enumerate(POSTGRES_MIGRATIONS[current:], start=current + 1):
                for statement in statements:
                    self._conn.execute(statement)
                self._conn.execute("INSERT INTO kiln_schema (version) VALUES (%s)", (number,))


@contextmanager
def advisory_lock(url: str, name: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock of name on a connection of its own, across machines.

    ``on_wait`` is called once, before blocking, when another session holds it. The server drops
    the lock when the connection ends, so a holder killed by -9 never leaves it behind.
    """
    conn = _connect(url)
    sql = "SELECT {}(hashtextextended(%s, 0)) AS held"
    key = (f"kiln:{name}",)
    try:
        row = conn.execute(sql.format("pg_try_advisory_lock"), key).fetchone()
        if not (row and row["held"]):
            if on_wait is not None:
                on_wait()
            conn.execute(sql.format("pg_advisory_lock"), key)
    except psycopg.Error as exc:
        conn.close()
        raise RegistryError(
            f"cannot take the lock {name!r} in the registry {display_url(url)}: {exc}"
        ) from exc
    except BaseException:  # Ctrl-C while waiting: give up the place in the queue
        conn.close()
        raise
    try:
        yield
    finally:
        conn.close()  # ends the session, and with it the lock
