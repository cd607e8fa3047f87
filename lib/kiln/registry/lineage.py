"""The lifecycle's bulk reads and writes: summaries, descendants, live and deleted artifacts."""

from __future__ import annotations

from collections.abc import Sequence

from kiln.registry.audit import utc_now
from kiln.registry.backend import Session
from kiln.registry.connection import Connection
from kiln.registry.rows import Artifact, VersionSummary


class Lineage(Connection):
    """What history, outdated, gc and revoke read by the thousand, without the JSON columns."""

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
            for r in self._tuples(sql, params)
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

    def mark_artifact_deleted(self, role: str, version: int, target: str) -> None:
        """Keep the record of an artifact gc deleted, so that promote can refuse its version."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE artifacts SET deleted_at = ? WHERE role = ? AND version = ? AND target = ?",
                (utc_now(), role, version, target),
            )


def write_parent_revoked(conn: Session, versions: Sequence[tuple[str, int]]) -> None:
    """Flag versions as built on a revoked parent, inside the open transaction of conn."""
    conn.executemany(
        "UPDATE versions SET parent_revoked = 1 WHERE role = ? AND version = ?", versions
    )
