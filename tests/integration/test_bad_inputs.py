"""Bad inputs through the real CLI: each fails with its message, a non-zero exit, no version row
and nothing left running (no builder, no container from the sandbox's images).

One module-scoped sandbox; each case changes it (tasks.py, files, environment) and puts it back.
Most cases fail before any builder starts. Four need one: a failing Ansible task, an undefined
variable in an Ansible template, Ctrl-C during provisioning and a concurrent bake. Definition
errors without Docker are also covered, faster, in tests/unit/test_bad_definitions.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Sandbox, make_sandbox

ROLES: dict[str, dict[str, str | bytes]] = {
    "seed": {
        "tasks/main.yml": "- name: Mark the image\n  ansible.builtin.copy:\n"
        '    content: "seed\\n"\n    dest: /etc/kiln-seed\n    mode: "0644"\n',
    },
    "failing": {
        "tasks/main.yml": "- name: Read a file that is not there\n"
        "  ansible.builtin.command: cat /nonexistent/kiln-file\n  changed_when: false\n",
    },
    "undefvar": {
        "tasks/main.yml": "- name: Write the greeting\n  ansible.builtin.template:\n"
        '    src: greeting.j2\n    dest: /etc/greeting\n    mode: "0644"\n',
        "templates/greeting.j2": "Hello {{ missing_var }}\n",
    },
    "slow": {
        "tasks/main.yml": "- name: Sleep for a long time\n"
        "  ansible.builtin.command: sleep 300\n  changed_when: false\n",
    },
    # A parent whose apt sources its children's `apt-get update` cannot read.
    "brokenapt": {
        "tasks/main.yml": "- name: Add an apt source apt cannot read\n  ansible.builtin.copy:\n"
        '    content: "deb [broken\\n"\n    dest: /etc/apt/sources.list.d/kiln-broken.list\n'
        '    mode: "0644"\n',
    },
    "pair": {
        "tasks/main.yml": "- name: Mark the image\n  ansible.builtin.copy:\n"
        '    content: "pair\\n"\n    dest: /etc/kiln-pair\n    mode: "0644"\n',
    },
}

ROLE_DEFINITIONS = "\n".join(
    f'project.role("{name}", parent=bookworm, lint_allowed=True)' for name in ROLES
)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose `seed` role (on the Debian base) is baked: the baseline every case keeps."""
    sandbox = make_sandbox(tmp_path_factory.mktemp("bad-inputs"))
    for role, files in ROLES.items():
        write_files(sandbox.root / "roles" / role, files)
    sandbox.write_tasks(extra=ROLE_DEFINITIONS)
    try:
        sandbox.invoke("bake", "seed", check=True, timeout=1800)
        yield sandbox
    finally:
        sandbox.cleanup()


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def version_rows(sandbox: Sandbox) -> list[tuple[str, int, str]]:
    """Every recorded version, read with plain sqlite3 (kiln's own reader may be the culprit)."""
    with sqlite3.connect(f"file:{sandbox.root / '.kiln' / 'registry.db'}?mode=ro", uri=True) as db:
        return sorted(db.execute("SELECT role, version, status FROM versions").fetchall())


def leftovers(sandbox: Sandbox) -> list[str]:
    """Builders (a non-empty kiln.bake label) or any container from the sandbox's images."""
    out = sandbox.docker(
        "ps", "-a", "--filter", "label=kiln.bake",
        "--format", '{{.ID}} {{.Image}} {{.Label "kiln.bake"}}',
    )  # fmt: skip
    builders = [
        line
        for line in out.splitlines()
        if len(line.split()) >= 3 and line.split()[1].startswith(f"{sandbox.namespace}/")
    ]
    return builders + sandbox.containers()


@dataclass
class Case:
    """One bad input: what to change, what to run, and the message that must come out."""

    args: tuple[str, ...]
    expect: tuple[str, ...]
    extra: str = ""  # appended to tasks.py
    files: dict[str, str | bytes] = field(default_factory=dict)  # relative to the sandbox root
    env: dict[str, str | None] = field(default_factory=dict)  # None removes a variable
    code: int | None = None  # the exact exit code, when it matters


@contextmanager
def applied(sandbox: Sandbox, case: Case) -> Iterator[None]:
    """The sandbox with the case's changes, restored afterwards (files, tasks.py)."""
    saved: dict[Path, bytes | None] = {}
    for rel in case.files:
        path = sandbox.root / rel
        saved[path] = path.read_bytes() if path.exists() else None
    try:
        write_files(sandbox.root, case.files)
        if case.extra:
            sandbox.write_tasks(extra=ROLE_DEFINITIONS + "\n" + case.extra)
        yield
    finally:
        sandbox.write_tasks(extra=ROLE_DEFINITIONS)
        for path, content in saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)


