"""The desired state: what a deploy is asked for, and the recorded version and image it runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kiln.deploy.engine import Engine
from kiln.deploy.server import Server
from kiln.deploy.strategies import STRATEGIES
from kiln.docker import recorded_image_present
from kiln.errors import DeployError, ImageMoved, ImageRegistryError, rebake_remedy
from kiln.image_registry import ensure_local
from kiln.model import Role
from kiln.registry import Artifact, Registry, Version, VersionStatus

MAX_REPLICAS = 64


@dataclass(frozen=True)
class Plan:
    """What one deploy is asked for: a role, a channel, how many instances and how."""

    role: Role
    channel: str
    replicas: int
    strategy: str
    port: int | None
    recreate: bool

    def check(self) -> None:
        """Refuse what no deploy could do, before anything is opened or recorded."""
        if self.strategy not in STRATEGIES:
            raise DeployError(
                f"unknown strategy {self.strategy!r} (known: {', '.join(STRATEGIES)})"
            )
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise DeployError(f"replicas must be between 1 and {MAX_REPLICAS}, not {self.replicas}")
        if self.port is not None and not 1 <= self.port <= 65535 - 2 * self.replicas:
            raise DeployError(
                f"--port {self.port} leaves no room for {self.replicas} replica(s) above it"
            )

    def satisfied_by(self, current: Sequence[Server], version: Version, image_id: str) -> bool:
        """Whether current already is this plan: replicas running servers of version's image."""
        return len(current) == self.replicas and all(
            s.running and s.version == version.version and s.image_id == image_id for s in current
        )


def deployable_version(registry: Registry, role: str, channel: str) -> Version:
    """The version channel names for role, or a DeployError saying why it cannot be deployed."""
    channels = registry.channels(role)
    if channel not in channels:
        known = ", ".join(sorted(channels)) or "none"
        raise DeployError(
            f"{role} has no channel {channel!r} (its channels: {known}); "
            f"promote a tested version to it first"
        )
    number = channels[channel]
    if number is None:
        raise DeployError(f"channel {channel} of {role} points at no version; promote one first")
    version = registry.get(role, number)
    if version is None:
        raise DeployError(f"channel {channel} of {role} points at v{number}, which is not recorded")
    if not version.status.deployable:
        why = f" ({version.status_reason})" if version.status_reason else ""
        raise DeployError(
            f"{version.label} is {version.status}{why}, and only {VersionStatus.TESTED} versions "
            f"are deployed; point channel {channel} at a tested version"
        )
    if version.parent_revoked:
        raise DeployError(
            f"{version.label} was built on a revoked parent ({version.parent_role} "
            f"v{version.parent_version}); rebake {role} and promote the new version"
        )
    artifact = version.artifact("docker")
    if artifact is None or artifact.deleted_at is not None:
        raise DeployError(f"{version.label} has no docker image left to deploy; rebake {role}")
    return version


def deployable_image(
    registry: Registry, engine: Engine, role: str, channel: str
) -> tuple[Version, Artifact]:
    """The version channel names and its docker image, which the engine must hold as recorded
    (pulled by digest first if it was pushed and the engine lacks it); a DeployError otherwise
    (one that says so when the tag names another image)."""
    version = deployable_version(registry, role, channel)
    artifact = version.artifact("docker")
    assert artifact is not None
    try:
        ensure_local(registry, version, artifact)
    except ImageRegistryError as exc:
        raise DeployError(str(exc), role=role, version=version.version) from exc
    then = f", then promote it to {channel} and deploy again"
    try:
        present = recorded_image_present(
            artifact, owner=version, remedy=rebake_remedy(role, then), image_id=engine.image_id
        )
    except ImageMoved as moved:
        raise DeployError(str(moved), role=role, version=version.version) from moved
    if not present:
        raise DeployError(
            f"image {artifact.ref} of {version.label} is missing from the Docker engine; "
            f"rebake {role} and promote again"
        )
    return version, artifact
