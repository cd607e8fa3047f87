"""`invoke deps` with the real ansible-galaxy: role tarballs, git roles, collection tarballs and git
collections built in the test, installed into .kiln/galaxy and locked; failures change nothing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Sandbox
from kiln.fingerprint import tree_digests
from kiln.requirements import check_installed, content_digest, read_lock

pytestmark = pytest.mark.integration

GALAXY = Path(sys.executable).parent / "ansible-galaxy"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
    proc = subprocess.run(
        ["git", *ident, "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def community_role(root: Path, namespace: str, name: str, extra_meta: str = "") -> Path:
    """A role laid out like a Galaxy role: galaxy_info, defaults, tasks, handlers."""
    write(
        root / "meta/main.yml",
        f"""
        galaxy_info:
          role_name: {name}
          namespace: {namespace}
          author: {namespace}
          description: {name} for Debian
          license: MIT
          min_ansible_version: "2.14"
          platforms:
            - name: Debian
              versions: [bookworm]
        dependencies: [{extra_meta}]
    """,
    )
    write(root / "defaults/main.yml", f"{name.replace('-', '_')}_enabled: true\n")
    write(
        root / "tasks/main.yml",
        f"""
        - name: Say {name}
          ansible.builtin.debug:
            msg: "{name} enabled={{{{ {name.replace("-", "_")}_enabled }}}}"
    """,
    )
    return root


def role_tarball(tmp: Path) -> Path:
    """acme_ntp-1.2.0.tar.gz: a role that depends on acme.repo-epel (another listed source)."""
    community_role(tmp / "src/acme_ntp", "acme", "ntp", extra_meta="{role: acme.repo-epel}")
    tarball = tmp / "acme_ntp-1.2.0.tar.gz"
    subprocess.run(["tar", "-C", str(tmp / "src"), "-czf", str(tarball), "acme_ntp"], check=True)
    return tarball


def git_role(tmp: Path) -> tuple[Path, str]:
    """A git repository with tag v1.0.0 and one later commit; returns (repo, v1.0.0's commit)."""
    repo = community_role(tmp / "repo-epel", "acme", "repo-epel")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first release")
    git(repo, "tag", "v1.0.0")
    tagged = git(repo, "rev-parse", "HEAD")
    write(repo / "defaults/main.yml", "repo_epel_enabled: false\n")
    git(repo, "commit", "-qam", "unreleased change")
    return repo, tagged


def collection_source(root: Path, name: str, version: str, dependencies: str = "{}") -> Path:
    write(
        root / "galaxy.yml",
        f"""
        namespace: acme
        name: {name}
        version: {version}
        readme: README.md
        authors: [acme]
        description: acme {name}
        license: [MIT]
        dependencies: {dependencies}
    """,
    )
    write(root / "README.md", f"# acme.{name}\n")
    write(root / "meta/runtime.yml", 'requires_ansible: ">=2.14"\n')
    community_role(root / "roles/hello", "acme", "hello")
    write(
        root / "plugins/modules/acme_ping.py",
        '''
        """A module that answers pong."""
        from ansible.module_utils.basic import AnsibleModule


        def main():
            AnsibleModule(argument_spec={}).exit_json(changed=False, ping="pong")


        if __name__ == "__main__":
            main()
    ''',
    )
    return root


def collection_tarball(tmp: Path) -> Path:
    source = collection_source(tmp / "tools", "tools", "1.4.0")
    subprocess.run(
        [str(GALAXY), "collection", "build", "--output-path", str(tmp)],
        cwd=source,
        capture_output=True,
        check=True,
    )
    return tmp / "acme-tools-1.4.0.tar.gz"


def git_collection(tmp: Path) -> Path:
    """acme.web 0.3.1 in git, depending on acme.tools (which only the tarball provides)."""
    repo = collection_source(tmp / "web", "web", "0.3.1", '{"acme.tools": ">=1.0.0"}')
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "0.3.1")
    git(repo, "tag", "0.3.1")
    return repo


