"""Lifecycle rules on a temporary registry of synthetic versions: no Docker, no packer."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import behind_the_back
from kiln import lifecycle
from kiln.cli import lifecycle_text
from kiln.errors import Refused, RegistryError
from kiln.lifecycle import FileEntry
from kiln.model import Project
from kiln.registry import (
    MIGRATIONS,
    Artifact,
    ChannelLogEntry,
    Package,
    Registry,
    Transaction,
    Version,
    utc_now,
)


@pytest.fixture
def reg(registry_url: str) -> Iterator[Registry]:
    """A registry of each backend: the lifecycle means the same on SQLite and PostgreSQL."""
    with Registry(registry_url) as registry:
        yield registry


def record(
    reg: Registry,
    role: str,
    version: int,
    *,
    parent: tuple[str, int] | None = None,
    status: str = "tested",
    packages: Sequence[Package] = (),
    inputs: dict[str, Any] | None = None,
    dirty: bool = False,
) -> Version:
    """Record a synthetic version the way a bake would (number from the counter)."""
    assert reg.allocate_version(role) == version
    v = Version(
        role=role, version=version, kind="role" if parent else "base", target="docker",
        fingerprint=f"{role}-{version}".encode().hex().ljust(64, "0"),
        parent_role=parent[0] if parent else None, parent_version=parent[1] if parent else None,
        status=status, git_commit="0123456789abcdef", git_dirty=dirty, tools={},
        inputs=inputs or {}, timings={}, bake_seconds=1.5, created_at=utc_now(),
        artifacts=(Artifact("docker", f"ns/{role}:{version}", f"sha256:{role}{version}"),),
    )  # fmt: skip
    reg.record_version(v, packages=packages)
    return v


def tree(reg: Registry, web_versions: int = 3, web_status: str = "tested") -> None:
    """debian v1 <- base v1 <- web v1..vN."""
    record(reg, "debian", 1)
    record(reg, "base", 1, parent=("debian", 1))
    for n in range(1, web_versions + 1):
        record(reg, "web", n, parent=("base", 1), status=web_status)


# -- history and show -----------------------------------------------------------------------
def test_history_lists_newest_first_with_channels_and_labels(reg: Registry) -> None:
    tree(reg)
    lifecycle.promote(reg, "web", 2, channel="prod", who="ann")
    lifecycle.revoke(reg, "base", 1, reason="bad openssl", who="ann")
    result = lifecycle.history(reg, "web")
    assert [e.version for e in result.versions] == [3, 2, 1]
    assert result.versions[1].channels == ("prod",)
    assert result.versions[0].status_label == "tested (built on revoked parent)"
    assert result.channel_log[0].to_version == 2
    assert result.deployments == []
    data = lifecycle_text.as_json(result)
    assert data["versions"][0]["status_label"] == "tested (built on revoked parent)"
    assert any("built on revoked parent" in line for line in lifecycle_text.format_history(result))


def test_history_of_an_unknown_role_says_what_to_do(reg: Registry) -> None:
    with pytest.raises(RegistryError, match="invoke bake nope"):
        lifecycle.history(reg, "nope")


def test_show_masks_secrets_digests_roles_and_follows_ancestry(reg: Registry) -> None:
    files = {"web": {"tasks/main.yml": "a" * 64, "templates/x.j2": "b" * 64}}
    inputs = {
        "definition": {
            "name": "web",
            "variables": {"web_title": "Hi"},
            "secrets": {"api_token": "env:API_TOKEN"},
        },
        "ansible_role_files": files,
    }
    record(reg, "debian", 1)
    record(reg, "base", 1, parent=("debian", 1))
    record(
        reg, "web", 1, parent=("base", 1), inputs=inputs,
        packages=[Package("nginx", "1.22", "amd64")],
    )  # fmt: skip
    reg.record_test_run(
        "web", 1, suite="acceptance", passed=True, summary="3 passed", output="",
        started_at=utc_now(), duration_s=2.0,
    )  # fmt: skip
    details = lifecycle.show(reg, "web")
    assert details.variables == {"api_token": lifecycle.MASK, "web_title": "Hi"}
    assert "variables" not in details.definition and "secrets" not in details.definition
    assert details.ansible_roles == [
        lifecycle.AnsibleRoleDigest("web", lifecycle.role_files_digest(files["web"]), 2)
    ]
    assert [(a.role, a.version) for a in details.ancestry] == [
        ("web", 1),
        ("base", 1),
        ("debian", 1),
    ]
    assert details.packages == [Package("nginx", "1.22", "amd64")]
    assert details.test_runs[0].summary == "3 passed"
    text = "\n".join(lifecycle_text.format_show(details))
    assert "api_token = ********" in text and "env:API_TOKEN" not in text


def test_show_of_a_missing_version_names_the_newest(reg: Registry) -> None:
    tree(reg, 2)
    with pytest.raises(RegistryError, match="web has no version 9 \\(newest: v2\\)"):
        lifecycle.show(reg, "web", 9)


# -- diff -----------------------------------------------------------------------------------
def test_diff_reports_packages_and_inputs(reg: Registry) -> None:
    common = {"templates": {"hcl": "t1"}, "tools": {"packer": "1.11.2"}, "target": "docker"}
    a_inputs = {
        **common,
        "definition": {"variables": {"web_title": "Hi"}, "ansible_roles": ["web"]},
        "ansible_role_files": {"web": {"tasks/main.yml": "1", "files/old": "2"}},
        "parent": {"name": "base", "fingerprint": "p1"},
    }
    b_inputs = {
        **common,
        "definition": {
            "variables": {"web_title": "Hi", "web_extra_packages": ["curl"]},
            "ansible_roles": ["web"],
        },
        "ansible_role_files": {"web": {"tasks/main.yml": "9", "files/new": "3"}},
        "parent": {"name": "base", "fingerprint": "p2"},
        "tools": {"packer": "1.12.0"},
    }
    record(reg, "debian", 1)
    record(reg, "base", 1, parent=("debian", 1))
    record(reg, "base", 2, parent=("debian", 1))
    pkgs = [Package("nginx", "1.22", "amd64"), Package("libssl3", "3.0.1", "amd64")]
    record(reg, "web", 1, parent=("base", 1), inputs=a_inputs, packages=pkgs)
    record(
        reg, "web", 2, parent=("base", 2), inputs=b_inputs,
        packages=[pkgs[0], Package("libssl3", "3.0.2", "amd64"), Package("curl", "7", "amd64")],
    )  # fmt: skip
    result = lifecycle.diff(reg, "web", 1, 2, files=False)
    assert [(p.name, p.change) for p in result.packages] == [
        ("curl", "added"),
        ("libssl3", "changed"),
    ]
    got = {(i.kind, i.name, i.change) for i in result.inputs}
    assert got == {
        ("variable", "web_extra_packages", "added"),
        ("role_file", "web/tasks/main.yml", "changed"),
        ("role_file", "web/files/old", "removed"),
        ("role_file", "web/files/new", "added"),
        ("parent", "version", "changed"),
        ("parent", "fingerprint", "changed"),
        ("tool", "packer", "changed"),
    }
    assert result.files is None and "--no-files" in (result.files_note or "")


def test_diff_packages_drops_the_multiarch_qualifier() -> None:
    old = [Package("libssl3:amd64", "3.0.1", "amd64")]
    new = [Package("libssl3", "3.0.2", "amd64"), Package("libcurl4:amd64", "7.88", "amd64")]
    assert lifecycle.diff_packages(old, new) == [
        lifecycle.PackageChange("libcurl4", "amd64", "added", None, "7.88"),
        lifecycle.PackageChange("libssl3", "amd64", "changed", "3.0.1", "3.0.2"),
    ]


def test_diff_filesystems_compares_content_mode_and_links() -> None:
    def entry(sha: str | None = "x", mode: int = 0o644, link: str | None = None) -> FileEntry:
        return FileEntry("file" if link is None else "symlink", 1, mode, 0, 0, sha, link)

    old = {"/a": entry(), "/b": entry(), "/c": entry(link="/x"), "/gone": entry()}
    new = {"/a": entry(), "/b": entry(mode=0o755), "/c": entry(link="/y"), "/new": entry()}
    changes = lifecycle.diff_filesystems(old, new)
    assert [(c.path, c.change) for c in changes] == [
        ("/b", "changed"),
        ("/c", "changed"),
        ("/gone", "removed"),
        ("/new", "added"),
    ]


# -- promote and rollback -------------------------------------------------------------------
def test_promote_refuses_untested_failed_and_revoked(reg: Registry) -> None:
    record(reg, "debian", 1)
    record(reg, "base", 1, parent=("debian", 1))
    record(reg, "web", 1, parent=("base", 1), status="baked")
    record(reg, "web", 2, parent=("base", 1), status="tested")
    record(reg, "web", 3, parent=("base", 1), status="tested")
    reg.set_status("web", 2, "failed", "acceptance: page not served")
    lifecycle.revoke(reg, "web", 3, reason="leaked key", who="ann")
    with pytest.raises(Refused, match="web v1 is baked, not tested"):  # a RegistryError too
        lifecycle.promote(reg, "web", 1, channel="prod")
    with pytest.raises(
        RegistryError,
        match=r"web v2 is failed \(acceptance: page not served\); promote it with --force "
        r"--reason '\.\.\.' if you must",
    ):
        lifecycle.promote(reg, "web", 2, channel="prod")
    with pytest.raises(RegistryError, match=r"web v3 is revoked \(leaked key\)"):
        lifecycle.promote(reg, "web", 3, channel="prod")
    assert reg.channels("web") == {}


def test_forced_promotion_needs_a_reason_and_records_it(reg: Registry) -> None:
    tree(reg, 1, web_status="baked")
    with pytest.raises(RegistryError, match="--force needs --reason"):
        lifecycle.promote(reg, "web", 1, channel="prod", force=True)
    change = lifecycle.promote(
        reg, "web", 1, channel="prod", force=True, reason="hotfix, tests flaky", who="ann"
    )
    assert change.forced and change.to_version == 1
    [entry] = reg.channel_log("web", "prod")
    assert entry.forced == 1
    assert entry.reason == "hotfix, tests flaky"
    assert entry.actor == "ann"
    assert entry.action == "promote"


def test_promote_refuses_versions_on_revoked_parents_and_deleted_artifacts(reg: Registry) -> None:
    tree(reg, 2)
    lifecycle.revoke(reg, "base", 1, reason="bad", who="ann")
    with pytest.raises(RegistryError, match="built on a revoked parent"):
        lifecycle.promote(reg, "web", 2, channel="prod")
    reg.mark_artifact_deleted("web", 1, "docker")
    with pytest.raises(RegistryError, match="deleted by gc"):
        lifecycle.promote(reg, "web", 1, channel="prod", force=True, reason="x")
    with pytest.raises(RegistryError, match="channel 'Prod!' is invalid"):
        lifecycle.promote(reg, "web", 2, channel="Prod!")


def test_promote_twice_is_a_no_op(reg: Registry) -> None:
    tree(reg, 1)
    lifecycle.promote(reg, "web", 1, channel="prod", who="ann")
    again = lifecycle.promote(reg, "web", 1, channel="prod", who="ann")
    assert not again.changed
    assert len(reg.channel_log("web", "prod")) == 1


def test_rollback_walks_back_through_the_log_skipping_bad_versions(reg: Registry) -> None:
    tree(reg, 4)
    for n in (1, 2, 3, 4):
        lifecycle.promote(reg, "web", n, channel="prod", who="ann")
    reg.set_status("web", 3, "failed", "acceptance")
    first = lifecycle.rollback(reg, "web", channel="prod", who="bob")
    assert (first.from_version, first.to_version) == (4, 2)  # v3 failed: skipped
    second = lifecycle.rollback(reg, "web", channel="prod", who="bob")
    assert (second.from_version, second.to_version) == (2, 1)  # back, never forth to v4
    with pytest.raises(RegistryError, match="no earlier version to roll back to"):
        lifecycle.rollback(reg, "web", channel="prod")
    assert reg.channel_log("web", "prod")[0].action == "rollback"
    assert reg.channel_log("web", "prod")[0].actor == "bob"


def test_rollback_of_an_empty_channel_is_refused(reg: Registry) -> None:
    tree(reg, 1)
    with pytest.raises(RegistryError, match="points at nothing"):
        lifecycle.rollback(reg, "web", channel="prod")


def _move(id: int, action: str, to_version: int) -> ChannelLogEntry:
    return ChannelLogEntry(id, "web", "prod", None, to_version, action, "ann", None, False, "t")


def test_channel_stack_pops_rollbacks() -> None:
    log = [
        _move(id=1, action="promote", to_version=1),
        _move(id=2, action="promote", to_version=2),
        _move(id=3, action="promote", to_version=3),
        _move(id=4, action="rollback", to_version=2),
        _move(id=5, action="promote", to_version=1),
    ]
    assert lifecycle.channel_stack(reversed(log)) == [1, 2, 1]


# -- revoke ---------------------------------------------------------------------------------
def test_revoke_moves_channels_back_and_flags_descendants(reg: Registry) -> None:
    tree(reg, 3)
    record(reg, "api", 1, parent=("web", 3))  # a role built on web
    record(reg, "api-worker", 1, parent=("api", 1))
    lifecycle.promote(reg, "web", 1, channel="prod", who="ann")
    lifecycle.promote(reg, "web", 3, channel="prod", who="ann")
    lifecycle.promote(reg, "web", 3, channel="staging", who="ann")
    lifecycle.promote(reg, "api", 1, channel="prod", who="ann")
    result = lifecycle.revoke(reg, "web", 3, reason="CVE-2024-1", who="eve")
    assert reg.get("web", 3) is not None
    assert reg.get("web", 3).status == "revoked"  # type: ignore[union-attr]
    assert reg.get("web", 3).status_reason == "CVE-2024-1"  # type: ignore[union-attr]
    assert reg.channels("web") == {"prod": 1, "staging": None}
    assert result.emptied == ["staging"]
    assert any("staging of web is now EMPTY" in w for w in result.warnings)
    assert any("channel prod of api points at v1" in w for w in result.warnings)
    assert result.descendants == [("api", 1), ("api-worker", 1)]
    assert reg.get("api", 1).parent_revoked  # type: ignore[union-attr]
    assert reg.get("api-worker", 1).parent_revoked  # type: ignore[union-attr]
    assert not reg.get("web", 2).parent_revoked  # type: ignore[union-attr]
    log = reg.channel_log("web", "prod")[0]
    assert (log.action, log.from_version, log.to_version, log.actor) == (
        "revoke",
        3,
        1,
        "eve",
    )
    [event] = reg.events("web")
    assert event.kind == "revoke"
    assert event.detail["reason"] == "CVE-2024-1"
    assert event.detail["descendants"] == ["api v1", "api-worker v1"]


def test_revoke_falls_back_to_tested_versions_only(reg: Registry) -> None:
    tree(reg, 3)
    for n in (1, 2, 3):
        lifecycle.promote(reg, "web", n, channel="prod", who="ann")
    reg.set_status("web", 2, "untested")
    lifecycle.revoke(reg, "web", 3, reason="bad", who="ann")
    assert reg.channels("web") == {"prod": 1}


def test_revoke_is_one_transaction(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    tree(reg, 2)
    record(reg, "api", 1, parent=("web", 2))
    lifecycle.promote(reg, "web", 1, channel="prod", who="ann")
    lifecycle.promote(reg, "web", 2, channel="prod", who="ann")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(Transaction, "log_event", boom)  # the last step of revoke fails
    with pytest.raises(OSError, match="disk I/O error"):
        lifecycle.revoke(reg, "web", 2, reason="bad", who="ann")
    assert reg.get("web", 2).status == "tested"  # type: ignore[union-attr]
    assert reg.channels("web") == {"prod": 2}
    assert not reg.get("api", 1).parent_revoked  # type: ignore[union-attr]
    assert len(reg.channel_log("web", "prod")) == 2


def test_revoke_needs_a_reason_and_refuses_twice(reg: Registry) -> None:
    tree(reg, 1)
    with pytest.raises(RegistryError, match="needs --reason"):
        lifecycle.revoke(reg, "web", 1, reason=" ")
    lifecycle.revoke(reg, "web", 1, reason="bad", who="ann")
    with pytest.raises(RegistryError, match="already revoked"):
        lifecycle.revoke(reg, "web", 1, reason="bad", who="ann")


# -- gc -------------------------------------------------------------------------------------
class Deleter:
    def __init__(self, refuse: Sequence[str] = ()) -> None:
        self.deleted: list[str] = []
        self.refuse = set(refuse)

    def __call__(self, artifact: Artifact) -> bool:
        if artifact.ref in self.refuse:
            return False
        self.deleted.append(artifact.ref)
        return True


def test_gc_keeps_channels_parents_and_newest(reg: Registry) -> None:
    record(reg, "debian", 1)
    record(reg, "debian", 2)
    record(reg, "debian", 3)
    record(reg, "base", 1, parent=("debian", 1))
    record(reg, "base", 2, parent=("debian", 2))
    record(reg, "base", 3, parent=("debian", 3))
    for n in range(1, 6):
        record(reg, "web", n, parent=("base", 1 if n == 1 else 3))
    lifecycle.promote(reg, "web", 1, channel="prod", who="ann")
    deleter = Deleter()
    result = lifecycle.gc(reg, keep=2, delete=deleter)
    # Kept: web v5, v4 (newest 2) and v1 (prod); base v3, v2 (newest), v1 (parent of web v1);
    # debian v3, v2 (newest), v1 (parent of base v1, itself parent of the prod version).
    assert sorted(deleter.deleted) == ["ns/web:2", "ns/web:3"]
    assert sorted((i.role, i.version) for i in result.deleted) == [("web", 2), ("web", 3)]
    why = {(i.role, i.version): i.why for i in result.kept}
    assert why[("web", 1)] == "channel prod"
    assert why[("base", 1)] == "parent of web v1"
    assert why[("debian", 1)] == "parent of base v1"
    assert why[("web", 5)] == "one of the newest 2"
    gone = reg.get("web", 2)
    assert gone is not None and gone.artifacts[0].deleted_at is not None  # the record stays
    assert reg.get("web", 4).artifacts[0].deleted_at is None  # type: ignore[union-attr]
    again = lifecycle.gc(reg, keep=2, delete=deleter)
    assert again.deleted == []


def test_gc_dry_run_deletes_nothing(reg: Registry) -> None:
    tree(reg, 5)
    deleter = Deleter()
    result = lifecycle.gc(reg, keep=1, dry_run=True, delete=deleter)
    assert deleter.deleted == []
    assert sorted(i.version for i in result.deleted if i.role == "web") == [1, 2, 3, 4]
    assert all(v.artifacts[0].deleted_at is None for v in reg.history("web"))


def test_gc_leaves_undeletable_artifacts_recorded(reg: Registry) -> None:
    tree(reg, 2)
    result = lifecycle.gc(reg, keep=1, delete=Deleter(refuse=["ns/web:1"]))
    assert [(i.role, i.version) for i in result.failed] == [("web", 1)]
    assert reg.get("web", 1).artifacts[0].deleted_at is None  # type: ignore[union-attr]
    with pytest.raises(RegistryError, match="--keep 0 is too low"):
        lifecycle.gc(reg, keep=0, delete=Deleter())


def test_version_numbers_are_never_reused(reg: Registry) -> None:
    tree(reg, 3)
    assert reg.allocate_version("web") == 4  # a bake that dies before recording...
    lifecycle.gc(reg, keep=1, delete=Deleter())
    lifecycle.revoke(reg, "web", 3, reason="bad", who="ann")
    # ...and gc and revoke still never hand out a number twice.
    assert reg.allocate_version("web") == 5
    behind_the_back(  # even if the newest records vanished
        reg,
        "DELETE FROM artifacts WHERE role = 'web' AND version >= 2",
        "DELETE FROM versions WHERE role = 'web' AND version >= 2",
    )
    assert reg.allocate_version("web") == 6


# -- outdated -------------------------------------------------------------------------------
def test_outdated_finds_superseded_and_revoked_parents(reg: Registry) -> None:
    record(reg, "debian", 1)
    record(reg, "base", 1, parent=("debian", 1))
    record(reg, "web", 1, parent=("base", 1))
    record(reg, "api", 1, parent=("base", 1))
    assert lifecycle.outdated(reg) == []
    record(reg, "base", 2, parent=("debian", 1), status="failed")
    assert lifecycle.outdated(reg) == []  # a failed parent supersedes nothing
    record(reg, "base", 3, parent=("debian", 1), status="baked")
    found = {o.role: o for o in lifecycle.outdated(reg)}
    assert set(found) == {"web", "api"}
    assert found["web"].newest_parent == 3
    assert "superseded by v3" in found["web"].why
    record(reg, "web", 2, parent=("base", 3))
    lifecycle.revoke(reg, "base", 3, reason="bad", who="ann")
    found = {o.role: o for o in lifecycle.outdated(reg)}
    assert set(found) == {"web"}  # api v1 is on base v1, and base v3 no longer counts
    assert "base v3 is revoked" in found["web"].why


class FakeBaker:
    """Records a new version on the parent's newest version, as a forced bake would."""

    def __init__(self, project: Project, registry: Registry) -> None:
        self.project = project
        self.registry = registry
        self.baked: list[str] = []

    def bake(self, name: str, *, force: bool = False) -> list[Any]:
        assert force
        role = self.project.role_named(name)
        parent = self.registry.latest(role.parent.name)
        assert parent is not None
        newest = self.registry.latest(name)
        record(
            self.registry, name, (newest.version if newest else 0) + 1,
            parent=(parent.role, parent.version),
        )  # fmt: skip
        self.baked.append(name)
        return []