def run(sandbox: Sandbox, case: Case) -> subprocess.CompletedProcess[str]:
    env = sandbox.env()
    for key, value in case.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-m", "invoke", *case.args],
        cwd=sandbox.root, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip


def assert_refused(
    sandbox: Sandbox, proc: subprocess.CompletedProcess[str], case: Case, before: list[object]
) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    if case.code is not None:
        assert proc.returncode == case.code, output
    for text in case.expect:
        assert text in output, f"{text!r} not in:\n{output}"
    assert "Traceback" not in output, output
    assert version_rows(sandbox) == before, "a version was recorded"
    assert leftovers(sandbox) == [], "something was left running"


# kiln renders from the templates of its installed package; a case that breaks one points the
# sandbox's project at the sandbox's copy (conftest.COPIED) and breaks that.
SANDBOX_TEMPLATES = 'project.templates_path = here / "templates"'


def template_with(sandbox: Sandbox, edit: str, where: str = "end") -> dict[str, str | bytes]:
    """The sandbox's docker template with one edit, as a case's file change."""
    path = sandbox.root / "templates" / "docker.pkr.hcl.j2"
    text = path.read_text()
    if where == "end":
        text += edit
    else:  # insert after the first line matching the regular expression `where`
        match = re.search(where, text, re.MULTILINE)
        assert match is not None, where
        text = text[: match.end()] + edit + text[match.end() :]
    return {"templates/docker.pkr.hcl.j2": text}


def bin_without_packer(tmp: Path) -> str:
    """A PATH with docker and git but no packer."""
    bin_dir = tmp / "bin-without-packer"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("docker", "git"):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return f"{Path(sys.executable).parent}{os.pathsep}{bin_dir}"


