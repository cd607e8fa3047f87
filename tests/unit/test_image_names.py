"""Image names (project and registry in every name) and recorded images whose tag moved.

The engine is a dict here: ref or image id → image id, as `docker image inspect` answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import parent_version
from kiln import DefinitionError, ImageMoved, Project, tools
from kiln.bake.policy import BakePolicy
from kiln.docker import recorded_image_present
from kiln.fingerprint import Fingerprint
from kiln.lifecycle import diff, gc
from kiln.registry import Registry, Version
from kiln.targets.docker import DockerTarget

RECORDED = "sha256:" + "a" * 64  # parent_version()'s image id
OTHER = "sha256:" + "b" * 64


def test_image_names_carry_the_project_and_its_registry(tmp_path: Path) -> None:
    """Two registries (two checkouts, each its own) name one role's version apart; one registry
    (two checkouts sharing it) names it alike; another project's name stands apart as well."""
    shop = Project(tmp_path, name="shop", image_namespace="acme")
    a, b = "a" * 32, "b" * 32
    assert shop.image_names(a).ref("web", 3) == "acme/shop-aaaaaaaa/web:3"
    assert shop.image_names(a).ref("web", 3) != shop.image_names(b).ref("web", 3)
    clone = Project(tmp_path / "elsewhere", name="shop", image_namespace="acme")
    assert clone.image_names(a).ref("web", 3) == shop.image_names(a).ref("web", 3)
    other = Project(tmp_path, name="blog", image_namespace="acme")
    assert other.image_names(a).prefix == "acme/blog-aaaaaaaa"


@pytest.mark.parametrize(
    ("directory", "derived"),
    [("shop", "shop"), ("My_Shop", "my-shop"), ("web.shop 2", "web-shop-2"),
     ("--x--", "x"), ("a" * 80, "a" * 63)],
)  # fmt: skip
def test_the_project_name_defaults_to_its_directory_as_a_docker_name(
    tmp_path: Path, directory: str, derived: str
) -> None:
    project = Project(tmp_path / directory)
    assert project.name == derived
    assert project.image_names("c" * 32).prefix == f"kiln/{derived}-cccccccc"


def test_a_directory_without_a_usable_name_asks_for_one(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"Project\(\.\.\., name='my-project'\)"):
        Project(tmp_path / "___")


@pytest.mark.parametrize("name", ["Shop", "shop/web", "-shop", "shop-", "sh--op", "", "a" * 64, 7])
def test_a_bad_project_name_is_refused(tmp_path: Path, name: object) -> None:
    with pytest.raises(DefinitionError, match="project name"):
        Project(tmp_path, name=name)  # type: ignore[arg-type]


# -- a recorded image whose tag moved ----------------------------------------------------------
@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What the Docker engine holds: refs and ids to image ids; every docker rmi is refused."""
    images: dict[str, str] = {}

    def image_id(ref: str) -> str | None:
        return ref if ref in images.values() else images.get(ref)

    def run(argv: list[str], **_: object) -> None:
        raise AssertionError(f"no docker command may run: {argv}")

    monkeypatch.setattr(tools, "docker_image_id", image_id)
    monkeypatch.setattr(tools, "run", run)
    return images


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """base v1 and web v1 (on base v1) recorded as kiln/<role>:1, image RECORDED."""
    with Registry(tmp_path / "registry.db") as reg:
        reg.record_version(parent_version("base", 1))
        reg.record_version(replace(parent_version("web", 1), parent_role="base", parent_version=1))
        yield reg


def web_v1(registry: Registry) -> Version:
    found = registry.get("web", 1)
    assert found is not None
    return found


def test_a_recorded_image_is_present_missing_or_moved(
    engine: dict[str, str], registry: Registry
) -> None:
    version = web_v1(registry)
    artifact = version.artifact("docker")
    assert artifact is not None
    engine["kiln/web:1"] = RECORDED
    assert recorded_image_present(artifact)
    assert not recorded_image_present(replace(artifact, deleted_at="2026-01-02T00:00:00Z"))
    del engine["kiln/web:1"]
    assert not recorded_image_present(artifact)  # missing: a bake may build it again
    engine["kiln/web:1"] = OTHER
    with pytest.raises(ImageMoved) as moved:
        recorded_image_present(artifact, owner=version)
    assert (moved.value.role, moved.value.version) == ("web", 1)
    assert (moved.value.ref, moved.value.recorded_id, moved.value.current_id) == (
        "kiln/web:1", RECORDED, OTHER
    )  # fmt: skip
    assert not moved.value.recorded_kept
    message = str(moved.value)
    assert "web v1's image kiln/web:1 was recorded as sha256:aaaaaaaaaaaa" in message
    assert "now names another image, sha256:bbbbbbbbbbbb" in message
    assert "The recorded image is gone from the engine: `invoke bake web --force`" in message
    engine["elsewhere/web:7"] = RECORDED  # the recorded image is still there, under another tag
    with pytest.raises(ImageMoved, match=rf"`docker tag {RECORDED} kiln/web:1` puts the tag back"):
        recorded_image_present(artifact, owner=version)


def test_a_bake_reports_a_moved_tag_instead_of_baking_again(
    engine: dict[str, str], registry: Registry, project: Project
) -> None:
    web = web_v1(registry)
    fingerprint = Fingerprint(web.fingerprint, {})
    policy = BakePolicy(registry, DockerTarget(), leaf="web")
    engine.update({"kiln/base:1": RECORDED, "kiln/web:1": RECORDED})
    hit = policy.cached_version(project.get("web"), fingerprint)
    assert hit is not None and hit.version == 1
    del engine["kiln/web:1"]
    assert policy.cached_version(project.get("web"), fingerprint) is None  # missing: bake again
    engine["kiln/base:1"] = OTHER  # base's tag moved: baking web would bake base again
    with pytest.raises(ImageMoved, match=r"base v1's image kiln/base:1 .* `invoke bake web --f"):
        policy.cached_version(project.get("base"), fingerprint)
    forced = replace(policy, rebake_moved=True)  # `invoke bake web --force`: told, and asked
    assert forced.cached_version(project.get("base"), fingerprint) is None


def test_gc_leaves_a_moved_tag_alone_and_says_why(
    engine: dict[str, str], registry: Registry
) -> None:
    registry.record_version(parent_version("web", 2, ref="kiln/web:2"))
    engine.update({"kiln/web:1": OTHER, "kiln/web:2": RECORDED, "kiln/base:1": RECORDED})
    result = gc(registry, keep=1)
    (failed,) = result.failed
    assert (failed.role, failed.version, failed.ref) == ("web", 1, "kiln/web:1")
    assert "now names another image" in failed.why and not result.deleted
    assert engine["kiln/web:1"] == OTHER  # no docker rmi ran (engine.run would have failed)
    assert web_v1(registry).artifact("docker").deleted_at is None  # type: ignore[union-attr]


def test_diff_says_why_it_compares_no_files_when_a_tag_moved(
    engine: dict[str, str], registry: Registry
) -> None:
    registry.record_version(parent_version("web", 2, ref="kiln/web:2"))
    engine.update({"kiln/web:1": OTHER, "kiln/web:2": RECORDED})
    result = diff(registry, "web", 1, 2)
    assert result.files is None
    assert result.files_note is not None and "web v1's image kiln/web:1" in result.files_note