def requirements(role_tar: Path, epel: Path, coll_tar: Path, web: Path, extra: str = "") -> str:
    return (
        textwrap.dedent(f"""
        roles:
          - src: {role_tar}
            name: acme.ntp
            version: 1.2.0
          - src: git+file://{epel}
            name: acme.repo-epel
            version: v1.0.0
        collections:
          - name: {coll_tar}
            type: file
          - name: git+file://{web}
            type: git
            version: "0.3.1"
    """).lstrip()
        + extra
    )


@pytest.fixture
def content(tmp_path: Path) -> dict[str, Path | str]:
    src = tmp_path / "content"
    src.mkdir()
    epel, tagged = git_role(src)
    return {
        "role_tar": role_tarball(src),
        "epel": epel,
        "tagged": tagged,
        "coll_tar": collection_tarball(src),
        "web": git_collection(src),
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, and ANSIBLE_* variables that would redirect a careless install."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ANSIBLE_ROLES_PATH", str(tmp_path / "elsewhere/roles"))
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(tmp_path / "elsewhere/collections"))
    monkeypatch.setenv("ANSIBLE_HOME", str(tmp_path / "elsewhere/ansible-home"))
    return home


def snapshot(sandbox: Sandbox) -> tuple[dict[str, str], str]:
    return tree_digests(sandbox.root / ".kiln/galaxy"), (
        sandbox.root / "requirements.lock"
    ).read_text()


def test_deps_installs_and_locks_tarballs_and_git(
    sandbox: Sandbox, content: dict[str, Path | str], home: Path, tmp_path: Path
) -> None:
    root = sandbox.root
    # A project ansible.cfg that points elsewhere must not redirect the install.
    write(root / "ansible.cfg", f"[defaults]\nroles_path = {tmp_path}/elsewhere/cfg-roles\n")
    text = requirements(
        Path(content["role_tar"]),
        Path(content["epel"]),
        Path(content["coll_tar"]),
        Path(content["web"]),
    )
    (root / "requirements.yml").write_text(text)

    proc = sandbox.invoke("deps", check=True)
    assert "role       acme.repo-epel" in proc.stdout and "wrote requirements.lock" in proc.stdout

    galaxy = root / ".kiln/galaxy"
    assert (galaxy / "roles/acme.ntp/tasks/main.yml").is_file()
    # The tag, not the branch head: v1.0.0 still had repo_epel_enabled: true.
    assert (
        galaxy / "roles/acme.repo-epel/defaults/main.yml"
    ).read_text() == "repo_epel_enabled: true\n"
    tools = galaxy / "collections/ansible_collections/acme/tools"
    assert (tools / "roles/hello/tasks/main.yml").is_file()
    assert (tools / "plugins/modules/acme_ping.py").is_file()
    assert (galaxy / "collections/ansible_collections/acme/web/roles/hello/meta/main.yml").is_file()

    lock = read_lock(root)
    assert lock is not None
    entries = {e.key: e for e in lock.entries}
    assert sorted(entries) == [
        "collection:acme.tools",
        "collection:acme.web",
        "role:acme.ntp",
        "role:acme.repo-epel",
    ]
    assert entries["role:acme.ntp"].version == "1.2.0"
    assert entries["role:acme.repo-epel"].version == content["tagged"]
    assert entries["role:acme.repo-epel"].ref == "v1.0.0"
    assert entries["collection:acme.tools"].version == "1.4.0"
    assert entries["collection:acme.web"].version == "0.3.1"
    assert entries["collection:acme.tools"].source == str(content["coll_tar"])
    assert entries["role:acme.repo-epel"].source == f"git+file://{content['epel']}"
    assert entries["role:acme.ntp"].sha256 == content_digest(galaxy / "roles/acme.ntp")
    assert entries["collection:acme.web"].sha256 == content_digest(tools.parent / "web")
    assert entries["collection:acme.tools"].sha256 == content_digest(tools)
    check_installed(sandbox.project())  # what is installed is what is locked

    # Nothing went to the user's ~/.ansible, the ANSIBLE_* paths or the ansible.cfg roles_path.
    assert not (home / ".ansible").exists()
    assert not (tmp_path / "elsewhere").exists()
    assert not list((root / ".kiln").glob("galaxy-tmp-*"))

    # Same sources, same lock, byte for byte; --json prints the entries.
    before = (root / "requirements.lock").read_text()
    again = sandbox.invoke("deps", "--json", check=True)
    assert (root / "requirements.lock").read_text() == before
    assert {e["name"] for e in json.loads(again.stdout)} == {
        "acme.ntp",
        "acme.repo-epel",
        "acme.tools",
        "acme.web",
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("extra", "named", "message"),
    [
        (
            "  - src: {tmp}/missing-1.0.tar.gz\n    name: acme.missing\n",
            "role #3 ('acme.missing')",
            "does not exist",
        ),
        (
            "  - src: git+file://{tmp}/no-such-repo\n    name: acme.nowhere\n",
            "role #3 ('acme.nowhere')",
            "no-such-repo",
        ),
        (
            "  - src: git+file://{epel}\n    name: acme.epel-next\n    version: v9.9.9\n",
            "role #3 ('acme.epel-next')",
            "ref 'v9.9.9' not found",
        ),
    ],
    ids=["missing-tarball", "bad-git-url", "unknown-git-ref"],
)
def test_unreachable_role_source_names_the_entry_and_changes_nothing(
    sandbox: Sandbox,
    content: dict[str, Path | str],
    home: Path,
    tmp_path: Path,
    extra: str,
    named: str,
    message: str,
) -> None:
    root = sandbox.root
    parts = [Path(content[k]) for k in ("role_tar", "epel", "coll_tar", "web")]
    (root / "requirements.yml").write_text(requirements(*parts))
    sandbox.invoke("deps", check=True)
    before = snapshot(sandbox)

    text = requirements(*parts).replace(
        "collections:", extra.format(tmp=tmp_path, epel=content["epel"]) + "collections:"
    )
    (root / "requirements.yml").write_text(text)
    proc = sandbox.invoke("deps")
    assert proc.returncode != 0
    assert named in proc.stderr and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(sandbox) == before
    assert not list((root / ".kiln").glob("galaxy-tmp-*"))


