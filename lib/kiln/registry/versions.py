"""Versions: number allocation, the all-or-nothing record of a bake, status, and reads."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from kiln.errors import RegistryError
from kiln.registry.backend import Session
from kiln.registry.connection import Connection
from kiln.registry.rows import Artifact, Columns, Package, Version, from_row
from kiln.registry.status import STATUSES, VersionStatus, statuses

_KNOWN = frozenset(STATUSES)
#: What a version may record beside its rows: its image's facts (kiln.image_facts) and, for a
#: version baked with unchanged inputs, why (kiln.lifecycle._reasons).
DOCUMENT_KINDS = frozenset({"image-facts", "bake-reason"})
#: The statuses find_reusable asks SQL for, from the one rule VersionStatus.reusable.
_REUSABLE = tuple(sorted(statuses(lambda s: s.reusable)))


class Versions(Connection):
    """Writes and reads whole Version records (with artifacts; packages on request)."""

    def allocate_version(self, role: str) -> int:
        """Reserve the next version number of role. Numbers are never handed out twice."""
        with self._transaction() as conn:
            row = conn.one(
                "SELECT MAX(last_version) AS last FROM (SELECT last_version FROM counters"
                " WHERE role = ? UNION ALL SELECT MAX(version) FROM versions WHERE role = ?) known",
                (role, role),
            )
            number = int((row and row["last"]) or 0) + 1
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
        documents: Mapping[str, str] | None = None,
    ) -> None:
        """Record a finished bake with its artifacts, package manifest and documents (kind ->
        text: see DOCUMENT_KINDS), all or nothing."""
        with self._transaction() as conn:
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
                "INSERT INTO packages (role, version, name, pkg_version, arch) VALUES (?,?,?,?,?)"
                " ON CONFLICT (role, version, name, arch) DO UPDATE"
                " SET pkg_version = excluded.pkg_version",
                [(version.role, version.version, p.name, p.version, p.arch) for p in packages],
            )
            conn.executemany(
                "INSERT INTO version_documents (role, version, kind, body) VALUES (?,?,?,?)",
                [
                    (version.role, version.version, _known_kind(kind), body)
                    for kind, body in sorted((documents or {}).items())
                ],
            )

    def set_status(self, role: str, version: int, status: str, reason: str | None = None) -> None:
        """Change a version's status (see STATUSES) in a transaction of its own."""
        _check_status(status)  # before taking the write lock, as ever
        with self._transaction() as conn:
            write_status(conn, role, version, status, reason)

    def get(self, role: str, version: int) -> Version | None:
        """One version with its artifacts, or None if role never recorded it."""
        rows = self._query("SELECT * FROM versions WHERE role = ? AND version = ?", (role, version))
        return self._with_artifacts(rows)[0] if rows else None

    def latest(self, role: str, *, target: str | None = None) -> Version | None:
        """The newest version of role (on target, if given), whatever its status."""
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
            f" AND status IN ({','.join('?' * len(_REUSABLE))}) ORDER BY version DESC LIMIT 1",
            (role, fingerprint, target, *_REUSABLE),
        )
        return self._with_artifacts(rows)[0] if rows else None

    def history(self, role: str, *, limit: int | None = None) -> list[Version]:
        """Whole versions of role, newest first; version_summaries is cheaper for thousands."""
        sql = "SELECT * FROM versions WHERE role = ? ORDER BY version DESC"
        if limit is None:
            rows = self._query(sql, (role,))
        else:
            rows = self._query(f"{sql} LIMIT ?", (role, limit))
        return self._with_artifacts(rows)

    def roles(self) -> list[str]:
        """Every role with a recorded version, including roles no longer defined."""
        return [r["role"] for r in self._query("SELECT DISTINCT role FROM versions ORDER BY role")]

    def document(self, role: str, version: int, kind: str) -> str | None:
        """The document of this kind recorded with a version, or None (older versions have none)."""
        rows = self._query(
            "SELECT body FROM version_documents WHERE role = ? AND version = ? AND kind = ?",
            (role, version, _known_kind(kind)),
        )
        return str(rows[0]["body"]) if rows else None

    def documents(self, role: str, kind: str) -> dict[int, str]:
        """version -> document of this kind, for every version of role that has one."""
        rows = self._query(
            "SELECT version, body FROM version_documents WHERE role = ? AND kind = ?",
            (role, _known_kind(kind)),
        )
        return {int(r["version"]): str(r["body"]) for r in rows}

    def packages(self, role: str, version: int) -> list[Package]:
        """The package manifest of one version, for diff and the report."""
        rows = self._query(
            "SELECT name, pkg_version, arch FROM packages WHERE role = ? AND version = ?"
            " ORDER BY name, arch",
            (role, version),
        )
        return [from_row(Package, r, version=r["pkg_version"]) for r in rows]

    def _with_artifacts(self, rows: list[Columns]) -> list[Version]:
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
            artifacts.setdefault((a["role"], a["version"]), []).append(from_row(Artifact, a))
        return [_version(r, tuple(artifacts.get((r["role"], r["version"]), ()))) for r in rows]


def write_status(conn: Session, role: str, version: int, status: str, reason: str | None) -> None:
    """Set a version's status inside the open transaction of conn, refusing unknown ones."""
    _check_status(status)
    conn.execute(
        "UPDATE versions SET status = ?, status_reason = ? WHERE role = ? AND version = ?",
        (status, reason, role, version),
    )


def _check_status(status: str) -> None:
    if status not in _KNOWN:
        raise RegistryError(f"unknown status {status!r} (known: {', '.join(STATUSES)})")


def _stored_status(row: Columns) -> VersionStatus:
    try:
        return VersionStatus(row["status"])
    except ValueError:
        raise RegistryError(
            f"{row['role']} v{row['version']} has unknown status {row['status']!r} in the "
            f"registry (known: {', '.join(STATUSES)}): this kiln did not write it; restore the "
            "registry from a backup, or use the kiln release that wrote it"
        ) from None


def _version(row: Columns, artifacts: tuple[Artifact, ...]) -> Version:
    return from_row(
        Version,
        row,
        status=_stored_status(row),
        git_dirty=bool(row["git_dirty"]),
        tools=json.loads(row["tools"]),
        inputs=json.loads(row["inputs"]),
        timings=json.loads(row["timings"]),
        artifacts=artifacts,
        parent_revoked=bool(row["parent_revoked"]),
    )


def _known_kind(kind: str) -> str:
    if kind not in DOCUMENT_KINDS:
        known = ", ".join(sorted(DOCUMENT_KINDS))
        raise RegistryError(f"unknown version document kind {kind!r} (known: {known})")
    return kind
