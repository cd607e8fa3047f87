"""Image names: the project and its registry are in every name."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln import DefinitionError, Project


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
