"""Run the real `molecule test` for every Ansible role in roles/ and for a freshly scaffolded role.

Needs the Docker engine and the local base image (KILN_TEST_IMAGE, default
kiln/debian-bookworm:latest); nothing is pulled, and every container is removed afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from kiln import roletest
from kiln.errors import TestFailure

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("KILN_TEST_IMAGE", "kiln/debian-bookworm:latest")
INSTANCE = re.compile(r"kiln-molecule-[\w.-]+")


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


def test_a_scaffolded_role_passes_molecule_test(scratch_project: Path) -> None:
    roletest.new_role("scaffolded", project_root=scratch_project)
    lines: list[str] = []

    report = roletest.test_role("scaffolded", project_root=scratch_project, on_line=lines.append)

    assert report.passed
    assert any("[scaffolded > idempotence] Executed: Successful" in line for line in lines)
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
