"""What a registry backend provides: where it lives, transactions, reads, and its schema.

The registry's parts (versions, records, channels, lineage) write their SQL once, with `?`
placeholders, against these two protocols; SQLite (the embedded default) and PostgreSQL (for teams
sharing one history) each implement them. No backend object (connection, cursor, exception) leaves
the registry package: failures become RegistryError naming the registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from kiln.errors import RegistryError
from kiln.registry.rows import Columns

#: The URL schemes KILN_REGISTRY_URL (or Project(registry_url=...)) may use.
SCHEMES = ("sqlite", "postgresql")


class Session(Protocol):
    """The open transaction's writes and reads: what the write_* helpers are given."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> Columns | None: ...


class Backend(Protocol):
    """One registry database, open for the life of a Registry."""

    #: How messages name it: the SQLite file, or the PostgreSQL URL without its password.
    location: str

    def transaction(self) -> AbstractContextManager[Session]:
        """All of the block's writes or none; writers queue, so reads inside see the latest."""
        ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Columns]: ...

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def schema_version(self) -> int: ...

    def ids_follow(self, table: str) -> str | None:
        """SQL that makes table's next id follow the ids a copy wrote, if the backend needs it."""
        ...

    def after_bulk_load(self) -> None:
        """Refresh what the query planner knows after many rows arrived at once (a copy)."""
        ...

    def check(self) -> str:
        """'ok', or what is wrong with the database's structure."""
        ...

    def close(self) -> None: ...


def behind_by(location: str, current: int, known: int) -> int:
    """How many migrations a registry at schema current lacks; refuses one newer than kiln."""
    if current > known:
        raise RegistryError(
            f"the registry {location} has schema {current}, newer than this kiln understands "
            f"({known}); upgrade kiln"
        )
    return known - current


def scheme(url: str) -> str:
    """The backend a registry URL names, refusing any other with the ones kiln knows."""
    name = url.split("://", 1)[0] if "://" in url else ""
    if name == "postgres":
        name = "postgresql"
    if name not in SCHEMES:
        raise RegistryError(
            f"registry URL {url!r} is neither sqlite:///PATH nor postgresql://...; "
            "set KILN_REGISTRY_URL (or Project(registry_url=...)) to one of them"
        )
    return name


def open_backend(where: Path | str) -> Backend:
    """The backend of a path (a SQLite file, as before URLs) or a registry URL."""
    if isinstance(where, Path):
        from kiln.registry.sqlite_backend import SqliteBackend

        return SqliteBackend(where)
    if scheme(where) == "sqlite":
        from kiln.registry.sqlite_backend import SqliteBackend

        return SqliteBackend(sqlite_path(where))
    # Imported only here: a SQLite registry never loads psycopg.
    from kiln.registry.postgres_backend import PostgresBackend

    return PostgresBackend(where)


def resolve_registry(url: str | None, root: Path, state: Path) -> tuple[str, Path | None]:
    """A project's registry as (URL, SQLite file or None): url, with a relative sqlite path
    taken from root; without url, state/registry.db."""
    if not url:
        path = state / "registry.db"
        return f"sqlite:///{path}", path
    if scheme(url) != "sqlite":
        return url, None
    path = root / sqlite_path(url)  # an absolute path stays itself
    return f"sqlite:///{path}", path


def sqlite_path(url: str) -> Path:
    """The file of sqlite:///PATH: as in SQLAlchemy, sqlite:///kiln.db is relative (to the
    current directory; Project resolves it against the project root) and sqlite:////srv/kiln.db
    is absolute."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path:
        raise RegistryError(f"registry URL {url!r} names no file: write sqlite:///PATH")
    return Path(path)
