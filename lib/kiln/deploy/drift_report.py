"""Drift: the files a deployed instance changed since it started; versions no channel names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from kiln.deploy.engine import DockerEngine, Engine
from kiln.deploy.server import Server
from kiln.errors import KilnError
from kiln.model import Project
from kiln.registry import Registry

# Changes every instance shows whatever its role, so no role should have to list them:
# /etc/mtab is rewritten by the engine's init layer when the container is created (seen on a
# clean instance), and dpkg-db-backup.timer writes /var/backups every midnight on Debian.
BASELINE_DRIFT_ALLOW = ("/etc/mtab", "/var/backups")

ChangeKind = Literal["added", "changed", "deleted"]


@dataclass(frozen=True)
class FileChange:
    kind: ChangeKind
    path: str


@dataclass(frozen=True)
class InstanceDrift:
    server: Server
    changes: tuple[FileChange, ...]
    problems: tuple[str, ...]

    @property
    def drifted(self) -> bool:
        return bool(self.changes or self.problems)

    @property
    def remedy(self) -> str:
        return f"invoke deploy {self.server.role} --channel {self.server.channel} --recreate"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.server.name,
            "role": self.server.role,
            "version": self.server.version,
            "channel": self.server.channel,
            "drifted": self.drifted,
            "changes": [asdict(c) for c in self.changes],
            "problems": list(self.problems),
            "remedy": self.remedy if self.drifted else None,
        }


def drift(
    project: Project, role: str | None = None, *, engine: Engine | None = None
) -> list[InstanceDrift]:
    """Every deployed instance of role (or all roles) with its filesystem changes and problems.

    A change is anything `docker diff` reports outside the role's drift_allow prefixes (and
    BASELINE_DRIFT_ALLOW); a problem is a version that no channel points at any more.
    """
    if role is not None:
        project.role_named(role)
    engine = engine or DockerEngine()
    report: list[InstanceDrift] = []
    with Registry(project.registry_url) as registry:
        for server in engine.servers(project.image_namespace, role):
            report.append(_instance_drift(project, registry, engine, server))
    return report


def _instance_drift(
    project: Project, registry: Registry, engine: Engine, server: Server
) -> InstanceDrift:
    problems: list[str] = []
    try:
        allow = (*project.role_named(server.role).drift_allow, *BASELINE_DRIFT_ALLOW)
    except KilnError:
        allow = BASELINE_DRIFT_ALLOW
        problems.append(f"its role {server.role!r} is no longer defined in tasks.py")
    if not registry.channels_pointing_at(server.role, server.version):
        problems.append(f"it runs {server.role} v{server.version}, which no channel points at")
    changes = significant_changes(engine.diff(server.name), allow)
    return InstanceDrift(server, tuple(changes), tuple(problems))


_KINDS: dict[str, ChangeKind] = {
    "A": "added",
    "C": "changed",
    "D": "deleted",
}


def significant_changes(
    entries: Sequence[tuple[str, str]], allow: Sequence[str]
) -> list[FileChange]:
    """`docker diff` entries that matter: not under an allowed prefix, and not a directory
    reported as changed only because something beneath it changed."""
    paths = [path for _, path in entries]
    changes: list[FileChange] = []
    for kind, path in entries:
        if _allowed(path, allow):
            continue
        if kind == "C" and any(other.startswith(path.rstrip("/") + "/") for other in paths):
            continue
        changes.append(FileChange(_KINDS.get(kind, "changed"), path))
    return changes


def _allowed(path: str, allow: Sequence[str]) -> bool:
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in allow)
