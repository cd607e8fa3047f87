"""Targets: where a bake runs and what it produces. One module per target."""

from __future__ import annotations

from kiln.errors import DefinitionError
from kiln.targets.base import BakePlan, Target
from kiln.targets.cloud import AmazonEbsTarget, GoogleComputeTarget
from kiln.targets.docker import DockerTarget

_TARGETS: dict[str, type[Target]] = {
    "docker": DockerTarget,
    "amazon-ebs": AmazonEbsTarget,
    "googlecompute": GoogleComputeTarget,
}


def get_target(name: str) -> Target:
    try:
        return _TARGETS[name]()
    except KeyError:
        known = ", ".join(sorted(_TARGETS))
        raise DefinitionError(f"unknown target {name!r} (known: {known})") from None


def target_names() -> list[str]:
    return sorted(_TARGETS)


__all__ = ["BakePlan", "Target", "get_target", "target_names"]
