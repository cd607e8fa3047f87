"""Transaction: the writes a lifecycle step makes all or nothing, without holding a connection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kiln.errors import RegistryError
from kiln.registry.backend import Session
from kiln.registry.channels import write_channel
from kiln.registry.lineage import write_parent_revoked
from kiln.registry.records import write_event
from kiln.registry.versions import write_status


class Transaction:
    """The unit of work `Registry.transaction()` yields: its writes commit together when the
    `with` block ends, or roll back if the block raises.

    Callers get methods, never the connection, so that promote, rollback and revoke stay the
    same when the registry gains another backend. The registry's reads inside the block run on
    the same connection, so they see these writes and hold the same write lock.
    """

    def __init__(self, conn: Session) -> None:
        self._conn: Session | None = conn

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, *exc: object) -> None:
        # Past its block, a write would commit on its own: refuse it instead (see _open).
        self._conn = None

    def set_channel(
        self,
        *,
        role: str,
        channel: str,
        version: int | None,
        action: str,
        actor: str,
        reason: str | None = None,
        forced: bool = False,
    ) -> int | None:
        """Point channel at version, logging the move; returns the version it pointed at."""
        return write_channel(
            self._open(),
            role=role,
            channel=channel,
            version=version,
            action=action,
            actor=actor,
            reason=reason,
            forced=forced,
        )

    def set_status(self, role: str, version: int, status: str, reason: str | None = None) -> None:
        """Change a version's status (see STATUSES)."""
        write_status(self._open(), role, version, status, reason)

    def mark_parent_revoked(self, versions: Sequence[tuple[str, int]]) -> None:
        """Flag versions as built on a revoked parent (revoke flags every descendant)."""
        write_parent_revoked(self._open(), versions)

    def log_event(
        self, role: str, version: int | None, kind: str, detail: Mapping[str, Any], actor: str
    ) -> None:
        """Record one audit event with the change it describes."""
        write_event(self._open(), role, version, kind, detail, actor)

    def _open(self) -> Session:
        if self._conn is None:
            raise RegistryError(
                "this registry transaction has ended (committed or rolled back); "
                "write inside a `with registry.transaction()` block"
            )
        return self._conn
