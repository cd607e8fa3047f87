"""kiln.controller.molecule: which of a role test's playbooks run in the sandbox, and what the
sandbox admits, from Molecule's own files (tests/fixtures/molecule_ephemeral/, written by
Molecule 26 for a run of the web scenario after create)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from kiln.controller.entry import sandbox_spec
from kiln.controller.molecule import (
    READABLE_VAR,
    SHARED_DIR_VAR,
    instances,
    is_engine_playbook,
    role_test_scope,
    sandboxed,
    write_shim,
)

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "molecule" / "_shared"
EPHEMERAL = ROOT / "tests" / "fixtures" / "molecule_ephemeral"
#: The instance kiln's create.yml started and wrote into instance_config.yml.
INSTANCE = "kiln-molecule-web-instance-3f9c2a1b7d4e-0"
ENV = {SHARED_DIR_VAR: str(SHARED)}


def _command(playbook: Path | str) -> list[str]:
    """ansible-playbook's arguments as Molecule 26 passes them (ansible_playbook.py's bake)."""
    return [
        "--inventory",
        str(EPHEMERAL / "inventory"),
        "--skip-tags",
        "molecule-notest,notest",
        str(playbook),
    ]


@pytest.mark.parametrize("playbook", ["create.yml", "destroy.yml"])
def test_kilns_create_and_destroy_run_outside_with_the_whole_engine(playbook: str) -> None:
    # Imported by kiln's own scenarios (molecule/<role>/create.yml), or named directly by the
    # molecule.yml kiln writes for a role-shipped scenario.
    assert not sandboxed(_command(ROOT / "molecule" / "web" / playbook), ENV)
    assert not sandboxed(_command(SHARED / playbook), ENV)


@pytest.mark.parametrize("playbook", ["converge.yml", "verify.yml"])
def test_the_roles_playbooks_run_in_the_sandbox(playbook: str) -> None:
    assert sandboxed(_command(ROOT / "molecule" / "web" / playbook), ENV)
    assert sandboxed(["--syntax-check", *_command(ROOT / "molecule" / "web" / playbook)], ENV)


def test_molecules_version_check_runs_outside() -> None:
    assert not sandboxed(["--version"], ENV)


@pytest.mark.parametrize(
    "content",
    [
        # kiln's import, then a play of the scenario's own
        "- ansible.builtin.import_playbook: ../_shared/create.yml\n"
        "- hosts: localhost\n  tasks: [{ansible.builtin.command: id}]\n",
        # an import kiln cannot resolve
        "- ansible.builtin.import_playbook: \"{{ lookup('env', 'X') }}/create.yml\"\n",
        # an import of something else
        "- ansible.builtin.import_playbook: ../_shared/other.yml\n",
        # kiln's import with variables of the scenario's
        "- ansible.builtin.import_playbook: ../_shared/create.yml\n  vars: {x: 1}\n",
        "not: a playbook\n",
    ],
)
def test_a_create_yml_that_is_not_kilns_runs_in_the_sandbox(tmp_path: Path, content: str) -> None:
    shutil.copytree(SHARED, tmp_path / "molecule" / "_shared")
    scenario = tmp_path / "molecule" / "role"
    scenario.mkdir()
    (scenario / "create.yml").write_text(content)

    assert not is_engine_playbook(scenario / "create.yml", tmp_path / "molecule" / "_shared")
    assert sandboxed(_command(scenario / "create.yml"), {SHARED_DIR_VAR: str(SHARED)})


def test_without_kilns_shared_directory_every_playbook_runs_in_the_sandbox() -> None:
    assert sandboxed(_command(SHARED / "create.yml"), {})


def test_the_instances_are_the_inventorys_that_create_started() -> None:
    assert instances(EPHEMERAL / "inventory", EPHEMERAL / "instance_config.yml") == (INSTANCE,)


def test_an_inventory_pointing_elsewhere_admits_only_the_created_instances(
    tmp_path: Path,
) -> None:
    # A scenario's connection_options or host_vars can set ansible_host to any container.
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "ansible_inventory.yml").write_text(
        "all:\n  hosts:\n"
        f"    instance: {{ansible_connection: community.docker.docker, ansible_host: {INSTANCE}}}\n"
        "    other: {ansible_connection: docker, ansible_host: production-db}\n"
        "    local: {ansible_connection: local}\n"
        "web:\n  children:\n    deep:\n      hosts:\n"
        "        named: {ansible_connection: community.docker.docker}\n"
    )
    config = tmp_path / "instance_config.yml"
    config.write_text(f"- {{address: {INSTANCE}}}\n- {{address: named}}\n")

    assert instances(inventory, config) == (INSTANCE, "named")
    assert instances(inventory, tmp_path / "before-create.yml") == ()


def test_a_role_tests_sandbox_holds_the_project_and_the_scenarios_state(tmp_path: Path) -> None:
    roles = tmp_path / "roles"
    (roles / "elsewhere").mkdir(parents=True)
    (roles / "linked").symlink_to(roles / "elsewhere")
    env = {
        **ENV,
        READABLE_VAR: str(roles),
        "MOLECULE_PROJECT_DIRECTORY": str(ROOT),
        "MOLECULE_EPHEMERAL_DIRECTORY": str(EPHEMERAL),
        "MOLECULE_INSTANCE_CONFIG": str(EPHEMERAL / "instance_config.yml"),
        "MOLECULE_SCENARIO_NAME": "web",
        "ANSIBLE_CONFIG": str(EPHEMERAL / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": "/root/roles",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    args = [*_command(ROOT / "molecule" / "web" / "converge.yml"), "-e", "@/root/secrets.json"]

    scope = role_test_scope(args, env)
    spec = sandbox_spec(args, env, tmp_path / "run", scope)

    assert scope.containers == (INSTANCE,)
    assert spec.project == ROOT and spec.hidden == (ROOT / ".kiln",)
    assert {EPHEMERAL, roles, roles / "elsewhere"} <= set(spec.readable)
    # Paths the scenario or its arguments name are not bound: only what kiln.roletest says.
    assert not any(str(path).startswith("/root") for path in spec.readable)
    assert spec.env["MOLECULE_SCENARIO_NAME"] == "web"
    assert "AWS_SECRET_ACCESS_KEY" not in spec.env
    assert spec.env["ANSIBLE_CONFIG"] == str(tmp_path / "run" / "ansible.cfg")
    # The scenario's molecule.yml settings reach Ansible; retry files stay off.
    assert "interpreter_python = /usr/bin/python3" in scope.ansible_cfg
    assert "pipelining = True" in scope.ansible_cfg
    assert "retry_files_enabled = False" in scope.ansible_cfg


def test_the_shim_answers_molecules_version_check(tmp_path: Path) -> None:
    shim = write_shim(tmp_path)

    done = subprocess.run([str(shim), "--version"], capture_output=True, text=True, check=False)

    assert done.returncode == 0 and done.stdout.startswith("ansible-playbook [core ")
