"""Role tests' Ansible in kiln's sandbox: the `ansible-playbook` Molecule finds first on its PATH.

kiln.roletest puts a directory holding a shim (write_shim) first on Molecule's PATH. kiln's own
create.yml and destroy.yml, which start and remove the instances with the engine's whole API, run
as they are. Every other playbook (converge, idempotence, side_effect, prepare, cleanup, verify:
the role's content) runs through kiln.controller.entry in the sandbox, where the engine proxy
admits exactly the scenario's instances and the files are the project's and the scenario's only.
"""

from __future__ import annotations

import configparser
import io
import os
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kiln.controller.config import KILN_ANSIBLE_CFG
from kiln.controller.entry import Scope, run
from kiln.errors import KilnError

#: Set by kiln.roletest: the directory of kiln's create.yml and destroy.yml for this run.
SHARED_DIR_VAR = "KILN_MOLECULE_SHARED"
#: Set by kiln.roletest: what the sandbox reads besides the project (roles paths, the role).
READABLE_VAR = "KILN_MOLECULE_READABLE"
#: The playbooks that run outside the sandbox, with the engine's whole API.
ENGINE_PLAYBOOKS = ("create.yml", "destroy.yml")
_IMPORT_KEYS = frozenset({"import_playbook", "ansible.builtin.import_playbook"})
_INVENTORY_FLAGS = ("-i", "--inventory", "--inventory-file")


