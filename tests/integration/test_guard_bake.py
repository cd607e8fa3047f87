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
ns = collection(project)
'''
GUARDED_TASKS = """\
- name: Name the production database
  ansible.builtin.copy:
    content: "the data comes from db.prod.example.com, never reached at bake time\\n"
    dest: /etc/kiln-note
    mode: "0644"
"""
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
