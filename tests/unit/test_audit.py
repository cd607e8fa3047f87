"""`invoke audit` and the single-host inventory proof, without Docker.

The audit reports what a bake would refuse (errors), what it allows with a recorded reason, and
warnings. The inventory proof is kiln's Ansible callback, run here by a real ansible-playbook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kiln.bake.failures import inventory_refusal as _inventory_refusal
from kiln.cli.audit_text import audit_lines
from kiln.commands import audit_project
from kiln.guard import TaskException
from kiln.model import Project, Secret
from kiln.packer import PackerRun
from kiln.targets.base import CALLBACK_DIR

REPO = Path(__file__).resolve().parents[2]

MIXED_TASKS = """\
- name: Ask the database
  ansible.builtin.command: echo hi
  delegate_to: db.internal

- name: Mention production
  ansible.builtin.debug:
    msg: "the dump comes from db.prod.example.com"

- name: Use the token
  ansible.builtin.debug:
    msg: "{{ api_token | length }}"
"""

TASKS_PY = """\
from pathlib import Path
from kiln import Project, Secret, TaskException
from kiln.tasks import collection

project = Project(Path(__file__).resolve().parent, production_hosts=["prod.example.com"])
bookworm = project.base("debian-bookworm")
project.role("base", parent=bookworm, ansible_roles=["common"])
project.role(
    "mixed",
    parent="base",
    secrets={"api_token": Secret(env="KILN_TEST_TOKEN")},
    audit_exceptions=[
        TaskException("mixed", "Mention production", "prod-url", "only a message, no connection")
    ],
)
ns = collection(project)
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("roles", "templates"):
        shutil.copytree(REPO / name, tmp_path / name)
    (tmp_path / "roles" / "mixed" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "mixed" / "tasks" / "main.yml").write_text(MIXED_TASKS)
    (tmp_path / "tasks.py").write_text(TASKS_PY)
    return tmp_path


def mixed_project(root: Path) -> Project:
    project = Project(root, production_hosts=["prod.example.com"])
    project.role("base", parent=project.base("debian-bookworm"), ansible_roles=["common"])
    project.role(
        "mixed",
        parent="base",
        secrets={"api_token": Secret(env="KILN_TEST_TOKEN")},
        audit_exceptions=[
            TaskException("mixed", "Mention production", "prod-url", "only a message")
        ],
    )
    return project


def test_findings_are_listed_as_file_line_rule_task_message(root: Path) -> None:
    reports = audit_project(mixed_project(root), ["mixed"])
    lines = audit_lines(reports)
    assert lines[0].startswith("mixed: 1 error(s), 1 warning(s), 1 allowed (1 Ansible role(s)")
    error, warning, allowed = lines[1:]
    assert error.startswith(
        "  error    roles/mixed/tasks/main.yml:1 [delegate-to] Ask the database: "
    )
    assert warning.startswith(
        "  warning  roles/mixed/tasks/main.yml:9 [secret-no-log] Use the token: uses secret "
        "api_token without no_log: true"
    )
    assert allowed.startswith(
        "  allowed  roles/mixed/tasks/main.yml:5 [prod-url] Mention production: reaches "
        "production host db.prod.example.com"
    )
    assert allowed.endswith("(allowed: only a message)")
    assert "packer/mixed.playbook.yml" in reports["mixed"].files


def test_the_repository_roles_audit_clean() -> None:
    import runpy

    project = runpy.run_path(str(REPO / "tasks.py"))["project"]
    reports = audit_project(project)
    assert set(reports) == {r.name for r in project.roles}
    for name, report in reports.items():
        assert report.findings == (), (name, audit_lines({name: report}))


