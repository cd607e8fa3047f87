"""Bad inputs refused before any builder exists, each with the message a user acts on.

The same inputs through the real CLI (and those that need Docker) are in
tests/integration/test_bad_inputs.py.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from kiln.commands import audit_role
from kiln.errors import DefinitionError, GuardError, KilnError, RegistryError, RenderError
from kiln.fingerprint import read_secret
from kiln.guard import raise_for_findings
from kiln.model import Project, Secret
from kiln.registry import Registry
from kiln.render import render_template
from kiln.targets import get_target

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """The repository's definitions on a copy of its roles and templates."""
    for name in ("roles", "templates"):
        shutil.copytree(REPO / name, tmp_path / name)
    (tmp_path / "tests" / "web").mkdir(parents=True)
    proj = Project(tmp_path, image_namespace="kilntest")
    bookworm = proj.base("debian-bookworm")
    proj.role("base", parent=bookworm, ansible_roles=["common"])
    proj.role("web", parent="base", variables={"web_title": "t"})
    return proj


def write_role(project: Project, name: str, files: dict[str, str | bytes]) -> None:
    for rel, content in {"tasks/main.yml": "[]\n", **files}.items():
        path = project.roles_path / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def audit_of(project: Project, role: str, **kwargs: object) -> None:
    raise_for_findings(audit_role(project, project.role(role, parent="base", **kwargs)), role)  # type: ignore[arg-type]


Case = tuple[str, Callable[[Project], object], type[KilnError], str]

