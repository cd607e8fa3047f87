"""Package repositories that are not the public mirror: how builders read them, and where the
upstream check (`outdated --upstream`) reaches them from the host.

A team with a local repository (synced to the build host, say) gives docker builders a
read-only bind mount of it, and the image's apt source a `file:` URI; the host serves the same
directory over HTTP and maps that URI to it for the check. What a builder reads through a mount
is not fingerprinted, like the public mirror: a repository changes under unchanged inputs, and
`outdated --upstream` is what notices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from kiln.errors import DefinitionError

#: Characters `docker run --mount` cannot carry in a path (its fields are comma-separated).
_UNSAFE_IN_MOUNT = set(",=\n\r\"'")


@dataclass(frozen=True)
class BuilderMount:
    """A host directory every docker builder sees, read-only, at builder_path."""

    host_path: str
    builder_path: str

    def docker_flags(self) -> tuple[str, str]:
        return (
            "--mount",
            f"type=bind,source={self.host_path},target={self.builder_path},readonly",
        )


@dataclass(frozen=True)
class PackageSources:
    """mounts: "HOST_DIR:BUILDER_DIR" strings (absolute paths), mounted read-only in docker
    builders. mirrors: an image's apt source URI prefix -> the URI the host checks it at."""

    mounts: Sequence[str] = ()
    mirrors: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.mounts, str):
            raise DefinitionError("PackageSources mounts is a list of HOST_DIR:BUILDER_DIR")
        object.__setattr__(self, "mounts", tuple(self.mounts))
        object.__setattr__(self, "mirrors", dict(self.mirrors))
        self.builder_mounts()  # refuse a malformed one at definition time
        for prefix, uri in self.mirrors.items():
            if not prefix or not uri or not isinstance(prefix, str) or not isinstance(uri, str):
                raise DefinitionError(
                    f"PackageSources mirror {prefix!r} -> {uri!r}: both must be non-empty URIs"
                )

    def builder_mounts(self) -> tuple[BuilderMount, ...]:
        found = []
        for spec in self.mounts:
            host, sep, builder = str(spec).partition(":")
            paths = (PurePosixPath(host), PurePosixPath(builder))
            if not sep or not all(p.is_absolute() for p in paths) or ".." in str(spec):
                raise DefinitionError(
                    f"PackageSources mount {spec!r}: write HOST_DIR:BUILDER_DIR, both absolute"
                )
            if _UNSAFE_IN_MOUNT & set(spec):
                raise DefinitionError(
                    f"PackageSources mount {spec!r}: a path may not hold , = quotes or newlines"
                )
            found.append(BuilderMount(host, builder))
        return tuple(found)