def test_bake_outdated_rebakes_parents_first_and_cascades(reg: Registry, tmp_path: Path) -> None:
    for name in ("common", "web"):
        (tmp_path / "roles" / name / "tasks").mkdir(parents=True)
    project = Project(tmp_path)
    debian = project.base("debian")
    project.role("base", parent=debian, ansible_roles=["common"])
    project.role("web", parent="base")
    project.role("web-canary", parent="web", ansible_roles=["web"])
    record(reg, "debian", 1)
    record(reg, "base", 1, parent=("debian", 1))
    record(reg, "web", 1, parent=("base", 1))
    record(reg, "web-canary", 1, parent=("web", 1))
    record(reg, "gone", 1, parent=("debian", 1))  # no longer defined: skipped
    record(reg, "debian", 2)
    baker = FakeBaker(project, reg)
    done = lifecycle.bake_outdated(baker)  # type: ignore[arg-type]
    assert [name for name, _ in done] == ["base", "web", "web-canary"]
    assert lifecycle.outdated(reg)[0].role == "gone"
    assert reg.latest("web-canary").parent_version == 2  # type: ignore[union-attr]


def test_bake_outdated_within_one_role(reg: Registry, tmp_path: Path) -> None:
    for name in ("common", "web"):
        (tmp_path / "roles" / name / "tasks").mkdir(parents=True)
    project = Project(tmp_path)
    debian = project.base("debian")
    project.role("base", parent=debian, ansible_roles=["common"])
    project.role("web", parent="base")
    record(reg, "debian", 1)
    record(reg, "base", 1, parent=("debian", 1))
    record(reg, "web", 1, parent=("base", 1))
    record(reg, "base", 2, parent=("debian", 1))
    record(reg, "debian", 2)
    baker = FakeBaker(project, reg)
    done = lifecycle.bake_outdated(baker, within=["web"])  # type: ignore[arg-type]
    assert [name for name, _ in done] == ["web"]  # base is outdated too, but not asked for