def test_failure_inside_ansible_galaxy_after_roles_installed_changes_nothing(
    sandbox: Sandbox, content: dict[str, Path | str], home: Path, tmp_path: Path
) -> None:
    """Roles install, then ansible-galaxy rejects a collection: the staged roles are dropped."""
    root = sandbox.root
    parts = [Path(content[k]) for k in ("role_tar", "epel", "coll_tar", "web")]
    (root / "requirements.yml").write_text(requirements(*parts))
    sandbox.invoke("deps", check=True)
    before = snapshot(sandbox)

    broken = tmp_path / "acme-broken-1.0.0.tar.gz"
    broken.write_bytes(b"not a tarball")
    server = f"http://127.0.0.1:{closed_port()}/api/"
    for extra, named in [
        (f"  - name: {broken}\n    type: file\n", "collection #3"),
        # A Galaxy server is passed through to ansible-galaxy; here it is unreachable.
        (f"  - name: acme.remote\n    source: {server}\n", "collection #3 ('acme.remote')"),
    ]:
        (root / "requirements.yml").write_text(requirements(*parts, extra=extra))
        proc = sandbox.invoke("deps")
        assert proc.returncode != 0
        assert named in proc.stderr, proc.stderr
        assert snapshot(sandbox) == before
        assert not list((root / ".kiln").glob("galaxy-tmp-*"))
    assert server in proc.stderr


def test_galaxy_server_flag_reaches_ansible_galaxy(sandbox: Sandbox, home: Path) -> None:
    """`invoke deps --server URL` sends Galaxy roles there (unreachable here: the error says so)."""
    (sandbox.root / "requirements.yml").write_text("- src: acme.remote_role\n  version: 1.0.0\n")
    server = f"http://127.0.0.1:{closed_port()}/"
    proc = sandbox.invoke("deps", "--server", server)
    assert proc.returncode != 0
    assert "role #1 ('acme.remote_role')" in proc.stderr and "127.0.0.1" in proc.stderr, proc.stderr
    assert not (sandbox.root / ".kiln/galaxy").exists()
    assert not (sandbox.root / "requirements.lock").exists()
