"""Fingerprints change exactly when something that shapes the image changes."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from kiln import DefinitionError, Project, Secret, fingerprint
from kiln.ansible_content import AnsibleContent
from kiln.fingerprint import (
    FINGERPRINT_SCHEMA,
    RACY_S,
    FingerprintMemo,
    canonical_json,
    file_digest,
    fingerprint_base,
    fingerprint_chain,
    read_secret,
    tree_digests,
)
from kiln.guard import TaskException
from kiln.hmac_key import key_path, secret_key
from kiln.model import Base

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
        key=secret_key(root),
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
        key=secret_key(root),
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
        key=secret_key(root),
    )  # fmt: skip
    recorded = canonical_json(chain["web"].inputs)
    assert "s3cret-value" not in recorded
    assert chain["web"].inputs["definition"]["secrets"]["token"].startswith("hmac-sha256:")
    assert oct(key_path(root).stat().st_mode & 0o777) == "0o600"


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


def chain_for(project: Project, root: Path, role: str = "web") -> dict[str, str]:
    chain = fingerprint_chain(
        project.role_named(role),
        content=AnsibleContent((root / "roles",)),
        templates_for={},
        recipe={},
        target="docker",
        tools=TOOLS,
        secret_values={"web": {"token": "t"}},
        key=b"k" * 32,
    )
    return {name: fp.digest for name, fp in chain.items()}


def test_what_is_only_recorded_does_not_change_the_fingerprint(root: Path) -> None:
    """Audit exceptions, lint settings: they change no byte of the image, so no rebake."""
    plain = make_project(root)
    relaxed = Project(root)
    relaxed.base("debian-bookworm")
    allow = TaskException("common", "t", "add-host", "a reason")
    relaxed.role("base", parent="debian-bookworm", ansible_roles=["common"], lint_allowed=True,
                 lint_profile="min", audit_exceptions=[allow])  # fmt: skip
    relaxed.role("web", parent="base", variables={"web_title": "Hello"},
                 secrets={"token": Secret(env="KILN_FP_TOKEN")})  # fmt: skip
    assert chain_for(relaxed, root) == chain_for(plain, root)


def test_a_change_to_the_base_changes_every_fingerprint_below_it(root: Path) -> None:
    before = chain_for(make_project(root), root)
    other = Project(root)
    other.base("debian-bookworm", packages=["curl"])
    other.role("base", parent="debian-bookworm", ansible_roles=["common"])
    other.role("web", parent="base", variables={"web_title": "Hello"},
               secrets={"token": Secret(env="KILN_FP_TOKEN")})  # fmt: skip
    after = chain_for(other, root)
    assert all(after[name] != before[name] for name in ("debian-bookworm", "base", "web"))


def test_the_recorded_inputs_name_the_parent_and_the_short_form(root: Path) -> None:
    project = make_project(root)
    chain = fingerprint_chain(
        project.role_named("web"), content=AnsibleContent((root / "roles",)),
        templates_for={}, recipe={"seal": ["x"]}, target="qemu", tools=TOOLS,
        secret_values={"web": {"token": "t"}}, key=b"k" * 32,
    )  # fmt: skip
    web = chain["web"]
    assert web.inputs["parent"] == {"name": "base", "fingerprint": chain["base"].digest}
    assert web.inputs["target"] == "qemu" and web.inputs["recipe"] == {"seal": ["x"]}
    assert web.inputs["tools"] == TOOLS and "requirements" not in web.inputs
    assert set(web.inputs["ansible_role_files"]) == {"web"}
    assert set(chain["base"].inputs["ansible_role_files"]) == {"common"}
    assert web.short == web.digest[:12] and len(web.digest) == 64
    base = chain["debian-bookworm"].inputs
    assert base["target"] == "qemu" and base["definition"]["kind"] == "base"


def test_secrets_are_read_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_FP_READ", "from-env\n")
    assert read_secret("web", "token", Secret(env="KILN_FP_READ"), tmp_path) == "from-env\n"
    # Only the file's trailing newlines go: spaces and letters are part of the secret.
    for text, value in (("from-file\n\n", "from-file"), ("é X \n", "é X "), ("tokenX\n", "tokenX")):
        (tmp_path / "token.txt").write_text(text, encoding="utf-8")
        assert read_secret("web", "token", Secret(file="token.txt"), tmp_path) == value
    with pytest.raises(DefinitionError, match=r"role 'web': secret 'token' needs environment"):
        read_secret("web", "token", Secret(env="KILN_FP_SURELY_UNSET"), tmp_path)
    with pytest.raises(DefinitionError, match=r"cannot be read from .*absent: No such file"):
        read_secret("web", "token", Secret(file="absent"), tmp_path)


def test_ignored_files_and_linked_directories_are_left_out(root: Path) -> None:
    web = root / "roles" / "web"
    before = tree_digests(web)
    for name in ("x.retry", "x.swp", "x~", ".DS_Store"):
        (web / "tasks" / name).write_text("debris")
    for name in (".git", "__pycache__", ".pytest_cache"):
        (web / name).mkdir()
        (web / name / "f").write_text("debris")
    (web / "linked").symlink_to(root / "roles" / "common", target_is_directory=True)
    assert tree_digests(web) == before
    (web / "tasks" / "extra.yml").write_text("---\n")
    (web / "tasks" / "sub").mkdir()
    (web / "tasks" / "sub" / "deeper.yml").write_text("---\n")
    after = tree_digests(web)
    assert set(after) - set(before) == {"tasks/extra.yml", "tasks/sub/deeper.yml"}


def test_file_digests_are_sha256_of_the_contents(tmp_path: Path) -> None:
    big = tmp_path / "big"
    data = bytes(range(256)) * 8193  # more than one read's worth
    big.write_bytes(data)
    assert file_digest(big) == hashlib.sha256(data).hexdigest()
    assert tree_digests(tmp_path) == {"big": hashlib.sha256(data).hexdigest()}
    os.chmod(big, 0o755)  # the executable bit counts, and so do the contents of an executable
    assert tree_digests(tmp_path) == {"big": hashlib.sha256(data).hexdigest() + "+x"}


def test_the_fingerprint_of_a_base_is_pinned() -> None:
    """Every recorded version compares against this: a change rebakes every image, so make it on
    purpose, with FINGERPRINT_SCHEMA bumped, and update the digest here."""
    fingerprint = fingerprint_base(Base("debian-bookworm"), target="docker")
    assert fingerprint.inputs["schema"] == FINGERPRINT_SCHEMA
    assert fingerprint.digest == "d0720453603ccf9951132de75e92163efb52d7fc79127b2e3f0afb8045d1bb9b"


def test_a_role_s_inputs_name_its_templates_and_a_missing_ansible_role(root: Path) -> None:
    project = make_project(root)
    template = root / "templates" / "docker.pkr.hcl.j2"
    chain = fingerprint_chain(
        project.role_named("web"), content=AnsibleContent((root / "roles",)),
        templates_for={"hcl": template}, recipe={}, target="docker", tools=TOOLS,
        secret_values={"web": {"token": "t"}}, key=b"k" * 32,
    )  # fmt: skip
    assert chain["web"].inputs["schema"] == FINGERPRINT_SCHEMA
    assert chain["web"].inputs["templates"] == {"hcl": file_digest(template)}
    (root / "elsewhere").mkdir()  # content that lacks the role's Ansible roles
    with pytest.raises(DefinitionError, match=r"^role 'base': Ansible role 'common' was not"):
        fingerprint_chain(
            project.role_named("web"), content=AnsibleContent((root / "elsewhere",)),
            templates_for={}, recipe={}, target="docker", tools=TOOLS, secret_values={},
            key=b"k" * 32,
        )  # fmt: skip


def test_settled_files_are_cached_by_their_own_identity(tmp_path: Path) -> None:
    """Digests and listings are remembered only for files and directories older than the racy
    window; once remembered, each must still answer for its own file (two seconds of waiting)."""
    for name, text in (("a", "one"), ("b", "two")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.yml").write_text(text)
        (tmp_path / name / "sub").mkdir()
    (tmp_path / "b" / "sub" / "g.yml").write_text("three")
    time.sleep(RACY_S + 0.2)
    want = {name: tree_digests(tmp_path / name) for name in ("a", "b")}  # now cached
    assert want["a"] == {"f.yml": hashlib.sha256(b"one").hexdigest()}
    assert want["b"] == {
        "f.yml": hashlib.sha256(b"two").hexdigest(),
        "sub/g.yml": hashlib.sha256(b"three").hexdigest(),
    }
    assert {name: tree_digests(tmp_path / name) for name in ("a", "b")} == want
    (tmp_path / "a" / "f.yml").write_text("changed")
    assert tree_digests(tmp_path / "a") == {"f.yml": hashlib.sha256(b"changed").hexdigest()}


def test_the_canonical_form_is_pinned_because_fingerprints_are_recorded() -> None:
    """Recorded fingerprints are digests of this text: a change of its form (key order,
    separators, escaping of non-ASCII) would make every role look changed and rebake it."""
    value = {"b": [1, "é"], "a": {"y": None, "x": True}}
    assert canonical_json(value) == '{"a":{"x":true,"y":null},"b":[1,"é"]}'


def test_locked_requirements_are_recorded_sorted_under_their_own_key(root: Path) -> None:
    project = make_project(root)
    locked = {"role:acme.repo-epel": "b" * 64, "collection:acme.tools": "a" * 64}
    chain = fingerprint_chain(
        project.role_named("web"), content=AnsibleContent((root / "roles",)),
        templates_for={}, recipe={}, target="docker", tools=TOOLS,
        secret_values={"web": {"token": "t"}}, key=b"k" * 32, requirements=locked,
    )  # fmt: skip
    assert list(chain["web"].inputs["requirements"].items()) == sorted(locked.items())


class _Clock:
    """kiln.fingerprint's `time` while a test moves it: time() returns `now`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def _last_change(path: Path) -> float:
    st = path.stat()
    return max(st.st_mtime_ns, st.st_ctime_ns) / 1e9


