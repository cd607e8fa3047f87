"""Which suites an acceptance run holds: kiln's base battery and the tests a role declares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln.errors import DefinitionError
from kiln.model import Node, Project, Role
from kiln.paths import relative_to
from kiln.resources import BATTERIES_DIR

BATTERY_DIR = BATTERIES_DIR / "base"
BATTERY_LABEL = "kiln base battery"
#: How long one pytest or ansible-playbook process may run.
TIMEOUT_S = 600


@dataclass(frozen=True)
class Suite:
    """One declared test file: a testinfra module or an Ansible verify playbook."""

    kind: Literal["testinfra", "playbook"]
    path: Path
    label: str


def discover_suites(project: Project, node: Node) -> list[Suite]:
    """The base battery, then the tests node declares (files, or directories searched for them).

    A directory contributes test_*.py / *_test.py files (testinfra) and *.yml / *.yaml files
    (verify playbooks); files starting with '_' or '.' and conftest.py are left to pytest.
    """
    suites = [
        Suite("testinfra", path, BATTERY_LABEL) for path in sorted(BATTERY_DIR.glob("test_*.py"))
    ]
    declared = node.tests if isinstance(node, Role) else ()
    for rel in declared:
        path = project.root / rel
        if not path.exists():
            raise DefinitionError(f"role {node.name!r}: test path {rel!r} does not exist")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found = [s for s in (_suite_for(project, p) for p in files) if s is not None]
        if path.is_file() and not found:
            raise DefinitionError(
                f"role {node.name!r}: test {rel!r} is neither a testinfra file (test_*.py) "
                "nor an Ansible playbook (*.yml)"
            )
        suites += found
    return suites


def _suite_for(project: Project, path: Path) -> Suite | None:
    name = path.name
    if name.startswith((".", "_")) or "__pycache__" in path.parts:
        return None
    label = relative_to(path.resolve(), project.root)
    if name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py")):
        return Suite("testinfra", path, label)
    if name.endswith((".yml", ".yaml")):
        return Suite("playbook", path, label)
    return None
