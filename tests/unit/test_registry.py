"""The registry: monotonic versions, atomic records, immutable artifacts, versioned schema."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import parent_version
from kiln import Registry, RegistryError
from kiln.registry import MIGRATIONS, Artifact, Package


def test_versions_are_monotonic_and_never_reused(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.db") as registry:
        assert [registry.allocate_version("web") for _ in range(3)] == [1, 2, 3]
        assert registry.allocate_version("base") == 1
    with Registry(tmp_path / "r.db") as registry:
        assert registry.allocate_version("web") == 4


def test_record_and_find_reusable(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.db") as registry:
        version = replace(parent_version("web", registry.allocate_version("web")), status="baked")
        registry.record_version(version, packages=[Package("nginx", "1.22", "amd64")])
        found = registry.find_reusable("web", version.fingerprint, "docker")
        assert found is not None and found.version == 1
        assert found.artifact("docker") == version.artifacts[0]
        assert registry.packages("web", 1) == [Package("nginx", "1.22", "amd64")]
        registry.set_status("web", 1, "failed", "acceptance failed")
        assert registry.find_reusable("web", version.fingerprint, "docker") is None
        assert registry.integrity_check() == "ok"


def test_a_failed_record_leaves_nothing(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.db") as registry:
        version = parent_version("web", registry.allocate_version("web"))
        bad = replace(version, artifacts=(*version.artifacts, version.artifacts[0]))
        with pytest.raises(sqlite3.IntegrityError):
            registry.record_version(bad)
        assert registry.history("web") == []
        assert registry.packages("web", version.version) == []


def test_recorded_artifacts_never_change(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.db") as registry:
        registry.record_version(parent_version("web", 1))
        with (
            pytest.raises(sqlite3.IntegrityError, match="a recorded artifact never changes"),
            registry.transaction() as conn,
        ):
            conn.execute("UPDATE artifacts SET image_id = 'sha256:x' WHERE role = 'web'")
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


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(RegistryError, match="newer than this kiln understands"):
        Registry(path)