CASES: list[Case] = [
    # -- role and base names (they become docker repositories, paths and HCL labels)
    ("role name with ..", lambda p: p.role("../x", parent="base"), DefinitionError,
     "role name '../x' is invalid"),
    ("role name upper case", lambda p: p.role("Web2", parent="base"), DefinitionError,
     "role name 'Web2' is invalid: use 1-63 lowercase letters"),
    ("role name empty", lambda p: p.role("", parent="base"), DefinitionError,
     "role name '' is invalid"),
    ("role name ends in -", lambda p: p.role("web-", parent="base"), DefinitionError,
     "not ending with '-'"),
    ("role name ends in newline", lambda p: p.role("web2\n", parent="base"), DefinitionError,
     "role name 'web2\\n' is invalid"),
    ("role name too long", lambda p: p.role("w" * 64, parent="base"), DefinitionError,
     "is invalid: use 1-63"),
    ("role name with underscore", lambda p: p.role("web_2", parent="base"), DefinitionError,
     "role name 'web_2' is invalid"),
    ("base name with /", lambda p: p.base("debian/sid"), DefinitionError,
     "role name 'debian/sid' is invalid"),
    ("base suite with ..", lambda p: p.base("sid", suite="../sid"), DefinitionError,
     "suite '../sid' is not a Debian suite name"),
    ("role defined twice", lambda p: p.role("web", parent="base"), DefinitionError,
     "role 'web' is defined twice"),
    ("image namespace upper case", lambda p: Project(p.root, image_namespace="Kiln"),
     DefinitionError, "image namespace 'Kiln' is not a docker name"),
    # -- parents
    ("unknown role", lambda p: p.get("nope"), DefinitionError,
     "unknown role 'nope' (known roles: base, debian-bookworm, web)"),
    ("self parent", lambda p: p.role("loop", parent="loop"), DefinitionError,
     "role 'loop': a role cannot be its own parent (cycle)"),
    ("unknown parent", lambda p: p.role("x", parent="nope"), DefinitionError,
     "unknown parent 'nope' (known: base, debian-bookworm, web; define parents first)"),
    # -- Ansible role names
    ("Ansible role missing", lambda p: p.role("x", parent="base", ansible_roles=["nope"]),
     DefinitionError, "Ansible role 'nope' was not found. kiln looked in:"),
    ("Ansible role with ..", lambda p: p.role("x", parent="base", ansible_roles=["../web"]),
     DefinitionError, "'../web' is not an Ansible role name"),
    ("Ansible role with a space", lambda p: p.role("x", parent="base", ansible_roles=["a b"]),
     DefinitionError, "'a b' is not an Ansible role name"),
    ("Ansible roles as a string", lambda p: p.role("x", parent="base", ansible_roles="web"),
     DefinitionError, "ansible_roles must be a list of names, not the string 'web'"),
    # -- variables
    ("variable of unsupported type",
     lambda p: p.role("x", parent="base", ansible_roles=["web"],
                      variables={"day": datetime.date(2026, 1, 1)}),
     DefinitionError, "variable 'day' has type date, which is not serialisable"),
    ("variable holding a set",
     lambda p: p.role("x", parent="base", ansible_roles=["web"], variables={"s": {1, 2}}),
     DefinitionError, "variable 's' has type set"),
    ("variable holding NaN",
     lambda p: p.role("x", parent="base", ansible_roles=["web"], variables={"f": float("nan")}),
     DefinitionError, "variable 'f' holds nan, not JSON"),
    ("variable with a non-string key",
     lambda p: p.role("x", parent="base", ansible_roles=["web"], variables={"m": {1: "a"}}),
     DefinitionError, "variable 'm' has a non-string key 1"),
    ("huge variable",
     lambda p: p.role("x", parent="base", ansible_roles=["web"], variables={"big": "x" * 70000}),
     DefinitionError, "variable 'big' is 70002 bytes, over the 65536-byte limit"),
    ("variable named ansible_host",
     lambda p: p.role("x", parent="base", ansible_roles=["web"], variables={"ansible_host": 1}),
     DefinitionError, "variable name 'ansible_host' is invalid"),
    ("variable name with a newline",
     lambda p: p.role("x", parent="base", ansible_roles=["web"], variables={"v\n": 1}),
     DefinitionError, "variable name 'v\\n' is invalid"),
    ("variable holding a Go template",
     lambda p: p.role("x", parent="base", ansible_roles=["web"],
                      variables={"motd": ["Welcome to {{ ansible_hostname }}"]}),
     DefinitionError, "variable 'motd' contains '{{', which Packer's template engine would"),
    # -- secrets
    ("secret as a literal",
     lambda p: p.role("x", parent="base", ansible_roles=["web"], secrets={"t": "hunter2"}),
     DefinitionError, "secret 't' must be Secret(env=...) or Secret(file=...)"),
    ("secret named ansible_become_pass",
     lambda p: p.role("x", parent="base", ansible_roles=["web"],
                      secrets={"ansible_become_pass": Secret(env="X")}),
     DefinitionError, "secret name 'ansible_become_pass' is invalid"),
    ("secret env name invalid", lambda p: Secret(env="BAD-NAME"), DefinitionError,
     "Secret(env='BAD-NAME') is not a valid environment variable"),
    ("secret file empty", lambda p: Secret(file=""), DefinitionError,
     "Secret(file='') needs the path of a file"),
    ("secret with no source", lambda p: Secret(), DefinitionError,
     "Secret() takes exactly one of env= or file="),
    ("secret env unset",
     lambda p: read_secret("web", "api_token", Secret(env="KILN_SURELY_UNSET_TOKEN"), p.root),
     DefinitionError, "secret 'api_token' needs environment variable KILN_SURELY_UNSET_TOKEN"),
    ("secret file missing",
     lambda p: read_secret("web", "api_token", Secret(file="no/such/file"), p.root),
     DefinitionError, "secret 'api_token' cannot be read from"),
    # -- test paths
    ("test path with ..", lambda p: p.role("x", parent="base", ansible_roles=["web"],
                                           tests=["../etc"]),
     DefinitionError, "test path '../etc' must be relative"),
    ("test path absolute", lambda p: p.role("x", parent="base", ansible_roles=["web"],
                                            tests=["/etc/passwd"]),
     DefinitionError, "test path '/etc/passwd' must be relative"),
    ("test path empty", lambda p: p.role("x", parent="base", ansible_roles=["web"], tests=[""]),
     DefinitionError, "test path '' is empty"),
    ("test path missing", lambda p: p.role("x", parent="base", ansible_roles=["web"],
                                           tests=["tests/nope"]),
     DefinitionError, "test path 'tests/nope' does not exist"),
    # -- elsewhere
    ("unknown target", lambda p: get_target("vmware"), DefinitionError,
     "unknown target 'vmware' (known: "),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "error", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_definitions_are_refused(
    project: Project, build: Callable[[Project], object], error: type[KilnError], message: str
) -> None:
    with pytest.raises(error) as caught:
        build(project)
    assert message in str(caught.value)


def test_valid_names_still_pass(project: Project) -> None:
    project.role("a", parent="base", ansible_roles=["web"], tests=["tests/web"])
    project.role("a-b2", parent="base", ansible_roles=["acme.memcached"])
    project.role("w" * 63, parent="base", ansible_roles=["web"], variables={"_x9": [1]})


def test_meta_dependency_cycle_is_named(project: Project) -> None:
    write_role(project, "ring_a", {"meta/main.yml": "dependencies: [ring_b]\n"})
    write_role(project, "ring_b", {"meta/main.yml": "dependencies:\n  - role: ring_a\n"})
    with pytest.raises(DefinitionError, match=r"cycle: ring_a -> ring_b -> ring_a"):
        project.content.closure_names(("ring_a",))


def test_meta_dependency_out_of_the_roles_path_is_refused(project: Project) -> None:
    write_role(project, "escape", {"meta/main.yml": "dependencies: [../templates]\n"})
    with pytest.raises(
        DefinitionError,
        match=r"'\.\./templates' \(a dependency of 'escape'\) is not a valid Ansible role name",
    ):
        project.content.closure_names(("escape",))


def test_malformed_task_yaml_is_refused_with_its_line(project: Project) -> None:
    write_role(project, "broken", {"tasks/main.yml": "- name: ok\n  debug: {msg: [unclosed\n"})
    with pytest.raises(GuardError) as caught:
        audit_of(project, "broken", ansible_roles=["broken"])
    assert "roles/broken/tasks/main.yml:3 [yaml-error]" in str(caught.value)
    assert "is not valid YAML" in str(caught.value)


def test_non_utf8_role_file_is_refused(project: Project) -> None:
    write_role(project, "latin", {"tasks/main.yml": b"- name: caf\xe9\n  debug: {}\n"})
    with pytest.raises(GuardError) as caught:
        audit_of(project, "latin", ansible_roles=["latin"])
    assert "roles/latin/tasks/main.yml:1 [not-utf8]" in str(caught.value)
    assert "byte 0xe9 on line 1 is not UTF-8" in str(caught.value)


def test_production_hosts_of_the_project_reach_the_audit(tmp_path: Path) -> None:
    for name in ("roles", "templates"):
        shutil.copytree(REPO / name, tmp_path / name)
    project = Project(tmp_path, production_hosts=["prod.example.com"])
    project.role("base", parent=project.base("debian-bookworm"), ansible_roles=["common"])
    write_role(
        project,
        "fetcher",
        {"tasks/main.yml": "- name: Fetch\n  ansible.builtin.get_url:\n"
         "    url: https://db.prod.example.com/dump\n    dest: /tmp/d\n"},
    )  # fmt: skip
    with pytest.raises(GuardError, match=r"tasks/main.yml:1 \[prod-url\] Fetch: reaches"):
        audit_of(project, "fetcher", ansible_roles=["fetcher"])


def test_kiln_template_undefined_variable_is_a_render_error(tmp_path: Path) -> None:
    (tmp_path / "docker.pkr.hcl.j2").write_text("image = {{ no_such_variable | hcl }}\n")
    with pytest.raises(RenderError, match="'no_such_variable' is undefined"):
        render_template(tmp_path, "docker.pkr.hcl.j2", {})


def test_kiln_template_syntax_error_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "docker.pkr.hcl.j2").write_text("a = 1\nimage = {{ role_name | hcl \n")
    with pytest.raises(RenderError, match=r"docker.pkr.hcl.j2:2: unexpected end of template"):
        render_template(tmp_path, "docker.pkr.hcl.j2", {"role_name": "x"})


def test_registry_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(b"this is not SQLite\n" * 100)
    with pytest.raises(RegistryError, match="is not a usable SQLite database"):
        Registry(path)