def write_shim(directory: Path) -> Path:
    """Write the `ansible-playbook` Molecule runs into directory (put it first on PATH)."""
    import kiln

    # kiln as this process imports it (a checkout on PYTHONPATH, or site-packages).
    code = (
        f"import sys; sys.path.insert(0, {str(Path(kiln.__file__).parent.parent)!r}); "
        "from kiln.controller.molecule import main; sys.exit(main())"
    )
    # The venv's python by its real directory, as an entry point's shebang names it: the
    # sandbox binds the venv at sys.prefix, which must not be a path through a symlink.
    python = Path(sys.executable).parent.resolve() / Path(sys.executable).name
    path = directory / "ansible-playbook"
    path.write_text(
        "#!/bin/sh\n# Written by kiln: role tests run Ansible in kiln's sandbox.\n"
        f'exec {shlex.quote(str(python))} -c {shlex.quote(code)} "$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


def _plays(playbook: Path) -> Any:
    try:
        return yaml.safe_load(playbook.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def is_engine_playbook(playbook: Path, shared: Path) -> bool:
    """Is playbook kiln's create.yml or destroy.yml: shared's own, or a scenario's bare import?

    A scenario's create.yml that does anything but import_playbook of those (or imports them
    through a template) is role content, and runs in the sandbox.
    """
    engine = {(shared / name).resolve() for name in ENGINE_PLAYBOOKS}
    path = playbook.resolve()
    if path in engine:
        return True
    plays = _plays(path)
    if not isinstance(plays, list) or not plays:
        return False
    for play in plays:
        if not isinstance(play, dict) or not set(play) <= _IMPORT_KEYS | {"name"}:
            return False
        targets = [play[key] for key in _IMPORT_KEYS if key in play]
        if len(targets) != 1 or not isinstance(targets[0], str):
            return False
        if (path.parent / targets[0]).resolve() not in engine:
            return False
    return True


def sandboxed(args: Sequence[str], env: Mapping[str, str]) -> bool:
    """Does this ansible-playbook command run in the sandbox? All but kiln's create and destroy.

    Without kiln.roletest's SHARED_DIR_VAR, every playbook does.
    """
    if args in ([], ["--version"]):
        return False  # Molecule's check that the executable works: nothing runs against a host
    shared = env.get(SHARED_DIR_VAR, "")
    return not shared or not is_engine_playbook(Path(args[-1]), Path(shared))


def _hosts(group: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(name, variables) of every host of an inventory group, its children's included."""
    if not isinstance(group, Mapping):
        return
    hosts = group.get("hosts")
    if isinstance(hosts, Mapping):
        for name, variables in hosts.items():
            yield str(name), variables if isinstance(variables, Mapping) else {}
    children = group.get("children")
    if isinstance(children, Mapping):
        for child in children.values():
            yield from _hosts(child)


def inventory_containers(inventory: Path) -> list[str]:
    """The containers of Molecule's inventory: each docker-connected host's ansible_host."""
    source = inventory / "ansible_inventory.yml" if inventory.is_dir() else inventory
    data = _plays(source)
    found: list[str] = []
    if not isinstance(data, Mapping):
        return found
    for group in data.values():
        for name, variables in _hosts(group):
            if "docker" not in str(variables.get("ansible_connection") or ""):
                continue
            container = str(variables.get("ansible_host") or name)
            if container not in found:
                found.append(container)
    return found


def created_instances(instance_config: Path) -> set[str]:
    """The addresses kiln's create.yml wrote into Molecule's instance config."""
    data = _plays(instance_config)
    if not isinstance(data, list):
        return set()
    return {
        str(item["address"]) for item in data if isinstance(item, Mapping) and item.get("address")
    }


def instances(inventory: Path, instance_config: Path) -> tuple[str, ...]:
    """The containers a playbook may reach: the inventory's, if kiln's create.yml started them.

    A scenario can point its inventory's ansible_host anywhere (connection_options, host_vars);
    only the instances create.yml recorded are admitted, so that it cannot reach another.
    """
    created = created_instances(instance_config)
    return tuple(c for c in inventory_containers(inventory) if c in created)


def _inventory_argument(args: Sequence[str]) -> Path | None:
    for index, arg in enumerate(args[:-1]):
        if arg in _INVENTORY_FLAGS:
            return Path(args[index + 1])
    return None


def scenario_cfg(path: Path) -> str:
    """The ansible.cfg Molecule wrote for the scenario (from its molecule.yml), kiln's way.

    Its path settings name files the sandbox holds only inside the project; retry files are off.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        parser = configparser.ConfigParser(interpolation=None)
    if not parser.has_section("defaults"):
        parser.add_section("defaults")
    parser.set("defaults", "retry_files_enabled", "False")
    out = io.StringIO()
    out.write("# Molecule's ansible.cfg of the scenario, for a run in kiln's sandbox.\n")
    parser.write(out)
    return out.getvalue()


def _link_targets(directory: Path) -> list[Path]:
    """Where the symlinks directly in directory point (a mirrored role, a roles path's links)."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    return [entry.resolve() for entry in entries if entry.is_symlink()]


def role_test_scope(args: Sequence[str], env: Mapping[str, str]) -> Scope:
    """What a role test's playbook reaches: the project, the scenario's state, its instances."""
    project = Path(env.get("MOLECULE_PROJECT_DIRECTORY") or Path.cwd())
    readable: list[Path] = []
    ephemeral = env.get("MOLECULE_EPHEMERAL_DIRECTORY", "")
    if ephemeral:  # inventory, molecule.yml's copy, instance config: read-only, never rewritten
        readable.append(Path(ephemeral))
    for item in env.get(READABLE_VAR, "").split(os.pathsep):
        if item:
            readable += [Path(item), *_link_targets(Path(item))]
    readable += _link_targets(project)
    inventory = _inventory_argument(args)
    config = env.get("MOLECULE_INSTANCE_CONFIG", "")
    containers = instances(inventory, Path(config)) if inventory and config else ()
    cfg = env.get("ANSIBLE_CONFIG", "")
    return Scope(
        containers=containers,
        project=project,
        readable=tuple(readable),
        # Converge and verify playbooks read lookup('env', 'MOLECULE_...').
        env={name: value for name, value in env.items() if name.startswith("MOLECULE_")},
        ansible_cfg=scenario_cfg(Path(cfg)) if cfg else KILN_ANSIBLE_CFG,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not sandboxed(args, os.environ):
        ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
        os.execv(ansible_playbook, [str(ansible_playbook), *args])
    try:
        rc = run(args, os.environ, role_test_scope(args, os.environ))
    except KilnError as exc:
        print(f"kiln-ansible: {exc}", file=sys.stderr)
        return 2
    if rc != 0 and Path(args[-1]).name in ENGINE_PLAYBOOKS:
        print(
            f"kiln-ansible: {args[-1]} ran in kiln's sandbox, which admits only the scenario's "
            "instances: only kiln's own create.yml and destroy.yml (molecule/_shared/), or a "
            "scenario playbook that does nothing but import_playbook them, run with the whole "
            "Docker engine",
            file=sys.stderr,
        )
    return rc


__all__ = [
    "instances",
    "is_engine_playbook",
    "main",
    "role_test_scope",
    "sandboxed",
    "write_shim",
]
