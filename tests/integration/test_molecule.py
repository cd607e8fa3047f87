"""Run the real `molecule test` for every Ansible role in roles/, for a freshly scaffolded role and
for scenarios that roles ship themselves (tests/fixtures/molecule_roles/), adapted by kiln.

Needs the Docker engine and the local base image (KILN_TEST_IMAGE, default
kiln/debian-bookworm:latest); nothing is pulled, and every container is removed afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kiln import roletest
from kiln.errors import DefinitionError, TestFailure

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("KILN_TEST_IMAGE", "kiln/debian-bookworm:latest")
INSTANCE = re.compile(r"kiln-molecule-[\w.-]+")
#: Roles written in the style of community roles, each shipping its own Molecule scenarios.
FIXTURE_ROLES = ROOT / "tests" / "fixtures" / "molecule_roles"
EXECUTED = re.compile(r"\[(?P<scenario>[^\]]+) > (?P<step>\w+)\] Executed: Successful")


@pytest.fixture(scope="module", autouse=True)
def _test_image() -> None:
    probe = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.fail(
            f"the Molecule test image {IMAGE} is not in the local Docker engine "
            f"({probe.stderr.strip()}); bootstrap it or set KILN_TEST_IMAGE"
        )


def _assert_no_instance_left(lines: list[str]) -> None:
    names = sorted({match for line in lines for match in INSTANCE.findall(line)})
    assert names, "the output names no test instance"
    for name in names:
        left = subprocess.run(
            ["docker", "ps", "--all", "--quiet", f"--filter=name=^/{name}$"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert left.stdout.strip() == "", f"container {name} was left behind"


@pytest.fixture
def scratch_project(tmp_path: Path) -> Path:
    """A temporary copy of what role tests need: roles/, molecule/ and templates/scaffold/."""
    for part in ("roles", "molecule", "templates/scaffold"):
        shutil.copytree(ROOT / part, tmp_path / part, symlinks=True)
    return tmp_path


def test_every_role_is_covered() -> None:
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())
    assert roletest.role_scenarios(ROOT) == roles
    assert {"common", "web", "acme.memcached"} <= set(roles)


@pytest.mark.parametrize("role", roletest.role_scenarios(ROOT))
def test_role_scenario_passes(role: str) -> None:
    lines: list[str] = []

    report = roletest.test_role(role, project_root=ROOT, on_line=lines.append)

    assert report.passed and report.name == role
    executed = {
        m[1] for line in lines if (m := re.search(r"\[.+ > (\w+)\] Executed: Success", line))
    }
    assert {"create", "converge", "idempotence", "verify", "destroy"} <= executed
    _assert_no_instance_left(lines)


def test_all_roles_reports_each_result_and_names_the_task_that_broke_idempotence(
    scratch_project: Path,
) -> None:
    """A freshly scaffolded role passes; one with a task that changes on every run fails at
    Molecule's idempotence step, and the report across both names that task."""
    for name in ("steady", "restless"):
        roletest.new_role(name, project_root=scratch_project)
    tasks = scratch_project / "roles" / "restless" / "tasks" / "main.yml"
    tasks.write_text(
        tasks.read_text() + "\n- name: Stamp the time on every run\n"
        "  ansible.builtin.shell: date > /tmp/restless-stamp\n"
    )
    lines: list[str] = []
    seen: list[roletest.RoleTestReport] = []

    with pytest.raises(roletest.RoleTestFailure) as caught:
        roletest.test_all_roles(
            project_root=scratch_project,
            names=["restless", "steady"],
            on_line=lines.append,
            on_report=seen.append,
        )

    assert [(r.name, r.passed) for r in seen] == [("restless", False), ("steady", True)]
    assert caught.value.reports == tuple(seen)
    restless = seen[0]
    assert restless.failed_step == "idempotence"
    assert "restless : Stamp the time on every run" in restless.failure_detail
    assert str(caught.value).startswith("1 of 2 role scenarios failed: restless\n")
    assert any("[steady > idempotence] Executed: Successful" in line for line in lines)
    _assert_no_instance_left(lines)


def test_a_failing_task_is_reported_with_its_step_and_name(scratch_project: Path) -> None:
    roletest.new_role("broken", project_root=scratch_project)
    tasks = scratch_project / "roles" / "broken" / "tasks" / "main.yml"
    tasks.write_text(
        tasks.read_text() + "\n- name: Fail on purpose\n  ansible.builtin.command: /bin/false\n"
    )
    lines: list[str] = []

    with pytest.raises(TestFailure) as caught:
        roletest.test_role("broken", project_root=scratch_project, on_line=lines.append)

    message = str(caught.value)
    assert "Molecule scenario 'broken' failed at step 'converge'" in message
    assert "TASK [broken : Fail on purpose]" in message
    assert "roles/broken/tasks/main.yml:" in message
    assert "Last 20 lines of output:" in message
    _assert_no_instance_left(lines)


def test_a_missing_image_fails_at_create_without_pulling(scratch_project: Path) -> None:
    roletest.new_role("noimage", project_root=scratch_project)

    with pytest.raises(TestFailure, match="failed at step 'create'") as caught:
        roletest.test_role(
            "noimage", project_root=scratch_project, image="kiln/no-such-image:never"
        )

    assert "kiln/no-such-image:never" in str(caught.value)


#: A pipe lookup's command: on the controller, connect to the test's listener and send "leak".
PHONE = """\
import socket
import sys

socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).sendall(b"leak")
print("sent")
"""


