"""The registry: monotonic versions, atomic records, immutable artifacts, versioned schema."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import behind_the_back, parent_version
from kiln import Registry, RegistryError
from kiln.registry import (
    MIGRATIONS,
    Artifact,
    Package,
    Version,
    VersionStatus,
    VersionSummary,
    _statements,
    actor,
    statuses,
)
from kiln.registry.postgres_schema import POSTGRES_MIGRATIONS

if TYPE_CHECKING:
    from postgres_cluster import PostgresCluster


def test_versions_are_monotonic_and_never_reused(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        assert [registry.allocate_version("web") for _ in range(3)] == [1, 2, 3]
        assert registry.allocate_version("base") == 1
    with Registry(registry_url) as registry:
        assert registry.allocate_version("web") == 4


def test_record_and_find_reusable(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        version = replace(parent_version("web", registry.allocate_version("web")), status="baked")
        registry.record_version(version, packages=[Package("nginx", "1.22", "amd64")])
        found = registry.find_reusable("web", version.fingerprint, "docker")
        assert found is not None and found.version == 1
        assert found.artifact("docker") == version.artifacts[0]
        assert registry.packages("web", 1) == [Package("nginx", "1.22", "amd64")]
        registry.set_status("web", 1, "failed", "acceptance failed")
        assert registry.find_reusable("web", version.fingerprint, "docker") is None
        assert registry.integrity_check() == "ok"


def test_a_failed_record_leaves_nothing(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        version = parent_version("web", registry.allocate_version("web"))
        bad = replace(version, artifacts=(*version.artifacts, version.artifacts[0]))
        with pytest.raises(RegistryError, match=r"cannot write to the registry .*(UNIQUE|unique)"):
            registry.record_version(bad)
        assert registry.history("web") == []
        assert registry.packages("web", version.version) == []


def test_recorded_artifacts_never_change(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.db") as registry:
        registry.record_version(parent_version("web", 1))
        with (
            pytest.raises(sqlite3.IntegrityError, match="a recorded artifact never changes"),
            closing(sqlite3.connect(registry.path)) as raw,  # behind the registry's back
        ):
            raw.execute("UPDATE artifacts SET image_id = 'sha256:x' WHERE role = 'web'")
        artifact = registry.get("web", 1).artifact("docker")  # type: ignore[union-attr]
        assert artifact == Artifact("docker", "kiln/web:1", "sha256:" + "a" * 64)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryError, match="is not a usable SQLite database"):
        Registry(path)


def test_old_schemas_are_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO counters VALUES ('web', 5)")
    conn.commit()
    conn.close()
    with Registry(path) as registry:
        assert registry.schema_version == len(MIGRATIONS)
        assert registry.allocate_version("web") == 6
        assert registry.channels("web") == {}


def test_a_registry_draws_its_identity_once_and_keeps_it(tmp_path: Path) -> None:
    with Registry(tmp_path / "a.db") as a, Registry(tmp_path / "b.db") as b:
        identity = a.identity()
        assert len(identity) == 32 and int(identity, 16) >= 0
        assert b.identity() != identity  # two registries: two image name prefixes
    with Registry(tmp_path / "a.db") as again:
        assert again.identity() == identity
    with closing(sqlite3.connect(tmp_path / "a.db")) as raw:  # behind the registry's back
        for statement in ("UPDATE registry_identity SET id = 'x'", "DELETE FROM registry_identity",
                          "INSERT INTO registry_identity VALUES (2, 'y')"):  # fmt: skip
            with pytest.raises(sqlite3.IntegrityError):
                raw.execute(statement)


def test_an_old_registry_gains_an_identity_and_keeps_its_recorded_refs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Registry(path) as registry:
        registry.record_version(parent_version("web", 1, ref="kiln/web:1"))
    with closing(sqlite3.connect(path)) as raw:  # back to schema 3, before identities
        raw.executescript(
            "DROP TABLE registry_identity; DROP TABLE pushes; DROP TABLE version_documents;"
            " PRAGMA user_version = 3;"
        )
    with Registry(path) as registry:
        assert registry.schema_version == len(MIGRATIONS)
        assert len(registry.identity()) == 32
        # Recorded artifacts keep the names they were baked under.
        assert registry.get("web", 1).artifact("docker").ref == "kiln/web:1"  # type: ignore[union-attr]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(RegistryError, match="newer than this kiln understands"):
        Registry(path)


def recorded(registry: Registry, role: str, version: int, **changes: object) -> Version:
    """A version of role recorded in registry, with a docker artifact named after it."""
    base = replace(parent_version(role, version), **changes)  # type: ignore[arg-type]
    registry.record_version(base)
    return base


def test_a_recorded_version_reads_back_whole(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        version = replace(
            parent_version("web", 3),
            parent_role="base", parent_version=7, git_dirty=True, tools={"packer": "1.6.6"},
            inputs={"definition": {"name": "web"}}, timings={"ansible": 1.25}, bake_seconds=9.5,
        )  # fmt: skip
        registry.record_version(version, packages=[Package("zlib", "1.2", "amd64"),
                                                   Package("bash", "5.2", "amd64")])  # fmt: skip
        got = registry.get("web", 3)
        assert got == version
        assert got is not None and got.label == "web v3" and got.git_dirty is True
        assert registry.get("web", 4) is None and registry.get("db", 3) is None
        assert [p.name for p in registry.packages("web", 3)] == ["bash", "zlib"]
        assert registry.roles() == ["web"]


def test_latest_history_and_reuse_pick_the_right_rows(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        for number, target, status in ((1, "docker", "tested"), (2, "qemu", "untested"),
                                       (3, "docker", "revoked")):  # fmt: skip
            recorded(registry, "web", number, target=target, status=status)
        recorded(registry, "base", 9)
        assert registry.latest("web").version == 3  # type: ignore[union-attr]
        assert registry.latest("web", target="qemu").version == 2  # type: ignore[union-attr]
        assert registry.latest("db") is None
        assert [v.version for v in registry.history("web")] == [3, 2, 1]
        assert [v.version for v in registry.history("web", limit=2)] == [3, 2]
        fingerprint = "f" * 64
        assert registry.find_reusable("web", fingerprint, "docker").version == 1  # type: ignore[union-attr]
        assert registry.find_reusable("web", fingerprint, "qemu").version == 2  # type: ignore[union-attr]
        assert registry.find_reusable("web", "0" * 64, "docker") is None
        assert registry.roles() == ["base", "web"]
        # Each version gets its own artifacts, even when several rows are read at once.
        assert [v.artifacts[0].ref for v in registry.history("web")] == [
            "kiln/web:3", "kiln/web:2", "kiln/web:1",
        ]  # fmt: skip


def test_version_status_rules_and_plain_string_use() -> None:
    # A StrEnum: stored, printed, JSON-encoded and compared as the plain string.
    assert [str(s) for s in VersionStatus] == ["baked", "untested", "tested", "failed", "revoked"]
    assert VersionStatus("tested") == "tested" and f"{VersionStatus.FAILED}" == "failed"
    assert json.dumps({"status": VersionStatus.REVOKED}) == '{"status": "revoked"}'
    assert statuses(lambda s: s.reusable) == {"baked", "untested", "tested"}
    assert statuses(lambda s: s.rollback_target) == {"baked", "untested", "tested"}
    assert statuses(lambda s: s.usable) == {"baked", "untested", "tested"}
    assert statuses(lambda s: s.promotable) == {"tested"}
    assert statuses(lambda s: s.deployable) == {"tested"}
    assert statuses(lambda s: s.awaiting_tests) == {"baked"}


def test_a_version_made_with_a_plain_status_string_holds_its_versionstatus() -> None:
    version = replace(parent_version(), status="revoked")
    assert version.status is VersionStatus.REVOKED and not version.status.usable
    with pytest.raises(ValueError, match="'quarantined' is not a valid VersionStatus"):
        replace(version, status="quarantined")


def test_find_reusable_skips_failed_and_revoked_versions(registry_url: str) -> None:
    fingerprint = "f" * 64
    with Registry(registry_url) as registry:
        for number, status in enumerate(["untested", "tested", "baked", "failed", "revoked"], 1):
            recorded(registry, "web", number, status=status)
        found = registry.find_reusable("web", fingerprint, "docker")
        assert found is not None and (found.version, found.status) == (3, "baked")


def test_statuses_are_checked_and_recorded_with_their_reason(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.db") as registry:
        recorded(registry, "web", 1)
        with pytest.raises(RegistryError, match=r"unknown status 'broken' \(known: baked, "):
            registry.set_status("web", 1, "broken")
        registry.set_status("web", 1, "revoked", "CVE-2026-1")
        got = registry.get("web", 1)
        assert got is not None and (got.status, got.status_reason) == ("revoked", "CVE-2026-1")
        assert got.status is VersionStatus.REVOKED and not got.status.usable
    # A status written around kiln (another tool, a newer release) is reported when read back.
    with closing(sqlite3.connect(tmp_path / "r.db")) as conn, conn:
        conn.execute("UPDATE versions SET status = 'quarantined' WHERE role = 'web'")
    with (
        Registry(tmp_path / "r.db") as registry,
        pytest.raises(RegistryError, match=r"web v1 has unknown status 'quarantined' in"),
    ):
        registry.get("web", 1)


def test_channels_move_and_every_move_is_logged(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        with registry.transaction() as tx:
            first = tx.set_channel(role="web", channel="prod", version=1, action="promote",
                                   actor="ann")  # fmt: skip
            second = tx.set_channel(role="web", channel="prod", version=2, action="promote",
                                    actor="bob", reason="fix", forced=True)  # fmt: skip
            tx.set_channel(role="web", channel="canary", version=2, action="promote",
                           actor="bob")  # fmt: skip
            tx.set_channel(role="db", channel="prod", version=5, action="promote",
                           actor="bob")  # fmt: skip
        assert (first, second) == (None, 1)
        assert registry.channels("web") == {"canary": 2, "prod": 2}
        assert registry.channels_pointing_at("web", 2) == ["canary", "prod"]
        assert registry.channels_pointing_at("web", 1) == []
        log = registry.channel_log("web", "prod")
        assert [(e.from_version, e.to_version, e.actor) for e in log] == [
            (1, 2, "bob"), (None, 1, "ann"),
        ]  # fmt: skip
        assert (log[0].reason, log[0].forced, log[1].forced) == ("fix", 1, 0)
        assert len(registry.channel_log("web")) == 3
        assert [(e.role, e.channel) for e in registry.channel_entries()] == [
            ("db", "prod"), ("web", "canary"), ("web", "prod"),
        ]  # fmt: skip
        assert [e.channel for e in registry.channel_entries("web")] == ["canary", "prod"]


def test_test_runs_set_the_status_and_keep_the_failure_summary(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        recorded(registry, "web", 1, status="baked")
        recorded(registry, "web", 2, status="baked")
        run = {"suite": "acceptance", "output": "...", "started_at": "t", "duration_s": 2.5}
        registry.record_test_run("web", 1, passed=False, summary="1 failed", status="failed", **run)  # type: ignore[arg-type]
        registry.record_test_run("web", 2, passed=True, summary="3 passed", status="tested", **run)  # type: ignore[arg-type]
        registry.record_test_run("web", 2, passed=True, summary="again", **run)  # type: ignore[arg-type]
        one, two = registry.get("web", 1), registry.get("web", 2)
        assert one is not None and (one.status, one.status_reason) == ("failed", "1 failed")
        assert two is not None and (two.status, two.status_reason) == ("tested", None)
        assert [(r.version, r.passed) for r in registry.test_runs("web")] == [
            (1, 0), (2, 1), (2, 1),
        ]  # fmt: skip
        assert [r.summary for r in registry.test_runs("web", 2)] == ["3 passed", "again"]


def test_a_failed_transaction_writes_nothing(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        recorded(registry, "web", 1)
        with pytest.raises(KeyError), registry.transaction() as tx:
            tx.set_status("web", 1, "revoked", "x")
            tx.log_event("web", 1, "revoke", {"why": "x"}, "ann")
            raise KeyError("interrupted")
        assert registry.get("web", 1).status == "tested"  # type: ignore[union-attr]
        assert registry.events("web") == []


def test_deployments_and_events_read_back_newest_first(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        for role, result in (("web", "ok"), ("db", "ok"), ("web", "failed")):
            registry.record_deployment(
                deployment="d", role=role, version=1, channel="prod", strategy="rolling",
                replicas=2, result=result, detail="", actor="ann", started_at="t", duration_s=1.0,
            )  # fmt: skip
        assert [d.result for d in registry.deployments("web")] == ["failed", "ok"]
        assert [d.role for d in registry.deployments()] == ["web", "db", "web"]
        registry.log_event("web", 1, "promote", {"channel": "prod", "to": 1}, "ann")
        registry.log_event("web", None, "note", {}, "bob")
        registry.log_event("db", 1, "promote", {}, "bob")
        events = registry.events("web")
        assert [(e.kind, e.version, e.actor) for e in events] == [
            ("note", None, "bob"), ("promote", 1, "ann"),
        ]  # fmt: skip
        assert events[1].detail == {"channel": "prod", "to": 1}


def test_gc_marks_artifacts_deleted_and_keeps_the_rest_live(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        recorded(registry, "web", 1)
        image = Artifact("qemu", "web-2.qcow2", "sha256:" + "b" * 64, "c" * 64, 4096)
        recorded(registry, "web", 2, artifacts=(image,))
        registry.mark_artifact_deleted("web", 1, "docker")
        assert registry.live_artifacts() == [("web", 2, image)]
        deleted = registry.get("web", 1).artifact("docker")  # type: ignore[union-attr]
        assert deleted is not None and deleted.deleted_at is not None
        assert registry.get("web", 1).artifact("qemu") is None  # type: ignore[union-attr]
        assert registry.get("web", 2).artifact() == image  # type: ignore[union-attr]


def test_summaries_descendants_and_revoked_parents(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        recorded(registry, "base", 1)
        recorded(registry, "web", 1, parent_role="base", parent_version=1, git_dirty=True)
        recorded(registry, "api", 4, parent_role="web", parent_version=1)
        recorded(registry, "web", 2, parent_role="base", parent_version=2)
        assert registry.descendants("base", 1) == [("api", 4), ("web", 1)]
        assert registry.descendants("web", 2) == []
        with registry.transaction() as tx:
            tx.mark_parent_revoked([("web", 1), ("api", 4)])
        registry.set_status("web", 2, "failed", "smoke test")
        summaries = registry.version_summaries()
        assert [(s.role, s.version) for s in summaries] == [
            ("web", 2), ("web", 1), ("base", 1), ("api", 4),
        ]  # fmt: skip
        web1 = summaries[1]
        assert web1 == VersionSummary(
            "web", 1, "role", "docker", "f" * 64, "base", 1, "tested", None, True, "0" * 40,
            True, 1.0, "2026-01-01T00:00:00.000000Z",
        )  # fmt: skip
        assert summaries[0] == VersionSummary(
            "web", 2, "role", "docker", "f" * 64, "base", 2, "failed", "smoke test", False,
            "0" * 40, False, 1.0, "2026-01-01T00:00:00.000000Z",
        )  # fmt: skip
        assert [s.version for s in registry.version_summaries("web")] == [2, 1]
        assert registry.get("api", 4).parent_revoked is True  # type: ignore[union-attr]
        assert registry.get("web", 2).parent_revoked is False  # type: ignore[union-attr]


def test_actor_names_who_acts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILN_ACTOR", "ci-bot")
    assert actor() == "ci-bot"
    monkeypatch.delenv("KILN_ACTOR")
    assert "@" in actor()


def test_a_trigger_body_stays_one_statement() -> None:
    script = "CREATE TABLE t (x);\nCREATE TRIGGER g BEFORE UPDATE ON t\nBEGIN\n  SELECT 1;\nEND;\n"
    assert _statements(script) == [
        "CREATE TABLE t (x);",
        "CREATE TRIGGER g BEFORE UPDATE ON t\nBEGIN\n  SELECT 1;\nEND;",
    ]
    assert _statements("SELECT 1;\nSELECT 2") == ["SELECT 1;", "SELECT 2"]


def test_a_transaction_refuses_writes_after_its_block(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        recorded(registry, "web", 1)
        with registry.transaction() as tx:
            tx.set_status("web", 1, "failed", "smoke test")
        with pytest.raises(RegistryError, match="transaction has ended"):
            tx.set_status("web", 1, "revoked", "too late: it would commit on its own")
        assert registry.get("web", 1).status == "failed"  # type: ignore[union-attr]


# --- survivors of the mutation run (scripts/mutation.sh) ---------------------------------------


def test_an_event_logged_inside_a_transaction_keeps_its_version(registry_url: str) -> None:
    with Registry(registry_url) as registry:
        recorded(registry, "web", 3)
        with registry.transaction() as tx:
            tx.log_event("web", 3, "revoke", {"why": "CVE-2026-1"}, "ann")
        [event] = registry.events("web")
        assert (event.version, event.kind, event.detail) == (3, "revoke", {"why": "CVE-2026-1"})


def test_a_summary_keeps_the_channels_given_and_the_log_prints_forced_as_0_or_1(
    registry_url: str,
) -> None:
    version = parent_version("web", 3)
    assert version.summary(("canary", "prod")).channels == ("canary", "prod")
    assert version.summary().channels == ()
    with Registry(registry_url) as registry:
        with registry.transaction() as tx:
            tx.set_channel(role="web", channel="prod", version=3, action="promote", actor="ann",
                           forced=True)  # fmt: skip
        [entry] = registry.channel_log("web")
        assert entry.as_dict() == {
            "id": entry.id, "role": "web", "channel": "prod", "from_version": None,
            "to_version": 3, "action": "promote", "actor": "ann", "reason": None, "forced": 1,
            "at": entry.at,
        }  # fmt: skip


def test_a_registry_that_cannot_be_read_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with Registry(path) as registry:
        recorded(registry, "web", 1)
    with closing(sqlite3.connect(path)) as raw, raw:  # behind the registry's back
        raw.execute("DROP TABLE versions")
    with Registry(path) as registry:
        for read in (registry.version_summaries, registry.history):  # bulk tuples, and rows
            with pytest.raises(RegistryError, match=f"cannot read the registry {path}: no such"):
                read("web")


# --- the PostgreSQL backend: what only it has to prove ------------------------------------------


def test_a_registry_url_names_its_backend(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"neither sqlite:///PATH nor postgresql://"):
        Registry("mysql://kiln@db/kiln")
    with Registry(f"sqlite:///{tmp_path}/by-url.db") as registry:
        assert registry.path == tmp_path / "by-url.db" and registry.location == str(registry.path)


def test_an_unreachable_postgresql_is_named_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://kiln:hunter2@/kiln?host={tmp_path}"  # no server listens there
    with pytest.raises(RegistryError) as caught:
        Registry(url)
    message = str(caught.value)
    assert message.startswith(
        f"cannot reach the registry postgresql://kiln:***@/kiln?host={tmp_path}"
    )
    assert "hunter2" not in message


def test_postgresql_refuses_to_change_a_recorded_artifact(postgres: PostgresCluster) -> None:
    import psycopg

    with Registry(postgres.new_database()) as registry:
        registry.record_version(parent_version("web", 1))
        with pytest.raises(
            psycopg.errors.RaiseException, match="a recorded artifact never changes"
        ):
            behind_the_back(registry, "UPDATE artifacts SET image_id = 'sha256:x'")
        assert registry.get("web", 1).artifact().image_id == "sha256:" + "a" * 64  # type: ignore[union-attr]
        assert registry.integrity_check() == "ok"


def test_postgresql_refuses_a_newer_schema(postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    with Registry(url) as registry:
        assert registry.schema_version == len(POSTGRES_MIGRATIONS)
        behind_the_back(
            registry, f"INSERT INTO kiln_schema VALUES ({len(POSTGRES_MIGRATIONS) + 1})"
        )
    with pytest.raises(RegistryError, match="newer than this kiln understands"):
        Registry(url)


def _allocate(url: str, count: int) -> list[int]:
    with Registry(url) as registry:
        return [registry.allocate_version("web") for _ in range(count)]


def test_version_numbers_stay_unique_across_processes(postgres: PostgresCluster) -> None:
    """Four processes (machines, for PostgreSQL) take numbers at once: none is handed out twice."""
    url = postgres.new_database()
    with Registry(url):  # migrated once, so that the race is on the numbers
        pass
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        numbers = [n for batch in pool.map(_allocate, [url] * 4, [25] * 4) for n in batch]
    assert sorted(numbers) == list(range(1, 101))


def _hold_lock(url: str, name: str, held: Any) -> None:
    from kiln.registry.postgres_backend import advisory_lock

    with advisory_lock(url, name):
        held.set()
        time.sleep(600)


def test_an_advisory_lock_waits_for_its_holder_and_dies_with_it(postgres: PostgresCluster) -> None:
    from kiln.registry.postgres_backend import advisory_lock

    url = postgres.new_database()
    context = multiprocessing.get_context("spawn")
    held = context.Event()
    holder = context.Process(target=_hold_lock, args=(url, "web", held))
    holder.start()
    try:
        assert held.wait(60), "the holder never took the lock"
        waits: list[str] = []
        with advisory_lock(url, "api", on_wait=lambda: waits.append("api")):
            pass  # another name: no wait
        threading.Timer(1.0, os.kill, (holder.pid, signal.SIGKILL)).start()
        started = time.monotonic()
        with advisory_lock(url, "web", on_wait=lambda: waits.append("web")):
            waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.join()
    assert waits == ["web"] and 0.9 < waited < 30, (waits, waited)


# --- survivors of the mutation run at 3c36a62 (scripts/mutation.sh) -----------------------------


def test_flags_read_back_as_booleans_and_a_version_without_artifacts_as_none(
    registry_url: str,
) -> None:
    with Registry(registry_url) as registry:
        recorded(registry, "web", 1, artifacts=())
        assert registry.get("web", 1).artifacts == ()  # type: ignore[union-attr]
        assert registry.history("web")[0].artifacts == ()
        run = {"suite": "acceptance", "output": "", "started_at": "t", "duration_s": 1.0}
        registry.record_test_run("web", 1, passed=True, summary="ok", **run)  # type: ignore[arg-type]
        assert registry.test_runs("web")[0].passed is True
        with registry.transaction() as tx:
            tx.set_channel(role="web", channel="prod", version=1, action="promote", actor="a",
                           forced=True)  # fmt: skip
            tx.set_channel(role="web", channel="dev", version=1, action="promote", actor="a")
        forced, plain = registry.channel_log("web")[::-1]
        assert forced.forced is True and plain.forced is False


def test_a_new_sqlite_registry_makes_its_missing_directories(tmp_path: Path) -> None:
    with Registry(tmp_path / "a" / "b" / "registry.db") as registry:
        assert registry.roles() == []
