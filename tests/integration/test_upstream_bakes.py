"""Images never go stale silently: a gpg-signed apt repository served on 127.0.0.1, real bakes.

The test's roles: `trusted` (on the Debian base) trusts the repository's throwaway key through
an Ansible role and replaces Debian's sources with the repository's two suites (so that no
check here ever asks Debian's mirror), and `app` (on trusted) installs kiln-demo from it.
Builders read the repository through a read-only bind mount (a file: source), the host's check
reads it over HTTP on 127.0.0.1 (PackageSources mirrors).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from apt_repo import AptRepo
from conftest import Sandbox, make_sandbox

pytestmark = pytest.mark.integration

IN_BUILDER = "/srv/kiln-demo"
ROLES = "trusted,app"

TASKS = '''
"""Role definitions of the upstream-updates test (tests/integration/test_upstream_bakes.py)."""
import os
from pathlib import Path

from kiln import PackageSources, Project
from kiln.tasks import collection

here = Path(__file__).resolve().parent
project = Project(
    here,
    image_namespace=os.environ["KILN_IMAGE_NAMESPACE"],
    package_sources=PackageSources(
        mounts=[{mount!r}],
        mirrors={{"file:{in_builder}": {url!r}}},
    ),
)
bookworm = project.base("debian-bookworm", suite="bookworm")
project.role("trusted", parent=bookworm, ansible_roles=["kiln_demo_source"])
project.role("app", parent="trusted", ansible_roles=["kiln_demo_app"])
ns = collection(project)
'''

SOURCE_ROLE = """\
---
- name: Trust the kiln-demo repository's key
  ansible.builtin.copy:
    src: kiln-demo.gpg
    dest: /usr/share/keyrings/kiln-demo.gpg
    owner: root
    group: root
    mode: "0644"

- name: Remove Debian's own sources
  ansible.builtin.file:
    path: "{{ item }}"
    state: absent
  loop:
    - /etc/apt/sources.list
    - /etc/apt/sources.list.d/debian.sources

- name: Use the kiln-demo repository and its security suite
  ansible.builtin.copy:
    dest: /etc/apt/sources.list.d/kiln-demo.list
    owner: root
    group: root
    mode: "0644"
    content: |
      deb [signed-by=/usr/share/keyrings/kiln-demo.gpg] file:/srv/kiln-demo stable main
      deb [signed-by=/usr/share/keyrings/kiln-demo.gpg] file:/srv/kiln-demo stable-security main
"""

APP_ROLE = """\
---
- name: Install kiln-demo
  ansible.builtin.apt:
    name: kiln-demo
    state: present
    update_cache: true