# -- cases that fail before any builder starts -------------------------------------------------
def static_cases(sandbox: Sandbox) -> dict[str, Case]:
    broken_yaml = "- name: ok\n  ansible.builtin.debug:\n    msg: [unclosed\n"
    return {
        "unknown role": Case(
            ("bake", "nope"), ("kiln: unknown role 'nope' (known roles: ", "seed")
        ),
        "unknown target": Case(
            ("bake", "seed", "--target", "vmware"), ("kiln: unknown target 'vmware'",)
        ),
        "role name with ..": Case(
            ("bake", "seed"),
            ("kiln: tasks.py:", "role name '../x' is invalid"),
            extra='project.role("../x", parent=bookworm, ansible_roles=["seed"])',
        ),
        "role name in upper case": Case(
            ("bake", "seed"),
            ("role name 'Seed2' is invalid: use 1-63 lowercase letters",),
            extra='project.role("Seed2", parent=bookworm, ansible_roles=["seed"])',
        ),
        "self parent": Case(
            ("bake", "seed"),
            ("kiln: tasks.py:", "role 'loop': a role cannot be its own parent (cycle)"),
            extra='project.role("loop", parent="loop")',
        ),
        "meta dependency cycle": Case(
            ("bake", "ring"),
            ("meta dependencies form a cycle: ring_a -> ring_b -> ring_a",),
            extra='project.role("ring", parent=bookworm, ansible_roles=["ring_a"])',
            files={
                "roles/ring_a/tasks/main.yml": "[]\n",
                "roles/ring_a/meta/main.yml": "dependencies: [ring_b]\n",
                "roles/ring_b/tasks/main.yml": "[]\n",
                "roles/ring_b/meta/main.yml": "dependencies:\n  - role: ring_a\n",
            },
        ),
        "missing Ansible role": Case(
            ("bake", "seed"),
            ("role 'ghost': Ansible role 'nope' was not found. kiln looked in:", "Roles found: "),
            extra='project.role("ghost", parent=bookworm, ansible_roles=["nope"])',
        ),
        "malformed task YAML": Case(
            ("bake", "broken"),
            ("roles/broken/tasks/main.yml:4 [yaml-error]", "is not valid YAML"),
            extra='project.role("broken", parent=bookworm, lint_allowed=True)',
            files={"roles/broken/tasks/main.yml": broken_yaml},
        ),
        "non-UTF-8 role file": Case(
            ("bake", "latin"),
            ("roles/latin/tasks/main.yml:1 [not-utf8]", "byte 0xe9 on line 1 is not UTF-8"),
            extra='project.role("latin", parent=bookworm, lint_allowed=True)',
            files={"roles/latin/tasks/main.yml": b"- name: caf\xe9\n  ansible.builtin.ping:\n"},
        ),
        "variable of an unsupported type": Case(
            ("bake", "seed"),
            ("variable 'day' has type date, which is not serialisable",),
            extra='import datetime\nproject.role("dated", parent=bookworm, ansible_roles=["seed"],'
            " variables={'day': datetime.date(2026, 1, 1)})",
        ),
        "huge variable": Case(
            ("bake", "seed"),
            ("variable 'big' is 70002 bytes, over the 65536-byte limit",),
            extra='project.role("huge", parent=bookworm, ansible_roles=["seed"],'
            " variables={'big': 'x' * 70000})",
        ),
        "secret from an unset environment variable": Case(
            ("bake", "secretive"),
            ("secret 'api_token' needs environment variable KILN_SURELY_UNSET_TOKEN to be set",),
            extra="from kiln import Secret\n"
            'project.role("secretive", parent=bookworm, ansible_roles=["seed"],'
            ' secrets={"api_token": Secret(env="KILN_SURELY_UNSET_TOKEN")})',
            env={"KILN_SURELY_UNSET_TOKEN": None},
        ),
        "task reaching a production host": Case(
            ("bake", "fetcher"),
            ("[prod-url] Fetch the dump: reaches production host db.prod.example.com",),
            extra='project.production_hosts = ("prod.example.com",)\n'
            'project.role("fetcher", parent=bookworm, lint_allowed=True)',
            files={
                "roles/fetcher/tasks/main.yml": "- name: Fetch the dump\n"
                "  ansible.builtin.get_url:\n    url: https://db.prod.example.com/dump.sql\n"
                '    dest: /tmp/dump.sql\n    mode: "0600"\n'
            },
        ),
        "undefined variable in kiln's template": Case(
            ("bake", "seed"),
            ("kiln: template docker.pkr.hcl.j2: 'no_such_variable' is undefined",),
            extra=SANDBOX_TEMPLATES,
            files=template_with(sandbox, "# {{ no_such_variable }}\n"),
        ),
        "syntax error in kiln's template": Case(
            ("bake", "seed"),
            ("docker.pkr.hcl.j2:", "unexpected end of template"),
            extra=SANDBOX_TEMPLATES,
            files=template_with(sandbox, "# {{ role_name \n"),
        ),
        "template rendering HCL that does not parse": Case(
            ("bake", "seed"),
            ("packer/seed.pkr.hcl: rendered HCL does not parse",),
            extra=SANDBOX_TEMPLATES,
            files=template_with(sandbox, 'source "docker" "unclosed" {\n'),
        ),
        "template packer rejects": Case(
            ("bake", "seed"),
            ("packer exited with", "Unsupported argument; An argument named", "not_an_argument"),
            extra=SANDBOX_TEMPLATES,
            files=template_with(
                sandbox, "\n    not_an_argument = 1", where=r'post-processor "docker-tag" \{$'
            ),
        ),
        "packer not installed": Case(
            ("bake", "pair"),
            ("kiln: packer is not installed or not on PATH",),
            env={"PATH": bin_without_packer(sandbox.root.parent)},
        ),
        "Docker engine down": Case(
            ("bake", "pair"),
            (
                "kiln: the Docker engine is not running at "
                "DOCKER_HOST=unix:///nonexistent.sock (docker version: Cannot connect",
            ),
            env={"DOCKER_HOST": "unix:///nonexistent.sock"},
        ),
    }


STATIC = (
    "unknown role", "unknown target", "role name with ..", "role name in upper case",
    "self parent", "meta dependency cycle", "missing Ansible role", "malformed task YAML",
    "non-UTF-8 role file", "variable of an unsupported type", "huge variable",
    "secret from an unset environment variable", "task reaching a production host",
    "undefined variable in kiln's template", "syntax error in kiln's template",
    "template rendering HCL that does not parse", "template packer rejects",
    "packer not installed", "Docker engine down",
)  # fmt: skip


@pytest.mark.parametrize("name", STATIC)
def test_bad_input_is_refused(box: Sandbox, name: str) -> None:
    case = static_cases(box)[name]
    before = version_rows(box)
    with applied(box, case):
        proc = run(box, case)
    assert_refused(box, proc, case, before)


def test_registry_that_is_not_a_database(box: Sandbox) -> None:
    state = box.root / ".kiln"
    before = version_rows(box)
    moved = state.parent / "registry-backup"
    moved.mkdir(exist_ok=True)
    for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
        if (state / name).exists():
            shutil.move(state / name, moved / name)
    try:
        (state / "registry.db").write_bytes(b"this is not an SQLite database\n" * 200)
        proc = box.invoke("bake", "seed")
    finally:
        for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
            (state / name).unlink(missing_ok=True)
            if (moved / name).exists():
                shutil.move(moved / name, state / name)
    assert proc.returncode != 0
    assert "is not a usable SQLite database" in proc.stderr, proc.stderr
    assert "move it aside to start a new one" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert version_rows(box) == before
    assert leftovers(box) == []


