"""The registry's SQLite schema: MIGRATIONS, applied in order and counted by PRAGMA user_version."""

from __future__ import annotations

import sqlite3

#: Only ever appended to: a registry at schema N runs MIGRATIONS[N:] to catch up.
MIGRATIONS: tuple[str, ...] = (
    # 1: versions, artifacts and package manifests
    """
    CREATE TABLE counters (
        role TEXT PRIMARY KEY,
        last_version INTEGER NOT NULL
    );
    CREATE TABLE versions (
        role TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('base', 'role')),
        target TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        parent_role TEXT,
        parent_version INTEGER,
        status TEXT NOT NULL,
        git_commit TEXT NOT NULL,
        git_dirty INTEGER NOT NULL,
        tools TEXT NOT NULL,
        inputs TEXT NOT NULL,
        timings TEXT NOT NULL,
        bake_seconds REAL NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (role, version)
    );
    CREATE INDEX versions_by_fingerprint ON versions (role, fingerprint, target);
    CREATE TABLE artifacts (
        role TEXT NOT NULL,
        version INTEGER NOT NULL,
        target TEXT NOT NULL,
        ref TEXT NOT NULL,
        image_id TEXT NOT NULL,
        sha256 TEXT,
        size_bytes INTEGER,
        deleted_at TEXT,
        PRIMARY KEY (role, version, target),
        FOREIGN KEY (role, version) REFERENCES versions (role, version)
    );
    CREATE TABLE packages (
        role TEXT NOT NULL,
        version INTEGER NOT NULL,
        name TEXT NOT NULL,
        pkg_version TEXT NOT NULL,
        arch TEXT NOT NULL,
        PRIMARY KEY (role, version, name, arch)
    );
    CREATE TRIGGER artifact_ref_is_immutable BEFORE UPDATE OF ref, image_id ON artifacts
    BEGIN
        SELECT RAISE(ABORT, 'a recorded artifact never changes');
    END;
    """,
    # 2: lifecycle (status reasons, channels and their audit log), tests, deployments, events
    """
    ALTER TABLE versions ADD COLUMN status_reason TEXT;
    ALTER TABLE versions ADD COLUMN parent_revoked INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE channels (
        role TEXT NOT NULL,
        channel TEXT NOT NULL,
        version INTEGER,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (role, channel)
    );
    CREATE TABLE channel_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        role TEXT NOT NULL,
        channel TEXT NOT NULL,
        from_version INTEGER,
        to_version INTEGER,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT,
        forced INTEGER NOT NULL DEFAULT 0,
        at TEXT NOT NULL
    );
    CREATE INDEX channel_log_by_role ON channel_log (role, channel, id);
    CREATE TABLE test_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        role TEXT NOT NULL,
        version INTEGER NOT NULL,
        suite TEXT NOT NULL,
        passed INTEGER NOT NULL,
        summary TEXT NOT NULL,
        output TEXT NOT NULL,
        started_at TEXT NOT NULL,
        duration_s REAL NOT NULL
    );
    CREATE INDEX test_runs_by_version ON test_runs (role, version, id);
    CREATE TABLE deployments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deployment TEXT NOT NULL,
        role TEXT NOT NULL,
        version INTEGER,
        channel TEXT,
        strategy TEXT NOT NULL,
        replicas INTEGER NOT NULL,
        result TEXT NOT NULL,
        detail TEXT NOT NULL,
        actor TEXT NOT NULL,
        started_at TEXT NOT NULL,
        duration_s REAL NOT NULL
    );
    CREATE INDEX deployments_by_role ON deployments (role, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        role TEXT NOT NULL,
        version INTEGER,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL,
        actor TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX events_by_role ON events (role, id);
    """,
    # 3: history, gc and outdated read every version of a role: a covering index spares them
    # the bulky JSON columns (inputs, tools, timings) of each row; revoke walks parents.
    """
    CREATE INDEX versions_summary ON versions (
        role, version, kind, target, fingerprint, parent_role, parent_version, status,
        status_reason, parent_revoked, git_commit, git_dirty, bake_seconds, created_at
    );
    CREATE INDEX versions_by_parent ON versions (parent_role, parent_version);
    """,
    # 4: pushes of versions' images to an OCI registry (KILN_IMAGE_REGISTRY), one per registry;
    # a version without a row for the configured one is "not pushed" and is pushed again.
    """
    CREATE TABLE pushes (
        role TEXT NOT NULL,
        version INTEGER NOT NULL,
        target TEXT NOT NULL,
        registry TEXT NOT NULL,
        reference TEXT NOT NULL,
        digest TEXT NOT NULL,
        pushed_at TEXT NOT NULL,
        PRIMARY KEY (role, version, target, registry),
        FOREIGN KEY (role, version) REFERENCES versions (role, version)
    );
    """,
    # 5: the registry's identity, drawn once (Registry.identity(), on first use) and never
    # changed: image names carry it, so that two registries on one Docker engine never name two
    # images alike. Drawn on use, not here, so that registry-copy can carry it to a new registry.
    """
    CREATE TABLE registry_identity (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        id TEXT NOT NULL
    );
    CREATE TRIGGER registry_identity_never_changes BEFORE UPDATE ON registry_identity
    BEGIN
        SELECT RAISE(ABORT, 'a registry identity never changes');
    END;
    CREATE TRIGGER registry_identity_stays BEFORE DELETE ON registry_identity
    BEGIN
        SELECT RAISE(ABORT, 'a registry identity never changes');
    END;
    """,
    # 6: documents recorded with a version, one per kind and as immutable as the version:
    # "image-facts" (apt sources and keys, source packages, licenses: kiln.image_facts) and
    # "bake-reason" (why a version with unchanged inputs was baked: kiln.lifecycle._reasons).
    """
    CREATE TABLE version_documents (
        role TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (role, version, kind),
        FOREIGN KEY (role, version) REFERENCES versions (role, version)
    );
    CREATE TRIGGER version_documents_never_change BEFORE UPDATE ON version_documents
    BEGIN
        SELECT RAISE(ABORT, 'a version document never changes');
    END;
    """,
)


def _statements(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def migrate(conn: sqlite3.Connection) -> None:
    """Run the migrations conn's database has not had yet, inside the caller's transaction."""
    # Re-read under the caller's write lock: another process may have migrated meanwhile.
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
