"""What kiln hands ansible-playbook at bake time: a scrubbed environment, a one-host inventory."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import yaml

from kiln.errors import GuardError

# Every variable that changes which hosts ansible-playbook targets or how it reaches them
# (ansible-core 2.19 config/base.yml). ANSIBLE_CONFIG goes too: a config file can set all of them.
HOST_CHANGING_ENV = frozenset(
    {
        "ANSIBLE_INVENTORY",
        "ANSIBLE_HOSTS",  # the pre-2.8 name of ANSIBLE_INVENTORY
        "ANSIBLE_INVENTORY_ENABLED",
        "ANSIBLE_INVENTORY_PLUGINS",
        "ANSIBLE_CONFIG",
        # vars plugins can set ansible_host and so point the builder's name at another machine
        "ANSIBLE_VARS_PLUGINS",
        "ANSIBLE_VARS_ENABLED",
    }
)

_HOST_RANGE_RE = re.compile(r"\[[^\]]*:[^\]]*\]")


class SafeEnvironment(NamedTuple):
    env: dict[str, str]
    dropped: tuple[str, ...]


def ansible_environment(base: Mapping[str, str]) -> SafeEnvironment:
    """A copy of ``base`` without the variables that change which hosts Ansible targets.

    ``dropped`` names what was removed, so that kiln can say so in one line.
    """
    env = {k: v for k, v in base.items() if k not in HOST_CHANGING_ENV}
    return SafeEnvironment(env, tuple(sorted(k for k in base if k in HOST_CHANGING_ENV)))


def check_single_host_inventory(inventory: object) -> None:
    """Raise GuardError unless ``inventory`` holds exactly one host.

    ``inventory`` is ansible-runner's YAML-dict form, or a string: INI, YAML or ``host,`` list.
    """
    hosts = _inventory_hosts(inventory)
    if len(hosts) != 1:
        shown = ", ".join(sorted(hosts)[:5]) + (", ..." if len(hosts) > 5 else "")
        raise GuardError(
            f"the Ansible inventory must hold exactly one host, the builder; it holds "
            f"{len(hosts)}{': ' + shown if hosts else ''}. kiln writes that inventory itself: "
            "do not pass another one (-i, ANSIBLE_INVENTORY)."
        )


def _inventory_hosts(inventory: object) -> set[str]:
    if isinstance(inventory, Mapping):
        hosts: set[str] = set()
        for name, group in inventory.items():
            _group_hosts(str(name), group, hosts)
        return hosts
    if isinstance(inventory, str):
        try:
            parsed = yaml.safe_load(inventory)
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, Mapping):
            return _inventory_hosts(parsed)
        if "\n" not in inventory.strip() and "," in inventory:
            return {_one_host(h) for h in inventory.split(",") if h.strip()}
        return _ini_hosts(inventory)
    raise GuardError(
        f"cannot check an inventory of type {type(inventory).__name__}: "
        "pass ansible-runner's dict form or an INI string"
    )


def _group_hosts(name: str, group: object, hosts: set[str]) -> None:
    if group is None:
        return
    if not isinstance(group, Mapping) or not set(group) <= {"hosts", "children", "vars"}:
        raise GuardError(
            f"cannot read inventory group {name!r}: a group holds only hosts, children and vars"
        )
    members = group.get("hosts") or {}
    if isinstance(members, Mapping | list):
        hosts.update(_one_host(str(h)) for h in members)
    else:
        raise GuardError(f"cannot read the hosts of inventory group {name!r}")
    children = group.get("children") or {}
    if not isinstance(children, Mapping):
        raise GuardError(f"cannot read the children of inventory group {name!r}")
    for child, body in children.items():
        _group_hosts(str(child), body, hosts)


def _ini_hosts(text: str) -> set[str]:
    hosts: set[str] = set()
    section_holds_hosts = True
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section_holds_hosts = not line[1:-1].strip().endswith((":vars", ":children"))
            continue
        if section_holds_hosts:
            hosts.add(_one_host(line.split()[0]))
    return hosts


def _one_host(name: str) -> str:
    name = name.strip()
    if _HOST_RANGE_RE.search(name):
        raise GuardError(f"inventory host {name!r} is a range, so it names several hosts")
    return re.sub(r":\d+$", "", name) if name.count(":") == 1 else name