def invoke(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_invoke_audit_exits_non_zero_on_errors(root: Path) -> None:
    proc = invoke(root, "audit")
    assert proc.returncode == 1, proc.stderr
    assert "base: 0 error(s), 0 warning(s), 0 allowed" in proc.stdout
    assert "error    roles/mixed/tasks/main.yml:1 [delegate-to] Ask the database" in proc.stdout
    assert "(allowed: only a message, no connection)" in proc.stdout
    assert "kiln: the guard refused 1 finding(s)" in proc.stderr
    assert "Traceback" not in proc.stderr

    clean = invoke(root, "audit", "--role", "base")
    assert clean.returncode == 0, clean.stderr
    assert "mixed" not in clean.stdout


def test_invoke_audit_json(root: Path) -> None:
    proc = invoke(root, "audit", "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["ok"] is False
    mixed = data["roles"]["mixed"]
    assert mixed["counts"] == {"errors": 1, "warnings": 1, "allowed": 1}
    allowed = next(f for f in mixed["findings"] if f["allowed"])
    assert allowed["reason"] == "only a message, no connection"
    assert allowed["line"] == 5


def test_invoke_audit_unknown_role(root: Path) -> None:
    proc = invoke(root, "audit", "-r", "nope")
    assert proc.returncode == 1
    assert "kiln: unknown role 'nope' (known roles: base, debian-bookworm, mixed)" in proc.stderr


# -- the inventory Ansible is handed holds exactly one host -----------------------------------


def run_playbook(tmp_path: Path, inventory: str) -> tuple[int, list[dict[str, object]], str]:
    """ansible-playbook with kiln's callback, on a local inventory; returns rc, events, output."""
    (tmp_path / "inventory.ini").write_text(inventory)
    (tmp_path / "play.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Touch a marker\n"
        "      ansible.builtin.file: {path: '{{ marker }}', state: touch}\n"
    )
    events = tmp_path / "events.jsonl"
    env = dict(
        os.environ,
        KILN_EVENTS_FILE=str(events),
        ANSIBLE_CALLBACKS_ENABLED="kiln_events",
        ANSIBLE_CALLBACK_PLUGINS=str(CALLBACK_DIR),
        ANSIBLE_NOCOLOR="1",
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory.ini",
         "-e", f"marker={tmp_path / 'touched'}",
         "-e", f"ansible_python_interpreter={sys.executable}", "play.yml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = events.read_text().splitlines() if events.exists() else []
    return proc.returncode, [json.loads(line) for line in lines], proc.stdout + proc.stderr


def test_callback_reports_a_one_host_inventory(tmp_path: Path) -> None:
    rc, events, output = run_playbook(tmp_path, "default ansible_connection=local\n")
    assert rc == 0, output
    (report,) = [e for e in events if e["event"] == "inventory"]
    assert report["hosts"] == ["default"]
    assert report["sources"][0]["content"] == "default ansible_connection=local\n"
    assert _inventory_refusal(PackerRun(0, events=events), required=True) is None
    assert (tmp_path / "touched").exists()


def test_callback_stops_ansible_before_any_task_on_two_hosts(tmp_path: Path) -> None:
    inventory = "default ansible_connection=local\n[prod]\ndb1 ansible_connection=local\n"
    rc, events, output = run_playbook(tmp_path, inventory)
    assert rc == 97, output
    assert "kiln: the inventory holds 2 host(s) (db1, default)" in output
    assert not [e for e in events if e["event"] == "task_start"]
    assert not (tmp_path / "touched").exists()
    refusal = _inventory_refusal(PackerRun(rc, events=events), required=False)
    assert refusal is not None and "the guard stopped Ansible" in refusal


def test_kiln_refuses_a_bake_whose_inventory_was_not_proven() -> None:
    one = {"event": "inventory", "hosts": ["default"], "sources": [{"content": "default\n"}]}
    assert _inventory_refusal(PackerRun(0, events=[one]), required=True) is None
    missing = _inventory_refusal(PackerRun(0, events=[]), required=True)
    assert missing is not None and "did not report its inventory" in missing
    assert _inventory_refusal(PackerRun(1, events=[]), required=False) is None
    # The raw -i file is checked too, not only the host list the callback parsed.
    two_in_file = {**one, "sources": [{"content": "default\nprod1\n"}]}
    refusal = _inventory_refusal(PackerRun(0, events=[two_in_file]), required=True)
    assert refusal is not None and "must hold exactly one host" in refusal
    listed = {**one, "sources": [{"content": "a.example.com,b.example.com,"}]}
    assert _inventory_refusal(PackerRun(0, events=[listed]), required=True) is not None


def test_packer_sees_docker_host_but_no_host_changing_ansible_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from kiln.bake.invocation import packer_env
    from kiln.console import Reporter

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("ANSIBLE_INVENTORY", "/etc/ansible/hosts")
    monkeypatch.setenv("ANSIBLE_CONFIG", "/etc/ansible/ansible.cfg")
    out = io.StringIO()
    env = packer_env(Project(tmp_path), Reporter(out), tmp_path / "packer-tmp")
    # Packer's and its plugins' temporary files (a copy of the builder's key) go with the bake.
    assert env["TMPDIR"] == env["PACKER_TMP_DIR"] == str(tmp_path / "packer-tmp")
    assert env["DOCKER_HOST"] == "unix:///nonexistent.sock"
    assert "ANSIBLE_INVENTORY" not in env and "ANSIBLE_CONFIG" not in env
    assert "ignoring ANSIBLE_INVENTORY: Ansible only ever targets the throwaway builder" in (
        out.getvalue()
    )
