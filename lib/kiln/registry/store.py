"""Registry: the one object callers hold, composed of one part per concern."""

from __future__ import annotations

import secrets
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

    def identity(self) -> str:
        """This registry's random id (32 hex digits), drawn on first use and never changed: part
        of image names. registry-copy carries it, so that a copied history keeps its names."""
        rows = self._query("SELECT id FROM registry_identity")
        if rows:
            return str(rows[0]["id"])
        with self._transaction() as session:  # under the write lock: one draw, ever
            drawn = session.one("SELECT id FROM registry_identity")
            if drawn is None:
                drawn = {"id": secrets.token_hex(16)}
                session.execute(
                    "INSERT INTO registry_identity (singleton, id) VALUES (1, ?)", (drawn["id"],)
                )
        return str(drawn["id"])

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
