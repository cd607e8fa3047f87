"""The guard in a real bake: one host in Ansible's inventory, host-changing environment ignored,
the project's production hosts audited, and allowed exceptions recorded with the version.

One bake of a role whose task names a production host (allowed by a TaskException), run with
ANSIBLE_INVENTORY, ANSIBLE_HOSTS and ANSIBLE_CONFIG pointing at an inventory of production hosts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Sandbox, make_sandbox
from kiln.guard import check_single_host_inventory

TASKS_PY = '''
"""A sandbox whose project lists production hosts (written by tests/integration/test_guard_bake)."""
import os
from pathlib import Path

from kiln import Project, TaskException
from kiln.tasks import collection

here = Path(__file__).resolve().parent
project = Project(
    here,
    image_namespace=os.environ["KILN_IMAGE_NAMESPACE"],
    production_hosts=["prod.example.com"],
)
bookworm = project.base("debian-bookworm", suite="bookworm")
project.role(
    "guarded",
    parent=bookworm,
    lint_allowed=True,
    audit_exceptions=[
        TaskException(
            ansible_role="guarded",
            task="Name the production database",
            rule="prod-url",
            reason="only a message; nothing connects to it",
        )
    ],
)
# The issue's measured examples, each refused before a builder starts (test_hostile_...).
project.role("hostile", parent=bookworm, lint_allowed=True)
ns = collection(project)
'''
GUARDED_TASKS = """\
- name: Name the production database
  ansible.builtin.copy:
    content: "the data comes from db.prod.example.com, never reached at bake time\\n"
    dest: /etc/kiln-note
    mode: "0644"
"""
HOSTILE_TASKS = """\
- name: Run a command on the bake host
  ansible.builtin.debug:
    msg: "{{ lookup('pipe', 'id') }}"
- name: Read the bake host's hostname
  ansible.builtin.debug:
    msg: "{{ lookup('file', '/etc/hostname') }}"
- name: Read kiln's environment
  ansible.builtin.debug:
    msg: "{{ lookup('env', 'AWS_SECRET_ACCESS_KEY') }}"
- name: Copy the bake host's key
  ansible.builtin.copy:
    src: /root/.ssh/id_rsa
    dest: /root/id_rsa
    mode: "0600"
- name: Load the bake host's variables
  ansible.builtin.include_vars: /etc/kiln-hostile.yml
- name: Include tasks kept under files
  ansible.builtin.include_tasks: "{{ role_path }}/files/x.yml"
- name: Apply a role from outside the roles paths
  ansible.builtin.include_role:
    name: "{{ outside_role }}"
"""
HIDDEN_TASKS = """\
- name: Add another host
  ansible.builtin.add_host:
    name: other.internal
- name: Run on another host
  ansible.builtin.command: hostname
  delegate_to: other.internal
