"""The registry's connection to its backend: the one thing every part of Registry builds on."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from kiln.registry.backend import Session, open_backend
from kiln.registry.rows import Columns


class Connection:
    """A registry at a path (SQLite) or a URL (sqlite:///PATH, postgresql://...).

    The per-concern parts of Registry read through _query and _tuples and write through
    _transaction; the backend behind them never leaves the registry.
    """

    def __init__(self, where: Path | str) -> None:
        self._backend = open_backend(where)
        #: The SQLite file, for the tools that open it behind kiln's back (tests); None otherwise.
        self.path: Path | None = getattr(self._backend, "path", None)

    @property
    def location(self) -> str:
        """The registry as messages name it: its file, or its URL without a password."""
        return self._backend.location

    def close(self) -> None:
        self._backend.close()

    def _transaction(self) -> AbstractContextManager[Session]:
        """One transaction: all of it is written, or none of it.

        Private: the backend never leaves the registry (Registry.transaction hands callers a
        Transaction instead).
        """
        return self._backend.transaction()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Columns]:
        return self._backend.rows(sql, params)

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples: for bulk reads, where named rows cost more than the query."""
        return self._backend.tuples(sql, params)

    @property
    def schema_version(self) -> int:
        return self._backend.schema_version()

    def integrity_check(self) -> str:
        return self._backend.check()
