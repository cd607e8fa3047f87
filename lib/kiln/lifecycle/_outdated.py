"""`outdated`: roles baked from a superseded or revoked parent, and rebaking them in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kiln.errors import KilnError
from kiln.registry import Registry, VersionStatus, VersionSummary, statuses

if TYPE_CHECKING:
    from kiln.bake import BakeOutcome, Baker
    from kiln.model import Node, Project


#: Plain strings: outdated tests every version of every role against them.
_UNUSABLE = statuses(lambda s: not s.usable)


@dataclass(frozen=True)
class Outdated:
    role: str
    version: int
    parent_role: str
    parent_version: int
    why: str
    newest_parent: int | None


def outdated(registry: Registry) -> list[Outdated]:
    """Roles whose newest version was baked from a parent since superseded or revoked.

    Superseded means a newer version of the parent role exists that is neither failed nor
    revoked.
    """
    by_role: dict[str, list[VersionSummary]] = {}
    for row in registry.version_summaries():
        by_role.setdefault(row.role, []).append(row)
    found: list[Outdated] = []
    for role, rows in sorted(by_role.items()):
        newest = rows[0]
        parent_role, parent_version = newest.parent_role, newest.parent_version
        if parent_role is None or parent_version is None:
            continue
        parent_rows = by_role.get(parent_role, [])
        parent = next((r for r in parent_rows if r.version == parent_version), None)
        newer = [
            r.version
            for r in parent_rows
            if r.version > parent_version and r.status not in _UNUSABLE
        ]
        why = None
        if parent is not None and parent.status == VersionStatus.REVOKED:
            why = f"its parent {parent_role} v{parent_version} is revoked"
        elif newest.parent_revoked:
            why = f"its parent {parent_role} v{parent_version} descends from a revoked version"
        elif newer:
            why = f"its parent {parent_role} v{parent_version} is superseded by v{max(newer)}"
        if why is not None:
            found.append(
                Outdated(
                    role,
                    newest.version,
                    parent_role,
                    parent_version,
                    why,
                    max(newer) if newer else None,
                )
            )
    return found


def bake_outdated(
    baker: Baker,
    *,
    within: Sequence[str] | None = None,
    on_bake: Callable[[str, list[BakeOutcome]], None] | None = None,
) -> list[tuple[str, list[BakeOutcome]]]:
    """Rebake outdated roles, parents first; a rebaked parent makes its children outdated too.

    within limits it to those roles and the roles built on them. Roles no longer defined are
    skipped.
    """
    from kiln.model import Role

    project = baker.project
    allowed: set[str] | None = None
    if within is not None:
        allowed = set()
        todo: list[Role] = [project.role_named(name) for name in within]
        while todo:
            node = todo.pop()
            allowed.add(node.name)
            todo.extend(project.children(node))
    done: list[tuple[str, list[BakeOutcome]]] = []
    baked: set[str] = set()
    while True:
        candidates = [
            o.role
            for o in outdated(baker.registry)
            if o.role not in baked
            and (allowed is None or o.role in allowed)
            and isinstance(_defined(project, o.role), Role)
        ]
        if not candidates:
            return done
        # Shallowest first: its rebake may make deeper roles outdated, which the next pass sees.
        name = min(candidates, key=lambda n: (len(project.role_named(n).ancestry()), n))
        outcomes = baker.bake(name, force=True)
        baked.add(name)
        done.append((name, outcomes))
        if on_bake is not None:
            on_bake(name, outcomes)


def _defined(project: Project, name: str) -> Node | None:
    try:
        return project.get(name)
    except KilnError:
        return None
