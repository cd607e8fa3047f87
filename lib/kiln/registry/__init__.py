"""The registry: every baked version, its artifacts, packages and tests, in SQLite under .kiln/."""

# Writes are single transactions in WAL mode, so a killed bake leaves either a whole version or
# none. Version numbers come from a per-role counter that only grows, so they are never reused.
# The schema is versioned with PRAGMA user_version; MIGRATIONS only ever gets new entries appended.
# Modules: status (VersionStatus), rows (the dataclasses), schema (MIGRATIONS), connection,
# versions, records, channels and lineage (the parts of Registry), store (Registry), transaction
# (what Registry.transaction() yields: writes, never the connection), audit.

from kiln.registry.audit import actor, utc_now
from kiln.registry.rows import (
    Artifact,
    ChannelEntry,
    ChannelLogEntry,
    Deployment,
    Event,
    Package,
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