# -- schema ---------------------------------------------------------------------------------
def test_a_v1_registry_migrates_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO counters VALUES ('web', 7)")
    conn.execute(
        "INSERT INTO versions VALUES ('web', 7, 'role', 'docker', 'f00d', 'base', 2, 'tested',"
        " 'abc', 0, '{}', '{\"definition\": {\"variables\": {\"a\": 1}}}', '{}', 12.5,"
        " '2024-01-01T00:00:00Z')"
    )
    conn.execute(
        "INSERT INTO artifacts VALUES ('web', 7, 'docker', 'kiln/web:7', 'sha256:1', NULL,"
        " NULL, NULL)"
    )
    conn.execute("INSERT INTO packages VALUES ('web', 7, 'nginx', '1.22', 'amd64')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Registry(path) as reg:
        assert reg.schema_version == len(MIGRATIONS)
        assert reg.integrity_check() == "ok"
        version = reg.get("web", 7)
        assert version is not None
        assert (version.status, version.bake_seconds, version.parent_revoked) == (
            "tested",
            12.5,
            False,
        )
        assert version.artifacts[0].ref == "kiln/web:7"
        assert reg.packages("web", 7) == [Package("nginx", "1.22", "amd64")]
        assert reg.allocate_version("web") == 8
        # The lifecycle works on the migrated data.
        assert lifecycle.history(reg, "web").versions[0].version == 7
        lifecycle.promote(reg, "web", 7, channel="prod", who="ann")
        assert reg.channels("web") == {"prod": 7}
