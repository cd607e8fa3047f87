"""Role definitions are validated when they are built, naming the role and the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kiln import DefinitionError, Project, Secret
from kiln.model import MAX_VARIABLE_BYTES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh(tmp_path: Path) -> Project:
    shutil.copytree(REPO / "roles", tmp_path / "roles")
    project = Project(tmp_path)
    project.base("debian-bookworm")
    project.role("base", parent="debian-bookworm", ansible_roles=["common"])
    return project


def test_repository_definitions_load(project: Project) -> None:
    web = project.role_named("web")
    assert [n.name for n in web.ancestry()] == ["debian-bookworm", "base", "web"]
    assert web.ansible_roles == ("web",)
    assert web.base.name == "debian-bookworm"
    names = project.image_names("3f9a0c1d" + "0" * 24)
    assert (project.name, names.repository("web")) == ("kiln", "kiln/kiln-3f9a0c1d/web")
    assert names.ref("web", 7) == "kiln/kiln-3f9a0c1d/web:7"


def test_ansible_roles_default_to_the_role_name(fresh: Project) -> None:
    role = fresh.role("web", parent="base")
    assert role.ansible_roles == ("web",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Web"}, "role name 'Web' is invalid"),
        ({"name": ""}, "role name '' is invalid"),
        ({"name": "../etc"}, "role name '../etc' is invalid"),
        ({"name": "web", "parent": "nope"}, "role 'web': unknown parent 'nope' (known: base, deb"),
        ({"name": "web", "parent": "web"}, "cannot be its own parent (cycle)"),
        ({"name": "web", "ansible_roles": ["missing"]}, "Ansible role 'missing' was not found"),
        ({"name": "web", "ansible_roles": ["../common"]}, "'../common' is not an Ansible role"),
        ({"name": "web", "ansible_roles": []}, "role 'web': it applies no Ansible role"),
        ({"name": "web", "variables": {"when": object()}}, "variable 'when' has type object"),
        ({"name": "web", "variables": {"x": float("nan")}}, "variable 'x' holds nan, not JSON"),
        ({"name": "web", "variables": {"x": {1: "a"}}}, "variable 'x' has a non-string key 1"),
        ({"name": "web", "variables": {"bad-name": 1}}, "variable name 'bad-name' is invalid"),
        ({"name": "web", "variables": {"ansible_host": "x"}}, "variable name 'ansible_host'"),
        ({"name": "web", "variables": {"x": "a" * MAX_VARIABLE_BYTES}}, "over the 65536-byte"),
        ({"name": "web", "secrets": {"token": "literal"}}, "never a literal value"),
        ({"name": "web", "tests": ["tests/nowhere"]}, "test path 'tests/nowhere' does not exist"),
        ({"name": "base"}, "role 'base' is defined twice"),
    ],
)
def test_bad_definitions_are_refused(fresh: Project, kwargs: dict, message: str) -> None:
    kwargs.setdefault("parent", "base")
    name = kwargs.pop("name")
    with pytest.raises(DefinitionError) as excinfo:
        fresh.role(name, **kwargs)
    assert message in str(excinfo.value)


def test_secret_needs_exactly_one_source() -> None:
    with pytest.raises(DefinitionError, match="exactly one of env= or file="):
        Secret()
    with pytest.raises(DefinitionError, match="exactly one of env= or file="):
        Secret(env="A", file="b")
    assert Secret(env="TOKEN").source == "env:TOKEN"


def test_unknown_role_lists_the_known_ones(project: Project) -> None:
    with pytest.raises(DefinitionError, match=r"unknown role 'wbe' \(known roles: base, "):
        project.get("wbe")


def test_a_base_is_not_a_bakeable_role(project: Project) -> None:
    with pytest.raises(DefinitionError, match="is a base, not a role"):
        project.role_named("debian-bookworm")


def test_recorded_inputs_never_hold_secret_values(fresh: Project) -> None:
    role = fresh.role("web", parent="base", secrets={"token": Secret(env="WEB_TOKEN")})
    assert role.inputs()["secrets"] == {"token": "env:WEB_TOKEN"}


def test_bad_image_namespace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="image namespace 'Kiln'"):
        Project(tmp_path, image_namespace="Kiln")


def test_where_the_registry_and_the_image_registry_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Project(registry_url=...) and Project(image_registry=...), and the variables that
    override them: sqlite paths are relative to the project root, PostgreSQL has no file."""
    default = Project(tmp_path)
    assert default.registry_path == tmp_path.resolve() / ".kiln" / "registry.db"
    assert default.registry_url == f"sqlite:///{default.registry_path}"
    assert default.image_registry is None
    relative = Project(tmp_path, registry_url="sqlite:///state/kiln.db")
    assert relative.registry_path == tmp_path.resolve() / "state" / "kiln.db"
    absolute = Project(tmp_path, registry_url="sqlite:////srv/kiln.db")
    assert absolute.registry_path == Path("/srv/kiln.db")
    team = Project(tmp_path, registry_url="postgresql://kiln@db/kiln", image_registry="r.io/t/")
    assert (team.registry_url, team.registry_path) == ("postgresql://kiln@db/kiln", None)
    assert team.image_registry == "r.io/t"
    with pytest.raises(DefinitionError, match="neither sqlite:///PATH nor postgresql://"):
        Project(tmp_path, registry_url="mysql://db/kiln")
    monkeypatch.setenv("KILN_REGISTRY_URL", "postgresql://ci@db/kiln")
    monkeypatch.setenv("KILN_IMAGE_REGISTRY", "127.0.0.1:5000")
    overridden = Project(tmp_path, registry_url="sqlite:///state/kiln.db", image_registry="r.io")
    assert (overridden.registry_url, overridden.image_registry) == (
        "postgresql://ci@db/kiln",
        "127.0.0.1:5000",
    )
