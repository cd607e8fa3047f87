"""Fingerprints change exactly when something that shapes the image changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from kiln import DefinitionError, Project, Secret
from kiln.ansible_content import AnsibleContent
from kiln.fingerprint import (
    FingerprintMemo,
    canonical_json,
    fingerprint_chain,
    secret_key,
    tree_digests,
)

REPO = Path(__file__).resolve().parents[2]
TOOLS = {"packer": "1.6.6", "ansible-core": "2.19.14"}


def make_project(root: Path, web_title: str = "Hello") -> Project:
    project = Project(root)
    project.base("debian-bookworm")
    project.role("base", parent="debian-bookworm", ansible_roles=["common"])
    project.role("web", parent="base", variables={"web_title": web_title},
                 secrets={"token": Secret(env="KILN_FP_TOKEN")})  # fmt: skip
    return project


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "roles", tmp_path / "roles")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    monkeypatch.setenv("KILN_FP_TOKEN", "s3cret-value")
    return tmp_path


def digests(root: Path, *, target: str = "docker", tools: dict[str, str] = TOOLS,
            web_title: str = "Hello", token: str = "s3cret-value",
            requirements: dict[str, str] | None = None) -> dict[str, str]:  # fmt: skip
    project = make_project(root, web_title)
    chain = fingerprint_chain(
        project.role_named("web"),
        content=AnsibleContent((root / "roles",)),
        templates_for={"hcl": root / "templates" / "docker.pkr.hcl.j2"},
        recipe={"seal": ["apt-get clean"]},
        target=target,
        tools=tools,
        secret_values={"web": {"token": token}},
        key=secret_key(root / ".kiln"),
        requirements=requirements,
    )
    return {name: fp.digest for name, fp in chain.items()}


def test_stable_for_the_same_inputs(root: Path) -> None:
    assert digests(root) == digests(root)


def test_a_memo_gives_the_same_fingerprints_and_works_each_ancestor_out_once(root: Path) -> None:
    project = make_project(root)
    project.role("api", parent="base", ansible_roles=["web"])
    settings = dict(
        content=AnsibleContent((root / "roles",)),
        templates_for={"hcl": root / "templates" / "docker.pkr.hcl.j2"},
        recipe={}, target="docker", tools=TOOLS, secret_values={"web": {"token": "t"}},
        key=secret_key(root / ".kiln"),
    )  # fmt: skip
    memo = FingerprintMemo()
    web = fingerprint_chain(project.role_named("web"), memo=memo, **settings)  # type: ignore[arg-type]
    api = fingerprint_chain(project.role_named("api"), memo=memo, **settings)  # type: ignore[arg-type]
    alone = fingerprint_chain(project.role_named("api"), **settings)  # type: ignore[arg-type]
    assert api == alone
    assert api["base"] is web["base"], "the shared parent came from the memo"
    assert set(memo.fingerprints) == {"debian-bookworm", "base", "web", "api"}
    assert set(memo.trees) == {str(root / "roles" / name) for name in ("common", "web")}


@pytest.mark.parametrize(
    ("change", "changed"),
    [
        (lambda r: (r / "roles/web/templates/index.html.j2").write_text("new"), {"web"}),
        (lambda r: (r / "roles/common/defaults/main.yml").write_text("---\n"), {"base", "web"}),
        (lambda r: (r / "templates/docker.pkr.hcl.j2").write_text("# new"), {"base", "web"}),
        (lambda r: os.chmod(r / "roles/web/tasks/main.yml", 0o755), {"web"}),
        (lambda r: (r / "roles/web/molecule").mkdir(), set()),
        (lambda r: (r / "roles/web/tasks/x.pyc").write_bytes(b"\0"), set()),
    ],
)
def test_changes_propagate_to_descendants_only(root: Path, change, changed: set[str]) -> None:
    before = digests(root)
    change(root)
    after = digests(root)
    assert {name for name in before if before[name] != after[name]} == changed


def test_variables_target_tools_and_secrets_count(root: Path) -> None:
    base = digests(root)
    assert digests(root, web_title="Other")["web"] != base["web"]
    assert digests(root, target="qemu")["web"] != base["web"]
    assert digests(root, tools={**TOOLS, "packer": "1.7.0"})["web"] != base["web"]
    assert digests(root, token="rotated")["web"] != base["web"]
    assert digests(root, token="rotated")["base"] == base["base"]


def test_locked_requirements_and_collection_versions_count(root: Path) -> None:
    locked = {"collection:acme.tools": "a" * 64, "role:acme.repo-epel": "b" * 64}
    with_lock = digests(root, requirements=locked)
    assert with_lock["web"] != digests(root)["web"]
    changed = {**locked, "role:acme.repo-epel": "c" * 64}
    assert digests(root, requirements=changed)["web"] != with_lock["web"]
    assert digests(root, requirements=dict(reversed(locked.items()))) == with_lock
    bundled = {**TOOLS, "ansible-collections": "12.2.0"}
    assert (
        digests(root, tools=bundled)["web"]
        != digests(root, tools={**bundled, "ansible-collections": "12.3.0"})["web"]
    )


def test_secret_values_enter_only_as_a_keyed_digest(root: Path) -> None:
    project = make_project(root)
    chain = fingerprint_chain(
        project.role_named("web"), content=AnsibleContent((root / "roles",)),
        templates_for={}, recipe={},
        target="docker", tools=TOOLS, secret_values={"web": {"token": "s3cret-value"}},
        key=secret_key(root / ".kiln"),
    )  # fmt: skip
    recorded = canonical_json(chain["web"].inputs)
    assert "s3cret-value" not in recorded
    assert chain["web"].inputs["definition"]["secrets"]["token"].startswith("hmac-sha256:")
    assert oct((root / ".kiln" / "secret.key").stat().st_mode & 0o777) == "0o600"


def test_meta_dependencies_are_part_of_the_closure(root: Path) -> None:
    meta = root / "roles/web/meta/main.yml"
    meta.write_text(meta.read_text().replace("dependencies: []", "dependencies:\n  - common"))
    assert AnsibleContent((root / "roles",)).closure_names(("web",)) == ["common", "web"]
    before = digests(root)
    (root / "roles/common/templates/motd.j2").write_text("changed")
    assert digests(root)["web"] != before["web"]


def test_dependency_cycles_and_missing_roles_are_refused(root: Path) -> None:
    for name, dep in (("web", "common"), ("common", "web")):
        meta = root / f"roles/{name}/meta/main.yml"
        meta.write_text(meta.read_text().replace("dependencies: []", f"dependencies: [{dep}]"))
    with pytest.raises(DefinitionError, match="meta dependencies form a cycle"):
        AnsibleContent((root / "roles",)).closure_names(("web",))
    with pytest.raises(DefinitionError, match=r"Ansible role 'nope' was not found"):
        AnsibleContent((root / "roles",)).closure_names(("nope",))


def test_tree_digests_cover_every_file_by_path(root: Path) -> None:
    files = tree_digests(root / "roles" / "web")
    assert "tasks/main.yml" in files and "templates/index.html.j2" in files
    assert all(len(d.removesuffix("+x")) == 64 for d in files.values())
