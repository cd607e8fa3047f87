"""Registry: the one object callers hold, composed of one part per concern."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kiln.registry.channels import Channels
from kiln.registry.lineage import Lineage
from kiln.registry.records import Records
from kiln.registry.transaction import Transaction


class Registry(Records, Channels, Lineage):
    """The version history, in SQLite (a path, or sqlite:///PATH) or PostgreSQL (postgresql://...).

    Both backends give the same semantics: version numbers unique and increasing across every
    machine using the registry, one transaction per record, append-only migrations, artifacts
    that never change once recorded, and the same audit log.

    Versions and Records (test runs, deployments, events), Channels, and Lineage (the
    lifecycle's bulk reads) each live in their own module; all share one Connection, whose
    backend never leaves the registry: writes that must land together go through transaction().
    """

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One all-or-nothing unit of writes: what promote, rollback and revoke each need.

        It takes the write lock at once (SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock
        of the registry), so reads made through the registry
        inside the block cannot be overtaken by another writer before its writes commit.
        """
        with self._transaction() as conn, Transaction(conn) as tx:
            yield tx

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