def test_a_file_is_settled_only_once_the_racy_window_has_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.yml"
    path.write_text("x")
    clock = _Clock(_last_change(path) + RACY_S / 2)
    monkeypatch.setattr(fingerprint, "time", clock)
    assert fingerprint._settled(path.stat()) is False
    clock.now = _last_change(path) + RACY_S + 1
    assert fingerprint._settled(path.stat()) is True


def test_a_settled_file_is_read_once_and_a_racy_one_at_every_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.yml"
    path.write_text("x")
    opened: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    clock = _Clock(_last_change(path))  # just written: racy
    monkeypatch.setattr(fingerprint, "time", clock)
    want = hashlib.sha256(b"x").hexdigest()
    assert [file_digest(path), file_digest(path)] == [want, want]
    assert opened == [path, path]
    clock.now += RACY_S + 1  # settled: the next digest is remembered
    assert [file_digest(path), file_digest(path)] == [want, want]
    assert opened == [path, path, path]


def test_the_memo_walks_each_ansible_roles_tree_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    walked: list[Path] = []
    monkeypatch.setattr(fingerprint, "tree_digests", lambda path: walked.append(path) or {})
    memo = FingerprintMemo()
    assert memo.tree(tmp_path / "a") == memo.tree(tmp_path / "a") == memo.tree(tmp_path / "b")
    assert walked == [tmp_path / "a", tmp_path / "b"]