"""
HOSTILE_FINDINGS = [
    "roles/hostile/tasks/main.yml:1 [controller-lookup] Run a command on the bake host",
    "roles/hostile/tasks/main.yml:4 [controller-lookup] Read the bake host's hostname",
    "roles/hostile/tasks/main.yml:7 [controller-lookup] Read kiln's environment",
    "roles/hostile/tasks/main.yml:10 [controller-src] Copy the bake host's key",
    "roles/hostile/tasks/main.yml:15 [controller-src] Load the bake host's variables",
    "roles/hostile/files/x.yml:1 [add-host] Add another host",
    "roles/hostile/files/x.yml:4 [delegate-to] Run on another host",
    "roles/hostile/tasks/main.yml:19 [dynamic-include] Apply a role from outside the roles paths",
]
PRODUCTION_INVENTORY = "[prod]\ndb.prod.example.com\nweb1.prod.example.com\n"
EXCEPTION = {
    "ansible_role": "guarded",
    "task": "Name the production database",
    "rule": "prod-url",
    "reason": "only a message; nothing connects to it",
}


@dataclass
class Baked:
    sandbox: Sandbox
    proc: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baked]:
    sandbox = make_sandbox(tmp_path_factory.mktemp("guard"))
    (sandbox.root / "tasks.py").write_text(TASKS_PY)
    (sandbox.root / "roles" / "guarded" / "tasks").mkdir(parents=True)
    (sandbox.root / "roles" / "guarded" / "tasks" / "main.yml").write_text(GUARDED_TASKS)
    for folder, name, text in (
        ("tasks", "main.yml", HOSTILE_TASKS),
        ("files", "x.yml", HIDDEN_TASKS),
    ):
        (sandbox.root / "roles" / "hostile" / folder).mkdir(parents=True, exist_ok=True)
        (sandbox.root / "roles" / "hostile" / folder / name).write_text(text)
    hosts = sandbox.root.parent / "production-hosts.ini"
    hosts.write_text(PRODUCTION_INVENTORY)
    config = sandbox.root.parent / "production-ansible.cfg"
    config.write_text(f"[defaults]\ninventory = {hosts}\n")
    env = {
        **sandbox.env(),
        "ANSIBLE_INVENTORY": str(hosts),
        "ANSIBLE_HOSTS": str(hosts),
        "ANSIBLE_CONFIG": str(config),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "invoke", "bake", "guarded"],
            cwd=sandbox.root, env=env, capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield Baked(sandbox, proc)
    finally:
        sandbox.cleanup()


def test_host_changing_environment_is_ignored_with_a_message(baked: Baked) -> None:
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_HOSTS", "ANSIBLE_INVENTORY"):
        assert (
            f"WARNING: ignoring {name}: Ansible only ever targets the throwaway builder"
        ) in baked.proc.stdout, baked.proc.stdout


def inventory_events(baked: Baked) -> list[dict[str, object]]:
    with baked.sandbox.registry() as registry:
        version = registry.latest("guarded")
    assert version is not None
    events = baked.sandbox.root / ".kiln" / "logs" / "guarded" / str(version.version)
    lines = (events / "ansible-events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "inventory"]


def test_ansible_was_handed_an_inventory_of_one_host(baked: Baked) -> None:
    (event,) = inventory_events(baked)
    assert event["hosts"] == ["default"]
    sources = event["sources"]
    assert isinstance(sources, list) and len(sources) == 1
    (source,) = sources
    # packer's temporary -i file, not the production inventory from the environment
    assert source["is_file"] is True
    assert "packer-provisioner-ansible" in source["source"]
    check_single_host_inventory(source["content"])
    assert "prod.example.com" not in source["content"]


def test_allowed_exceptions_are_recorded_with_the_version(baked: Baked) -> None:
    with baked.sandbox.registry() as registry:
        version = registry.latest("guarded")
    assert version is not None
    assert version.inputs["definition"]["audit_exceptions"] == [EXCEPTION]


def test_the_projects_production_hosts_reach_the_audit(baked: Baked) -> None:
    proc = baked.sandbox.invoke("audit", "--role", "guarded")
    assert proc.returncode == 0, proc.stderr
    assert (
        "allowed  roles/guarded/tasks/main.yml:1 [prod-url] Name the production database: "
        "reaches production host db.prod.example.com (under prod.example.com)"
    ) in proc.stdout
    assert "(allowed: only a message; nothing connects to it)" in proc.stdout


def test_without_the_exception_the_bake_is_refused(baked: Baked, tmp_path: Path) -> None:
    tasks = baked.sandbox.root / "tasks.py"
    original = tasks.read_text()
    start = original.index("    audit_exceptions=[")
    end = original.index("    ],\n", start) + len("    ],\n")
    tasks.write_text(original[:start] + original[end:])
    try:
        proc = baked.sandbox.invoke("bake", "guarded", "--force")
    finally:
        tasks.write_text(original)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "roles/guarded/tasks/main.yml:1 [prod-url] Name the production database: reaches "
        "production host db.prod.example.com"
    ) in proc.stderr
    with baked.sandbox.registry() as registry:
        assert len(registry.history("guarded")) == 1


def test_hostile_roles_the_issue_measured_are_refused_before_a_builder_starts(
    baked: Baked,
) -> None:
    """lookup pipe, file and env, copy src and include_vars from the bake host, and includes
    that hid add_host and delegate_to all passed the audit before issue 14."""
    audit = baked.sandbox.invoke("audit", "--role", "hostile")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    for finding in HOSTILE_FINDINGS:
        assert f"error    {finding}: " in audit.stdout, audit.stdout
    proc = baked.sandbox.invoke("bake", "hostile")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"the guard refused {len(HOSTILE_FINDINGS)} Ansible finding(s)" in proc.stderr
    for finding in HOSTILE_FINDINGS:
        assert f"  {finding}: " in proc.stderr, proc.stderr
    assert not list((baked.sandbox.root / ".kiln").rglob("hostile/**/packer.log"))
    with baked.sandbox.registry() as registry:
        assert registry.history("hostile") == []