def test_revoked_parent_is_not_built_upon(box: Sandbox) -> None:
    """kiln refuses (rather than silently rebaking the same inputs) and says how to go on."""
    before = version_rows(box)
    with box.registry() as registry:
        parent = registry.latest("debian-bookworm")
        assert parent is not None
        registry.set_status(parent.role, parent.version, "revoked", "test: a CVE in openssl")
    try:
        proc = box.invoke("bake", "seed")
        assert proc.returncode != 0
        assert (
            f"kiln: cannot bake seed: its ancestor debian-bookworm v{parent.version} is revoked "
            "(test: a CVE in openssl)"
        ) in proc.stderr, proc.stderr
        assert "`invoke bake seed --force`" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        with box.registry() as registry:
            registry.set_status(parent.role, parent.version, parent.status, parent.status_reason)
    rows = version_rows(box)
    assert [r[:2] for r in rows] == [r[:2] for r in before]
    assert leftovers(box) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_under_the_logs(box: Sandbox) -> None:
    """A 64 KiB tmpfs, filled up, under .kiln/logs: packer.log cannot be written."""
    logs = box.root / ".kiln" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(logs)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    before = version_rows(box)
    try:
        with suppress(OSError), (logs / "filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        case = Case(("bake", "pair"), ("No space left on device (ENOSPC)", "Free some disk space"))
        proc = run(box, case)
    finally:
        subprocess.run(["umount", "-l", str(logs)], check=False)
    assert_refused(box, proc, case, before)
    assert "cannot write .kiln/logs/pair/" in proc.stderr, proc.stderr


# -- cases that start a builder ----------------------------------------------------------------
def test_failing_ansible_task_names_task_file_line_and_module_message(box: Sandbox) -> None:
    case = Case(
        ("bake", "failing"),
        (
            "Ansible task 'failing : Read a file that is not there' of role failing failed",
            "at roles/failing/tasks/main.yml:1",
            "cat: /nonexistent/kiln-file: No such file or directory",
            "The builder was removed and no version was recorded.",
        ),
    )
    before = version_rows(box)
    assert_refused(box, run(box, case), case, before)


def test_an_apt_get_update_that_fails_in_the_builder(box: Sandbox) -> None:
    """The builder's first update runs in the background: its failure still stops the bake."""
    box.invoke("bake", "brokenapt", "--skip-tests", check=True, timeout=1800)
    case = Case(
        ("bake", "afterbroken"),
        (
            'Ansible task "kiln : wait for the builder\'s apt-get update" of the play kiln '
            "generated failed\n  at packer/afterbroken.playbook.yml:",
            "E: Malformed entry 1 in list file /etc/apt/sources.list.d/kiln-broken.list",
            "apt-get update failed in the builder (exit 100)",
            "The builder was removed and no version was recorded.",
        ),
        extra='project.role("afterbroken", parent="brokenapt", ansible_roles=["seed"], '
        "lint_allowed=True)",
    )
    before = version_rows(box)
    with applied(box, case):
        proc = run(box, case)
    assert_refused(box, proc, case, before)


def test_undefined_variable_in_an_ansible_template(box: Sandbox) -> None:
    case = Case(
        ("bake", "undefvar"),
        (
            "Ansible task 'undefvar : Write the greeting' of role undefvar failed",
            "at roles/undefvar/tasks/main.yml:1",
            "'missing_var' is undefined",
        ),
    )
    before = version_rows(box)
    assert_refused(box, run(box, case), case, before)


def test_ctrl_c_during_provisioning(box: Sandbox) -> None:
    before = version_rows(box)
    proc = box.popen("bake", "slow")
    seen: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "Sleep for a long time" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(900), "".join(seen)
        time.sleep(2)  # well inside the task
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    stderr = proc.stderr.read() if proc.stderr else ""
    output = "".join(seen) + stderr
    assert proc.returncode == 130, output
    assert "kiln: interrupted" in stderr, output
    assert "Traceback" not in output
    assert version_rows(box) == before
    assert leftovers(box) == []


def test_concurrent_bakes_of_one_role_record_one_version(box: Sandbox) -> None:
    before = version_rows(box)
    first = box.popen("bake", "pair")
    time.sleep(1)
    second = box.popen("bake", "pair")
    out_first, err_first = first.communicate(timeout=1800)
    out_second, err_second = second.communicate(timeout=1800)
    assert first.returncode == 0, out_first + err_first
    assert second.returncode == 0, out_second + err_second
    rows = [r for r in version_rows(box) if r[0] == "pair"]
    assert len(rows) == 1, rows
    (pair,) = rows
    assert f"pair v{pair[1]}" in out_first and f"pair v{pair[1]}" in out_second
    assert "Traceback" not in err_first + err_second
    assert [r for r in version_rows(box) if r[0] != "pair"] == before
    assert leftovers(box) == []
