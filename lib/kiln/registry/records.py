"""Test runs, deployments and audit events: what happened to versions after their bake."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kiln.registry.audit import utc_now
from kiln.registry.backend import Session
from kiln.registry.rows import Deployment, Event, Push, TestRun, from_row
from kiln.registry.versions import Versions, write_status


class Records(Versions):
    """Append-only records about versions; a test run may set its version's status with it."""

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
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO test_runs (role, version, suite, passed, summary, output,"
                " started_at, duration_s) VALUES (?,?,?,?,?,?,?,?)",
                (role, version, suite, int(passed), summary, output, started_at, duration_s),
            )
            if status is not None:
                write_status(conn, role, version, status, None if passed else summary)

    def test_runs(self, role: str, version: int | None = None) -> list[TestRun]:
        """The test runs of role (or of one version of it), oldest first."""
        rows = self._query(
            "SELECT * FROM test_runs WHERE role = ? AND (? IS NULL OR version = ?) ORDER BY id",
            (role, version, version),
        )
        return [from_row(TestRun, r, passed=bool(r["passed"])) for r in rows]

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
        """Record one deploy, refused and failed ones too: history lists them all."""
        with self._transaction() as conn:
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

    def deployments(self, role: str | None = None) -> list[Deployment]:
        """The deployments of role (or of every role), newest first."""
        rows = self._query(
            "SELECT * FROM deployments WHERE (? IS NULL OR role = ?) ORDER BY id DESC",
            (role, role),
        )
        return [from_row(Deployment, r) for r in rows]

    def record_push(self, push: Push) -> None:
        """Record that a version's image is in an OCI registry, pullable by push.reference."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO pushes (role, version, target, registry, reference, digest,"
                " pushed_at) VALUES (?,?,?,?,?,?,?)",
                (
                    push.role,
                    push.version,
                    push.target,
                    push.registry,
                    push.reference,
                    push.digest,
                    push.pushed_at,
                ),
            )

    def pushes(self, role: str, version: int) -> list[Push]:
        """Where one version's images were pushed, by target and registry."""
        rows = self._query(
            "SELECT * FROM pushes WHERE role = ? AND version = ? ORDER BY target, registry",
            (role, version),
        )
        return [from_row(Push, r) for r in rows]

    def log_event(
        self, role: str, version: int | None, kind: str, detail: Mapping[str, Any], actor: str
    ) -> None:
        """Record one audit event in a transaction of its own."""
        with self._transaction() as conn:
            write_event(conn, role, version, kind, detail, actor)

    def events(self, role: str) -> list[Event]:
        """The audit events of role, newest first, their detail decoded from JSON."""
        rows = self._query("SELECT * FROM events WHERE role = ? ORDER BY id DESC", (role,))
        return [from_row(Event, r, detail=json.loads(r["detail"])) for r in rows]


def write_event(
    conn: Session,
    role: str,
    version: int | None,
    kind: str,
    detail: Mapping[str, Any],
    actor: str,
) -> None:
    """Record one audit event inside the open transaction of conn."""
    conn.execute(
        "INSERT INTO events (role, version, kind, detail, actor, at) VALUES (?,?,?,?,?,?)",
        (role, version, kind, json.dumps(dict(detail), sort_keys=True), actor, utc_now()),
    )
