"""The registry: every baked version, its artifacts, packages and tests, in SQLite under .kiln/.

Writes are single transactions in WAL mode, so a killed bake leaves either a whole version or
none. Version numbers come from a per-role counter that only grows, so they are never reused.
The schema is versioned with PRAGMA user_version; MIGRATIONS only ever gets new entries appended.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from kiln.errors import RegistryError

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
)

STATUSES = ("baked", "untested", "tested", "failed", "revoked")


@dataclass(frozen=True)
class Artifact:
    target: str
    ref: str
    image_id: str
    sha256: str | None = None
    size_bytes: int | None = None
    deleted_at: str | None = None


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class Version:
    """One recorded, immutable image version."""

    role: str
    version: int
    kind: str
    target: str
    fingerprint: str
    parent_role: str | None
    parent_version: int | None
    status: str
    git_commit: str
    git_dirty: bool
    tools: Mapping[str, str]
    inputs: Mapping[str, Any]
    timings: Mapping[str, float]
    bake_seconds: float
    created_at: str
    artifacts: tuple[Artifact, ...] = field(default=())
    status_reason: str | None = None
    parent_revoked: bool = False

    @property
    def label(self) -> str:
        return f"{self.role} v{self.version}"

    def artifact(self, target: str | None = None) -> Artifact | None:
        for artifact in self.artifacts:
            if target is None or artifact.target == target:
                return artifact
        return None


class VersionSummary(NamedTuple):
    """A version without its bulky JSON columns: what history, gc and outdated read by the
    thousand (a tuple, so that building ten thousand of them stays cheap)."""

    role: str
    version: int
    kind: str
    target: str
    fingerprint: str
    parent_role: str | None
    parent_version: int | None
    status: str
    status_reason: str | None
    parent_revoked: bool
    git_commit: str
    git_dirty: bool
    bake_seconds: float
    created_at: str
    #: The channels pointing at this version, where the caller asked (history and show do).
    channels: tuple[str, ...] = ()

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:12]

    @property
    def status_label(self) -> str:
        return self.status + (" (built on revoked parent)" if self.parent_revoked else "")

    @property
    def parent_label(self) -> str:
        return f"{self.parent_role} v{self.parent_version}" if self.parent_role else "-"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Registry:
    """Narrow interface over the SQLite file, so that another backend can be added later."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(path, timeout=60, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout = 60000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(
                f"the registry {path} is not a usable SQLite database ({exc}); "
                "move it aside to start a new one, or restore it from a backup"
            ) from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all of it is written, or none of it."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot write to the registry {self.path}: {exc}") from exc
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._conn.execute("ROLLBACK")
                raise RegistryError(f"cannot write to the registry {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        current = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise RegistryError(
                f"the registry {self.path} has schema {current}, newer than this kiln "
                f"understands ({len(MIGRATIONS)}); upgrade kiln"
            )
        if current == len(MIGRATIONS):
            return
        with self.transaction() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    # -- versions ---------------------------------------------------------------------------
    def allocate_version(self, role: str) -> int:
        """Reserve the next version number of role. Numbers are never handed out twice."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT MAX(last_version) FROM (SELECT last_version FROM counters WHERE role = ?"
                " UNION ALL SELECT MAX(version) FROM versions WHERE role = ?)",
                (role, role),
            ).fetchone()
            number = int(row[0] or 0) + 1
            conn.execute(
                "INSERT INTO counters (role, last_version) VALUES (?, ?) "
                "ON CONFLICT (role) DO UPDATE SET last_version = excluded.last_version",
                (role, number),
            )
        return number

    def record_version(
        self,
        version: Version,
        *,
        packages: Sequence[Package] = (),
    ) -> None:
        """Record a finished bake with its artifacts and package manifest, all or nothing."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO versions (role, version, kind, target, fingerprint, parent_role,"
                " parent_version, status, git_commit, git_dirty, tools, inputs, timings,"
                " bake_seconds, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    version.role,
                    version.version,
                    version.kind,
                    version.target,
                    version.fingerprint,
                    version.parent_role,
                    version.parent_version,
                    version.status,
                    version.git_commit,
                    int(version.git_dirty),
                    json.dumps(dict(version.tools), sort_keys=True),
                    json.dumps(version.inputs, sort_keys=True),
                    json.dumps(dict(version.timings)),
                    version.bake_seconds,
                    version.created_at,
                ),
            )
            conn.executemany(
                "INSERT INTO artifacts (role, version, target, ref, image_id, sha256, size_bytes)"
                " VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        version.role,
                        version.version,
                        a.target,
                        a.ref,
                        a.image_id,
                        a.sha256,
                        a.size_bytes,
                    )
                    for a in version.artifacts
                ],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO packages (role, version, name, pkg_version, arch)"
                " VALUES (?,?,?,?,?)",
                [(version.role, version.version, p.name, p.version, p.arch) for p in packages],
            )

    def set_status(
        self,
        role: str,
        version: int,
        status: str,
        reason: str | None = None,
        *,
        conn: sqlite3.Connection | None = None,
    ) -> None:
        """Change a version's status (see STATUSES); pass conn to join an open transaction."""
        if status not in STATUSES:
            raise RegistryError(f"unknown status {status!r} (known: {', '.join(STATUSES)})")
        sql = "UPDATE versions SET status = ?, status_reason = ? WHERE role = ? AND version = ?"
        if conn is not None:
            conn.execute(sql, (status, reason, role, version))
            return
        with self.transaction() as own:
            own.execute(sql, (status, reason, role, version))

    # -- channels ---------------------------------------------------------------------------
    def channels(self, role: str) -> dict[str, int | None]:
        rows = self._query(
            "SELECT channel, version FROM channels WHERE role = ? ORDER BY channel", (role,)
        )
        return {r["channel"]: r["version"] for r in rows}

    def channels_pointing_at(self, role: str, version: int) -> list[str]:
        rows = self._query(
            "SELECT channel FROM channels WHERE role = ? AND version = ? ORDER BY channel",
            (role, version),
        )
        return [r["channel"] for r in rows]

    def set_channel(
        self,
        conn: sqlite3.Connection,
        *,
        role: str,
        channel: str,
        version: int | None,
        action: str,
        actor: str,
        reason: str | None = None,
        forced: bool = False,
    ) -> int | None:
        """Point channel at version inside an open transaction, logging it; returns the old one."""
        row = conn.execute(
            "SELECT version FROM channels WHERE role = ? AND channel = ?", (role, channel)
        ).fetchone()
        previous = row["version"] if row else None
        now = utc_now()
        conn.execute(
            "INSERT INTO channels (role, channel, version, updated_at) VALUES (?,?,?,?) "
            "ON CONFLICT (role, channel) DO UPDATE SET version = excluded.version,"
            " updated_at = excluded.updated_at",
            (role, channel, version, now),
        )
        conn.execute(
            "INSERT INTO channel_log (role, channel, from_version, to_version, action, actor,"
            " reason, forced, at) VALUES (?,?,?,?,?,?,?,?,?)",
            (role, channel, previous, version, action, actor, reason, int(forced), now),
        )
        return int(previous) if previous is not None else None

    def channel_log(self, role: str, channel: str | None = None) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT * FROM channel_log WHERE role = ? AND (? IS NULL OR channel = ?)"
            " ORDER BY id DESC",
            (role, channel, channel),
        )
        return [dict(r) for r in rows]

    # -- tests, deployments, events ---------------------------------------------------------
    def record_test_run(
        self,
        role: str,
        version: int,
        *,
        suite: str,
        passed: bool,
        summary: str,
        output: str,
        started_at: str,
        duration_s: float,
        status: str | None = None,
    ) -> None:
        """Record one test run and, if status is given, set the version's status with it."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO test_runs (role, version, suite, passed, summary, output,"
                " started_at, duration_s) VALUES (?,?,?,?,?,?,?,?)",
                (role, version, suite, int(passed), summary, output, started_at, duration_s),
            )
            if status is not None:
                self.set_status(role, version, status, None if passed else summary, conn=conn)

    def test_runs(self, role: str, version: int | None = None) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT * FROM test_runs WHERE role = ? AND (? IS NULL OR version = ?) ORDER BY id",
            (role, version, version),
        )
        return [dict(r) for r in rows]

    def record_deployment(
        self,
        *,
        deployment: str,
        role: str,
        version: int | None,
        channel: str | None,
        strategy: str,
        replicas: int,
        result: str,
        detail: str,
        actor: str,
        started_at: str,
        duration_s: float,
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO deployments (deployment, role, version, channel, strategy, replicas,"
                " result, detail, actor, started_at, duration_s) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    deployment,
                    role,
                    version,
                    channel,
                    strategy,
                    replicas,
                    result,
                    detail,
                    actor,
                    started_at,
                    duration_s,
                ),
            )

    def deployments(self, role: str | None = None) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT * FROM deployments WHERE (? IS NULL OR role = ?) ORDER BY id DESC",
            (role, role),
        )
        return [dict(r) for r in rows]

    def log_event(
        self,
        role: str,
        version: int | None,
        kind: str,
        detail: Mapping[str, Any],
        actor: str,
        *,
        conn: sqlite3.Connection | None = None,
    ) -> None:
        sql = "INSERT INTO events (role, version, kind, detail, actor, at) VALUES (?,?,?,?,?,?)"
        params = (role, version, kind, json.dumps(dict(detail), sort_keys=True), actor, utc_now())
        if conn is not None:
            conn.execute(sql, params)
            return
        with self.transaction() as own:
            own.execute(sql, params)

    def events(self, role: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM events WHERE role = ? ORDER BY id DESC", (role,))
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    def mark_artifact_deleted(self, role: str, version: int, target: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE artifacts SET deleted_at = ? WHERE role = ? AND version = ? AND target = ?",
                (utc_now(), role, version, target),
            )

    def get(self, role: str, version: int) -> Version | None:
        rows = self._query("SELECT * FROM versions WHERE role = ? AND version = ?", (role, version))
        return self._with_artifacts(rows)[0] if rows else None

    def latest(self, role: str, *, target: str | None = None) -> Version | None:
        rows = self._query(
            "SELECT * FROM versions WHERE role = ? AND (? IS NULL OR target = ?)"
            " ORDER BY version DESC LIMIT 1",
            (role, target, target),
        )
        return self._with_artifacts(rows)[0] if rows else None

    def find_reusable(self, role: str, fingerprint: str, target: str) -> Version | None:
        """The newest version with this fingerprint that can stand in for a new bake."""
        rows = self._query(
            "SELECT * FROM versions WHERE role = ? AND fingerprint = ? AND target = ?"
            " AND status IN ('baked', 'tested', 'untested') ORDER BY version DESC LIMIT 1",
            (role, fingerprint, target),
        )
        return self._with_artifacts(rows)[0] if rows else None

    def history(self, role: str, *, limit: int | None = None) -> list[Version]:
        rows = self._query(
            "SELECT * FROM versions WHERE role = ? ORDER BY version DESC LIMIT ?",
            (role, -1 if limit is None else limit),
        )
        return self._with_artifacts(rows)

    def roles(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT role FROM versions ORDER BY role")]

    def packages(self, role: str, version: int) -> list[Package]:
        rows = self._query(
            "SELECT name, pkg_version, arch FROM packages WHERE role = ? AND version = ?"
            " ORDER BY name, arch",
            (role, version),
        )
        return [Package(r["name"], r["pkg_version"], r["arch"]) for r in rows]

    # -- lifecycle queries (kiln.lifecycle) -------------------------------------------------
    _SUMMARY_COLUMNS = (
        "role, version, kind, target, fingerprint, parent_role, parent_version, status,"
        " status_reason, parent_revoked, git_commit, git_dirty, bake_seconds, created_at"
    )

    def version_summaries(self, role: str | None = None) -> list[VersionSummary]:
        """Versions without their bulky JSON columns (of role, or of all roles), newest first.

        history and gc read thousands of these: the covering index versions_summary answers them
        without reading inputs, tools or timings.
        """
        if role is None:
            # Both descending: one backwards scan of versions_summary, no sort.
            sql = f"SELECT {self._SUMMARY_COLUMNS} FROM versions ORDER BY role DESC, version DESC"
            params: tuple[str, ...] = ()
        else:
            sql = (
                f"SELECT {self._SUMMARY_COLUMNS} FROM versions WHERE role = ? ORDER BY version DESC"
            )
            params = (role,)
        try:
            cursor = self._conn.cursor()
            cursor.row_factory = None  # plain tuples: sqlite3.Row costs more than the query
            rows = cursor.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"cannot read the registry {self.path}: {exc}") from exc
        return [
            VersionSummary(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                bool(r[9]),
                r[10],
                bool(r[11]),
                r[12],
                r[13],
            )
            for r in rows
        ]

    def descendants(self, role: str, version: int) -> list[tuple[str, int]]:
        """Every version (of any role) baked from role v<version>, directly or further down."""
        rows = self._query(
            "WITH RECURSIVE d (role, version) AS ("
            " SELECT role, version FROM versions WHERE parent_role = ? AND parent_version = ?"
            " UNION SELECT v.role, v.version FROM versions v"
            " JOIN d ON v.parent_role = d.role AND v.parent_version = d.version"
            ") SELECT role, version FROM d ORDER BY role, version",
            (role, version),
        )
        return [(r["role"], int(r["version"])) for r in rows]

    def mark_parent_revoked(
        self, conn: sqlite3.Connection, versions: Sequence[tuple[str, int]]
    ) -> None:
        """Flag versions as built on a revoked parent, inside an open transaction."""
        conn.executemany(
            "UPDATE versions SET parent_revoked = 1 WHERE role = ? AND version = ?", versions
        )

    def channel_entries(self, role: str | None = None) -> list[dict[str, Any]]:
        """Channels (of role, or of all roles) with the version they point at and since when."""
        if role is None:
            rows = self._query("SELECT * FROM channels ORDER BY role, channel")
        else:
            rows = self._query("SELECT * FROM channels WHERE role = ? ORDER BY channel", (role,))
        return [dict(r) for r in rows]

    def live_artifacts(self) -> list[tuple[str, int, Artifact]]:
        """(role, version, artifact) for every artifact not deleted by gc."""
        rows = self._query(
            "SELECT * FROM artifacts WHERE deleted_at IS NULL ORDER BY role, version, target"
        )
        return [
            (
                r["role"],
                int(r["version"]),
                Artifact(r["target"], r["ref"], r["image_id"], r["sha256"], r["size_bytes"], None),
            )
            for r in rows
        ]

    def _with_artifacts(self, rows: list[sqlite3.Row]) -> list[Version]:
        if not rows:
            return []
        keys = [(r["role"], r["version"]) for r in rows]
        artifacts: dict[tuple[str, int], list[Artifact]] = {}
        roles = sorted({k[0] for k in keys})
        lo, hi = min(k[1] for k in keys), max(k[1] for k in keys)
        for a in self._query(
            f"SELECT * FROM artifacts WHERE role IN ({','.join('?' * len(roles))})"
            " AND version BETWEEN ? AND ? ORDER BY target",
            (*roles, lo, hi),
        ):
            artifacts.setdefault((a["role"], a["version"]), []).append(
                Artifact(
                    a["target"],
                    a["ref"],
                    a["image_id"],
                    a["sha256"],
                    a["size_bytes"],
                    a["deleted_at"],
                )
            )
        return [_version(r, tuple(artifacts.get((r["role"], r["version"]), ()))) for r in rows]


def _version(row: sqlite3.Row, artifacts: tuple[Artifact, ...]) -> Version:
    return Version(
        role=row["role"],
        version=row["version"],
        kind=row["kind"],
        target=row["target"],
        fingerprint=row["fingerprint"],
        parent_role=row["parent_role"],
        parent_version=row["parent_version"],
        status=row["status"],
        git_commit=row["git_commit"],
        git_dirty=bool(row["git_dirty"]),
        tools=json.loads(row["tools"]),
        inputs=json.loads(row["inputs"]),
        timings=json.loads(row["timings"]),
        bake_seconds=row["bake_seconds"],
        created_at=row["created_at"],
        artifacts=artifacts,
        status_reason=row["status_reason"],
        parent_revoked=bool(row["parent_revoked"]),
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


def actor() -> str:
    """Who is acting, for audit logs: $KILN_ACTOR, else user@host."""
    import getpass
    import os
    import socket

    return os.environ.get("KILN_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"
