"""Fixtures for fast tests: the repository's real role definitions and a synthetic bake plan."""

from __future__ import annotations

import runpy
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from kiln.fingerprint import Fingerprint
from kiln.model import Project, Role
from kiln.registry import Artifact, Registry, Version
from kiln.targets import get_target
from kiln.targets.base import BakePlan

REPO = Path(__file__).resolve().parents[2]
#: The registry identity of plans without a registry: the golden files name images with it.
REGISTRY_ID = "5ca1ab1e" * 4


def repo_project() -> Project:
    """The Project defined by the repository's tasks.py, exactly as invoke loads it."""
    project = runpy.run_path(str(REPO / "tasks.py"))["project"]
    assert isinstance(project, Project)
    return project


def parent_version(role: str = "base", version: int = 7, ref: str | None = None) -> Version:
    return Version(
        role=role, version=version, kind="role", target="docker", fingerprint="f" * 64,
        parent_role=None, parent_version=None, status="tested", git_commit="0" * 40,
        git_dirty=False, tools={}, inputs={}, timings={}, bake_seconds=1.0,
        created_at="2026-01-01T00:00:00.000000Z",
        artifacts=(Artifact("docker", ref or f"kiln/{role}:{version}", "sha256:" + "a" * 64),),
    )  # fmt: skip


def plan_for(project: Project, role: Role, target: str = "docker") -> BakePlan:
    fingerprint = Fingerprint(digest="e" * 64, inputs={})
    parent = parent_version(role.parent.name)
    images = project.image_names(REGISTRY_ID)
    return BakePlan(project, role, fingerprint, parent, get_target(target), images)


@pytest.fixture(autouse=True)
def default_image_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests expect the repository's own `kiln/*` names, whatever the caller's environment."""
    monkeypatch.delenv("KILN_IMAGE_NAMESPACE", raising=False)


@pytest.fixture
def project() -> Project:
    return repo_project()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty registry of each backend: a SQLite file, and a database of its own in the
    worker's throwaway PostgreSQL cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/r.db"
    return str(request.getfixturevalue("postgres").new_database())


def behind_the_back(registry: Registry, *statements: str) -> None:
    """Run SQL on the registry's database around kiln, as another tool or a person would."""
    if registry.path is not None:
        with closing(sqlite3.connect(registry.path)) as raw, raw:
            for statement in statements:
                raw.execute(statement)
        return
    import psycopg

    with psycopg.connect(registry.location, autocommit=True) as raw:
        for statement in statements:
            raw.execute(statement)
