"""`bake --outdated --upstream`'s plan: what is rebaked, in which order, with which reasons, and
how the report's findings read. The real path (bakes, a signed repository on 127.0.0.1) is
tests/integration/test_upstream_bakes.py; here the Baker only records what it was asked."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import parent_version
from kiln import Registry
from kiln.bake import BakeOutcome
from kiln.cli.upstream_text import as_json, format_report, raise_for
from kiln.errors import KilnError, UpdatesPending
from kiln.lifecycle import ImageUpdates, UpstreamReport, bake_upstream, upstream_scope
from kiln.lifecycle._reasons import describe_reason
from kiln.lifecycle.apt_updates import PendingUpdate
from kiln.model import Project
from kiln.registry import Package

DEMO = PendingUpdate("kiln-demo", "all", "1.0", "1.1", ("stable-security",), True)
TZDATA = PendingUpdate("tzdata", "all", "2024a", "2025b", ("stable",), False)


def make_project(tmp_path: Path) -> Project:
    for name in ("common", "web"):
        (tmp_path / "roles" / name / "tasks").mkdir(parents=True)
    project = Project(tmp_path)
    debian = project.base("debian")
    project.role("trusted", parent=debian, ansible_roles=["common"])
    project.role("app", parent="trusted", ansible_roles=["web"])
    project.role("other", parent=debian, ansible_roles=["common"])
    return project


class RecordingBaker:
    """Records each bake and records a new version of each node given a reason, holding the
    packages that `upgraded` says the new version gets."""

    def __init__(self, project: Project, registry: Registry, upgraded: dict[str, str]) -> None:
        self.project, self.registry, self.upgraded = project, registry, upgraded
        self.calls: list[tuple[str, dict[str, dict[str, Any]]]] = []

    def bake(self, name: str, *, reasons: dict[str, str]) -> list[BakeOutcome]:
        self.calls.append((name, {k: json.loads(v) for k, v in reasons.items()}))
        outcomes = []
        for node in self.project.role_named(name).ancestry():
            newest = self.registry.latest(node.name)
            assert newest is not None
            if node.name not in reasons:
                outcomes.append(BakeOutcome(version=newest, baked=False))
                continue
            number = self.registry.allocate_version(node.name)
            record = replace(newest, version=number, artifacts=())
            packages = [
                Package(p.name, self.upgraded.get(p.name, p.version), p.arch)
                for p in self.registry.packages(node.name, newest.version)
            ]
            self.registry.record_version(record, packages=packages)
            outcomes.append(BakeOutcome(version=record, baked=True))
        return outcomes


def recorded(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "r.db")
    demo = [Package("kiln-demo", "1.0", "all")]
    for role, parent, packages in (
        ("debian", None, []),
        ("trusted", "debian", []),
        ("app", "trusted", demo),
        ("other", "debian", []),
    ):
        version = replace(
            parent_version(role, registry.allocate_version(role)),
            kind="base" if parent is None else "role",
            parent_role=parent,
            parent_version=1 if parent else None,
        )
        registry.record_version(version, packages=packages)
    return registry


def report(*images: tuple[str, tuple[PendingUpdate, ...]]) -> UpstreamReport:
    return UpstreamReport(
        tuple(ImageUpdates(r, 1, "role", True, (), updates) for r, updates in images),
        checked_at="2026-12-02T00:00:00Z",
        seconds=0.1,
    )


def test_an_image_with_updates_is_rebaked_with_its_descendants_and_their_reasons(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    with recorded(tmp_path) as registry:
        baker = RecordingBaker(project, registry, {"kiln-demo": "1.1"})
        found = report(("debian", ()), ("trusted", (TZDATA,)), ("app", ()), ("other", ()))
        done = bake_upstream(baker, found)  # type: ignore[arg-type]
    # Parents first, each once; other is not built on trusted.
    assert [(name, sorted(r)) for name, r in baker.calls] == [
        ("trusted", ["trusted"]),
        ("app", ["app"]),
    ]
    reasons = {**baker.calls[0][1], **baker.calls[1][1]}
    assert reasons["trusted"]["kind"] == "upstream-updates" and reasons["trusted"]["replaces"] == 1
    assert reasons["trusted"]["updates"][0]["candidate"] == "2025b"
    assert reasons["app"] == {"kind": "parent-rebaked", "parent": "trusted", "replaces": 1}
    assert [name for name, _ in done.bakes] == ["trusted", "app"] and done.still_pending == []


def test_a_base_with_updates_rebakes_every_role_once_parents_first(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with recorded(tmp_path) as registry:
        baker = RecordingBaker(project, registry, {})
        bake_upstream(baker, report(("debian", (TZDATA,))))  # type: ignore[arg-type]
    # Shallowest first, then by name; the base is rebaked with the first role built on it.
    assert [(name, sorted(r)) for name, r in baker.calls] == [
        ("other", ["debian", "other"]),
        ("trusted", ["trusted"]),
        ("app", ["app"]),
    ]


def test_within_limits_the_rebake_and_a_missed_update_is_named(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with recorded(tmp_path) as registry:
        assert upstream_scope(project, registry, ["trusted"]) == ["app", "trusted"]
        baker = RecordingBaker(project, registry, {})  # the rebake does not get kiln-demo 1.1
        found = report(("app", (DEMO,)), ("other", (TZDATA,)))
        done = bake_upstream(baker, found, within=["trusted"])  # type: ignore[arg-type]
    assert [name for name, _ in baker.calls] == ["app"]
    assert done.still_pending == ["app v2: kiln-demo 1.0 (candidate 1.1)"]


def test_reasons_read_as_one_line() -> None:
    doc = json.dumps(
        {"kind": "upstream-updates", "replaces": 1, "updates": [
            {"name": "kiln-demo", "installed": "1.0", "candidate": "1.1", "security": True},
            {"name": "tzdata", "installed": "a", "candidate": "b", "security": False},
        ]}
    )  # fmt: skip
    assert describe_reason(doc) == (
        "rebaked for 2 upstream updates (1 security): kiln-demo 1.0 -> 1.1 (security), "
        "tzdata a -> b"
    )
    assert describe_reason(None) is None


def test_the_report_never_says_up_to_date_for_an_image_it_could_not_check() -> None:
    unchecked = UpstreamReport(
        (ImageUpdates("web", 3, "role", True, (), (), unchecked="no apt sources recorded"),),
        checked_at="t",
        seconds=0.1,
    )
    text = "\n".join(format_report(unchecked))
    assert "NOT CHECKED" in text and "up to date" not in text
    assert as_json(unchecked)["images"][0]["checked"] is False
    with pytest.raises(UpdatesPending, match="not checked: web v3"):
        raise_for(unchecked, "security")


def test_fail_on_picks_what_makes_a_schedule_fail() -> None:
    plain = report(("web", (TZDATA,)))
    raise_for(plain, "")  # no --fail-on: the report is the answer
    raise_for(plain, "security")  # no security update
    with pytest.raises(UpdatesPending, match="updates pending for web v1") as raised:
        raise_for(plain, "any")
    assert raised.value.exit_code == 3
    with pytest.raises(UpdatesPending, match="security updates pending for web v1"):
        raise_for(report(("web", (DEMO,))), "security")
    with pytest.raises(KilnError, match="--fail-on takes security or any"):
        raise_for(plain, "sometimes")