"""


@pytest.fixture(scope="module")
def repo() -> Iterator[AptRepo]:
    with AptRepo() as served:
        served.publish("stable", "kiln-demo", "1.0")
        served.create_suite("stable-security", security=True)
        yield served


@pytest.fixture(scope="module")
def box(repo: AptRepo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sandbox = make_sandbox(tmp_path_factory.mktemp("upstream"))
    for name, tasks in (("kiln_demo_source", SOURCE_ROLE), ("kiln_demo_app", APP_ROLE)):
        role = sandbox.root / "roles" / name
        (role / "tasks").mkdir(parents=True)
        (role / "tasks" / "main.yml").write_text(tasks)
    files = sandbox.root / "roles" / "kiln_demo_source" / "files"
    files.mkdir()
    (files / "kiln-demo.gpg").write_bytes(repo.keyring)
    (sandbox.root / "tasks.py").write_text(
        TASKS.format(mount=f"{repo.root}:{IN_BUILDER}", in_builder=IN_BUILDER, url=repo.url)
    )
    try:
        yield sandbox
    finally:
        sandbox.cleanup()


def cache_env(box: Sandbox) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(box.root.parent / "xdg-cache")}


def upstream(box: Sandbox, *extra: str) -> tuple[int, dict[str, object], str]:
    proc = box.invoke(
        "outdated", "--upstream", "--role", ROLES, "--json", *extra, env=cache_env(box)
    )
    data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, data, proc.stderr


def updates_of(report: dict[str, object], role: str) -> list[dict[str, object]]:
    images = report["images"]
    assert isinstance(images, list)
    (image,) = [i for i in images if i["role"] == role and i["newest"]]
    assert image["checked"], image
    return list(image["updates"])


def installed(box: Sandbox, role: str, version: int, package: str) -> str:
    return box.docker(
        "run",
        "--rm",
        "--entrypoint",
        "dpkg-query",
        box.image(role, version),
        "-W",
        "-f=${Version}",
        package,
    )


def versions(box: Sandbox, role: str) -> list[int]:
    with box.registry() as registry:
        return [v.version for v in registry.history(role)]


def test_a_security_update_is_reported_rebaked_with_its_reason_and_then_gone(
    box: Sandbox, repo: AptRepo
) -> None:
    box.invoke("bake", "app", check=True)
    assert installed(box, "app", 1, "kiln-demo") == "1.0"
    rc, report, err = upstream(box)
    assert rc == 0, err
    assert updates_of(report, "app") == [] and updates_of(report, "trusted") == []

    repo.publish("stable-security", "kiln-demo", "1.1", security=True)
    rc, report, err = upstream(box, "--fail-on", "security")
    assert rc == 3, err  # a schedule's exit status: security updates pending
    (update,) = updates_of(report, "app")
    assert (update["name"], update["installed"], update["candidate"]) == ("kiln-demo", "1.0", "1.1")
    assert update["security"] is True and update["suites"] == ["stable-security"]
    assert updates_of(report, "trusted") == []  # it does not have kiln-demo

    baked = box.invoke("bake", ROLES, "--outdated", "--upstream", env=cache_env(box))
    assert baked.returncode == 0, baked.stderr
    assert versions(box, "app") == [2, 1] and versions(box, "trusted") == [1]
    assert installed(box, "app", 2, "kiln-demo") == "1.1"

    show = box.invoke("show", "app", "--version", "2", check=True).stdout
    assert "reason       rebaked for 1 upstream update (1 security)" in show
    assert "kiln-demo:all 1.0 -> 1.1  security" in show
    history = box.invoke("history", "app", check=True).stdout
    assert "v2: rebaked for 1 upstream update (1 security): kiln-demo 1.0 -> 1.1 (security)" in (
        history
    )
    assert "v1:" not in history  # an ordinary bake has no reason line
    diff = box.invoke("diff", "app", "1", "2", "--no-files", check=True).stdout
    assert "~ kiln-demo:all 1.0 -> 1.1" in diff
    assert "v2 was rebaked for 1 upstream update" in diff
    with box.registry() as registry:
        v1, v2 = registry.get("app", 1), registry.get("app", 2)
        assert v1 is not None and v2 is not None
        assert v2.fingerprint == v1.fingerprint  # the inputs kiln controls did not change
        reason = json.loads(registry.document("app", 2, "bake-reason") or "{}")
    assert reason["kind"] == "upstream-updates" and reason["replaces"] == 1
    assert [u["candidate"] for u in reason["updates"]] == ["1.1"]

    # Same inputs, and the newest version has them: a plain bake is a cache hit, not a third.
    again = box.invoke("bake", "app", check=True)
    assert "up to date at version 2" in again.stdout + again.stderr
    rc, report, err = upstream(box, "--fail-on", "any")
    assert rc == 0, err
    assert updates_of(report, "app") == [] and updates_of(report, "trusted") == []

    page = box.invoke("report", check=True)
    html = (box.root / ".kiln" / "report" / "index.html").read_text()
    assert page.returncode == 0 and "rebaked for 1 upstream update" in html
    assert 'href="sbom/app-v2.cdx.json"' in html
    assert (box.root / ".kiln" / "report" / "sbom" / "app-v2.cdx.json").exists()


def test_the_sbom_of_a_version_validates_and_lists_what_dpkg_lists(
    box: Sandbox, repo: AptRepo, tmp_path: Path
) -> None:
    from kiln.lifecycle.sbom import validate_sbom

    if not versions(box, "app"):
        box.invoke("bake", "app", check=True)
    newest = versions(box, "app")[0]
    out = tmp_path / "app.cdx.json"
    box.invoke("sbom", "app", "--version", str(newest), "--output", str(out), check=True)
    text = out.read_text()
    validate_sbom(text)
    sbom = json.loads(text)
    assert sbom["specVersion"] in ("1.5", "1.6")
    image = sbom["metadata"]["component"]
    properties = {p["name"]: p["value"] for p in image["properties"]}
    assert properties["kiln:role"] == "app" and properties["kiln:version"] == str(newest)
    assert properties["kiln:parent"] == "trusted v1"
    dpkg = box.docker(
        "run",
        "--rm",
        "--entrypoint",
        "dpkg-query",
        box.image("app", newest),
        "-W",
        "-f=${Package}:${Architecture} ${Version}\\n",
    ).splitlines()
    components = [c for c in sbom["components"] if c["type"] == "library"]
    listed = sorted(
        f"{c['name']}:{c['purl'].split('arch=')[1].split('&')[0]} {c['version']}"
        for c in components
    )
    assert listed == sorted(dpkg)
    (demo,) = [c for c in components if c["name"] == "kiln-demo"]
    assert demo["purl"].startswith(f"pkg:deb/debian/kiln-demo@{demo['version']}?arch=all")
    assert [lic["license"].get("id") for lic in demo["licenses"]] == ["MIT"]


def test_a_bad_signature_names_the_source_and_nothing_is_rebaked(
    box: Sandbox, repo: AptRepo
) -> None:
    if not versions(box, "app"):
        box.invoke("bake", "app", check=True)
    before = {role: versions(box, role) for role in ("trusted", "app")}
    repo.publish("stable-security", "kiln-demo", "1.2", security=True)
    repo.break_signature("stable-security")
    try:
        rc, report, err = upstream(box)
        assert rc != 0 and report == {}
        assert repo.url in err and "stable-security" in err, err
        assert "signature" in err.lower(), err
        baked = box.invoke("bake", ROLES, "--outdated", "--upstream", env=cache_env(box))
        assert baked.returncode != 0
        assert repo.url in baked.stderr, baked.stderr
        assert {role: versions(box, role) for role in ("trusted", "app")} == before
    finally:
        repo.publish("stable-security", "kiln-demo", "1.2", security=True)  # signed again


def test_two_checks_at_once_both_answer(box: Sandbox, repo: AptRepo) -> None:
    """A schedule and a person checking together share the cache: one waits for the other."""
    if not versions(box, "app"):
        box.invoke("bake", "app", check=True)
    argv = ("outdated", "--upstream", "--role", ROLES, "--json")
    for _ in range(3):
        checks = [box.popen(*argv, env=cache_env(box)) for _ in range(3)]
        outputs = [c.communicate(timeout=120) for c in checks]
        for check, (out, err) in zip(checks, outputs, strict=True):
            assert check.returncode == 0, err
            assert json.loads(out)["images"]


def test_an_unreachable_mirror_is_an_error_never_up_to_date(box: Sandbox, repo: AptRepo) -> None:
    if not versions(box, "app"):
        box.invoke("bake", "app", check=True)
    before = versions(box, "app")
    repo.stop_serving()
    proc = box.invoke("outdated", "--upstream", "--role", ROLES, env=cache_env(box))
    assert proc.returncode != 0
    assert repo.url in proc.stderr, proc.stderr
    assert "up to date" not in proc.stdout + proc.stderr
    assert "no pending updates" not in proc.stdout
    baked = box.invoke("bake", ROLES, "--outdated", "--upstream", env=cache_env(box))
    assert baked.returncode != 0 and versions(box, "app") == before
