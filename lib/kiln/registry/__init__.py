"""The registry: every baked version, its artifacts, packages and tests, in SQLite under .kiln/
(the default) or in a PostgreSQL database that a team shares."""

# Writes are single transactions, so a killed bake leaves either a whole version or none.
# Version numbers come from a per-role counter that only grows, so they are never reused.
# Schemas are versioned (SQLite's PRAGMA user_version, PostgreSQL's kiln_schema table);
# MIGRATIONS and POSTGRES_MIGRATIONS only ever get new entries appended.
# Modules: status (VersionStatus), rows (the dataclasses), backend (what a backend provides),
# sqlite_backend with schema, postgres_backend with postgres_schema, connection, versions,
# records, channels and lineage (the parts of Registry), store (Registry), transaction (what
# Registry.transaction() yields: writes, never the connection), audit, copy (one registry's
# history into another).

from kiln.registry.audit import actor, utc_now
from kiln.registry.rows import (
    Artifact,
    ChannelEntry,
    ChannelLogEntry,
    Deployment,
    Event,
    Package,
    Push,
    TestRun,
    Version,
    VersionSummary,
)
from kiln.registry.schema import MIGRATIONS, _statements
from kiln.registry.status import STATUSES, VersionStatus, statuses
from kiln.registry.store import Registry
from kiln.registry.transaction import Transaction

__all__ = [
    "MIGRATIONS",
    "STATUSES",
    "Artifact",
    "ChannelEntry",
    "ChannelLogEntry",
    "Deployment",
    "Event",
    "Package",
    "Push",
    "Registry",
    "TestRun",
    "Transaction",
    "Version",
    "VersionStatus",
    "VersionSummary",
    "_statements",
    "actor",
    "statuses",
    "utc_now",
]
