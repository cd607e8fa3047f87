"""Images in an OCI registry (KILN_IMAGE_REGISTRY=host:port/prefix): pushed once their acceptance
tests pass, pulled by digest where the local engine does not have them.

The registry records each push's digest-pinned reference; a pull verifies that the image it got is
the one recorded (same image id) before tagging it under the recorded name. Docker's own client
does the transfer, so the engine's credentials and TLS settings apply as for any `docker push`.
"""

from __future__ import annotations

import re

from kiln import tools
from kiln.errors import DefinitionError, ImageRegistryError, RegistryError
from kiln.registry import Artifact, Push, Registry, Version, VersionStatus, utc_now

#: host[:port]/prefix, as `docker push` takes a repository's leading part.
_IMAGE_REGISTRY = re.compile(r"[a-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*")
_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
#: Seconds a push or pull may take: a first push of a base image moves hundreds of megabytes.
TRANSFER_TIMEOUT_S = 1800


def checked_image_registry(text: str) -> str:
    """text if it names an OCI registry and an optional prefix; a DefinitionError otherwise."""
    value = text.strip().rstrip("/")
    host = value.split("/", 1)[0]
    # Docker reads a first part with no dot, no port and not localhost as a Docker Hub account.
    if not _IMAGE_REGISTRY.fullmatch(value) or not (
        "." in host or ":" in host or host == "localhost"
    ):
        raise DefinitionError(
            f"image registry {text!r} is not HOST:PORT[/PREFIX] (for example "
            "registry.internal:5000/team): set KILN_IMAGE_REGISTRY or Project(image_registry=...)"
        )
    return value


def push(version: Version, artifact: Artifact, image_registry: str) -> Push:
    """Push version's docker image to image_registry; returns the push, digest and all."""
    remote = f"{image_registry}/{artifact.ref}"
    tools.docker("tag", artifact.ref, remote)
    try:
        proc = tools.run(["docker", "push", remote], check=False, timeout=TRANSFER_TIMEOUT_S)
    finally:
        tools.docker("image", "rm", remote, check=False)  # only the extra tag: the image stays
    found = _DIGEST.search(proc.stdout)
    if proc.returncode != 0 or found is None:
        raise ImageRegistryError(
            f"cannot push {version.label} ({artifact.ref}) to {image_registry}: "
            f"{_last_line(proc.stderr or proc.stdout)}. It stays recorded as not pushed: "
            f"`invoke push {version.role}` (or the next bake) pushes it again",
            role=version.role,
            version=version.version,
        )
    digest = found.group(1)
    repository = remote.rsplit(":", 1)[0]
    return Push(
        role=version.role,
        version=version.version,
        target=artifact.target,
        registry=image_registry,
        reference=f"{repository}@{digest}",
        digest=digest,
        pushed_at=utc_now(),
    )


def push_missing(registry: Registry, version: Version, image_registry: str) -> Push | None:
    """Push version's docker image unless image_registry has it already; the new push, or None."""
    artifact = version.artifact("docker")
    if artifact is None or artifact.deleted_at is not None:
        return None
    if any(p.registry == image_registry for p in registry.pushes(version.role, version.version)):
        return None
    pushed = push(version, artifact, image_registry)
    registry.record_push(pushed)
    return pushed


def push_role(
    registry: Registry, role: str, image_registry: str | None, version: int | None = None
) -> list[Push]:
    """Push role's tested versions (or one of them) that image_registry does not have yet."""
    if image_registry is None:
        raise DefinitionError(
            "no image registry to push to: set KILN_IMAGE_REGISTRY=HOST:PORT[/PREFIX] "
            "(or Project(image_registry=...))"
        )
    candidates = registry.history(role) if version is None else [registry.get(role, version)]
    if version is not None and candidates[0] is None:
        raise RegistryError(f"{role} has no version {version}; see `invoke history {role}`")
    pushed = []
    for found in candidates:
        if found is None or found.status is not VersionStatus.TESTED:
            if version is not None:
                raise RegistryError(
                    f"{role} v{version} is not tested: only tested versions are pushed"
                )
            continue
        done = push_missing(registry, found, image_registry)
        if done is not None:
            pushed.append(done)
    return list(reversed(pushed)) if version is None else pushed


def ensure_local(registry: Registry, version: Version, artifact: Artifact) -> Push | None:
    """Pull version's image by digest if the engine does not have it; the push pulled, or None.

    Nothing happens when the version was never pushed, when the engine has the image, or when
    it has something else under that name (the caller reports that: see recorded_image_present).
    """
    if artifact.target != "docker" or artifact.deleted_at is not None:
        return None
    pushes = [p for p in registry.pushes(version.role, version.version) if p.target == "docker"]
    if not pushes or tools.docker_image_id(artifact.ref) is not None:
        return None
    source = pushes[0]
    proc = tools.run(["docker", "pull", source.reference], check=False, timeout=TRANSFER_TIMEOUT_S)
    if proc.returncode != 0:
        raise ImageRegistryError(
            f"{version.label} is not in the local engine, and pulling {source.reference} "
            f"failed: {_last_line(proc.stderr or proc.stdout)}",
            role=version.role,
            version=version.version,
        )
    pulled = tools.docker_image_id(source.reference)
    if pulled != artifact.image_id:
        raise ImageRegistryError(
            f"{source.reference} is image {pulled}, not the recorded {artifact.image_id} of "
            f"{version.label}: the registry does not hold what was pushed; rebake {version.role}",
            role=version.role,
            version=version.version,
        )
    tools.docker("tag", source.reference, artifact.ref)
    return source


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
