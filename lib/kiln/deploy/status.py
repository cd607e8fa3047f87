"""Server status: each deployed instance's health right now and its version's standing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from kiln.deploy.engine import DockerEngine, Engine
from kiln.deploy.health import check_once, health_check_of
from kiln.deploy.server import Server
from kiln.errors import KilnError
from kiln.model import Project
from kiln.registry import Registry, VersionStatus

Health = Literal["healthy", "unhealthy", "stopped", "unknown"]
Standing = Literal["current", "outdated", "revoked"]


@dataclass(frozen=True)
class ServerStatus:
    """A server with its health right now and how its version stands against its channel."""

    server: Server
    health: Health
    health_output: str
    standing: Standing

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.server),
            "age_s": round(self.server.age_s(), 1),
            "health": self.health,
            "health_output": self.health_output,
            "standing": self.standing,
        }


def servers(
    project: Project, role: str | None = None, *, engine: Engine | None = None
) -> list[ServerStatus]:
    """The deployed instances of role (or of every role), each health-checked once now."""
    if role is not None:
        project.role_named(role)
    engine = engine or DockerEngine()
    found = engine.servers(project.image_namespace, role)
    statuses: list[ServerStatus] = []
    with Registry(project.registry_url) as registry:
        for server in found:
            statuses.append(
                ServerStatus(
                    server, *_health_now(project, engine, server), _standing(registry, server)
                )
            )
    return statuses


def _health_now(project: Project, engine: Engine, server: Server) -> tuple[Health, str]:
    if not server.running:
        return "stopped", server.state
    try:
        role = project.role_named(server.role)
    except KilnError:
        return "unknown", f"role {server.role!r} is not defined in tasks.py"
    check = health_check_of(role)
    # One quick look, not a wait: a listing should not take a whole health-check timeout.
    result = check_once(engine, server.name, check, timeout=min(check.timeout_s, 10.0))
    return ("healthy" if result.healthy else "unhealthy"), result.output


def _standing(registry: Registry, server: Server) -> Standing:
    version = registry.get(server.role, server.version)
    if version is not None and version.status == VersionStatus.REVOKED:
        return "revoked"
    return (
        "current"
        if registry.channels(server.role).get(server.channel) == server.version
        else "outdated"
    )
