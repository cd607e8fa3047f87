"""requirements.yml parsing and validation, the lock's round trip, and each difference that
check_installed reports (each detector shown firing, then silent when all is equal).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from kiln import requirements as req
from kiln.errors import DefinitionError
from kiln.model import Project
from kiln.requirements import (
    Lock,
    LockEntry,
    check_installed,
    content_digest,
    differences,
    load_requirements,
    locked_content,
    parse_requirements,
    read_lock,
)

PATH = Path("/p/requirements.yml")


def test_both_shapes_and_every_source_kind() -> None:
    as_list = parse_requirements(["acme.nginx", {"src": "/x/acme_ntp-1.2.0.tar.gz"}], PATH)
    assert [(r.kind, r.name, r.type) for r in as_list] == [
        ("role", "acme.nginx", "galaxy"),
        ("role", "acme_ntp-1.2.0", "file"),
    ]
    entries = parse_requirements(
        {
            "roles": [
                {"src": "git+file:///r/epel", "name": "acme.repo-epel", "version": "v1"},
                {"src": "https://example.invalid/r.git", "scm": "git", "name": "Acme.Caps"},
                "git+file:///r/old,v2,acme.old_style",
                {"src": "https://example.invalid/x.tar.gz", "name": "acme.url"},
            ],
            "collections": [
                "community.general",
                {"name": "acme.tools", "version": ">=1.0", "source": "https://galaxy.invalid/"},
                {"name": "/c/acme-tools-1.4.0.tar.gz", "type": "file"},
                {"name": "git+file:///c/web#/sub", "type": "git", "version": "0.3.1"},
                {"name": "./collections/acme/local"},
            ],
        },
        PATH,
    )
    summary = [(r.kind, r.name, r.type, r.version, r.server) for r in entries]
    assert summary == [
        ("role", "acme.repo-epel", "git", "v1", ""),
        ("role", "Acme.Caps", "git", "", ""),
        ("role", "acme.old_style", "git", "v2", ""),
        ("role", "acme.url", "url", "", ""),
        ("collection", "community.general", "galaxy", "", ""),
        ("collection", "acme.tools", "galaxy", ">=1.0", "https://galaxy.invalid/"),
        ("collection", "/c/acme-tools-1.4.0.tar.gz", "file", "", ""),
        ("collection", "git+file:///c/web#/sub", "git", "0.3.1", ""),
        ("collection", "./collections/acme/local", "dir", "", ""),
    ]
    assert entries[2].src == "git+file:///r/old"
    assert parse_requirements(None, PATH) == [] == parse_requirements({"roles": None}, PATH)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("just text", "expected a list of roles or a mapping"),
        ({"roles": [], "colections": []}, "unknown top-level key(s) colections"),
        ({"roles": {"src": "x"}}, "roles: must be a list"),
        ([{"version": "1.0"}], "role #1 ({'version': '1.0'}): has neither src nor name"),
        ([{"src": "acme.a"}, {"scm": "git", "version": "1"}], "role #2"),
        ([{"src": "acme.a", "verison": "1"}], "role #1 ('acme.a'): unknown key 'verison'"),
        ([{"src": "hg+file:///r", "scm": "hg", "name": "acme.hg"}], "unknown scm 'hg'"),
        ([{"include": "more.yml"}], "include: is not supported"),
        ([["nested"]], "role #1 (['nested']): must be a mapping or a string"),
        ({"collections": [{"type": "file"}]}, "collection #1 ({'type': 'file'}): has no name"),
        (
            {"collections": ["acme.a", {"name": "acme.b", "type": "svn"}]},
            "collection #2 ('acme.b'): unknown type 'svn'",
        ),
        ({"collections": ["not-a-fqcn"]}, "collection #1 ('not-a-fqcn'): a Galaxy collection"),
        ({"roles": ["acme.a", {"src": "acme.a"}]}, "role 'acme.a' is listed more than once"),
        ([{"src": "acme.a", "version": ["1"]}], "role #1 ('acme.a'): version must be a string"),
    ],
)
def test_malformed_requirements_name_the_file_and_the_entry(data: object, expected: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_requirements(data, PATH)
    assert str(info.value).startswith(f"{PATH}: ")
    assert expected in str(info.value)


def test_not_yaml_names_file_and_line(tmp_path: Path) -> None:
    assert load_requirements(tmp_path) is None
    (tmp_path / "requirements.yml").write_text("roles:\n  - src: acme.a\n - oops: [\n")
    with pytest.raises(DefinitionError, match=r"requirements.yml: not valid YAML: line \d+"):
        load_requirements(tmp_path)


def test_lock_round_trip_is_sorted_and_deterministic(tmp_path: Path) -> None:
    entries = (
        LockEntry("acme.web", "role", "c" * 40, "git+file:///r", "1" * 64, "v1", "c" * 40),
        LockEntry("acme.tools", "collection", "1.4.0", "/t.tar.gz", "2" * 64),
        LockEntry("acme.tools", "role", "1.0", "/r.tar.gz", "3" * 64, "1.0"),
    )
    lock = Lock("f" * 64, entries)
    text = json.dumps(lock.to_json(), indent=2)
    assert text == json.dumps(Lock("f" * 64, entries[::-1]).to_json(), indent=2)
    (tmp_path / "requirements.lock").write_text(text)
    back = read_lock(tmp_path)
    assert back is not None and back.requirements_sha256 == "f" * 64
    assert [e.key for e in back.entries] == [
        "collection:acme.tools",
        "role:acme.tools",
        "role:acme.web",
    ]
    assert set(back.entries) == set(entries)
    # A role and a collection may share a name: the keys keep them apart.
    assert locked_content(Project(tmp_path)) == {
        "collection:acme.tools": "2" * 64,
        "role:acme.tools": "3" * 64,
        "role:acme.web": "1" * 64,
    }


def test_unreadable_lock_says_run_deps(tmp_path: Path) -> None:
    assert read_lock(tmp_path) is None and locked_content(Project(tmp_path)) == {}
    for text in ("{not json", '{"kiln_lock": 99}', '{"kiln_lock": 1, "entries": [{"x": 1}]}'):
        (tmp_path / "requirements.lock").write_text(text)
        with pytest.raises(DefinitionError, match=r"requirements.lock is unreadable.*invoke deps"):
            read_lock(tmp_path)


# -- check_installed -----------------------------------------------------------------------------
def installed_project(root: Path) -> Project:
    """A project with one role and one collection installed as ansible-galaxy lays them out,
    and a lock that matches them."""
    galaxy = root / ".kiln/galaxy"
    role = galaxy / "roles/acme.repo-epel"
    for rel, text in {
        "meta/main.yml": "galaxy_info:\n  role_name: repo-epel\n  namespace: acme\n",
        "meta/.galaxy_install_info": "install_date: Mon\nversion: v1\n",
        "defaults/main.yml": "epel_enabled: true\n",
        "tasks/main.yml": "- name: Say\n  ansible.builtin.debug:\n    msg: hi\n",
    }.items():
        (role / rel).parent.mkdir(parents=True, exist_ok=True)
        (role / rel).write_text(text)
    tools = galaxy / "collections/ansible_collections/acme/tools"
    (tools / "roles/hello/tasks").mkdir(parents=True)
    (tools / "MANIFEST.json").write_text('{"collection_info": {"version": "1.4.0"}}')
    (tools / "roles/hello/tasks/main.yml").write_text("- ansible.builtin.ping:\n")
    # Galaxy's own metadata next to namespaces is not a collection.
    (galaxy / "collections/ansible_collections/acme.tools-1.4.0.info").mkdir()
    (root / "requirements.yml").write_text("roles: []\n")
    lock = Lock(
        req.sha256_file(root / "requirements.yml"),
        (
            LockEntry("acme.repo-epel", "role", "a" * 40, "git+file:///r", content_digest(role)),
            LockEntry("acme.tools", "collection", "1.4.0", "/t.tar.gz", content_digest(tools)),
        ),
    )
    (root / "requirements.lock").write_text(json.dumps(lock.to_json()))
    return Project(root)


def test_nothing_to_check_without_requirements_or_lock(tmp_path: Path) -> None:
    check_installed(Project(tmp_path))


def test_requirements_without_lock(tmp_path: Path) -> None:
    (tmp_path / "requirements.yml").write_text("- acme.a\n")
    with pytest.raises(DefinitionError, match=r"has no requirements.lock yet; run `invoke deps`$"):
        check_installed(Project(tmp_path))


def _edit_requirements(root: Path) -> None:
    (root / "requirements.yml").write_text("roles: [acme.b]\n")


def _edit_role(root: Path) -> None:
    (root / ".kiln/galaxy/roles/acme.repo-epel/defaults/main.yml").write_text("epel: false\n")


def _remove_collection(root: Path) -> None:
    (root / ".kiln/galaxy/collections/ansible_collections/acme/tools").rename(root / "aside")


def _add_role(root: Path) -> None:
    (root / ".kiln/galaxy/roles/acme.extra/tasks").mkdir(parents=True)


def _remove_requirements(root: Path) -> None:
    (root / "requirements.yml").unlink()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_edit_requirements, "requirements.yml changed since requirements.lock was written"),
        (_edit_role, "role acme.repo-epel " + "a" * 40 + ": installed content differs"),
        (_remove_collection, "collection acme.tools is locked but not installed"),
        (_add_role, "role acme.extra is installed but not in the lock"),
        (_remove_requirements, "requirements.yml was removed since requirements.lock"),
    ],
)
def test_each_detector_fires_then_all_equal_is_silent(
    tmp_path: Path, change: Callable[[Path], None], expected: str
) -> None:
    project = installed_project(tmp_path)
    check_installed(project)  # all equal: silent
    # The install date ansible-galaxy writes is not content.
    info = tmp_path / ".kiln/galaxy/roles/acme.repo-epel/meta/.galaxy_install_info"
    info.write_text("install_date: Tue\nversion: v1\n")
    check_installed(project)
    change(tmp_path)
    with pytest.raises(DefinitionError) as raised:
        check_installed(project)
    assert expected in str(raised.value)
    assert str(raised.value).endswith("; run `invoke deps`")
    assert differences(project) == [str(raised.value).split(": ", 1)[1].rsplit(";", 1)[0]]


def test_changed_entry_names_version_and_both_digests(tmp_path: Path) -> None:
    project = installed_project(tmp_path)
    (tmp_path / ".kiln/galaxy/roles/acme.repo-epel/tasks/main.yml").write_text("- meta: noop\n")
    [problem] = differences(project)
    assert problem.startswith(f"role acme.repo-epel {'a' * 40}: installed content differs")


def test_digest_cache_is_used_while_stats_hold_and_dropped_when_they_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(req, "RACY_S", -1.0)  # every file counts as settled
    galaxy = installed_project(tmp_path).root / ".kiln/galaxy"
    real = req.installed_digests(galaxy)
    cache = json.loads((galaxy / req.DIGEST_CACHE).read_text())
    assert {k: v["sha256"] for k, v in cache.items()} == real
    # Proof the cache is read: a planted digest comes back while every stat is unchanged.
    cache["role:acme.repo-epel"]["sha256"] = "planted"
    (galaxy / req.DIGEST_CACHE).write_text(json.dumps(cache))
    assert req.installed_digests(galaxy)["role:acme.repo-epel"] == "planted"
    # Any change of a file's stat (same size, new mtime) drops the cached digest.
    target = galaxy / "roles/acme.repo-epel/defaults/main.yml"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert req.installed_digests(galaxy) == real