def test_a_roles_converge_runs_in_kilns_sandbox(scratch_project: Path) -> None:
    """A lookup runs on the controller: in kiln's sandbox, which has no network, it cannot reach
    a listener on the host's loopback, and the role test fails at converge."""
    received: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    received.append(conn.recv(100) or b"<connected>")
                except OSError:
                    received.append(b"<connected>")

    listener = threading.Thread(target=serve, daemon=True)
    listener.start()
    roletest.new_role("phone", project_root=scratch_project)
    role = scratch_project / "roles" / "phone"
    (role / "files").mkdir(exist_ok=True)
    (role / "files" / "phone.py").write_text(PHONE)
    tasks = role / "tasks" / "main.yml"
    tasks.write_text(
        tasks.read_text() + "\n- name: Phone home from the controller\n"
        "  ansible.builtin.debug:\n"
        "    msg: \"{{ lookup('pipe', 'python3 ' ~ role_path ~ '/files/phone.py "
        f"{server.getsockname()[1]}') }}}}\"\n"
    )
    lines: list[str] = []

    try:
        with pytest.raises(TestFailure) as caught:
            roletest.test_role("phone", project_root=scratch_project, on_line=lines.append)
    finally:
        stop.set()
        listener.join()
        server.close()

    assert received == []
    message = str(caught.value)
    assert "Molecule scenario 'phone' failed at step 'converge'" in message
    assert "TASK [phone : Phone home from the controller]" in message
    _assert_no_instance_left(lines)


# --- scenarios that roles ship themselves ------------------------------------------------------


def _tree_digest(path: Path) -> str:
    """sha256 over every entry's path, kind, mode and content (or link target) under path."""
    digest = hashlib.sha256()
    for entry in sorted(path.rglob("*")):
        info = entry.lstat()
        digest.update(f"{entry.relative_to(path)}\0{info.st_mode}\0".encode())
        if entry.is_symlink():
            digest.update(str(entry.readlink()).encode())
        elif entry.is_file():
            digest.update(entry.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def untouched_roles() -> Iterator[None]:
    """Fails the test if a run wrote anything into the fixture roles."""
    before = _tree_digest(FIXTURE_ROLES)
    yield
    assert _tree_digest(FIXTURE_ROLES) == before, "a role-shipped scenario wrote into its role"


def _executed(lines: list[str], scenario: str) -> set[str]:
    return {
        m["step"] for line in lines if (m := EXECUTED.search(line)) and m["scenario"] == scenario
    }


@pytest.mark.usefixtures("untouched_roles")
def test_a_role_shipped_default_scenario_passes_offline() -> None:
    lines: list[str] = []

    report = roletest.test_role(
        "acme.cron", project_root=ROOT, roles_paths=[FIXTURE_ROLES], on_line=lines.append
    )

    assert report.passed and (report.name, report.scenario) == ("acme.cron", "default")
    assert {"create", "prepare", "converge", "idempotence", "verify", "destroy"} <= _executed(
        lines, "default"
    )
    assert any("platform instance: geerlingguy/docker-" in note for note in report.adaptation)
    assert not any("docker pull" in line or "Pulling" in line for line in lines)
    _assert_no_instance_left(lines)


@pytest.mark.usefixtures("untouched_roles")
def test_another_shipped_scenario_runs_with_its_testinfra_verifier() -> None:
    lines: list[str] = []

    report = roletest.test_role(
        "acme.cron",
        scenario="testinfra",
        project_root=ROOT,
        roles_paths=[FIXTURE_ROLES],
        on_line=lines.append,
    )

    assert report.passed and report.scenario == "testinfra"
    assert {"converge", "idempotence", "verify"} <= _executed(lines, "testinfra")
    assert any(re.search(r"\b3 passed\b", line) for line in lines), "testinfra ran no tests"
    _assert_no_instance_left(lines)


@pytest.mark.usefixtures("untouched_roles")
def test_a_failing_shipped_verify_names_the_step_and_the_task() -> None:
    lines: list[str] = []

    with pytest.raises(TestFailure) as caught:
        roletest.test_role(
            "Acme.Broken-Verify",
            project_root=ROOT,
            roles_paths=[FIXTURE_ROLES],
            on_line=lines.append,
        )

    message = str(caught.value)
    assert (
        "Molecule scenario 'default' of role 'Acme.Broken-Verify' failed at step 'verify'"
        in message
    )
    assert "TASK [Assert that the motd names the production site.]" in message
    assert "the motd does not name production" in message
    assert f"{FIXTURE_ROLES}/Acme.Broken-Verify/molecule/default/verify.yml:" in message
    assert "invoke test-role Acme.Broken-Verify --scenario default" in message
    assert {"converge", "idempotence"} <= _executed(lines, "default")
    _assert_no_instance_left(lines)
    assert all(name.islower() for name in INSTANCE.findall("\n".join(lines)))


def test_an_unknown_scenario_lists_the_available_ones() -> None:
    with pytest.raises(DefinitionError, match=r"'nope'.*scenarios it ships: default, testinfra"):
        roletest.test_role(
            "acme.cron", scenario="nope", project_root=ROOT, roles_paths=[FIXTURE_ROLES]
        )

    cli = subprocess.run(
        [str(Path(sys.executable).parent / "invoke"), "test-role", "web", "--scenario", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert cli.returncode != 0
    assert "role 'web' has no Molecule scenario 'nope'" in cli.stdout + cli.stderr
