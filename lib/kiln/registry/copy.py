"""One registry's whole history into another, empty one: how a team moves from SQLite to
PostgreSQL (or backs PostgreSQL up into a file), losslessly and in one transaction."""

from __future__ import annotations

from kiln.errors import RegistryError
from kiln.registry.store import Registry

#: Every table of the history, parents before children, each read in a stable order. The ids
#: of the logs are copied too: `history --json` prints them, and they keep the order of events.
TABLES: tuple[tuple[str, str], ...] = (
    ("registry_identity", "singleton"),  # image names carry it: the copy keeps them
    ("counters", "role"),
    ("versions", "role, version"),
    ("artifacts", "role, version, target"),
    ("packages", "role, version, name, arch"),
    ("version_documents", "role, version, kind"),
    ("pushes", "role, version, target, registry"),
    ("channels", "role, channel"),
    ("channel_log", "id"),
    ("test_runs", "id"),
    ("deployments", "id"),
    ("events", "id"),
)
_WITH_IDS = ("channel_log", "test_runs", "deployments", "events")


def copy_history(source: Registry, destination: Registry) -> dict[str, int]:
    """Copy every row of source into destination; returns the rows copied per table.

    The destination must be empty: merging two histories could give one version number two
    meanings. Nothing is written unless everything is.
    """
    if source.location == destination.location:
        raise RegistryError(f"the registry {source.location} cannot be copied into itself")
    for table, _ in TABLES:
        if destination._query(f"SELECT 1 FROM {table} LIMIT 1"):
            raise RegistryError(
                f"the registry {destination.location} is not empty (its {table} has rows): "
                "copy into a new database, so that no version number means two things"
            )
    copied: dict[str, int] = {}
    with destination._transaction() as session:
        for table, order in TABLES:
            rows = source._query(f"SELECT * FROM {table} ORDER BY {order}")
            copied[table] = len(rows)
            if not rows:
                continue
            columns = list(rows[0].keys())
            session.executemany(
                f"INSERT INTO {table} ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})",
                [tuple(row[c] for c in columns) for row in rows],
            )
        for table in _WITH_IDS:
            follow = destination._backend.ids_follow(table)
            if follow:
                session.execute(follow)
    destination._backend.after_bulk_load()
    return copied
